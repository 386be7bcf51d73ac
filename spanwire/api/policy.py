"""Who may see and change what: Neutron's default policy, reduced to its essentials.

Readers read; members write in their own project; admins do anything,
including provider attributes and acting for another project. An object of
another project is reported as missing (404), never as forbidden, so its
existence does not leak.
"""

from __future__ import annotations

from typing import Any

from spanwire.api.context import Context
from spanwire.errors import Forbidden

ADMIN_ONLY_NETWORK_ATTRS = (
    "provider:network_type",
    "provider:physical_network",
    "provider:segmentation_id",
    "router:external",
)


def require_write(ctx: Context, action: str) -> None:
    if not ctx.can_write:
        raise Forbidden(f"rule:{action} is disallowed by policy")


def require_admin(ctx: Context, action: str) -> None:
    if not ctx.is_admin:
        raise Forbidden(f"rule:{action} is disallowed by policy")


def owns(ctx: Context, project_id: str) -> bool:
    return ctx.is_admin or project_id == ctx.project_id


def can_see(ctx: Context, kind: str, item: dict[str, Any]) -> bool:
    """`item` is a stored or rendered dict (needs project_id, and for networks the flags)."""
    if owns(ctx, str(item.get("project_id", ""))):
        return True
    if kind == "networks":
        return bool(
            item.get("shared") or item.get("router_external") or item.get("router:external")
        )
    return False


def target_project(ctx: Context, body: dict[str, Any], action: str) -> str:
    """The project a new object belongs to; only an admin may name another one."""
    project = body.get("project_id") or body.get("tenant_id") or ctx.project_id
    if body.get("project_id") and body.get("tenant_id") and body["project_id"] != body["tenant_id"]:
        raise Forbidden("project_id and tenant_id do not match")
    if project != ctx.project_id and not ctx.is_admin:
        raise Forbidden(f"rule:{action} is disallowed by policy (another project)")
    return str(project)
