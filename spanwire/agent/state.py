"""The kernel state of one node, as plain frozen values.

`desired.compute` produces it from model objects; `actual.read` produces it
from the kernel; `plan.plan` diffs the two. Keeping both sides in one shape is
what makes "actual == desired → no ops" a simple equality.
"""

from __future__ import annotations

from dataclasses import dataclass, field


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


@dataclass(frozen=True)
class Dhcp:
    """One dnsmasq: its exact argv and the files it reads (path → content)."""

    argv: tuple[str, ...]
    files: tuple[tuple[str, str], ...]
    pid: int = 0  # actual only; ignored in comparisons

    def same_config(self, other: Dhcp | None) -> bool:
        return other is not None and self.argv == other.argv and self.files == other.files


@dataclass(frozen=True)
class Firewall:
    """The port-security chain: its hook spec and its rules (nft JSON expressions, in order).

    Compared with ==, never hashed (rules are JSON lists).
    """

    chain: tuple[tuple[str, object], ...]
    rules: tuple[object, ...]


@dataclass(frozen=True)
class RoutingNs:
    """A per-node, per-network routing namespace (our stand-in for a VRF)."""

    name: str
    network_id: str = ""
    lo_up: bool = True
    sysctls: frozenset[tuple[str, str]] = frozenset()
    vxlan: Vxlan | None = None
    taps: frozenset[Tap] = frozenset()
    addrs: frozenset[Addr] = frozenset()
    neighs: frozenset[Neigh] = frozenset()
    fdbs: frozenset[Fdb] = frozenset()
    routes: frozenset[Route] = frozenset()
    dhcp: Dhcp | None = None
    firewall: Firewall | None = None
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
