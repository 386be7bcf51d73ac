"""`/v2.0/ports`: addresses, MACs and security groups, allocated race-free.

Status is not stored here: the agent writes `port_status/<port_id>` and the
port shows ACTIVE when that says ACTIVE, DOWN otherwise.
"""

from __future__ import annotations

import json
import logging
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import Response
from pydantic import BaseModel, ConfigDict, Field

from spanwire.api import allocation, policy, repo, sg_logic, views
from spanwire.api.allocation import Plan, commit, lock_key
from spanwire.api.context import Context, CtxDep
from spanwire.api.errors import InUse, not_found
from spanwire.api.port_alloc import ROUTER_OWNERS, Subnets, plan_ips, plan_port, release_ops
from spanwire.errors import Conflict, Forbidden, InvalidInput
from spanwire.model import FloatingIP, Network, Port, PortStatus, SecurityGroup
from spanwire.model.router import DEVICE_OWNER_FLOATINGIP, DEVICE_OWNER_GATEWAY
from spanwire.store.base import Compare, Delete, Put

router = APIRouter(prefix="/v2.0", tags=["ports"])
log = logging.getLogger("spanwire.api.ports")


class FixedIPIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    subnet_id: str | None = Field(default=None, max_length=128)
    ip_address: str | None = Field(default=None, max_length=64)


class PairIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    ip_address: str = Field(max_length=64)
    mac_address: str | None = Field(default=None, max_length=32)


class PortUpdate(BaseModel):
    model_config = ConfigDict(extra="forbid", populate_by_name=True)
    name: str | None = Field(default=None, max_length=255)
    description: str | None = Field(default=None, max_length=255)
    admin_state_up: bool | None = None
    device_id: str | None = Field(default=None, max_length=255)
    device_owner: str | None = Field(default=None, max_length=255)
    binding_host_id: str | None = Field(default=None, max_length=255, alias="binding:host_id")
    binding_vnic_type: str | None = Field(
        default=None, alias="binding:vnic_type", pattern="^normal$"
    )
    binding_profile: dict[str, Any] | None = Field(default=None, alias="binding:profile")
    fixed_ips: list[FixedIPIn] | None = Field(default=None, max_length=32)
    security_groups: list[str] | None = Field(default=None, max_length=64)
    port_security_enabled: bool | None = None
    allowed_address_pairs: list[PairIn] | None = Field(default=None, max_length=64)


class PortCreate(PortUpdate):
    network_id: str = Field(max_length=128)
    mac_address: str | None = Field(default=None, max_length=32)
    project_id: str | None = Field(default=None, max_length=128)
    tenant_id: str | None = Field(default=None, max_length=128)


class PortCreateBody(BaseModel):
    model_config = ConfigDict(extra="forbid")
    port: PortCreate


class PortUpdateBody(BaseModel):
    model_config = ConfigDict(extra="forbid")
    port: PortUpdate


def status_of(deps: repo.Deps, port_id: str) -> str:
    kv = deps.store.get(PortStatus.key_of(port_id))
    return "ACTIVE" if kv is not None and json.loads(kv.value).get("status") == "ACTIVE" else "DOWN"


def _groups(
    deps: repo.Deps,
    ctx: Context,
    project: str,
    plan: Plan[Any],
    wanted: list[str] | None,
    owner: str,
    port_security: bool,
) -> list[str]:
    """Security groups of a port (the project's default when omitted), compared on commit."""
    if wanted is None:
        if not port_security or owner.startswith("network:"):
            return []
        wanted = [sg_logic.ensure_default(deps.store, project, deps.kv)]
    if wanted and not port_security:
        raise InvalidInput(
            "Port security must be enabled and port must have an IP address in "
            "order to use security groups."
        )
    out = []
    for group_id in dict.fromkeys(wanted):
        found = repo.load(deps.store, SecurityGroup, group_id, deps.kv)
        if found is None or found[0].project_id != project:
            raise not_found("security_groups", group_id)
        plan.compares += [
            Compare.unchanged(found[1]),
            Compare.absent(lock_key("security_groups", group_id)),
        ]
        out.append(group_id)
    return out


def _attrs(req: dict[str, Any]) -> dict[str, Any]:
    skip = {"fixed_ips", "security_groups", "binding_vnic_type", "binding_profile", "tenant_id"}
    return {k: v for k, v in req.items() if k not in skip and v is not None}


@router.post("/ports", status_code=201)
def create_port(body: PortCreateBody, request: Request, ctx: CtxDep) -> Response:
    deps = repo.Deps(request)
    req = body.port.model_dump(exclude_unset=True)
    policy.require_write(ctx, "create_port")
    project = repo.check_id(policy.target_project(ctx, req, "create_port"), "project_id")
    if "mac_address" in req or "binding_host_id" in req:
        policy.require_admin(ctx, "create_port:mac_address/binding:host_id")
    spec = req.get("fixed_ips")

    def build() -> Plan[Port]:
        net, net_kv = repo.fetch(deps.store, ctx, Network, str(req["network_id"]), deps.kv)
        if net.router_external and not net.shared and not policy.owns(ctx, net.project_id):
            raise Forbidden("rule:create_port on an external network is disallowed by policy")
        fields = {**_attrs(req), "project_id": project}
        fields.setdefault("port_security_enabled", net.port_security_enabled)
        if not fields["port_security_enabled"] and req.get("allowed_address_pairs"):
            raise InvalidInput(
                "Port Security must be enabled in order to have allowed address pairs on a port."
            )
        checks: Plan[None] = Plan(None)
        fields["security_groups"] = _groups(
            deps,
            ctx,
            project,
            checks,
            req.get("security_groups"),
            str(fields.get("device_owner", "")),
            fields["port_security_enabled"],
        )
        plan = plan_port(deps, net, net_kv, fields, spec)
        plan.merge(checks)  # type: ignore[arg-type]
        return plan

    port = commit(deps.store, deps.cache, build, "create_port", deps.kv)
    log.info(
        "event=port.create port_id=%s network_id=%s ips=%s mac=%s",
        port.id,
        port.network_id,
        ",".join(port.ips),
        port.mac_address,
    )
    return repo.json_response({"port": views.port(port.model_dump(), "DOWN")}, 201)


@router.get("/ports")
def list_ports(request: Request, ctx: CtxDep) -> Response:
    deps = repo.Deps(request)
    statuses = {
        kv.key.rsplit("/", 1)[1]: json.loads(kv.value).get("status")
        for kv in deps.store.range(PortStatus.prefix()).items
    }
    items, fragments = repo.rendered_list(
        deps,
        Port,
        views.port,
        lambda d: policy.owns(ctx, d["project_id"]),
        lambda port_id: "ACTIVE" if statuses.get(port_id) == "ACTIVE" else "DOWN",
    )
    return repo.list_response(deps, "ports", items, views.ATTRS["ports"], fragments)


@router.get("/ports/{port_id}")
def show_port(port_id: str, request: Request, ctx: CtxDep) -> Response:
    deps = repo.Deps(request)
    port, _ = repo.fetch(deps.store, ctx, Port, port_id)
    return repo.show_response(
        "port", views.port(port.model_dump(), status_of(deps, port.id)), request
    )


def _check_gateway_binding(port: Port, changes: dict[str, Any]) -> None:
    """A router gateway port's owner and host say which router and node it serves
    (central when unbound, a node's SNAT address when bound), so they stay put."""
    if port.device_owner != DEVICE_OWNER_GATEWAY:
        return
    managed = {
        "device_owner": "device_owner",
        "device_id": "device_id",
        "binding_host_id": "binding:host_id",
    }
    changed = [
        name for k, name in managed.items() if k in changes and changes[k] != getattr(port, k)
    ]
    if changed:
        raise InUse(
            "Port",
            f"Port {port.id} is a gateway port of router {port.device_id}: its "
            f"{', '.join(changed)} cannot be changed via the port API.",
        )


@router.put("/ports/{port_id}")
def update_port(port_id: str, body: PortUpdateBody, request: Request, ctx: CtxDep) -> Response:
    deps = repo.Deps(request)
    req = body.port.model_dump(exclude_unset=True)
    if "binding_host_id" in req:
        policy.require_admin(ctx, "update_port:binding:host_id")

    def build() -> Plan[Port]:
        port, kv = repo.fetch_owned(deps.store, ctx, Port, port_id, "update_port")
        plan: Plan[Port] = Plan(port, [Compare.unchanged(kv)])
        changes = _attrs(req)
        _check_gateway_binding(port, changes)
        security = changes.get("port_security_enabled", port.port_security_enabled)
        pairs = changes.get("allowed_address_pairs", port.allowed_address_pairs)
        if not security and pairs:
            raise InvalidInput(
                "Port Security must be enabled in order to have allowed address pairs on a port."
            )
        if "security_groups" in req or "port_security_enabled" in req:
            wanted = req.get("security_groups", port.security_groups) or []
            changes["security_groups"] = _groups(
                deps, ctx, port.project_id, plan, wanted, port.device_owner, security
            )
        freed: list[str] = []
        if req.get("fixed_ips") is not None:
            subnets = Subnets.of(deps, port.network_id)
            fixed = plan_ips(
                deps,
                plan,
                subnets,
                req["fixed_ips"],
                port.id,
                keep=port.fixed_ips,
                allow_gateway=port.device_owner in ROUTER_OWNERS,
            )
            freed = [
                allocation.ip_key(f.subnet_id, f.ip_address)
                for f in port.fixed_ips
                if f not in fixed
            ]
            plan.ops += [Delete(k) for k in freed]
            changes["fixed_ips"] = [f.model_dump() for f in fixed]
        new = repo.evolve(port, **changes)
        plan.ops.append(Put(new.key, new.to_bytes()))
        plan.result = new
        return plan

    port = commit(deps.store, deps.cache, build, "update_port", deps.kv)
    log.info("event=port.update port_id=%s fields=%s", port.id, sorted(req))
    return repo.json_response({"port": views.port(port.model_dump(), status_of(deps, port.id))})


@router.delete("/ports/{port_id}", status_code=204)
def delete_port(port_id: str, request: Request, ctx: CtxDep) -> None:
    deps = repo.Deps(request)
    port, kv = repo.fetch_owned(deps.store, ctx, Port, port_id, "delete_port")
    if port.device_owner in (*ROUTER_OWNERS, DEVICE_OWNER_FLOATINGIP):
        raise InUse(
            "Port",
            f"Port {port.id} cannot be deleted directly via the port API: has "
            f"device owner {port.device_owner}.",
        )
    compares = [Compare.unchanged(kv)]
    ops, freed = release_ops(port)
    for fip_kv in deps.store.range(FloatingIP.prefix()).items:
        fip = FloatingIP.from_bytes(fip_kv.value)
        if fip.port_id == port.id:
            from spanwire.api.floatingips import assoc_key

            new = repo.bumped(fip, port_id=None, fixed_ip_address=None, router_id=None)
            compares.append(Compare.unchanged(fip_kv))
            ops += [
                Put(new.key, new.to_bytes()),
                Delete(assoc_key(port.id, fip.fixed_ip_address or "")),
            ]
    if not deps.store.txn(compares, ops).succeeded:
        raise Conflict(f"port {port.id} changed while being deleted; retry")
    allocation.release(deps.cache, freed)
    log.info("event=port.delete port_id=%s", port.id)
