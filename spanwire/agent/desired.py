"""The node-local desired kernel state, a pure function of model objects.

For each network that has a port bound to this node: one routing namespace
holding a VXLAN device (VNI = segmentation_id, no learning), one tap per local
port with a /32 route, a permanent neighbour entry, the subnet's gateway
address (anycast: every node has it) and proxy ARP; and per remote node that
hosts ports of the network, one FDB + one neighbour entry and a /32 route per
remote port. No flooding entries anywhere. Security groups and port security:
one compiled nftables table per namespace (see `agent.security`). Routers:
a router namespace per router attached to a network with a local port, and
the routing namespaces of all its networks (see `agent.routers`).
"""

from __future__ import annotations

import functools
import ipaddress
from collections.abc import Iterable, Mapping
from typing import Any, NamedTuple

from spanwire.agent import dhcp, memo, naming, north_south, routers, security
from spanwire.agent.security import Security
from spanwire.agent.state import Addr, Fdb, Neigh, NodeKernel, Route, RoutingNs, Tap, Vxlan
from spanwire.model import FloatingIP, Network, Node, Port, Router, Subnet

NS_SYSCTLS = frozenset(
    {
        ("net/ipv4/ip_forward", "1"),
        ("net/ipv4/conf/all/rp_filter", "0"),
        ("net/ipv4/conf/default/rp_filter", "0"),
        ("net/ipv6/conf/all/disable_ipv6", "1"),
        ("net/ipv6/conf/default/disable_ipv6", "1"),
    }
)


def tap_sysctls(tap: str) -> set[tuple[str, str]]:
    """Proxy ARP answers for every other address the namespace routes; no delay.

    rp_filter is not set per tap: the effective value is max(all, device), and
    both `all` and `default` (inherited by every tap plugged later) are 0.
    """
    return {
        (f"net/ipv4/conf/{tap}/proxy_arp", "1"),
        (f"net/ipv4/neigh/{tap}/proxy_delay", "0"),
    }


def tenant_mtu(node: Node, network: Network) -> int:
    return min(network.mtu, node.underlay_mtu - naming.VXLAN_OVERHEAD)


def compute(
    node: Node,
    nodes: Mapping[str, Node],
    networks: Mapping[str, Network],
    subnets: Iterable[Subnet],
    ports: Iterable[Port],
    run_dir: str,
    only_networks: set[str] | None = None,
    groups: Security | None = None,
    router_objects: Mapping[str, Router] | None = None,
    floating_ips: Iterable[FloatingIP] = (),
) -> NodeKernel:
    """Desired state of `node`'s kernel (or of the namespaces of `only_networks`).

    Router namespaces are only part of the full state (`only_networks` None):
    a partial pass reads and plans routing namespaces only.

    Pure: same inputs, same output. `groups` (from `security.gather`) is what
    the security-group tables are compiled from; without it they are not
    managed (left as they are), which only read-only callers should want.
    `router_objects` and `floating_ips` add north-south (gateways, floating
    IPs, SNAT; see `agent.north_south`); without them routers are east-west only.
    """
    router_objects = router_objects or {}
    subnets = list(subnets)
    ports = list(ports)
    subnets_by_net: dict[str, list[Subnet]] = {}
    for subnet in subnets:
        subnets_by_net.setdefault(subnet.network_id, []).append(subnet)
    realizable = {n.id for n in networks.values()
                  if n.network_type == "vxlan" and n.segmentation_id is not None}
    ports_by_net: dict[str, list[Port]] = {}
    for port in ports:
        if port.binding_host_id and port.network_id in realizable:
            ports_by_net.setdefault(port.network_id, []).append(port)
    local_nets = {net_id for net_id, net_ports in ports_by_net.items()
                  if any(p.binding_host_id == node.id for p in net_ports)}
    attached = routers.attachments(ports, subnets, realizable)
    mine = routers.realized(local_nets, attached)
    # Default routes go only to routers whose gateway is realized on this node.
    gateway_ports = north_south.node_gateway_ports(ports, node.id)
    subnet_by_id = {s.id: s for s in subnets}
    with_gateway = {r for r in mine if r in router_objects and north_south.gateway_address(
        node, router_objects[r], networks, subnet_by_id, gateway_ports.get(r))}
    # A network attached to a router realized here is realized here too, even
    # without a local port: routed traffic leaves the node through its VXLAN.
    wanted = local_nets | {n for r in mine for n in attached[r]}

    namespaces: dict[str, RoutingNs] = {}
    mtus: dict[str, int] = {}
    for net_id in sorted(wanted):
        network = networks[net_id]
        net_ports = ports_by_net.get(net_id, [])
        mtus[net_id] = tenant_mtu(node, network)
        if only_networks is not None and net_id not in only_networks:
            continue
        rns = _routing_ns(node, nodes, network, subnets_by_net.get(net_id, []),
                          [p for p in net_ports if p.binding_host_id == node.id],
                          [p for p in net_ports if p.binding_host_id != node.id], run_dir,
                          groups)
        rns = routers.attach(rns, net_id, mine, attached, mtus[net_id], with_gateway)
        namespaces[rns.name] = rns
    if only_networks is None:
        local_ports = {p.id: p for p in ports if p.binding_host_id == node.id}
        floating_ips = list(floating_ips)
        for router_id in mine:
            rns = routers.router_namespace(node.netns, router_id, attached[router_id], mtus,
                                           NS_SYSCTLS)
            if router_id in router_objects:
                cidrs = [s.cidr for subs in attached[router_id].values() for s in subs]
                rns = north_south.realize(rns, node, router_objects[router_id], networks,
                                          subnet_by_id, gateway_ports.get(router_id),
                                          floating_ips, local_ports, cidrs)
            namespaces[rns.name] = rns
    return NodeKernel(node_ns=node.netns, namespaces=namespaces)


class _Entries(NamedTuple):
    """What one port puts into its network's routing namespace on this node (a tuple, so
    the namespace's sets are one C-level transpose and union away)."""

    taps: frozenset[Tap] = frozenset()
    sysctls: frozenset[tuple[str, str]] = frozenset()
    addrs: frozenset[Addr] = frozenset()
    neighs: frozenset[Neigh] = frozenset()
    fdbs: frozenset[Fdb] = frozenset()
    routes: frozenset[Route] = frozenset()


_PORT_ENTRIES: memo.IdentityMemo[_Entries] = memo.IdentityMemo()
_UNIONS = memo.UnionMemo()


def _local_entries(port: Port, mtu: int, subnets: Mapping[str, tuple[str | None, int]]
                   ) -> _Entries:
    """A port of this node: its tap, the tap's sysctls, the gateway address on it (one per
    subnet it is in), a permanent neighbour entry and a /32 route per fixed IP."""
    dev = naming.tap(port.id)
    addrs, neighs, routes = set(), set(), set()
    for fixed in port.fixed_ips:
        subnet = subnets.get(fixed.subnet_id)
        if subnet is None:
            continue
        gateway_ip, plen = subnet
        if gateway_ip:
            addrs.add(Addr(dev=dev, cidr=f"{gateway_ip}/{plen}"))
        neighs.add(Neigh(dev=dev, ip=fixed.ip_address, mac=port.mac_address))
        routes.add(Route(dst=f"{fixed.ip_address}/32", dev=dev))
    return _Entries(taps=frozenset({Tap(name=dev, mtu=mtu)}),
                    sysctls=frozenset(tap_sysctls(dev)), addrs=frozenset(addrs),
                    neighs=frozenset(neighs), routes=frozenset(routes))


def _remote_entries(port: Port, vx: str, peer_ip: str, subnets: frozenset[str]) -> _Entries:
    """A port of another node: the peer's FDB and neighbour entries (one MAC per node, so
    every port of that peer yields the same two), and a /32 route via the peer."""
    fdbs, neighs = _peer_entries(vx, peer_ip)
    return _Entries(
        fdbs=fdbs,
        neighs=neighs,
        routes=frozenset(Route(dst=f"{fixed.ip_address}/32", dev=vx, via=peer_ip)
                         for fixed in port.fixed_ips if fixed.subnet_id in subnets))


@functools.lru_cache(maxsize=1 << 12)
def _interned(context: tuple[Any, ...]) -> tuple[Any, ...]:
    """One object per distinct context, so a remembered entry is recognised by identity."""
    return context


@functools.lru_cache(maxsize=1 << 12)
def _peer_entries(vx: str, peer_ip: str) -> tuple[frozenset[Fdb], frozenset[Neigh]]:
    """Shared by every port of one peer: the union then meets the very same objects."""
    mac = naming.node_mac(peer_ip)
    return (frozenset({Fdb(dev=vx, mac=mac, dst=peer_ip)}),
            frozenset({Neigh(dev=vx, ip=peer_ip, mac=mac)}))


def _routing_ns(
    node: Node,
    nodes: Mapping[str, Node],
    network: Network,
    subnets: list[Subnet],
    local: list[Port],
    remote: list[Port],
    run_dir: str,
    groups: Security | None,
) -> RoutingNs:
    """One network's namespace on this node: per-port entries (remembered per port object,
    see `agent.memo`) joined into the namespace's sets."""
    assert network.segmentation_id is not None
    name = naming.routing_ns(node.netns, network.id)
    mtu = tenant_mtu(node, network)
    vx = Vxlan(
        name=naming.vxlan(network.segmentation_id),
        vni=network.segmentation_id,
        local=node.underlay_ip,
        port=naming.VXLAN_PORT,
        mtu=mtu,
        mac=naming.node_mac(node.underlay_ip),
    )
    by_id = {s.id: (s.gateway_ip, ipaddress.IPv4Network(s.cidr).prefixlen) for s in subnets}
    local_context = _interned((name, mtu, tuple(sorted(by_id.items()))))
    get = _PORT_ENTRIES.get
    parts = [get(port.id, port, local_context, _local_entries, port, mtu, by_id)
             for port in local]
    subnet_ids = frozenset(by_id)
    peers: dict[str, tuple[str, ...] | None] = {}
    for host in {port.binding_host_id for port in remote}:
        peer = nodes.get(host)
        # Bound to a node we do not know yet: nowhere to send.
        peers[host] = None if peer is None or peer.id == node.id else \
            _interned((name, vx.name, peer.underlay_ip, subnet_ids))
    for port in remote:
        context = peers[port.binding_host_id]
        if context is not None:
            parts.append(get(port.id, port, context, _remote_entries, port, vx.name, context[2],
                             subnet_ids))

    columns = dict(zip(_Entries._fields, zip(*parts, strict=True) if parts else
                       ((),) * len(_Entries._fields), strict=True))

    def joined(field: str, *base: frozenset[Any]) -> frozenset[Any]:
        return _UNIONS.union((name, field), (*base, *columns[field]))

    return RoutingNs(
        name=name,
        network_id=network.id,
        sysctls=joined("sysctls", NS_SYSCTLS),
        vxlan=vx,
        taps=joined("taps"),
        addrs=joined("addrs"),
        neighs=joined("neighs"),
        fdbs=joined("fdbs"),
        routes=joined("routes"),
        # No local port (a routed network's namespace): nobody to answer.
        dhcp=dhcp.render(run_dir, name, subnets, local, mtu) if local else None,
        security=None if groups is None else security.ruleset(local, groups),
        security_managed=groups is not None,
    )
