"""A compute node: where ports are bound and where the agent runs."""

from __future__ import annotations

import ipaddress
import re
from typing import Any

from pydantic import Field, field_validator

from spanwire.model.base import Resource

NAME_PATTERN = r"^[a-z0-9][a-z0-9-]{0,30}$"
IFNAME_PATTERN = r"^[A-Za-z0-9_.-]{1,15}$"
PHYSNET_PATTERN = r"^[A-Za-z0-9_.-]{1,64}$"


def _v1_to_v2(data: dict[str, Any]) -> dict[str, Any]:
    """v1 had one unnamed `external_interface`; v2 names the physical network it is on."""
    iface = data.pop("external_interface", "")
    data["provider_mappings"] = {"public": iface} if iface else {}
    return data


class Node(Resource):
    """Registered by the operator (or the testbed); `id` is the node's name."""

    KIND = "nodes"
    SCHEMA_VERSION = 2
    MIGRATIONS = {1: _v1_to_v2}

    id: str = Field(pattern=NAME_PATTERN)
    region: str = Field(default="region-1", pattern=r"^[A-Za-z0-9_.-]{1,63}$")
    underlay_ip: str
    # The node's own legs on provider networks: physical network name -> the
    # interface (in the node's namespace) that is on it, as Neutron's
    # bridge_mappings. Every node routes its own north-south traffic (DESIGN),
    # so a node without a mapping for an external network cannot realize the
    # gateways of routers on it.
    provider_mappings: dict[str, str] = Field(default_factory=dict)
    underlay_mtu: int = Field(default=1500, ge=1280, le=9216)
    # The network namespace that stands in for the node's root namespace (the
    # one-machine testbed). The agent creates routing namespaces named
    # "<netns>-<network12>" and never touches any namespace outside that prefix.
    netns: str = Field(default="", pattern=r"^$|^[A-Za-z0-9_.-]{1,40}$")

    @field_validator("provider_mappings")
    @classmethod
    def _mappings(cls, value: dict[str, str]) -> dict[str, str]:
        for physnet, iface in value.items():
            if not re.match(PHYSNET_PATTERN, physnet) or not re.match(IFNAME_PATTERN, iface):
                raise ValueError(f"bad provider mapping {physnet}:{iface}: physical network "
                                 "names are 1-64 of [A-Za-z0-9_.-], interfaces 1-15")
        return value

    @field_validator("underlay_ip")
    @classmethod
    def _ip(cls, value: str) -> str:
        return str(ipaddress.IPv4Address(value))

    @property
    def tenant_mtu(self) -> int:
        """VXLAN over IPv4 costs 50 bytes."""
        return self.underlay_mtu - 50
