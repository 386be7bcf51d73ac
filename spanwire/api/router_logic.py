"""Router plumbing shared by routers and floating IPs: gateway and interface ports.

A router's ports are found through `router_ports/<router>/<port>`, written in
the same transaction as each port, so no scan of every port is needed. A router
with a gateway has one central gateway port (shown in `external_gateway_info`)
and one per node that realizes it (`node_gateways`), told apart by binding:host_id.
"""

from __future__ import annotations

from typing import Any

from spanwire.api import repo
from spanwire.api.allocation import Plan
from spanwire.api.errors import not_found
from spanwire.api.port_alloc import plan_port
from spanwire.errors import InvalidInput
from spanwire.model import ExternalGatewayInfo, Network, Port, Router
from spanwire.model.router import DEVICE_OWNER_GATEWAY, DEVICE_OWNER_INTERFACE
from spanwire.store import keys
from spanwire.store.base import KeyValue, Store


def ports_of(store: Store, router_id: str) -> list[tuple[Port, KeyValue]]:
    """Every port of a router (interfaces, central and per-node gateways) with its kv."""
    out = []
    for kv in store.range(keys.prefix("router_ports", router_id)).items:
        found = repo.load(store, Port, keys.split(kv.key)[-1])
        if found is not None:
            out.append(found)
    return out


def router_ports(deps: repo.Deps, router_id: str) -> list[tuple[Port, Any]]:
    return ports_of(deps.store, router_id)


def interfaces(deps: repo.Deps, router_id: str) -> list[Port]:
    return [p for p, _ in router_ports(deps, router_id) if p.device_owner == DEVICE_OWNER_INTERFACE]


def is_node_gateway(port: Port) -> bool:
    """A node's own SNAT address for a router (claimed by that node's agent)."""
    return port.device_owner == DEVICE_OWNER_GATEWAY and bool(port.binding_host_id)


def gateway_port(deps: repo.Deps, router_id: str) -> tuple[Port, Any] | None:
    """The router's central gateway port: the one `external_gateway_info` shows.

    Per-node gateway ports (binding:host_id set, see `node_gateways`) are not it.
    """
    return next(
        (
            (p, kv)
            for p, kv in router_ports(deps, router_id)
            if p.device_owner == DEVICE_OWNER_GATEWAY and not p.binding_host_id
        ),
        None,
    )


def external_network(deps: repo.Deps, network_id: object) -> tuple[Network, Any]:
    found = repo.load(deps.store, Network, str(network_id)) if repo.safe_id(network_id) else None
    if found is None:
        raise not_found("networks", str(network_id))
    if not found[0].router_external:
        raise InvalidInput(f"Bad request: network {network_id} is not a valid external network")
    return found


def plan_gateway(
    deps: repo.Deps, router: Router, info: dict[str, Any]
) -> tuple[Plan[Port], ExternalGatewayInfo]:
    """The gateway port on the external network, and the router's gateway info for it."""
    net, net_kv = external_network(deps, info.get("network_id"))
    spec = info.get("external_fixed_ips") or None
    fields = {
        "project_id": "",
        "device_owner": DEVICE_OWNER_GATEWAY,
        "device_id": router.id,
        "port_security_enabled": False,
    }
    plan = plan_port(deps, net, net_kv, fields, spec, quota=False)
    if not plan.result.fixed_ips:
        raise InvalidInput(f"external network {net.id} has no subnet to give the router an address")
    gw = ExternalGatewayInfo(
        network_id=net.id,
        enable_snat=bool(info.get("enable_snat", True)),
        external_fixed_ips=plan.result.fixed_ips,
    )
    return plan, gw


def reaches(
    deps: repo.Deps, router: dict[str, Any], external_net: str, subnet_ids: set[str]
) -> bool:
    """True if `router` has its gateway on `external_net` and an interface on a `subnet_ids`."""
    info = router.get("external_gateway_info") or {}
    if info.get("network_id") != external_net:
        return False
    return any(
        f.subnet_id in subnet_ids for p in interfaces(deps, router["id"]) for f in p.fixed_ips
    )
