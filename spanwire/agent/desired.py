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

import ipaddress
from collections.abc import Iterable, Mapping

from spanwire.agent import dhcp, naming, north_south, routers, security
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
    subnet_by_id = {s.id: s for s in subnets}
    plens = {s.id: ipaddress.IPv4Network(s.cidr).prefixlen for s in subnets}
    sysctls = set(NS_SYSCTLS)
    taps, addrs, neighs, routes = set(), set(), set(), set()
    for port in local:
        dev = naming.tap(port.id)
        taps.add(Tap(name=dev, mtu=mtu))
        sysctls |= tap_sysctls(dev)
        for fixed in port.fixed_ips:
            subnet = subnet_by_id.get(fixed.subnet_id)
            if subnet is None:
                continue
            if subnet.gateway_ip:
                addrs.add(Addr(dev=dev, cidr=f"{subnet.gateway_ip}/{plens[subnet.id]}"))
            neighs.add(Neigh(dev=dev, ip=fixed.ip_address, mac=port.mac_address))
            routes.add(Route(dst=f"{fixed.ip_address}/32", dev=dev))
    fdbs = set()
    for port in remote:
        peer = nodes.get(port.binding_host_id)
        if peer is None or peer.id == node.id:
            continue  # bound to a node we do not know yet: nowhere to send
        fdbs.add(Fdb(dev=vx.name, mac=naming.node_mac(peer.underlay_ip), dst=peer.underlay_ip))
        neighs.add(Neigh(dev=vx.name, ip=peer.underlay_ip, mac=naming.node_mac(peer.underlay_ip)))
        for fixed in port.fixed_ips:
            if fixed.subnet_id in subnet_by_id:
                routes.add(Route(dst=f"{fixed.ip_address}/32", dev=vx.name, via=peer.underlay_ip))
    return RoutingNs(
        name=name,
        network_id=network.id,
        sysctls=frozenset(sysctls),
        vxlan=vx,
        taps=frozenset(taps),
        addrs=frozenset(addrs),
        neighs=frozenset(neighs),
        fdbs=frozenset(fdbs),
        routes=frozenset(routes),
        # No local port (a routed network's namespace): nobody to answer.
        dhcp=dhcp.render(run_dir, name, subnets, local, mtu) if local else None,
        security=None if groups is None else security.ruleset(local, groups),
        security_managed=groups is not None,
    )
