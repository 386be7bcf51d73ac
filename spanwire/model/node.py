"""A compute node: where ports are bound and where the agent runs."""

from __future__ import annotations

import ipaddress

from pydantic import Field, field_validator

from spanwire.model.base import Resource

NAME_PATTERN = r"^[a-z0-9][a-z0-9-]{0,30}$"


class Node(Resource):
    """Registered by the operator (or the testbed); `id` is the node's name."""

    KIND = "nodes"

    id: str = Field(pattern=NAME_PATTERN)
    region: str = Field(default="region-1", pattern=r"^[A-Za-z0-9_.-]{1,63}$")
    underlay_ip: str
    # The node's own leg on the provider (external) network; DESIGN: every node routes N-S.
    external_interface: str = ""
    underlay_mtu: int = Field(default=1500, ge=1280, le=9216)
    # The network namespace that stands in for the node's root namespace (the
    # one-machine testbed). The agent creates routing namespaces named
    # "<netns>-<network12>" and never touches any namespace outside that prefix.
    netns: str = Field(default="", pattern=r"^$|^[A-Za-z0-9_.-]{1,40}$")

    @field_validator("underlay_ip")
    @classmethod
    def _ip(cls, value: str) -> str:
        return str(ipaddress.IPv4Address(value))

    @property
    def tenant_mtu(self) -> int:
        """VXLAN over IPv4 costs 50 bytes."""
        return self.underlay_mtu - 50
