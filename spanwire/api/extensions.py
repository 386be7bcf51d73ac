"""`/v2.0/extensions`: exactly the Neutron extensions spanwire implements.

Clients switch features on by alias (openstackclient hides columns and
options of missing extensions), so this list must not claim more than is true.
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter

from spanwire.api.context import CtxDep
from spanwire.errors import NotFound

router = APIRouter(prefix="/v2.0", tags=["extensions"])
UPDATED = "2024-01-01T00:00:00-00:00"
SUPPORTED = {
    "router": ("Neutron L3 Router", "Router abstraction for basic L3 forwarding"),
    "ext-gw-mode": ("Neutron L3 Configurable external gateway mode", "enable_snat on gateways"),
    "external-net": ("Neutron external network", "Adds external network attribute"),
    "provider": ("Provider Network", "Expose mapping of virtual networks to physical networks"),
    "security-group": ("security-group", "The security groups extension."),
    "quotas": ("Quota management support", "Expose functions for quotas management"),
    "quota_details": ("Quota details management support", "Used and limit per resource"),
    "binding": ("Port Binding", "Expose port bindings of a virtual port to external application"),
    "allowed-address-pairs": ("Allowed Address Pairs", "Provides allowed address pairs"),
    "port-security": ("Port Security", "Provides port security"),
    "net-mtu": ("Network MTU", "Provides MTU attribute for a network resource."),
    "standard-attr-revisions": ("Resource revision numbers", "revision_number on resources"),
    "standard-attr-timestamp": ("Resource timestamps", "created_at and updated_at"),
    "standard-attr-description": ("standard-attr-description", "description on resources"),
    "project-id": ("project_id field enabled", "project_id alongside tenant_id"),
    "pagination": ("Pagination support", "limit and marker on collections"),
    "sorting": ("Sorting support", "sort_key and sort_dir on collections"),
    "filter-validation": ("Filter parameters validation", "Unknown filters are rejected"),
    "extraroute": ("Neutron Extra Route", "Extra routes configuration for L3 router"),
}


def _view(alias: str) -> dict[str, Any]:
    name, description = SUPPORTED[alias]
    return {
        "alias": alias,
        "name": name,
        "description": description,
        "updated": UPDATED,
        "links": [],
    }


@router.get("/extensions")
def list_extensions(ctx: CtxDep) -> dict[str, Any]:
    return {"extensions": [_view(a) for a in SUPPORTED]}


@router.get("/extensions/{alias}")
def show_extension(alias: str, ctx: CtxDep) -> dict[str, Any]:
    if alias not in SUPPORTED:
        raise NotFound(f"Extension with alias {alias} does not exist")
    return {"extension": _view(alias)}
