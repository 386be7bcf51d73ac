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


def read_namespace(kernel: Kernel, ns: str, sysctl_keys: frozenset[str], run_dir: str,
                   pending: reader.Pending | None = None) -> RoutingNs:
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
    tables = nft.list_tables(ns)
    return RoutingNs(
        name=ns,
        lo_up=lo_up,
        nft_tables=tables,
        security_digest=nft.read_digest(ns, TABLE) if TABLE in tables else None,
        nat_digest=nft.read_digest(ns, nat.TABLE) if nat.TABLE in tables else None,
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


def read(
    kernel: Kernel,
    node_ns: str,
    run_dir: str,
    sysctl_keys: Mapping[str, frozenset[str]],
    only: set[str] | None = None,
) -> NodeKernel:
    """Actual state of every routing namespace of `node_ns` (or just those in `only`).

    Every namespace's `ip`/`bridge` dumps start at once and run while earlier
    ones are decoded: a full read is then bound by Python's decoding, not by
    waiting on one process after another.
    """
    names = [name for name in netns.list_names(node_ns + "-")
             if (naming.is_routing_ns(node_ns, name) or naming.is_router_ns(node_ns, name))
             and (only is None or name in only)]
    loose = reader.start_links(node_ns)
    pending = {name: reader.start_snapshot(name) for name in names[:AHEAD]}
    namespaces = {}
    for i, name in enumerate(names):
        if i + AHEAD < len(names):
            pending[names[i + AHEAD]] = reader.start_snapshot(names[i + AHEAD])
        namespaces[name] = read_namespace(kernel, name, sysctl_keys.get(name, frozenset()),
                                          run_dir, pending.pop(name))
    return NodeKernel(node_ns=node_ns, namespaces=namespaces, loose_taps=_loose(loose.result()))


def loose_taps(node_ns: str) -> frozenset[str]:
    """Taps the hypervisor created in the node namespace, not plugged in yet."""
    return _loose(reader.links(node_ns))


def _loose(links: list[Link]) -> frozenset[str]:
    return frozenset(link.name for link in links
                     if link.kind == "veth" and link.name.startswith("tap"))
