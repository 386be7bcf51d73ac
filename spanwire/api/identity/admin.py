"""Keystone v3 users, projects, roles, domains and role assignments (admin only).

Enough for tests and operators to create project A and B users and readers,
with the same URLs `openstack user/project/role ...` use.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Body, Request

from spanwire.api.context import Context, CtxDep
from spanwire.api.identity.records import (
    DEFAULT_DOMAIN,
    ROLES,
    Identity,
    project_view,
    role_view,
    user_view,
)
from spanwire.errors import Forbidden, InvalidInput, NotFound

router = APIRouter(prefix="/identity/v3", tags=["identity"])


def _admin(ctx: Context) -> None:
    if not ctx.is_admin:
        raise Forbidden("You are not authorized to perform the requested action (admin only).")


def _ident(request: Request) -> Identity:
    return request.app.state.identity  # type: ignore[no-any-return]


def _text(body: Any, section: str, field: str, required: bool = True) -> str | None:
    part = body.get(section) if isinstance(body, dict) else None
    value = part.get(field) if isinstance(part, dict) else None
    if value is None and not required:
        return None
    if not isinstance(value, str) or not value or len(value) > 255:
        raise InvalidInput(f"{section}.{field} must be a non-empty string of at most 255 chars")
    return value


@router.get("/domains")
def list_domains(ctx: CtxDep) -> dict[str, Any]:
    return {"domains": [dict(DEFAULT_DOMAIN, enabled=True, description="")]}


@router.get("/domains/{domain_id}")
def get_domain(domain_id: str, ctx: CtxDep) -> dict[str, Any]:
    if domain_id.lower() != "default":
        raise NotFound(f"Could not find domain: {domain_id}.")
    return {"domain": dict(DEFAULT_DOMAIN, enabled=True, description="")}


@router.get("/roles")
def list_roles(ctx: CtxDep, name: str | None = None) -> dict[str, Any]:
    return {"roles": [role_view(r) for r in ROLES if name in (None, r)]}


@router.get("/roles/{role_id}")
def get_role(role_id: str, ctx: CtxDep) -> dict[str, Any]:
    if role_id not in ROLES:
        raise NotFound(f"Could not find role: {role_id}.")
    return {"role": role_view(role_id)}


@router.post("/users", status_code=201)
def create_user(request: Request, body: Annotated[Any, Body()], ctx: CtxDep) -> dict[str, Any]:
    _admin(ctx)
    name = _text(body, "user", "name")
    password = _text(body, "user", "password")
    project = _text(body, "user", "default_project_id", required=False)
    user = _ident(request).create_user(str(name), str(password), default_project_id=project)
    return {"user": user_view(user)}


@router.get("/users")
def list_users(request: Request, ctx: CtxDep, name: str | None = None) -> dict[str, Any]:
    _admin(ctx)
    return {"users": [user_view(u) for u in _ident(request).users() if name in (None, u.name)]}


@router.get("/users/{user_id}")
def get_user(request: Request, user_id: str, ctx: CtxDep) -> dict[str, Any]:
    if user_id != ctx.user_id:
        _admin(ctx)
    return {"user": user_view(_ident(request).user(user_id))}


@router.delete("/users/{user_id}", status_code=204)
def delete_user(request: Request, user_id: str, ctx: CtxDep) -> None:
    _admin(ctx)
    _ident(request).delete_user(user_id)


@router.get("/users/{user_id}/projects")
def user_projects(request: Request, user_id: str, ctx: CtxDep) -> dict[str, Any]:
    if user_id != ctx.user_id:
        _admin(ctx)
    return {"projects": [project_view(p) for p in _ident(request).user_projects(user_id)]}


@router.get("/auth/projects")
def auth_projects(request: Request, ctx: CtxDep) -> dict[str, Any]:
    return {"projects": [project_view(p) for p in _ident(request).user_projects(ctx.user_id)]}


@router.post("/projects", status_code=201)
def create_project(request: Request, body: Annotated[Any, Body()], ctx: CtxDep) -> dict[str, Any]:
    _admin(ctx)
    name = _text(body, "project", "name")
    description = _text(body, "project", "description", required=False) or ""
    return {
        "project": project_view(_ident(request).create_project(str(name), description=description))
    }


@router.get("/projects")
def list_projects(request: Request, ctx: CtxDep, name: str | None = None) -> dict[str, Any]:
    ident = _ident(request)
    projects = ident.projects() if ctx.is_admin else ident.user_projects(ctx.user_id)
    return {"projects": [project_view(p) for p in projects if name in (None, p.name)]}


@router.get("/projects/{project_id}")
def get_project(request: Request, project_id: str, ctx: CtxDep) -> dict[str, Any]:
    if project_id != ctx.project_id:
        _admin(ctx)
    return {"project": project_view(_ident(request).project(project_id))}


@router.delete("/projects/{project_id}", status_code=204)
def delete_project(request: Request, project_id: str, ctx: CtxDep) -> None:
    _admin(ctx)
    _ident(request).delete_project(project_id)


@router.put("/projects/{project_id}/users/{user_id}/roles/{role_id}", status_code=204)
def grant_role(request: Request, project_id: str, user_id: str, role_id: str, ctx: CtxDep) -> None:
    _admin(ctx)
    _ident(request).grant(project_id, user_id, role_id)


@router.delete("/projects/{project_id}/users/{user_id}/roles/{role_id}", status_code=204)
def revoke_role(request: Request, project_id: str, user_id: str, role_id: str, ctx: CtxDep) -> None:
    _admin(ctx)
    _ident(request).revoke(project_id, user_id, role_id)


@router.get("/projects/{project_id}/users/{user_id}/roles")
def list_user_roles(request: Request, project_id: str, user_id: str, ctx: CtxDep) -> dict[str, Any]:
    _admin(ctx)
    return {"roles": [role_view(r) for r in _ident(request).roles_of(project_id, user_id)]}


@router.get("/role_assignments")
def list_role_assignments(request: Request, ctx: CtxDep) -> dict[str, Any]:
    """Direct assignments, filtered like Keystone by scope.project.id, user.id, role.id."""
    _admin(ctx)
    q = request.query_params
    wanted = (q.get("scope.project.id"), q.get("user.id"), q.get("role.id"))
    out = []
    for project, user, role in _ident(request).assignments():
        if all(w in (None, v) for w, v in zip(wanted, (project, user, role), strict=True)):
            out.append(
                {
                    "role": {"id": role},
                    "user": {"id": user},
                    "scope": {"project": {"id": project}},
                    "links": {"assignment": ""},
                }
            )
    return {"role_assignments": out}
