"""Stored dicts -> Neutron's JSON: colon names, tenant_id, derived fields.

Each function takes the stored dict (model field names, as `to_bytes` writes
them) so that listings need no model validation.
"""

from __future__ import annotations

from typing import Any

STANDARD = (
    "id",
    "name",
    "description",
    "tags",
    "created_at",
    "updated_at",
    "revision_number",
    "project_id",
)


def _standard(d: dict[str, Any]) -> dict[str, Any]:
    out = {k: d.get(k) for k in STANDARD}
    out["tenant_id"] = d.get("project_id")
    return out


def network(d: dict[str, Any], subnets: list[str], admin: bool) -> dict[str, Any]:
    out = _standard(d)
    out.update(
        admin_state_up=d["admin_state_up"],
        shared=d["shared"],
        mtu=d["mtu"],
        status="ACTIVE",
        subnets=subnets,
        port_security_enabled=d["port_security_enabled"],
        availability_zone_hints=d.get("availability_zone_hints", []),
        availability_zones=[],
        ipv4_address_scope=None,
        ipv6_address_scope=None,
        l2_adjacency=True,
        is_default=False,
    )
    out["router:external"] = d["router_external"]
    if admin:
        out["provider:network_type"] = d["network_type"]
        out["provider:physical_network"] = d["physical_network"]
        out["provider:segmentation_id"] = d["segmentation_id"]
    return out


def subnet(d: dict[str, Any]) -> dict[str, Any]:
    out = _standard(d)
    for k in (
        "network_id",
        "ip_version",
        "cidr",
        "gateway_ip",
        "allocation_pools",
        "dns_nameservers",
        "host_routes",
        "enable_dhcp",
        "subnetpool_id",
        "ipv6_address_mode",
        "ipv6_ra_mode",
    ):
        out[k] = d.get(k)
    out["service_types"] = []
    return out


def port(d: dict[str, Any], status: str) -> dict[str, Any]:
    out = _standard(d)
    for k in (
        "network_id",
        "mac_address",
        "fixed_ips",
        "admin_state_up",
        "device_id",
        "device_owner",
        "security_groups",
        "port_security_enabled",
    ):
        out[k] = d.get(k)
    out["allowed_address_pairs"] = [
        {"ip_address": p["ip_address"], "mac_address": p.get("mac_address") or d["mac_address"]}
        for p in d.get("allowed_address_pairs", [])
    ]
    host = d.get("binding_host_id", "")
    out["binding:host_id"] = host
    out["binding:vif_type"] = "other" if host else "unbound"
    out["binding:vnic_type"] = "normal"
    out["binding:profile"] = {}
    out["binding:vif_details"] = {}
    out["extra_dhcp_opts"] = []
    out["status"] = status
    return out


def router(d: dict[str, Any]) -> dict[str, Any]:
    out = _standard(d)
    for k in ("admin_state_up", "external_gateway_info", "routes", "distributed", "ha"):
        out[k] = d.get(k)
    out.update(status="ACTIVE", availability_zone_hints=[], availability_zones=[], flavor_id=None)
    return out


def floatingip(d: dict[str, Any]) -> dict[str, Any]:
    out = _standard(d)
    for k in (
        "floating_ip_address",
        "floating_network_id",
        "router_id",
        "port_id",
        "fixed_ip_address",
    ):
        out[k] = d.get(k)
    out["status"] = "ACTIVE" if d.get("port_id") else "DOWN"
    return out


def security_group_rule(d: dict[str, Any]) -> dict[str, Any]:
    out = _standard(d)
    del out["name"]
    for k in (
        "security_group_id",
        "direction",
        "ethertype",
        "protocol",
        "port_range_min",
        "port_range_max",
        "remote_ip_prefix",
        "remote_group_id",
    ):
        out[k] = d.get(k)
    out["remote_address_group_id"] = None
    return out


def security_group(d: dict[str, Any], rules: list[dict[str, Any]]) -> dict[str, Any]:
    out = _standard(d)
    out.update(
        stateful=d.get("stateful", True),
        shared=False,
        security_group_rules=[security_group_rule(r) for r in rules],
    )
    return out


def _attrs(sample: dict[str, Any]) -> set[str]:
    return set(sample)


_STD = {k: "" for k in (*STANDARD, "tenant_id")}
ATTRS = {
    "networks": _attrs(
        network(
            {
                **_STD,
                "admin_state_up": 1,
                "shared": 1,
                "mtu": 1,
                "port_security_enabled": 1,
                "router_external": 1,
                "network_type": 1,
                "physical_network": 1,
                "segmentation_id": 1,
            },
            [],
            True,
        )
    ),
    "subnets": _attrs(subnet(_STD)),
    "ports": _attrs(port({**_STD, "mac_address": ""}, "")),
    "routers": _attrs(router(_STD)),
    "floatingips": _attrs(floatingip(_STD)),
    "security_groups": _attrs(security_group(_STD, [])),
    "security_group_rules": _attrs(security_group_rule(_STD)),
}
