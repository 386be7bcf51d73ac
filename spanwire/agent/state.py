"""The kernel state of one node, as plain frozen values.

`desired.compute` produces it from model objects; `actual.read` produces it
from the kernel; `plan.plan` diffs the two. Keeping both sides in one shape is
what makes "actual == desired → no ops" a simple equality.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # the compiler imports this module: no runtime cycle
    from spanwire.agent.plan.nft_table import Ruleset


@dataclass(frozen=True, order=True)
class Vxlan:
    name: str
    vni: int
    local: str
    port: int
    mtu: int
    mac: str
    up: bool = True
    learning: bool = False


@dataclass(frozen=True, order=True)
class Tap:
    """Host end of a VM port (a veth plugged into the routing namespace)."""

    name: str
    mtu: int
    up: bool = True


@dataclass(frozen=True, order=True)
class Addr:
    dev: str
    cidr: str  # "10.0.0.1/24"; installed noprefixroute (anycast gateway)


@dataclass(frozen=True, order=True)
class Neigh:
    dev: str
    ip: str
    mac: str


@dataclass(frozen=True, order=True)
class Fdb:
    dev: str
    mac: str
    dst: str


@dataclass(frozen=True, order=True)
class Route:
    dst: str  # "10.0.0.5/32"
    dev: str
    via: str | None = None  # set (with onlink) for routes to remote nodes


@dataclass(frozen=True, order=True)
class Leg:
    """One end of a veth pair joining a router namespace to a routing namespace.

    The router end (`peer_ns` set) owns the pair: it creates it, with the other
    end straight in `peer_ns`, and deletes it (which deletes both ends). The
    routing-namespace end (`peer_ns` empty) only keeps its MTU and state. Actual
    legs never carry `peer_ns`/`peer`; the plan compares (name, mtu, up).
    """

    name: str
    mtu: int
    up: bool = True
    peer_ns: str = ""
    peer: str = ""


@dataclass(frozen=True, order=True)
class Gateway:
    """A router's own leg on a provider network: a macvlan of the node's provider interface.

    Created in the node namespace on `parent` and moved into the router
    namespace in one message. The plan compares (name, mac, mtu, up); actual
    gateways never carry `parent`.
    """

    name: str
    mac: str
    mtu: int
    up: bool = True
    parent: str = ""


@dataclass(frozen=True)
class Dhcp:
    """One dnsmasq: its exact argv and the files it reads (path → content)."""

    argv: tuple[str, ...]
    files: tuple[tuple[str, str], ...]
    pid: int = 0  # actual only; ignored in comparisons

    def same_config(self, other: Dhcp | None) -> bool:
        return other is not None and self.argv == other.argv and self.files == other.files


@dataclass(frozen=True)
class RoutingNs:
    """A per-node, per-network routing namespace (our stand-in for a VRF)."""

    name: str
    network_id: str = ""
    lo_up: bool = True
    sysctls: frozenset[tuple[str, str]] = frozenset()
    vxlan: Vxlan | None = None
    taps: frozenset[Tap] = frozenset()
    # Router legs (veth ends): in a routing namespace towards its routers, in a
    # router namespace (`router_id` set, no VXLAN/taps) towards its networks.
    legs: frozenset[Leg] = frozenset()
    router_id: str = ""
    # Router namespaces only: the leg on the provider network (north-south).
    gateway: Gateway | None = None
    addrs: frozenset[Addr] = frozenset()
    neighs: frozenset[Neigh] = frozenset()
    fdbs: frozenset[Fdb] = frozenset()
    routes: frozenset[Route] = frozenset()
    dhcp: Dhcp | None = None
    # Desired only: the compiled security-group table (nft JSON, see
    # plan/security_groups.py), None when no local port is filtered.
    security: Ruleset | None = None
    # Desired only: False when computed without security-group data (read-only
    # callers such as `Testbed.pending_ops`); the table is then left alone.
    security_managed: bool = True
    # Desired only: the router's NAT table (floating IPs, default SNAT; see
    # plan/nat.py), None when the router does no NAT on this node.
    nat: dict[str, Any] | None = None
    # Actual only: the digest the table was written with (None: absent or unreadable)
    # and every `inet` table present, so stale ones (e.g. the old port-security
    # table) are found and removed.
    security_digest: str | None = None
    nat_digest: str | None = None
    # Tracked actual only (never read from the kernel): the compiled security
    # table the agent itself last applied here, so the next change can be an
    # incremental nft transaction instead of a whole-table replacement. None
    # after a read from the kernel (a restart): the digest decides then.
    security_applied: Ruleset | None = None
    nft_tables: frozenset[str] = frozenset()
    # Actual only: links we do not recognise (deleted by the plan).
    other_links: frozenset[str] = frozenset()


@dataclass(frozen=True)
class NodeKernel:
    """Everything the agent owns on one node."""

    node_ns: str
    namespaces: dict[str, RoutingNs] = field(default_factory=dict)
    # Actual only: taps created by the hypervisor (VM builder) in the node
    # namespace, waiting to be plugged into their routing namespace.
    loose_taps: frozenset[str] = frozenset()
