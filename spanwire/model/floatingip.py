"""Neutron floating IP: DNAT/SNAT on the node of the port it is associated with."""

from __future__ import annotations

import ipaddress

from pydantic import field_validator

from spanwire.model.base import ProjectResource


class FloatingIP(ProjectResource):
    KIND = "floatingips"

    floating_network_id: str
    floating_ip_address: str
    port_id: str | None = None
    fixed_ip_address: str | None = None
    router_id: str | None = None
    # The port (device_owner network:floatingip) holding the external address;
    # internal bookkeeping of the api, not a Neutron attribute.
    floating_port_id: str | None = None

    @field_validator("floating_ip_address")
    @classmethod
    def _ip(cls, value: str) -> str:
        return str(ipaddress.IPv4Address(value))

    @field_validator("fixed_ip_address")
    @classmethod
    def _fixed(cls, value: str | None) -> str | None:
        return None if value is None else str(ipaddress.IPv4Address(value))
