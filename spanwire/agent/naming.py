"""Deterministic names and addresses, so desired state is a pure function of the model."""

from __future__ import annotations

import ipaddress

VXLAN_PORT = 4789
VXLAN_OVERHEAD = 50


def routing_ns(node_ns: str, network_id: str) -> str:
    """Flat name of the routing namespace of one network on one node."""
    return f"{node_ns}-{network_id.replace('-', '')[:12]}"


def is_routing_ns(node_ns: str, name: str) -> bool:
    rest = name[len(node_ns) + 1 :]
    return name.startswith(node_ns + "-") and len(rest) == 12 and all(
        c in "0123456789abcdef" for c in rest
    )


def tap(port_id: str) -> str:
    """Neutron's convention: 'tap' + the first 11 characters of the port id."""
    return "tap" + port_id[:11]


def vxlan(vni: int) -> str:
    return f"vx{vni}"


def node_mac(underlay_ip: str) -> str:
    """The MAC of a node's VXLAN devices: locally administered, from its underlay address.

    Every node's devices answer to one MAC, so a remote node needs one FDB and
    one neighbour entry per peer node, not per port.
    """
    raw = ipaddress.IPv4Address(underlay_ip).packed
    return "02:00:" + ":".join(f"{b:02x}" for b in raw)


# -- distributed routers (see agent/routers.py) ------------------------------

# Every leg (veth pair) is numbered with the same link-local /31: the router end
# is .0, the routing-namespace end .1. A leg is the only link of its /31 on
# either side that matters for its routes (they name the device), so one pair
# of addresses serves every leg and nothing has to be allocated.
LEG_ROUTER_IP = "169.254.0.0"
LEG_NETWORK_IP = "169.254.0.1"
LEG_PLEN = 31
ROUTER_END = "rl"
NETWORK_END = "rr"


def router_ns(node_ns: str, router_id: str) -> str:
    """Flat name of the namespace realizing one router on one node."""
    return f"{node_ns}-r{router_id.replace('-', '')[:12]}"


def is_router_ns(node_ns: str, name: str) -> bool:
    rest = name[len(node_ns) + 2 :]
    return name.startswith(node_ns + "-r") and len(rest) == 12 and all(
        c in "0123456789abcdef" for c in rest
    )


def leg_router_end(network_id: str) -> str:
    """The router's leg towards a network (in the router namespace)."""
    return ROUTER_END + network_id.replace("-", "")[:12]


def leg_network_end(router_id: str) -> str:
    """A network's leg towards a router (in the routing namespace)."""
    return NETWORK_END + router_id.replace("-", "")[:12]


# -- north-south (see agent/north_south.py) ------------------------------------

GATEWAY_PREFIX = "qg"


def gateway(router_id: str) -> str:
    """A router's macvlan on the provider network (created in the node namespace, so unique)."""
    return GATEWAY_PREFIX + router_id.replace("-", "")[:12]
