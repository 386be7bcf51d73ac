"""Read the node's actual kernel state (what the agent owns) into `NodeKernel`.

Only routing namespaces named "<node_ns>-<12 hex>" and router namespaces
"<node_ns>-r<12 hex>" are ours; in each we read
links, addresses, permanent neighbours, FDB entries, non-kernel routes of the
main table, the sysctls the desired state cares about, the dnsmasq, the
`inet` tables present and the security-group table's digest (not its rules:
the digest is what the plan compares).
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from concurrent.futures import Future, ThreadPoolExecutor

from spanwire.agent import naming
from spanwire.agent.plan import nat
from spanwire.agent.plan.security import TABLE
from spanwire.agent.state import (
    Addr,
    Dhcp,
    Fdb,
    Gateway,
    Leg,
    Neigh,
    NodeKernel,
    Route,
    RoutingNs,
    Tap,
    Vxlan,
)
from spanwire.dataplane import dnsmasq, netns, nft, reader, sysctl
from spanwire.dataplane.kernel import Kernel, Link, Snapshot

AHEAD = 4  # namespaces whose dumps run ahead of the one being decoded (bounds processes)


def _vxlan(link: Link) -> Vxlan:
    data = link.vxlan or {}
    return Vxlan(
        name=link.name,
        vni=int(data.get("IFLA_VXLAN_ID", 0)),
        local=str(data.get("IFLA_VXLAN_LOCAL", "")),
        port=int(data.get("IFLA_VXLAN_PORT", 0)),
        mtu=link.mtu,
        mac=link.mac,
        up=link.up,
        learning=bool(data.get("IFLA_VXLAN_LEARNING", 0)),
    )


def _per_link(key: str) -> bool:
    """A proxy_arp or proxy_delay key of a device (not all/default), which the
    snapshot's netconf and ntable dumps report."""
    parts = key.split("/")
    return len(parts) == 5 and parts[3] not in ("all", "default") and (
        (parts[:3] == ["net", "ipv4", "conf"] and parts[4] == "proxy_arp")
        or (parts[:3] == ["net", "ipv4", "neigh"] and parts[4] == "proxy_delay"))


NftState = tuple[frozenset[str], str | None, str | None]  # tables, security and NAT digests


def _nft_state(ns: str) -> NftState:
    tables = nft.list_tables(ns)
    return (tables, nft.read_digest(ns, TABLE) if TABLE in tables else None,
            nft.read_digest(ns, nat.TABLE) if nat.TABLE in tables else None)


def read_namespace(kernel: Kernel, ns: str, sysctl_keys: frozenset[str], run_dir: str,
                   pending: reader.Pending | None = None,
                   nft_state: Future[NftState] | None = None) -> RoutingNs:
    snap: Snapshot = (pending or reader.start_snapshot(ns)).result()
    vx: Vxlan | None = None
    taps: set[Tap] = set()
    legs: set[Leg] = set()
    gateway: Gateway | None = None
    others: set[str] = set()
    lo_up = False
    for link in snap.links:
        if link.name == "lo":
            lo_up = link.up
        elif link.kind == "vxlan" and link.name.startswith("vx") and vx is None:
            vx = _vxlan(link)
        elif link.kind == "veth" and link.name.startswith("tap"):
            taps.add(Tap(name=link.name, mtu=link.mtu, up=link.up))
        elif link.kind == "veth" and link.name.startswith((naming.ROUTER_END,
                                                           naming.NETWORK_END)):
            legs.add(Leg(name=link.name, mtu=link.mtu, up=link.up))
        elif (link.kind == "macvlan" and link.name.startswith(naming.GATEWAY_PREFIX)
              and gateway is None):
            gateway = Gateway(name=link.name, mac=link.mac, mtu=link.mtu, up=link.up)
        else:
            others.add(link.name)
    # Per-device keys come with the snapshot; the few namespace-wide ones are files.
    values: dict[str, str | None] = {k: snap.link_sysctls.get(k) for k in sysctl_keys
                                     if _per_link(k)}
    rest = sorted(k for k in sysctl_keys if k not in values)
    values.update(sysctl.read(ns, rest) if rest else {})
    dhcp = None
    ns_run = os.path.join(run_dir, ns)
    found = dnsmasq.find(ns, ns_run)
    if found is not None:
        pid, argv = found
        paths = [a.split("=", 1)[1] for a in argv
                 if a.startswith(("--dhcp-hostsfile=", "--dhcp-optsfile="))]
        dhcp = Dhcp(argv=argv, files=dnsmasq.read_files(paths), pid=pid)
    tables, security_digest, nat_digest = nft_state.result() if nft_state else _nft_state(ns)
    return RoutingNs(
        name=ns,
        lo_up=lo_up,
        nft_tables=tables,
        security_digest=security_digest,
        nat_digest=nat_digest,
        sysctls=frozenset((k, v) for k, v in values.items() if v is not None),
        vxlan=vx,
        taps=frozenset(taps),
        legs=frozenset(legs),
        gateway=gateway,
        addrs=frozenset(Addr(dev, cidr) for dev, cidr in snap.addrs if dev != "lo"),
        neighs=frozenset(Neigh(dev, ip, mac) for dev, ip, mac in snap.neighs),
        fdbs=frozenset(Fdb(dev, mac, dst) for dev, mac, dst in snap.fdbs),
        routes=frozenset(Route(dst, dev, via) for dst, dev, via in snap.routes),
        dhcp=dhcp,
        other_links=frozenset(others),
    )


class Reading:
    """A read of every routing and router namespace of `node_ns` (or those in `only`),
    started now and collected by `finish`.

    Every namespace's `ip`/`bridge` dumps run as processes (a few ahead of the
    one being decoded) and its nft reads in threads (libnftables releases the
    GIL while it lists a thousand chains), so a full read is bound by Python's
    decoding, not by waiting on one thing after another; the agent computes
    its desired state while they run.
    """

    def __init__(self, kernel: Kernel, node_ns: str, run_dir: str,
                 only: set[str] | None = None) -> None:
        self.kernel, self.node_ns, self.run_dir = kernel, node_ns, run_dir
        self.names = [name for name in netns.list_names(node_ns + "-")
                      if (naming.is_routing_ns(node_ns, name)
                          or naming.is_router_ns(node_ns, name))
                      and (only is None or name in only)]
        self._pool = ThreadPoolExecutor(max_workers=2, thread_name_prefix="nft-read")
        self._loose: reader.Pending | None = None
        self._pending: dict[str, reader.Pending] = {}
        self._tables: dict[str, Future[NftState]] = {}
        try:
            self._loose = reader.start_links(node_ns)
            for name in self.names[:AHEAD]:
                self._pending[name] = reader.start_snapshot(name)
            self._tables = {name: self._pool.submit(_nft_state, name) for name in self.names}
        except BaseException:
            self.close()
            raise

    def finish(self, sysctl_keys: Mapping[str, frozenset[str]]) -> NodeKernel:
        try:
            namespaces = {}
            for i, name in enumerate(self.names):
                if i + AHEAD < len(self.names):
                    ahead = self.names[i + AHEAD]
                    self._pending[ahead] = reader.start_snapshot(ahead)
                namespaces[name] = read_namespace(
                    self.kernel, name, sysctl_keys.get(name, frozenset()), self.run_dir,
                    self._pending.pop(name), self._tables[name])
            assert self._loose is not None
            return NodeKernel(node_ns=self.node_ns, namespaces=namespaces,
                              loose_taps=_loose(self._loose.result()))
        finally:
            self.close()

    def close(self) -> None:
        """Collect whatever is still running (idempotent; `finish` calls it)."""
        for pending in [self._loose, *self._pending.values()]:
            if pending is not None:
                pending.abandon()
        self._pending.clear()
        self._pool.shutdown(wait=True, cancel_futures=True)


def read(
    kernel: Kernel,
    node_ns: str,
    run_dir: str,
    sysctl_keys: Mapping[str, frozenset[str]],
    only: set[str] | None = None,
) -> NodeKernel:
    """Actual state of every routing namespace of `node_ns` (or just those in `only`)."""
    return Reading(kernel, node_ns, run_dir, only).finish(sysctl_keys)


def loose_taps(node_ns: str) -> frozenset[str]:
    """Taps the hypervisor created in the node namespace, not plugged in yet."""
    return _loose(reader.links(node_ns))


def _loose(links: list[Link]) -> frozenset[str]:
    return frozenset(link.name for link in links
                     if link.kind == "veth" and link.name.startswith("tap"))
