"""Neutron port. Its runtime status is reported separately by the agent (PortStatus)."""

from __future__ import annotations

import ipaddress
import re

from pydantic import BaseModel, ConfigDict, Field, field_validator

from spanwire.model.base import ProjectResource

MAC_RE = re.compile(r"^[0-9a-f]{2}(:[0-9a-f]{2}){5}$")


def normalise_mac(value: str) -> str:
    mac = value.lower().replace("-", ":")
    if not MAC_RE.match(mac):
        raise ValueError(f"{value!r} is not a MAC address like fa:16:3e:00:00:01")
    if int(mac[:2], 16) & 1:
        raise ValueError(f"{value} is a multicast MAC address")
    return mac


class FixedIP(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")
    subnet_id: str
    ip_address: str

    @field_validator("ip_address")
    @classmethod
    def _ip(cls, value: str) -> str:
        return str(ipaddress.IPv4Address(value))


class AddressPair(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")
    ip_address: str
    mac_address: str | None = None

    @field_validator("ip_address")
    @classmethod
    def _ip(cls, value: str) -> str:
        return str(ipaddress.ip_network(value, strict=False)) if "/" in value else str(
            ipaddress.IPv4Address(value)
        )

    @field_validator("mac_address")
    @classmethod
    def _mac(cls, value: str | None) -> str | None:
        return None if value is None else normalise_mac(value)


class Port(ProjectResource):
    KIND = "ports"

    network_id: str
    mac_address: str
    fixed_ips: list[FixedIP] = Field(default_factory=list)
    admin_state_up: bool = True
    device_id: str = ""
    device_owner: str = ""
    binding_host_id: str = Field(default="", alias="binding:host_id")
    security_groups: list[str] = Field(default_factory=list)
    port_security_enabled: bool = True
    allowed_address_pairs: list[AddressPair] = Field(default_factory=list)

    @field_validator("mac_address")
    @classmethod
    def _mac(cls, value: str) -> str:
        return normalise_mac(value)

    @property
    def ips(self) -> list[str]:
        return [f.ip_address for f in self.fixed_ips]
