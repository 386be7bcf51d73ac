"""Neutron router. Its interfaces are ports (device_owner network:router_interface)."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field

from spanwire.model.base import ProjectResource
from spanwire.model.port import FixedIP
from spanwire.model.subnet import HostRoute

DEVICE_OWNER_INTERFACE = "network:router_interface"
DEVICE_OWNER_GATEWAY = "network:router_gateway"
DEVICE_OWNER_FLOATINGIP = "network:floatingip"


class ExternalGatewayInfo(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")
    network_id: str
    enable_snat: bool = True
    external_fixed_ips: list[FixedIP] = Field(default_factory=list)


class Router(ProjectResource):
    KIND = "routers"

    admin_state_up: bool = True
    external_gateway_info: ExternalGatewayInfo | None = None
    routes: list[HostRoute] = Field(default_factory=list)
    distributed: bool = True
    ha: bool = False
