"""`/v2.0/quotas`: per-project limits (admins set them; projects read their own)."""

from __future__ import annotations

import logging
from typing import Any

from fastapi import APIRouter, Request
from pydantic import BaseModel, ConfigDict, Field

from spanwire.api import policy, quota_logic, repo
from spanwire.api.context import Context, CtxDep
from spanwire.errors import Conflict, Forbidden
from spanwire.store import keys
from spanwire.store.base import Compare, Delete, Put

router = APIRouter(prefix="/v2.0", tags=["quotas"])
log = logging.getLogger("spanwire.api.quotas")
Limit = Field(default=None, ge=-1, le=2**31 - 2)


class QuotaIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    network: int | None = Limit
    subnet: int | None = Limit
    port: int | None = Limit
    router: int | None = Limit
    floatingip: int | None = Limit
    security_group: int | None = Limit
    security_group_rule: int | None = Limit


class QuotaBody(BaseModel):
    model_config = ConfigDict(extra="forbid")
    quota: QuotaIn


def _readable(ctx: Context, project_id: str) -> str:
    repo.check_id(project_id, "project_id")
    if not policy.owns(ctx, project_id):
        raise Forbidden("rule:get_quota is disallowed by policy")
    return project_id


@router.get("/quotas")
def list_quotas(request: Request, ctx: CtxDep) -> dict[str, Any]:
    deps = repo.Deps(request)
    policy.require_admin(ctx, "get_quota")
    out = []
    for kv in deps.store.range(keys.prefix("quotas")).items:
        project = keys.split(kv.key)[1]
        _, limits, _ = quota_logic.read(deps.store, project, deps.settings.default_quotas)
        out.append({**limits, "project_id": project, "tenant_id": project})
    return {"quotas": out}


@router.get("/quotas/{project_id}")
def show_quota(project_id: str, request: Request, ctx: CtxDep) -> dict[str, Any]:
    deps = repo.Deps(request)
    _, limits, _ = quota_logic.read(
        deps.store, _readable(ctx, project_id), deps.settings.default_quotas
    )
    return {"quota": limits}


@router.get("/quotas/{project_id}/default")
def show_default_quota(project_id: str, request: Request, ctx: CtxDep) -> dict[str, Any]:
    _readable(ctx, project_id)
    return {"quota": dict(repo.Deps(request).settings.default_quotas)}


@router.get("/quotas/{project_id}/details")
def show_quota_details(project_id: str, request: Request, ctx: CtxDep) -> dict[str, Any]:
    deps = repo.Deps(request)
    project = _readable(ctx, project_id)
    _, limits, _ = quota_logic.read(deps.store, project, deps.settings.default_quotas)
    used = quota_logic.usage(deps.store, project)
    return {
        "quota": {r: {"limit": n, "used": used.get(r, 0), "reserved": 0} for r, n in limits.items()}
    }


@router.put("/quotas/{project_id}")
def update_quota(project_id: str, body: QuotaBody, request: Request, ctx: CtxDep) -> dict[str, Any]:
    deps = repo.Deps(request)
    repo.check_id(project_id, "project_id")
    policy.require_admin(ctx, "update_quota")
    changes = body.quota.model_dump(exclude_none=True)
    for _ in range(10):
        kv, limits, high = quota_logic.read(deps.store, project_id, deps.settings.default_quotas)
        limits.update(changes)
        # Slots up to the old bound may still be held; keep remembering it (see quota_logic).
        high = {r: max(high[r], quota_logic.bound(limits[r])) for r in limits}
        record = quota_logic.record_value(limits, high)
        key = quota_logic.quota_key(project_id)
        if deps.store.txn(
            [Compare(key, kv.mod_revision if kv else 0)], [Put(key, record)]
        ).succeeded:
            log.info("event=quota.update project_id=%s changes=%s", project_id, changes)
            return {"quota": limits}
    raise Conflict("quota changed concurrently; retry")


@router.delete("/quotas/{project_id}", status_code=204)
def reset_quota(project_id: str, request: Request, ctx: CtxDep) -> None:
    deps = repo.Deps(request)
    repo.check_id(project_id, "project_id")
    policy.require_admin(ctx, "delete_quota")
    kv, _, high = quota_logic.read(deps.store, project_id, deps.settings.default_quotas)
    if kv is None:
        return
    defaults = deps.settings.default_quotas
    if all(high[r] <= quota_logic.bound(defaults[r]) for r in defaults):
        deps.store.txn([Compare.unchanged(kv)], [Delete(kv.key)])
    else:  # keep the high-water marks: lowered limits still need exact counting
        deps.store.txn(
            [Compare.unchanged(kv)], [Put(kv.key, quota_logic.record_value(dict(defaults), high))]
        )
    log.info("event=quota.reset project_id=%s", project_id)
