"""Distributed routers, east-west: the desired state of a router on one node.

Design. A router R is realized on every node that has a local port in any
network attached to R (an attached network is one with a router-interface
port of R, `device_owner == network:router_interface`, `device_id == R`). The
realization is a router namespace `<node_ns>-r<router12>` joined to the
routing namespace of each attached network on that node by a veth pair (a
"leg"), and the routing namespaces of *all* attached networks exist on that
node, even those without a local port (they still carry their VXLAN, FDB and
/32 routes to the remote ports).

A packet from a VM in network A to a VM in network B is routed on the source
node: A's namespace → leg → router namespace → leg → B's namespace, whose
/32 route sends it over B's VXLAN straight to the destination's node. The
reply is routed the same way on the destination node (it has a port in B, so
it realizes R and A's namespace too). Each direction crosses the underlay
exactly once and is routed on its own sender's node.

Why a router namespace rather than veths directly between routing namespaces:
n attached networks need n legs, not n·(n-1)/2, and the router's routing
table is one place (later: static routes, SNAT). Why numbered /31 legs with
onlink routes instead of unnumbered ones: a namespace without an address on
the leg would ARP from 0.0.0.0, which proxy ARP never answers. Every leg uses
the same two link-local addresses (`naming.LEG_*`): routes name their device,
so the addresses need not be unique and nothing is allocated.

Asymmetric paths and conntrack: the request crosses (A@src, R@src, B@src,
B@dst) and the reply (B@dst, R@dst, A@dst, A@src). The security-group chains
that judge a packet are those of the VM's own tap, in the VM's own routing
namespace (A@src, B@dst), and both directions cross exactly those two, so
their conntrack sees the whole connection. Elsewhere a packet meets no port
chain (router legs and VXLAN devices are not taps; router-interface ports
have port security disabled), and the tables' base chains accept by policy,
so half-seen connections there (an INVALID SYN-ACK) are never dropped.
rp_filter is 0 in every namespace we create.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import replace

from spanwire.agent import naming
from spanwire.agent.state import Addr, Leg, Route, RoutingNs
from spanwire.model import Port, Subnet
from spanwire.model.router import DEVICE_OWNER_INTERFACE

DEFAULT = "0.0.0.0/0"

# router id → network id → the subnets of that network attached to the router
Attachments = dict[str, dict[str, list[Subnet]]]


def attachments(ports: Iterable[Port], subnets: Iterable[Subnet],
                networks: set[str]) -> Attachments:
    """Which subnets each router is attached to, from its interface ports.

    Only networks in `networks` (those the node can realize) count.
    """
    by_id = {s.id: s for s in subnets}
    out: Attachments = {}
    for port in ports:
        if port.device_owner != DEVICE_OWNER_INTERFACE or not port.device_id:
            continue
        if port.network_id not in networks:
            continue
        for fixed in port.fixed_ips:
            subnet = by_id.get(fixed.subnet_id)
            if subnet is None or subnet.network_id != port.network_id:
                continue
            nets = out.setdefault(port.device_id, {})
            if subnet not in nets.setdefault(port.network_id, []):
                nets[port.network_id].append(subnet)
    for nets in out.values():
        for subs in nets.values():
            subs.sort(key=lambda s: s.id)
    return out


def realized(local_networks: set[str], attached: Attachments) -> list[str]:
    """Routers this node realizes: those attached to a network with a local port."""
    return sorted(r for r, nets in attached.items() if local_networks.intersection(nets))


def router_namespace(node_ns: str, router_id: str, nets: Mapping[str, list[Subnet]],
                     mtus: Mapping[str, int], sysctls: frozenset[tuple[str, str]]) -> RoutingNs:
    """The router namespace: one leg per attached network, a route per attached subnet."""
    legs, addrs, routes = set(), set(), set()
    for net_id in sorted(nets):
        dev = naming.leg_router_end(net_id)
        legs.add(Leg(name=dev, mtu=mtus[net_id], peer_ns=naming.routing_ns(node_ns, net_id),
                     peer=naming.leg_network_end(router_id)))
        addrs.add(Addr(dev=dev, cidr=f"{naming.LEG_ROUTER_IP}/{naming.LEG_PLEN}"))
        for subnet in nets[net_id]:
            routes.add(Route(dst=subnet.cidr, dev=dev, via=naming.LEG_NETWORK_IP))
    return RoutingNs(name=naming.router_ns(node_ns, router_id), router_id=router_id,
                     sysctls=sysctls, legs=frozenset(legs), addrs=frozenset(addrs),
                     routes=frozenset(routes))


def attach(rns: RoutingNs, network_id: str, routers: list[str], attached: Attachments,
           mtu: int, gateways: set[str] | frozenset[str] = frozenset()) -> RoutingNs:
    """`rns` (network `network_id`) plus its legs to `routers` and routes via them.

    A destination reachable through two routers goes through the one with the
    smaller id, so the result is deterministic; subnets of the network itself
    are never routed to a router (its /32 routes reach them directly). The
    default route goes to the first router in `gateways` (those with an
    external gateway), which does the north-south part on this node.
    """
    mine = sorted(r for r in routers if network_id in attached[r])
    if not mine:
        return rns  # unrouted: its (possibly thousand-port) sets stay the very same objects
    legs, addrs, routes = set(rns.legs), set(rns.addrs), {r.dst: r for r in rns.routes}
    for router_id in mine:
        nets = attached[router_id]
        dev = naming.leg_network_end(router_id)
        legs.add(Leg(name=dev, mtu=mtu))
        addrs.add(Addr(dev=dev, cidr=f"{naming.LEG_NETWORK_IP}/{naming.LEG_PLEN}"))
        for other in sorted(nets):
            if other == network_id:
                continue
            for subnet in nets[other]:
                routes.setdefault(subnet.cidr,
                                  Route(dst=subnet.cidr, dev=dev, via=naming.LEG_ROUTER_IP))
        if router_id in gateways:
            routes.setdefault(DEFAULT, Route(dst=DEFAULT, dev=dev, via=naming.LEG_ROUTER_IP))
    return replace(rns, legs=frozenset(legs), addrs=frozenset(addrs),
                   routes=frozenset(routes.values()))


def attached_networks(ports: Iterable[Port]) -> set[str]:
    """Networks with a router interface: a change there may change routers' realization."""
    return {p.network_id for p in ports
            if p.device_owner == DEVICE_OWNER_INTERFACE and p.device_id}
