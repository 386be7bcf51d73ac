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
