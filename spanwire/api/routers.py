"""`/v2.0/routers` with gateways and `add/remove_router_interface`.

An interface is a port (device_owner `network:router_interface`) holding the
subnet's gateway address; its IP reservation key makes a second router on the
same subnet gateway fail cleanly (409), even across replicas.
"""

from __future__ import annotations

import logging
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import Response
from pydantic import BaseModel, ConfigDict, Field

from spanwire.api import (
    allocation,
    node_gateways,
    policy,
    quota_logic,
    repo,
    router_logic,
    views,
)
from spanwire.api.allocation import Plan, commit
from spanwire.api.context import Context, CtxDep
from spanwire.api.errors import InUse
from spanwire.api.port_alloc import release_ops
from spanwire.errors import Conflict, InvalidInput
from spanwire.model import FloatingIP, Router
from spanwire.store.base import Compare, Delete, Put

router = APIRouter(prefix="/v2.0", tags=["routers"])
log = logging.getLogger("spanwire.api.routers")


class ExtFixedIP(BaseModel):
    model_config = ConfigDict(extra="forbid")
    subnet_id: str | None = Field(default=None, max_length=128)
    ip_address: str | None = Field(default=None, max_length=64)


class GatewayIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    network_id: str = Field(max_length=128)
    enable_snat: bool | None = None
    external_fixed_ips: list[ExtFixedIP] | None = Field(default=None, max_length=8)


class RouteIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    destination: str = Field(max_length=64)
    nexthop: str = Field(max_length=64)


class RouterUpdate(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: str | None = Field(default=None, max_length=255)
    description: str | None = Field(default=None, max_length=255)
    admin_state_up: bool | None = None
    external_gateway_info: GatewayIn | dict[str, Any] | None = None
    routes: list[RouteIn] | None = Field(default=None, max_length=64)


class RouterCreate(RouterUpdate):
    project_id: str | None = Field(default=None, max_length=128)
    tenant_id: str | None = Field(default=None, max_length=128)
    distributed: bool | None = None
    ha: bool | None = None


class RouterCreateBody(BaseModel):
    model_config = ConfigDict(extra="forbid")
    router: RouterCreate


class RouterUpdateBody(BaseModel):
    model_config = ConfigDict(extra="forbid")
    router: RouterUpdate


def _gateway_spec(ctx: Context, info: Any) -> dict[str, Any] | None:
    if not info:
        return None
    if isinstance(info, dict) and set(info) - {"network_id", "enable_snat", "external_fixed_ips"}:
        raise InvalidInput("Unrecognized attribute(s) in external_gateway_info")
    spec = (
        info.model_dump(exclude_none=True)
        if isinstance(info, GatewayIn)
        else GatewayIn.model_validate(info).model_dump(exclude_none=True)
    )
    if spec.get("external_fixed_ips") or "enable_snat" in spec:
        policy.require_admin(ctx, "update_router:external_gateway_info:external_fixed_ips")
    return spec


def _routes(routes: list[RouteIn] | None) -> list[dict[str, str]] | None:
    return None if routes is None else [r.model_dump() for r in routes]


def _with_gateway(deps: repo.Deps, plan: Plan[Any], r: Router, spec: dict[str, Any]) -> Router:
    gw_plan, info = router_logic.plan_gateway(deps, r, spec)
    plan.merge(gw_plan)  # type: ignore[arg-type]
    return r.evolve(external_gateway_info=info.model_dump())


@router.post("/routers", status_code=201)
def create_router(body: RouterCreateBody, request: Request, ctx: CtxDep) -> Response:
    deps = repo.Deps(request)
    req = body.router.model_dump(exclude_none=True)
    policy.require_write(ctx, "create_router")
    project = repo.check_id(policy.target_project(ctx, req, "create_router"), "project_id")
    for attr in ("distributed", "ha"):
        if attr in req:
            policy.require_admin(ctx, f"create_router:{attr}")
    spec = _gateway_spec(ctx, body.router.external_gateway_info)
    fields = {
        k: v
        for k, v in req.items()
        if k in ("name", "description", "admin_state_up", "distributed", "ha")
    }

    def build() -> Plan[Router]:
        r = repo.make(
            Router, **fields, project_id=project, routes=_routes(body.router.routes) or []
        )
        plan: Plan[Router] = Plan(r)
        slot = quota_logic.claim(
            deps.store, deps.cache, deps.settings.default_quotas, project, "router", r.id
        )
        plan.merge(slot)  # type: ignore[arg-type]
        r = r.evolve(quota_slot=slot.result)
        if spec:
            r = _with_gateway(deps, plan, r, spec)
        plan.ops.append(Put(r.key, r.to_bytes()))
        plan.result = r
        return plan

    r = commit(deps.store, deps.cache, build, "create_router")
    log.info("event=router.create router_id=%s project_id=%s", r.id, project)
    return repo.json_response({"router": views.router(r.model_dump())}, 201)


@router.get("/routers")
def list_routers(request: Request, ctx: CtxDep) -> Response:
    deps = repo.Deps(request)
    items = [views.router(d) for d in repo.owned_list(deps.store, ctx, Router)]
    return repo.list_response(deps, "routers", items, views.ATTRS["routers"])


@router.get("/routers/{router_id}")
def show_router(router_id: str, request: Request, ctx: CtxDep) -> Response:
    r, _ = repo.fetch(repo.Deps(request).store, ctx, Router, router_id)
    return repo.show_response("router", views.router(r.model_dump()), request)


def fips_using(deps: repo.Deps, router_id: str) -> list[FloatingIP]:
    return [
        FloatingIP.model_validate(d)
        for d in repo.raw_list(deps.store, FloatingIP)
        if d.get("router_id") == router_id
    ]


@router.put("/routers/{router_id}")
def update_router(
    router_id: str, body: RouterUpdateBody, request: Request, ctx: CtxDep
) -> Response:
    deps = repo.Deps(request)
    sent = body.router.model_fields_set
    req = body.router.model_dump(exclude_none=True)
    spec = _gateway_spec(ctx, body.router.external_gateway_info)
    freed: list[str] = []

    def build() -> Plan[Router]:
        freed.clear()
        r, kv = repo.fetch_owned(deps.store, ctx, Router, router_id, "update_router")
        changes = {k: v for k, v in req.items() if k in ("name", "description", "admin_state_up")}
        if "routes" in sent:
            changes["routes"] = _routes(body.router.routes) or []
        plan: Plan[Router] = Plan(r, [Compare.unchanged(kv)])
        new = repo.evolve(r, **changes)
        if "external_gateway_info" in sent:
            old = router_logic.gateway_port(deps, r.id)
            same = (
                spec is not None
                and r.external_gateway_info is not None
                and spec["network_id"] == r.external_gateway_info.network_id
                and not spec.get("external_fixed_ips")
            )
            if old is not None and not same:
                if fips_using(deps, r.id):
                    raise Conflict(
                        f"Gateway cannot be updated for router {r.id}, since a gateway "
                        "to external network is required by one or more floating IPs."
                    )
                ops, released = release_ops(old[0])
                plan.compares.append(Compare.unchanged(old[1]))
                plan.ops += ops
                freed.extend(released)
                new = new.evolve(external_gateway_info=None)
            if not same and (old is not None or r.external_gateway_info is not None):
                # Nodes' SNAT addresses go with the gateway; agents claim new ones.
                nodes = node_gateways.plan_release_all(deps.store, r.id)
                plan.merge(nodes)  # type: ignore[arg-type]
                freed.extend(nodes.result)
            if spec and not same:
                new = _with_gateway(deps, plan, new, spec)
            elif spec and same and "enable_snat" in spec and new.external_gateway_info:
                new = new.evolve(
                    external_gateway_info={
                        **new.external_gateway_info.model_dump(),
                        "enable_snat": spec["enable_snat"],
                    }
                )
        plan.ops.append(Put(new.key, new.to_bytes()))
        plan.result = new
        return plan

    r = commit(deps.store, deps.cache, build, "update_router")
    allocation.release(deps.cache, freed)
    log.info("event=router.update router_id=%s fields=%s", r.id, sorted(sent))
    return repo.json_response({"router": views.router(r.model_dump())})


@router.delete("/routers/{router_id}", status_code=204)
def delete_router(router_id: str, request: Request, ctx: CtxDep) -> None:
    deps = repo.Deps(request)

    def build() -> Plan[list[str]]:
        r, kv = repo.fetch_owned(deps.store, ctx, Router, router_id, "delete_router")
        if router_logic.interfaces(deps, r.id) or fips_using(deps, r.id):
            raise InUse("Router", f"Router {r.id} still has ports or floating IPs")
        freed = quota_logic.slot_keys(r.project_id, "router", r.quota_slot)
        plan: Plan[list[str]] = Plan(
            freed, [Compare.unchanged(kv)], [*[Delete(k) for k in freed], Delete(r.key)]
        )
        gw = router_logic.gateway_port(deps, r.id)
        if gw is not None:
            gw_ops, released = release_ops(gw[0])
            plan.compares.append(Compare.unchanged(gw[1]))
            plan.ops += gw_ops
            freed += released
        nodes = node_gateways.plan_release_all(deps.store, r.id)
        plan.merge(nodes)  # type: ignore[arg-type]
        freed += nodes.result
        return plan

    # Rebuilt when a node claims its gateway port meanwhile (see node_gateways).
    freed = commit(deps.store, deps.cache, build, "delete_router")
    allocation.release(deps.cache, freed)
    log.info("event=router.delete router_id=%s", router_id)
