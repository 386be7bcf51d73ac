"""North-south on one node: a router's gateway leg, its floating IPs and its default SNAT.

Design (DESIGN.md, "External access"). Every node has its own leg on each
provider network it is wired to (`Node.provider_mappings`: physical network →
interface in the node namespace). A router realized on a node (see
`agent.routers`) whose external gateway is on such a network gets, in its
router namespace on that node:

- a gateway device: a macvlan (bridge mode) of the node's provider interface,
  with the MAC and address of the router's *per-node* gateway port (device_owner
  `network:router_gateway`, `binding:host_id` = the node), which the agent
  claims from the API's allocator (`api.node_gateways`) the first time it
  realizes the router; so each node has its own external address per router;
- the external subnet's connected route and a default route to its gateway;
- each floating IP whose port is bound to *this* node, as a /32 on the
  gateway device (the kernel answers ARP for it here and nowhere else; the
  agent announces it with gratuitous ARP when it appears) and a DNAT/SNAT pair;
- default SNAT of the router's attached subnets to the node's own address.

The routing namespaces of the router's networks get a default route through
their leg to the router (`routers.attach`). So traffic to and from a VM's
floating IP, and its SNAT'd traffic, enters and leaves the provider network
at the VM's own node: no node carries another node's north-south traffic,
and losing a node loses only its own VMs' external access.

Why a macvlan and not a bridge in the node namespace with a veth per router:
the agent would have to own the node's bridge and enslave the operator's
interface to it, and every packet would cross a bridge and a veth; a macvlan
is one device the agent creates and deletes inside its own router namespace.
The probe reports `macvlan`; a node without it cannot realize gateways.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, replace

from spanwire.agent import naming
from spanwire.agent.plan.nat import FloatingMap, compile_nat
from spanwire.agent.state import Addr, Gateway, Route, RoutingNs
from spanwire.model import FloatingIP, Network, Node, Port, Router, Subnet
from spanwire.model.router import DEVICE_OWNER_GATEWAY


@dataclass(frozen=True)
class Uplink:
    """Where a router's gateway would be realized on a node, before any port is claimed."""

    network: Network
    interface: str  # the node's interface on the provider network


def uplink(node: Node, router: Router, networks: Mapping[str, Network]) -> Uplink | None:
    """The provider leg `router` needs on `node`, or None (no gateway, or not wired here)."""
    info = router.external_gateway_info
    if info is None:
        return None
    network = networks.get(info.network_id)
    if network is None or not network.router_external or network.network_type != "flat":
        return None
    iface = node.provider_mappings.get(network.physical_network or "")
    return Uplink(network, iface) if iface else None


def node_gateway_ports(ports: Iterable[Port], node_id: str) -> dict[str, Port]:
    """Router id → this node's own gateway port of that router."""
    return {p.device_id: p for p in ports
            if p.device_owner == DEVICE_OWNER_GATEWAY and p.binding_host_id == node_id
            and p.device_id}


def claims(node: Node, realized: Iterable[str], routers: Mapping[str, Router],
           networks: Mapping[str, Network], ports: Iterable[Port]) -> tuple[list[str], list[str]]:
    """(routers this node must claim a gateway port for, routers whose port it must release).

    A node claims an address for every router it realizes with a gateway it
    can reach, and gives back the addresses of routers it no longer realizes
    (the API removes them itself when a gateway is cleared or a router deleted).
    A port left on a network the router's gateway is no longer on is released
    and claimed again (release first: one port per router and node).
    """
    have = node_gateway_ports(ports, node.id)
    want = {r for r in realized if r in routers and uplink(node, routers[r], networks)}
    stale = {r for r in want & set(have) if not _on_gateway_network(have[r], routers[r])}
    release = (set(have) - set(realized)) | stale
    return sorted((want - set(have)) | stale), sorted(release)


def _on_gateway_network(port: Port, router: Router) -> bool:
    info = router.external_gateway_info
    return info is not None and port.network_id == info.network_id


def gateway_address(node: Node, router: Router, networks: Mapping[str, Network],
                    subnets: Mapping[str, Subnet], port: Port | None
                    ) -> tuple[Uplink, Subnet, str] | None:
    """(uplink, external subnet, address of `port`) when `router`'s gateway can be realized
    on `node` now: the node is wired to its network and has claimed its own port there."""
    up = uplink(node, router, networks)
    if up is None or port is None or not _on_gateway_network(port, router):
        return None
    fixed = next((f for f in port.fixed_ips if f.subnet_id in subnets), None)
    if fixed is None:
        return None
    return up, subnets[fixed.subnet_id], fixed.ip_address


def realize(
    rns: RoutingNs,
    node: Node,
    router: Router,
    networks: Mapping[str, Network],
    subnets: Mapping[str, Subnet],
    gateway_port: Port | None,
    floating_ips: Iterable[FloatingIP],
    local_ports: Mapping[str, Port],
    internal_cidrs: Iterable[str],
) -> RoutingNs:
    """Router namespace `rns` plus its gateway, floating IPs and SNAT on this node.

    `local_ports`: ports bound to this node, by id (a floating IP is realized
    only where its port is). Unchanged when the router has no reachable
    gateway here or its port is not claimed yet.
    """
    found = gateway_address(node, router, networks, subnets, gateway_port)
    if found is None or gateway_port is None:
        return rns
    up, ext, address = found
    dev = naming.gateway(router.id)
    plen = ipaddress.IPv4Network(ext.cidr).prefixlen
    addrs = set(rns.addrs) | {Addr(dev=dev, cidr=f"{address}/{plen}")}
    routes = set(rns.routes) | {Route(dst=ext.cidr, dev=dev)}
    if ext.gateway_ip:
        routes.add(Route(dst="0.0.0.0/0", dev=dev, via=ext.gateway_ip))
    maps = []
    for fip in floating_ips:
        port = local_ports.get(fip.port_id or "")
        if fip.router_id != router.id or port is None or not fip.fixed_ip_address:
            continue
        if not any(f.ip_address == fip.fixed_ip_address for f in port.fixed_ips):
            continue
        addrs.add(Addr(dev=dev, cidr=f"{fip.floating_ip_address}/32"))
        maps.append(FloatingMap(fip.floating_ip_address, fip.fixed_ip_address))
    info = router.external_gateway_info
    snat_ip = address if info is not None and info.enable_snat else None
    gateway = Gateway(name=dev, mac=gateway_port.mac_address,
                      mtu=min(up.network.mtu, node.underlay_mtu), parent=up.interface)
    return replace(rns, gateway=gateway, addrs=frozenset(addrs), routes=frozenset(routes),
                   nat=compile_nat(dev, maps, snat_ip, internal_cidrs))
