"""Operations: the only vocabulary `apply` understands. Each is one kernel write."""

from __future__ import annotations

from dataclasses import dataclass

from spanwire.agent.plan.nft_table import ApplyRuleset
from spanwire.agent.state import Addr, Dhcp, Fdb, Gateway, Leg, Neigh, Route, Vxlan


@dataclass(frozen=True)
class CreateNetns:
    ns: str


@dataclass(frozen=True)
class DeleteNetns:
    ns: str


@dataclass(frozen=True)
class SetSysctl:
    ns: str
    key: str
    value: str


@dataclass(frozen=True)
class CreateVxlan:
    """Created in the node namespace (its UDP socket stays there) straight into `ns`."""

    node_ns: str
    ns: str
    vxlan: Vxlan


@dataclass(frozen=True)
class CreateLeg:
    """A veth pair: `leg.name` in router namespace `ns`, `leg.peer` in `leg.peer_ns`."""

    ns: str
    leg: Leg


@dataclass(frozen=True)
class CreateGateway:
    """A macvlan of the node's provider interface, created in `node_ns` straight into `ns`."""

    node_ns: str
    ns: str
    gateway: Gateway


@dataclass(frozen=True)
class Announce:
    """Gratuitous ARP for `ip` from `dev`: the provider network learns where it lives now."""

    ns: str
    dev: str
    ip: str


@dataclass(frozen=True)
class MoveTap:
    """Plug a tap the hypervisor created in the node namespace into its routing namespace."""

    node_ns: str
    ns: str
    name: str


@dataclass(frozen=True)
class SetLink:
    ns: str
    name: str
    mtu: int | None = None
    mac: str | None = None
    up: bool = True


@dataclass(frozen=True)
class DeleteLink:
    ns: str
    name: str


@dataclass(frozen=True)
class AddAddr:
    ns: str
    addr: Addr


@dataclass(frozen=True)
class DelAddr:
    ns: str
    addr: Addr


@dataclass(frozen=True)
class ReplaceNeigh:
    ns: str
    neigh: Neigh


@dataclass(frozen=True)
class DelNeigh:
    ns: str
    neigh: Neigh


@dataclass(frozen=True)
class ReplaceFdb:
    ns: str
    fdb: Fdb


@dataclass(frozen=True)
class DelFdb:
    ns: str
    fdb: Fdb


@dataclass(frozen=True)
class ReplaceRoute:
    ns: str
    route: Route


@dataclass(frozen=True)
class DelRoute:
    ns: str
    route: Route


@dataclass(frozen=True)
class StartDhcp:
    ns: str
    dhcp: Dhcp


@dataclass(frozen=True)
class ReloadDhcp:
    """Rewrite the lease/option files and SIGHUP: no restart, no lost lease."""

    ns: str
    dhcp: Dhcp
    pid: int


@dataclass(frozen=True)
class StopDhcp:
    ns: str
    pid: int


Op = (
    CreateNetns
    | DeleteNetns
    | SetSysctl
    | CreateVxlan
    | CreateLeg
    | CreateGateway
    | Announce
    | MoveTap
    | SetLink
    | DeleteLink
    | AddAddr
    | DelAddr
    | ReplaceNeigh
    | DelNeigh
    | ReplaceFdb
    | DelFdb
    | ReplaceRoute
    | DelRoute
    | StartDhcp
    | ReloadDhcp
    | StopDhcp
    | ApplyRuleset  # security groups: one atomic nft transaction (or a table deletion)
)
