"""The effect of planned ops on kernel state, computed instead of read back.

Pure and strict where the real kernel is strict (no duplicate links or
addresses, no entries on missing links, routes need an up device). Two users:

- the agent tracks what its kernel holds after applying ops (`run` on its
  last known state), so an event-driven pass plans against that instead of
  re-reading a namespace with a thousand ports; an op this model refuses
  means the tracked state is wrong, and the agent reads the kernel again;
- root-free planner tests (tests/agent/kernel_sim.py): a plan that runs here
  in order also runs on a real kernel.

Gratuitous ARPs leave no kernel state: `execute` returns them alongside the
kernel, in the order sent.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Hashable
from dataclasses import dataclass, replace
from typing import TypeVar

from spanwire.agent.plan import nat, security
from spanwire.agent.plan import ops as o
from spanwire.agent.plan.nft_table import DIGEST_TAG, Ruleset, RulesetChange, digest_from_comment
from spanwire.agent.state import Leg, NodeKernel, RoutingNs, Tap

E = TypeVar("E")

_CREATE = re.compile(r'\{"add":\{"table":\{"family":"[a-z0-9]+","name":"([^"]+)"\}\}\}')
# The tables whose digest the actual state carries, and in which field.
DIGESTS = {security.TABLE: "security_digest", nat.TABLE: "nat_digest"}


class SimError(AssertionError):
    """An op the modelled kernel refuses: the plan (or the tracked state) is wrong."""


@dataclass(frozen=True)
class Announcement:
    """One gratuitous ARP as it left the wire: `ip` at the MAC `dev` had when it was sent."""

    ns: str
    dev: str
    ip: str
    mac: str


@dataclass(frozen=True)
class Run:
    kernel: NodeKernel
    announced: tuple[Announcement, ...] = ()


def _links(rns: RoutingNs) -> dict[str, bool]:
    out = {"lo": rns.lo_up}
    if rns.vxlan is not None:
        out[rns.vxlan.name] = rns.vxlan.up
    out.update({t.name: t.up for t in rns.taps})
    out.update({leg.name: leg.up for leg in rns.legs})
    if rns.gateway is not None:
        out[rns.gateway.name] = rns.gateway.up
    out.update({name: True for name in rns.other_links})
    return out


def _need(rns: RoutingNs, dev: str, up: bool = False) -> None:
    links = _links(rns)
    if dev not in links:
        raise SimError(f"{rns.name}: no device {dev}")
    if up and not links[dev]:
        raise SimError(f"{rns.name}: device {dev} is down")


def _replaced(entries: frozenset[E], new: E, key: Callable[[E], Hashable]) -> frozenset[E]:
    """`replace` semantics: whatever the kernel keys like `new` gives way to it."""
    return frozenset(e for e in entries if key(e) != key(new)) | {new}


def _without(entries: frozenset[E], old: E, what: str) -> frozenset[E]:
    """`del` semantics: the kernel refuses to delete an entry it does not hold."""
    if old not in entries:
        raise SimError(f"no {what} {old}")
    return entries - {old}


def _drop_dev(rns: RoutingNs, dev: str) -> RoutingNs:
    return replace(
        rns,
        addrs=frozenset(e for e in rns.addrs if e.dev != dev),
        neighs=frozenset(e for e in rns.neighs if e.dev != dev),
        fdbs=frozenset(e for e in rns.fdbs if e.dev != dev),
        routes=frozenset(e for e in rns.routes if e.dev != dev),
        sysctls=frozenset(kv for kv in rns.sysctls if f"/{dev}/" not in kv[0]),
    )


def _digest(payload: str) -> str | None:
    """The digest an applied nft batch leaves in the table (its meta rule's comment).

    Found by a string search, not by parsing: the payload of a thousand-port
    table is a megabyte of JSON, and the digest rule is always its last command.
    """
    at = payload.rfind('"' + DIGEST_TAG)
    if at < 0:
        return None
    end = payload.find('"', at + 1)
    return digest_from_comment(json.loads(payload[at:end + 1]))


def _table(payload: str) -> str | None:
    """The table an nft batch (re)creates (its first command), or None for an update in place."""
    found = _CREATE.search(payload[:400])
    return found.group(1) if found else None


def _created(compiled: Ruleset, change: RulesetChange) -> str | None:
    """The table a compiled ruleset's op (re)creates: only a whole replacement does."""
    return compiled.table if change == RulesetChange.REPLACE else None


def _mac_busy(spaces: dict[str, RoutingNs], ns: str, name: str, mac: str) -> None:
    """macvlan refuses to come up (or take a MAC while up) with a MAC another up one has.

    The kernel checks per parent device; the sim cannot see parents, so it
    checks every gateway of the node (no two routers' ports share a MAC).
    """
    for other_ns, other in spaces.items():
        gw = other.gateway
        if gw is None or (other_ns, gw.name) == (ns, name):
            continue
        if gw.up and gw.mac == mac:
            raise SimError(f"{ns}: {name} with {mac}: address in use by {other_ns}/{gw.name}")


def _drop_leg(rns: RoutingNs, name: str) -> RoutingNs:
    rns = _drop_dev(rns, name)
    return replace(rns, legs=frozenset(leg for leg in rns.legs if leg.name != name))


def _drop_peers(spaces: dict[str, RoutingNs], ns: str, legs: frozenset[Leg]) -> None:
    """A veth end that goes (deleted, or its namespace deleted) takes its peer along."""
    for leg in legs:
        if leg.peer_ns in spaces:  # router end: the peer is in a routing namespace
            spaces[leg.peer_ns] = _drop_leg(spaces[leg.peer_ns], leg.peer)
    for name, other in list(spaces.items()):  # network end: find the router end
        for leg in other.legs:
            if leg.peer_ns == ns and leg.peer in {x.name for x in legs}:
                spaces[name] = _drop_leg(spaces[name], leg.name)


def run(kernel: NodeKernel, ops: list[o.Op]) -> NodeKernel:
    return execute(kernel, ops).kernel


def execute(kernel: NodeKernel, ops: list[o.Op]) -> Run:
    """Run `ops` in order on `kernel`; the result and the gratuitous ARPs sent."""
    spaces = dict(kernel.namespaces)
    loose = set(kernel.loose_taps)
    announced: list[Announcement] = []
    for op in ops:
        if isinstance(op, o.CreateNetns):
            if op.ns in spaces:
                raise SimError(f"namespace {op.ns} exists")
            spaces[op.ns] = RoutingNs(name=op.ns, lo_up=False)
            continue
        if isinstance(op, o.DeleteNetns):
            _drop_peers(spaces, op.ns, spaces.pop(op.ns).legs)
            continue
        if isinstance(op, o.CreateLeg):
            leg = op.leg
            if leg.peer_ns not in spaces:
                raise SimError(f"leg {leg.name}: no namespace {leg.peer_ns}")
            peer_ns = spaces[leg.peer_ns]
            if leg.name in _links(spaces[op.ns]) or leg.peer in _links(peer_ns):
                raise SimError(f"leg {leg.name}/{leg.peer} exists")
            spaces[leg.peer_ns] = replace(peer_ns, legs=peer_ns.legs | {
                Leg(leg.peer, 1500, up=False)})
            spaces[op.ns] = replace(spaces[op.ns], legs=spaces[op.ns].legs | {
                replace(leg, mtu=1500, up=False)})
            continue
        rns = spaces[op.ns]
        match op:
            case o.SetSysctl(_, key, value):
                parts = key.split("/")
                if len(parts) > 4 and parts[3] not in ("all", "default"):
                    _need(rns, parts[3])
                rns = replace(rns, sysctls=frozenset(
                    {kv for kv in rns.sysctls if kv[0] != key} | {(key, value)}))
            case o.CreateVxlan(_, _, vx):
                if vx.name in _links(rns):
                    raise SimError(f"link {vx.name} exists")
                rns = replace(rns, vxlan=replace(vx, up=False))
            case o.CreateGateway(_, _, gw):
                if not gw.parent:
                    raise SimError(f"gateway {gw.name}: no parent interface")
                if gw.name in _links(rns):
                    raise SimError(f"link {gw.name} exists")
                if rns.gateway is not None:
                    raise SimError(f"{op.ns}: already has gateway {rns.gateway.name}")
                # As read back: the parent is not visible from the router namespace.
                rns = replace(rns, gateway=replace(gw, up=False, parent=""))
            case o.Announce(_, dev, ip):
                gw = rns.gateway
                if gw is None or gw.name != dev:
                    raise SimError(f"{op.ns}: announce from {dev}, which is no gateway")
                if not gw.up:
                    raise SimError(f"{op.ns}: announce from {dev}, which is down")
                if not any(a.dev == dev and a.cidr.split("/")[0] == ip for a in rns.addrs):
                    raise SimError(f"{op.ns}: announce of {ip}, which {dev} does not hold")
                announced.append(Announcement(op.ns, dev, ip, gw.mac))
            case o.MoveTap(_, _, name):
                if name not in loose:
                    raise SimError(f"tap {name} is not in the node namespace")
                loose.discard(name)
                rns = replace(rns, taps=rns.taps | {Tap(name, 1500, up=False)})
            case o.SetLink(_, name, mtu, mac, up):
                _need(rns, name)
                if name == "lo":
                    rns = replace(rns, lo_up=up)
                elif rns.vxlan is not None and rns.vxlan.name == name:
                    rns = replace(rns, vxlan=replace(rns.vxlan, up=up,
                                                     mtu=mtu or rns.vxlan.mtu,
                                                     mac=mac or rns.vxlan.mac))
                elif rns.gateway is not None and rns.gateway.name == name:
                    gw = replace(rns.gateway, up=up, mtu=mtu or rns.gateway.mtu,
                                 mac=mac or rns.gateway.mac)
                    if gw.up:
                        _mac_busy(spaces, op.ns, name, gw.mac)
                    rns = replace(rns, gateway=gw)
                elif name in {t.name for t in rns.taps}:
                    old = next(t for t in rns.taps if t.name == name)
                    rns = replace(rns, taps=(rns.taps - {old}) | {
                        Tap(name, mtu or old.mtu, up)})
                else:
                    leg = next(x for x in rns.legs if x.name == name)
                    rns = replace(rns, legs=(rns.legs - {leg}) | {
                        replace(leg, mtu=mtu or leg.mtu, up=up)})
            case o.DeleteLink(_, name):
                _need(rns, name)
                gone = frozenset(x for x in rns.legs if x.name == name)
                if gone:
                    spaces[op.ns] = rns
                    _drop_peers(spaces, op.ns, gone)
                    rns = _drop_leg(spaces[op.ns], name)
                rns = _drop_dev(rns, name)
                if rns.vxlan is not None and rns.vxlan.name == name:
                    rns = replace(rns, vxlan=None)
                if rns.gateway is not None and rns.gateway.name == name:
                    rns = replace(rns, gateway=None)
                rns = replace(rns, taps=frozenset(t for t in rns.taps if t.name != name),
                              other_links=rns.other_links - {name})
            case o.AddAddr(_, addr):
                _need(rns, addr.dev)
                if addr in rns.addrs:
                    raise SimError(f"address {addr} exists")
                rns = replace(rns, addrs=rns.addrs | {addr})
            case o.DelAddr(_, addr):
                rns = replace(rns, addrs=_without(rns.addrs, addr, "address"))
            case o.ReplaceNeigh(_, n):
                _need(rns, n.dev)
                rns = replace(rns, neighs=_replaced(rns.neighs, n, lambda e: (e.dev, e.ip)))
            case o.DelNeigh(_, n):
                rns = replace(rns, neighs=_without(rns.neighs, n, "neighbour"))
            case o.ReplaceFdb(_, f):
                _need(rns, f.dev)
                rns = replace(rns, fdbs=_replaced(rns.fdbs, f, lambda e: (e.dev, e.mac)))
            case o.DelFdb(_, f):
                rns = replace(rns, fdbs=_without(rns.fdbs, f, "fdb"))
            case o.ReplaceRoute(_, r):
                _need(rns, r.dev, up=True)
                rns = replace(rns, routes=_replaced(rns.routes, r, lambda e: e.dst))
            case o.DelRoute(_, r):
                rns = replace(rns, routes=_without(rns.routes, r, "route"))
            case o.StartDhcp(_, dhcp):
                if rns.dhcp is not None:
                    raise SimError("dnsmasq already running")
                rns = replace(rns, dhcp=replace(dhcp, pid=4242))
            case o.ReloadDhcp(_, dhcp, pid):
                if rns.dhcp is None or rns.dhcp.pid != pid:
                    raise SimError("reload of a dnsmasq that is not running")
                rns = replace(rns, dhcp=replace(dhcp, pid=pid))
            case o.StopDhcp(_, pid):
                if rns.dhcp is None or rns.dhcp.pid != pid:
                    raise SimError("stop of a dnsmasq that is not running")
                rns = replace(rns, dhcp=None)
            case o.ApplyRuleset(_, RulesetChange.DELETE, _, table):
                if table not in rns.nft_tables:
                    raise SimError(f"no table {table} to delete")
                rns = replace(rns, nft_tables=rns.nft_tables - {table})
                if table in DIGESTS:
                    rns = replace(rns, **{DIGESTS[table]: None})
                if table == security.TABLE:
                    rns = replace(rns, security_applied=None)
            case o.ApplyRuleset(_, RulesetChange.SEAL, _, table):
                field = DIGESTS.get(table)
                if table not in rns.nft_tables or field is None or op.ruleset is None:
                    raise SimError(f"seal of {table}, which is not there or not compiled")
                rns = replace(rns, **{field: op.ruleset.digest})
                if table == security.TABLE:
                    rns = replace(rns, security_applied=op.ruleset)
            case o.ApplyRuleset(_, change, payload, table):
                field = DIGESTS.get(table)
                compiled = op.ruleset
                creates = _table(payload) if compiled is None else _created(compiled, change)
                if change != RulesetChange.REPLACE:  # an update in place (sets, fragments)
                    if table not in rns.nft_tables or field is None or \
                            getattr(rns, field) is None:
                        raise SimError(f"in-place update of {table}, which has no digest")
                    if creates is not None:
                        raise SimError(f"in-place update of {table} recreates table {creates}")
                elif creates != table:
                    raise SimError(f"op for table {table} carries table {creates}")
                rns = replace(rns, nft_tables=rns.nft_tables | {table})
                if field is not None:
                    digest = _digest(payload) if compiled is None else compiled.digest
                    rns = replace(rns, **{field: digest})
                if table == security.TABLE:
                    rns = replace(rns, security_applied=compiled)
            case _:
                raise SimError(f"unknown op {op}")
        spaces[op.ns] = rns
    return Run(NodeKernel(node_ns=kernel.node_ns, namespaces=spaces, loose_taps=frozenset(loose)),
               tuple(announced))
