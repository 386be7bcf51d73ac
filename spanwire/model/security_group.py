"""Neutron security groups and rules (rules are stored as their own objects)."""

from __future__ import annotations

import ipaddress
from typing import Literal

from pydantic import Field, field_validator, model_validator

from spanwire.model.base import ProjectResource

PROTOCOL_NUMBERS = {"icmp": 1, "tcp": 6, "udp": 17}


class SecurityGroup(ProjectResource):
    KIND = "security_groups"

    stateful: bool = True


class SecurityGroupRule(ProjectResource):
    KIND = "security_group_rules"

    security_group_id: str
    direction: Literal["ingress", "egress"]
    ethertype: Literal["IPv4", "IPv6"] = "IPv4"
    protocol: str | None = None
    port_range_min: int | None = Field(default=None, ge=0, le=65535)
    port_range_max: int | None = Field(default=None, ge=0, le=65535)
    remote_ip_prefix: str | None = None
    remote_group_id: str | None = None

    @field_validator("protocol")
    @classmethod
    def _protocol(cls, value: str | None) -> str | None:
        if value is None or value == "any":
            return None
        value = value.lower()
        if value in PROTOCOL_NUMBERS or (value.isdigit() and 0 <= int(value) <= 255):
            return value
        raise ValueError(f"protocol {value!r}: use tcp, udp, icmp, a number 0-255 or null")

    @field_validator("remote_ip_prefix")
    @classmethod
    def _prefix(cls, value: str | None) -> str | None:
        return None if value is None else str(ipaddress.ip_network(value, strict=False))

    @model_validator(mode="after")
    def _consistent(self) -> SecurityGroupRule:
        if self.remote_ip_prefix and self.remote_group_id:
            raise ValueError("remote_ip_prefix and remote_group_id are mutually exclusive")
        lo, hi = self.port_range_min, self.port_range_max
        if self.protocol in ("tcp", "udp", "6", "17"):
            if lo is not None and hi is not None and lo > hi:
                raise ValueError(f"port_range_min {lo} is greater than port_range_max {hi}")
        elif self.protocol not in ("icmp", "1") and (lo is not None or hi is not None):
            raise ValueError("port ranges need protocol tcp, udp or icmp")
        return self
