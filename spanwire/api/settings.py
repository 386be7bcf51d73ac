"""Knobs of one API replica (every replica on a store must use the same values)."""

from __future__ import annotations

from dataclasses import dataclass, field

from spanwire.model.network import VNI_MAX, VNI_MIN

# Neutron's default quotas.
DEFAULT_QUOTAS = {
    "network": 100,
    "subnet": 100,
    "port": 500,
    "router": 10,
    "floatingip": 50,
    "security_group": 10,
    "security_group_rule": 100,
}


@dataclass(frozen=True)
class ApiSettings:
    region: str = "RegionOne"
    token_ttl: int = 3600
    vni_min: int = VNI_MIN
    vni_max: int = VNI_MAX
    mac_prefix: str = "fa:16:3e"
    default_quotas: dict[str, int] = field(default_factory=lambda: dict(DEFAULT_QUOTAS))
    default_mtu: int = 1450

    def __post_init__(self) -> None:
        if not VNI_MIN <= self.vni_min <= self.vni_max <= VNI_MAX:
            raise ValueError(
                f"tenant VNI range {self.vni_min}..{self.vni_max} must lie within "
                f"{VNI_MIN}..{VNI_MAX}"
            )
