"""`/v2.0/floatingips` on `router:external` networks.

The external address is held by a port (device_owner `network:floatingip`);
associating needs a router with its gateway on that external network and an
interface on the target port's subnet, as in Neutron. A fixed address can
carry one floating IP: `fip_assoc/<port>/<ip>` is created with Compare.absent.
"""

from __future__ import annotations

import logging
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import Response
from pydantic import BaseModel, ConfigDict, Field

from spanwire.api import allocation, policy, quota_logic, repo, router_logic, views
from spanwire.api.allocation import Plan, commit
from spanwire.api.context import Context, CtxDep
from spanwire.api.port_alloc import plan_port, release_ops
from spanwire.errors import Conflict, InvalidInput, NotFound
from spanwire.model import FloatingIP, Port, Router
from spanwire.model.router import DEVICE_OWNER_FLOATINGIP
from spanwire.store import keys
from spanwire.store.base import Compare, Delete, Op, Put

router = APIRouter(prefix="/v2.0", tags=["floatingips"])
log = logging.getLogger("spanwire.api.floatingips")


class FipUpdate(BaseModel):
    model_config = ConfigDict(extra="forbid")
    port_id: str | None = Field(default=None, max_length=128)
    fixed_ip_address: str | None = Field(default=None, max_length=64)
    description: str | None = Field(default=None, max_length=255)


class FipCreate(FipUpdate):
    floating_network_id: str = Field(max_length=128)
    floating_ip_address: str | None = Field(default=None, max_length=64)
    subnet_id: str | None = Field(default=None, max_length=128)
    project_id: str | None = Field(default=None, max_length=128)
    tenant_id: str | None = Field(default=None, max_length=128)


class FipCreateBody(BaseModel):
    model_config = ConfigDict(extra="forbid")
    floatingip: FipCreate


class FipUpdateBody(BaseModel):
    model_config = ConfigDict(extra="forbid")
    floatingip: FipUpdate


def assoc_key(port_id: str, fixed_ip: str) -> str:
    return keys.key("fip_assoc", port_id, fixed_ip or "none")


def _associate(
    deps: repo.Deps,
    ctx: Context,
    plan: Plan[Any],
    fip: FloatingIP,
    port_id: str,
    fixed_ip: str | None,
) -> dict[str, Any]:
    """Association fields for `fip` -> port, with compares and ops into `plan`."""
    port, port_kv = repo.fetch(deps.store, ctx, Port, port_id)
    if port.project_id != fip.project_id and not ctx.is_admin:
        raise NotFound(f"Port {port_id} could not be found.")
    if not port.fixed_ips:
        raise InvalidInput(f"Bad floatingip request: Port {port.id} has no fixed IP")
    chosen = next((f for f in port.fixed_ips if fixed_ip in (None, f.ip_address)), None)
    if chosen is None:
        raise InvalidInput(
            f"Bad floatingip request: Port {port.id} does not have fixed ip {fixed_ip}."
        )
    routers = [
        d
        for d in repo.raw_list(deps.store, Router)
        if router_logic.reaches(deps, d, fip.floating_network_id, {chosen.subnet_id})
    ]
    if not routers:
        err = NotFound(
            f"External network {fip.floating_network_id} is not reachable from subnet "
            f"{chosen.subnet_id}. Therefore, cannot associate Port {port.id} with a "
            "Floating IP."
        )
        err.neutron_type = "ExternalGatewayForFloatingIPNotFound"
        raise err
    key = assoc_key(port.id, chosen.ip_address)
    holder = deps.store.get(key)
    if holder is not None and holder.value.decode() != fip.id:
        raise Conflict(
            f"Cannot associate floating IP {fip.floating_ip_address} ({fip.id}) with "
            f"port {port.id} using fixed IP {chosen.ip_address}, as that fixed IP "
            f"already has a floating IP on external network {fip.floating_network_id}."
        )
    if holder is None:
        plan.compares.append(Compare.absent(key))
    plan.compares.append(Compare.unchanged(port_kv))
    plan.ops.append(Put(key, fip.id.encode()))
    return {
        "port_id": port.id,
        "fixed_ip_address": chosen.ip_address,
        "router_id": sorted(r["id"] for r in routers)[0],
    }


@router.post("/floatingips", status_code=201)
def create_fip(body: FipCreateBody, request: Request, ctx: CtxDep) -> Response:
    deps = repo.Deps(request)
    req = body.floatingip.model_dump(exclude_none=True)
    policy.require_write(ctx, "create_floatingip")
    project = repo.check_id(policy.target_project(ctx, req, "create_floatingip"), "project_id")

    def build() -> Plan[FloatingIP]:
        net, net_kv = router_logic.external_network(deps, req["floating_network_id"])
        fip_id = repo.make_id()
        spec: list[dict[str, Any]] | None = None
        if "floating_ip_address" in req or "subnet_id" in req:
            spec = [{k: req[k] for k in ("subnet_id",) if k in req}]
            if "floating_ip_address" in req:
                spec[0]["ip_address"] = req["floating_ip_address"]
        fields = {
            "project_id": "",
            "device_owner": DEVICE_OWNER_FLOATINGIP,
            "device_id": fip_id,
            "port_security_enabled": False,
        }
        port_plan = plan_port(deps, net, net_kv, fields, spec, quota=False)
        if not port_plan.result.fixed_ips:
            raise InvalidInput(f"external network {net.id} has no subnet for floating IPs")
        fip = repo.make(
            FloatingIP,
            id=fip_id,
            project_id=project,
            floating_network_id=net.id,
            floating_ip_address=port_plan.result.fixed_ips[0].ip_address,
            floating_port_id=port_plan.result.id,
            description=req.get("description", ""),
        )
        plan: Plan[FloatingIP] = Plan(fip)
        plan.merge(port_plan)  # type: ignore[arg-type]
        slot = quota_logic.claim(
            deps.store, deps.cache, deps.settings.default_quotas, project, "floatingip", fip.id
        )
        plan.merge(slot)  # type: ignore[arg-type]
        fip = fip.evolve(quota_slot=slot.result)
        if "port_id" in req:
            fip = fip.evolve(
                **_associate(deps, ctx, plan, fip, req["port_id"], req.get("fixed_ip_address"))
            )
        plan.ops.append(Put(fip.key, fip.to_bytes()))
        plan.result = fip
        return plan

    fip = commit(deps.store, deps.cache, build, "create_floatingip")
    log.info(
        "event=floatingip.create floatingip_id=%s address=%s port_id=%s",
        fip.id,
        fip.floating_ip_address,
        fip.port_id,
    )
    return repo.json_response({"floatingip": views.floatingip(fip.model_dump())}, 201)


@router.get("/floatingips")
def list_fips(request: Request, ctx: CtxDep) -> Response:
    deps = repo.Deps(request)
    items = [views.floatingip(d) for d in repo.owned_list(deps.store, ctx, FloatingIP)]
    return repo.list_response(deps, "floatingips", items, views.ATTRS["floatingips"])


@router.get("/floatingips/{fip_id}")
def show_fip(fip_id: str, request: Request, ctx: CtxDep) -> Response:
    fip, _ = repo.fetch(repo.Deps(request).store, ctx, FloatingIP, fip_id)
    return repo.show_response("floatingip", views.floatingip(fip.model_dump()), request)


@router.put("/floatingips/{fip_id}")
def update_fip(fip_id: str, body: FipUpdateBody, request: Request, ctx: CtxDep) -> Response:
    deps = repo.Deps(request)
    sent = body.floatingip.model_fields_set
    req = body.floatingip.model_dump(exclude_unset=True)

    def build() -> Plan[FloatingIP]:
        fip, kv = repo.fetch_owned(deps.store, ctx, FloatingIP, fip_id, "update_floatingip")
        plan: Plan[FloatingIP] = Plan(fip, [Compare.unchanged(kv)])
        changes: dict[str, Any] = {}
        if req.get("description") is not None:
            changes["description"] = req["description"]
        if "port_id" in sent:
            if fip.port_id:
                plan.ops.append(Delete(assoc_key(fip.port_id, fip.fixed_ip_address or "")))
            changes.update(port_id=None, fixed_ip_address=None, router_id=None)
            if req.get("port_id"):
                changes.update(
                    _associate(deps, ctx, plan, fip, req["port_id"], req.get("fixed_ip_address"))
                )
        new = repo.evolve(fip, **changes)
        plan.ops.append(Put(new.key, new.to_bytes()))
        plan.result = new
        return plan

    fip = commit(deps.store, deps.cache, build, "update_floatingip")
    log.info("event=floatingip.update floatingip_id=%s port_id=%s", fip.id, fip.port_id)
    return repo.json_response({"floatingip": views.floatingip(fip.model_dump())})


@router.delete("/floatingips/{fip_id}", status_code=204)
def delete_fip(fip_id: str, request: Request, ctx: CtxDep) -> None:
    deps = repo.Deps(request)
    fip, kv = repo.fetch_owned(deps.store, ctx, FloatingIP, fip_id, "delete_floatingip")
    compares = [Compare.unchanged(kv)]
    freed = quota_logic.slot_keys(fip.project_id, "floatingip", fip.quota_slot)
    ops: list[Op] = [Delete(fip.key), *[Delete(k) for k in freed]]
    if fip.port_id:
        ops.append(Delete(assoc_key(fip.port_id, fip.fixed_ip_address or "")))
    own = repo.load(deps.store, Port, fip.floating_port_id or "")
    if own is not None:
        port_ops, released = release_ops(own[0])
        compares.append(Compare.unchanged(own[1]))
        ops += port_ops
        freed += released
    if not deps.store.txn(compares, ops).succeeded:
        raise Conflict(f"floating IP {fip.id} changed while being deleted; retry")
    allocation.release(deps.cache, freed)
    log.info("event=floatingip.delete floatingip_id=%s", fip.id)
