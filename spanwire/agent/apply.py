"""Execute planned ops through the data-plane layer. No decisions here."""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence

from spanwire.agent.plan import ops as o
from spanwire.agent.plan.nft_table import RulesetChange
from spanwire.dataplane import dnsmasq, garp, netns, nft, sysctl
from spanwire.dataplane.kernel import Kernel

log = logging.getLogger("spanwire.agent.apply")


def apply(kernel: Kernel, run_dir: str, ops: Sequence[o.Op]) -> int:
    """Run `ops` in order; return how many ran. Stops at the first failure (raised)."""
    pending_sysctls: dict[str, dict[str, str]] = {}
    done = 0
    for op in ops:
        if isinstance(op, o.SetSysctl):
            # Batched per namespace: one thread hop instead of one per key.
            pending_sysctls.setdefault(op.ns, {})[op.key] = op.value
            done += 1
            continue
        _flush(kernel, pending_sysctls)
        _one(kernel, run_dir, op)
        log.info("op=%s %s", type(op).__name__, _describe(op))
        done += 1
    _flush(kernel, pending_sysctls)
    return done


def _flush(kernel: Kernel, pending: dict[str, dict[str, str]]) -> None:
    for ns, values in pending.items():
        sysctl.write(ns, values)
        kernel.writes += len(values)
        log.info("op=SetSysctl ns=%s count=%d", ns, len(values))
    pending.clear()


def _describe(op: o.Op) -> str:
    fields = []
    for name, value in vars(op).items():
        if name in ("dhcp", "payload"):
            continue
        fields.append(f"{name}={value}")
    return " ".join(fields)


def _one(kernel: Kernel, run_dir: str, op: o.Op) -> None:
    match op:
        case o.CreateNetns(ns):
            netns.create(ns)
            kernel.writes += 1
        case o.DeleteNetns(ns):
            for link in kernel.links(ns):
                if link.name != "lo":
                    kernel.delete_link(ns, link.name)
            kernel.forget(ns)
            netns.remove(ns)
            kernel.writes += 1
            dnsmasq.stop(ns, 0, os.path.join(run_dir, ns))
        case o.CreateVxlan(node_ns, ns, vx):
            kernel.create_vxlan(node_ns, ns, vx.name, vx.vni, vx.local, vx.port, vx.mtu, vx.mac)
        case o.CreateLeg(ns, leg):
            kernel.create_veth(ns, leg.name, leg.peer, leg.peer_ns, mtu=leg.mtu)
        case o.CreateGateway(node_ns, ns, gw):
            kernel.create_macvlan(node_ns, gw.parent, ns, gw.name, gw.mac, gw.mtu)
        case o.Announce(ns, dev, ip):
            garp.announce(ns, dev, ip)
        case o.MoveTap(node_ns, ns, name):
            kernel.move_link(node_ns, name, ns)
        case o.SetLink(ns, name, mtu, mac, up):
            kernel.set_link(ns, name, mtu=mtu, mac=mac, up=up)
        case o.DeleteLink(ns, name):
            kernel.delete_link(ns, name)
        case o.AddAddr(ns, addr):
            kernel.addr(ns, "add", addr.dev, addr.cidr)
        case o.DelAddr(ns, addr):
            kernel.addr(ns, "del", addr.dev, addr.cidr)
        case o.ReplaceNeigh(ns, n):
            kernel.neigh(ns, "replace", n.dev, n.ip, n.mac)
        case o.DelNeigh(ns, n):
            kernel.neigh(ns, "del", n.dev, n.ip, n.mac)
        case o.ReplaceFdb(ns, f):
            kernel.fdb(ns, "replace", f.dev, f.mac, f.dst)
        case o.DelFdb(ns, f):
            kernel.fdb(ns, "del", f.dev, f.mac, f.dst)
        case o.ReplaceRoute(ns, r):
            kernel.route(ns, "replace", r.dst, r.dev, r.via)
        case o.DelRoute(ns, r):
            kernel.route(ns, "del", r.dst, r.dev, r.via)
        case o.StartDhcp(ns, dhcp):
            dnsmasq.start(ns, dhcp.argv, dhcp.files)
            kernel.writes += 1
        case o.ReloadDhcp(ns, dhcp, pid):
            dnsmasq.reload(ns, pid, dhcp.files)
            kernel.writes += 1
        case o.StopDhcp(ns, pid):
            dnsmasq.stop(ns, pid, os.path.join(run_dir, ns))
            kernel.writes += 1
        case o.ApplyRuleset(ns, RulesetChange.DELETE, _, table):
            nft.delete_table(ns, table)
            kernel.writes += 1
        case o.ApplyRuleset(ns, _, payload, _):
            nft.apply(ns, payload)
            kernel.writes += 1
        case _:
            raise TypeError(f"unknown op {op!r}")
