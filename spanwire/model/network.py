"""Neutron network. Provider attributes carry Neutron's colon names as aliases."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, model_validator

from spanwire.model.base import ProjectResource

VNI_MIN, VNI_MAX = 1, 16_777_215


class Network(ProjectResource):
    KIND = "networks"

    admin_state_up: bool = True
    shared: bool = False
    router_external: bool = Field(default=False, alias="router:external")
    mtu: int = Field(default=1450, ge=68, le=9216)
    network_type: Literal["vxlan", "flat"] = Field(default="vxlan", alias="provider:network_type")
    physical_network: str | None = Field(default=None, alias="provider:physical_network")
    segmentation_id: int | None = Field(
        default=None, ge=VNI_MIN, le=VNI_MAX, alias="provider:segmentation_id"
    )
    port_security_enabled: bool = True
    availability_zone_hints: list[str] = Field(default_factory=list)

    @model_validator(mode="after")
    def _segments(self) -> Network:
        if self.network_type == "flat" and self.segmentation_id is not None:
            raise ValueError("a flat network has no segmentation_id")
        if self.network_type == "flat" and not self.physical_network:
            raise ValueError("a flat network needs provider:physical_network")
        return self
