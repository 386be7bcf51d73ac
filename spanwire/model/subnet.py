"""Neutron subnet (IPv4)."""

from __future__ import annotations

import ipaddress
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from spanwire.model.base import ProjectResource


class AllocationPool(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")
    start: str
    end: str

    @field_validator("start", "end")
    @classmethod
    def _ip(cls, value: str) -> str:
        return str(ipaddress.IPv4Address(value))


class HostRoute(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")
    destination: str
    nexthop: str

    @field_validator("destination")
    @classmethod
    def _net(cls, value: str) -> str:
        return str(ipaddress.IPv4Network(value, strict=True))

    @field_validator("nexthop")
    @classmethod
    def _hop(cls, value: str) -> str:
        return str(ipaddress.IPv4Address(value))


class Subnet(ProjectResource):
    KIND = "subnets"

    network_id: str
    ip_version: Literal[4] = 4
    cidr: str
    gateway_ip: str | None = None
    allocation_pools: list[AllocationPool] = Field(default_factory=list)
    dns_nameservers: list[str] = Field(default_factory=list)
    host_routes: list[HostRoute] = Field(default_factory=list)
    enable_dhcp: bool = True
    subnetpool_id: str | None = None
    ipv6_address_mode: None = None
    ipv6_ra_mode: None = None

    @field_validator("cidr")
    @classmethod
    def _cidr(cls, value: str) -> str:
        net = ipaddress.IPv4Network(value, strict=True)
        if net.prefixlen > 30:
            raise ValueError(
                f"{value} leaves no room for addresses; use a prefix of /30 or shorter"
            )
        return str(net)

    @field_validator("dns_nameservers")
    @classmethod
    def _dns(cls, value: list[str]) -> list[str]:
        return [str(ipaddress.IPv4Address(v)) for v in value]

    @property
    def network(self) -> ipaddress.IPv4Network:
        return ipaddress.IPv4Network(self.cidr)

    @model_validator(mode="after")
    def _inside(self) -> Subnet:
        net = self.network
        if self.gateway_ip is not None:
            gw = ipaddress.IPv4Address(self.gateway_ip)
            if gw not in net or gw in (net.network_address, net.broadcast_address):
                raise ValueError(f"gateway_ip {gw} is not a usable address of {net}")
        for pool in self.allocation_pools:
            start, end = ipaddress.IPv4Address(pool.start), ipaddress.IPv4Address(pool.end)
            if start > end or start not in net or end not in net:
                raise ValueError(f"allocation pool {start}-{end} is not inside {net}")
        return self
