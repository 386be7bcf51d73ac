"""`/v2.0/security-groups` and `/v2.0/security-group-rules`.

Rules are stored as their own objects; a fingerprint key per distinct rule
makes a duplicate fail (409) even when two replicas add it at once.
"""

from __future__ import annotations

import logging
from typing import Any, Literal

from fastapi import APIRouter, Request
from fastapi.responses import Response
from pydantic import BaseModel, ConfigDict, Field

from spanwire.api import allocation, policy, quota_logic, repo, sg_logic, views
from spanwire.api.allocation import Plan, commit, guard, lock_key
from spanwire.api.context import CtxDep
from spanwire.api.errors import InUse, not_found
from spanwire.errors import Conflict, InvalidInput
from spanwire.model import Port, SecurityGroup, SecurityGroupRule
from spanwire.store.base import Compare, Delete, Op, Put

router = APIRouter(prefix="/v2.0", tags=["security-groups"])
log = logging.getLogger("spanwire.api.security_groups")


class GroupUpdate(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: str | None = Field(default=None, max_length=255)
    description: str | None = Field(default=None, max_length=255)


class GroupCreate(GroupUpdate):
    project_id: str | None = Field(default=None, max_length=128)
    tenant_id: str | None = Field(default=None, max_length=128)
    stateful: bool | None = None


class GroupCreateBody(BaseModel):
    model_config = ConfigDict(extra="forbid")
    security_group: GroupCreate


class GroupUpdateBody(BaseModel):
    model_config = ConfigDict(extra="forbid")
    security_group: GroupUpdate


class RuleCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")
    security_group_id: str = Field(max_length=128)
    direction: Literal["ingress", "egress"]
    ethertype: Literal["IPv4", "IPv6"] = "IPv4"
    protocol: str | int | None = Field(default=None)
    port_range_min: int | None = Field(default=None, ge=0, le=65535)
    port_range_max: int | None = Field(default=None, ge=0, le=65535)
    remote_ip_prefix: str | None = Field(default=None, max_length=64)
    remote_group_id: str | None = Field(default=None, max_length=128)
    description: str | None = Field(default=None, max_length=255)
    project_id: str | None = Field(default=None, max_length=128)
    tenant_id: str | None = Field(default=None, max_length=128)


class RuleCreateBody(BaseModel):
    model_config = ConfigDict(extra="forbid")
    security_group_rule: RuleCreate


def _rules_by_group(deps: repo.Deps) -> dict[str, list[dict[str, Any]]]:
    out: dict[str, list[dict[str, Any]]] = {}
    for d in repo.raw_list(deps.store, SecurityGroupRule):
        out.setdefault(d["security_group_id"], []).append(d)
    return out


def _render(deps: repo.Deps, group: SecurityGroup) -> dict[str, Any]:
    rules = [
        d
        for d in repo.raw_list(deps.store, SecurityGroupRule)
        if d["security_group_id"] == group.id
    ]
    return views.security_group(group.model_dump(), rules)


@router.post("/security-groups", status_code=201)
def create_group(body: GroupCreateBody, request: Request, ctx: CtxDep) -> Response:
    deps = repo.Deps(request)
    req = body.security_group.model_dump(exclude_none=True)
    policy.require_write(ctx, "create_security_group")
    project = repo.check_id(policy.target_project(ctx, req, "create_security_group"), "project_id")
    if req.get("name") == "default":
        raise Conflict("Default security group already exists.")
    sg_logic.ensure_default(deps.store, project)

    def build() -> Plan[SecurityGroup]:
        group = repo.make(
            SecurityGroup,
            **{k: v for k, v in req.items() if k not in ("tenant_id", "project_id")},
            project_id=project,
        )
        plan: Plan[SecurityGroup] = Plan(group)
        slot = quota_logic.claim(
            deps.store,
            deps.cache,
            deps.settings.default_quotas,
            project,
            "security_group",
            group.id,
        )
        plan.merge(slot)  # type: ignore[arg-type]
        group = group.evolve(quota_slot=slot.result)
        rules = [r for r in sg_logic.default_rules(group) if r.direction == "egress"]
        for rule in rules:
            plan.ops += [
                Put(rule.key, rule.to_bytes()),
                Put(sg_logic.fingerprint_key(rule), rule.id.encode()),
            ]
        plan.ops.append(Put(group.key, group.to_bytes()))
        plan.result = group
        return plan

    group = commit(deps.store, deps.cache, build, "create_security_group")
    log.info("event=security_group.create security_group_id=%s project_id=%s", group.id, project)
    return repo.json_response({"security_group": _render(deps, group)}, 201)


@router.get("/security-groups")
def list_groups(request: Request, ctx: CtxDep) -> Response:
    deps = repo.Deps(request)
    if ctx.can_write:
        sg_logic.ensure_default(deps.store, ctx.project_id)
    rules = _rules_by_group(deps)
    items = [
        views.security_group(d, rules.get(d["id"], []))
        for d in repo.owned_list(deps.store, ctx, SecurityGroup)
    ]
    return repo.list_response(deps, "security_groups", items, views.ATTRS["security_groups"])


@router.get("/security-groups/{group_id}")
def show_group(group_id: str, request: Request, ctx: CtxDep) -> Response:
    deps = repo.Deps(request)
    group, _ = repo.fetch(deps.store, ctx, SecurityGroup, group_id)
    return repo.show_response("security_group", _render(deps, group), request)


@router.put("/security-groups/{group_id}")
def update_group(group_id: str, body: GroupUpdateBody, request: Request, ctx: CtxDep) -> Response:
    deps = repo.Deps(request)
    changes = body.security_group.model_dump(exclude_none=True)

    def build() -> Plan[SecurityGroup]:
        group, kv = repo.fetch_owned(
            deps.store, ctx, SecurityGroup, group_id, "update_security_group"
        )
        if group.name == "default" and changes.get("name", "default") != "default":
            raise InvalidInput("Updating default security group not allowed.")
        new = repo.evolve(group, **changes)
        return Plan(new, [Compare.unchanged(kv)], [Put(new.key, new.to_bytes())])

    group = commit(deps.store, deps.cache, build, "update_security_group")
    log.info("event=security_group.update security_group_id=%s", group.id)
    return repo.json_response({"security_group": _render(deps, group)})


@router.delete("/security-groups/{group_id}", status_code=204)
def delete_group(group_id: str, request: Request, ctx: CtxDep) -> None:
    deps = repo.Deps(request)
    group, _ = repo.fetch_owned(deps.store, ctx, SecurityGroup, group_id, "delete_security_group")
    default_kv = deps.store.get(sg_logic.default_index_key(group.project_id))
    is_default = default_kv is not None and default_kv.value.decode() == group.id
    if is_default and not ctx.is_admin:
        raise Conflict("Insufficient rights for removing default security group.")
    with guard(deps.store, "security_groups", group.id):
        group, kv = repo.fetch_owned(
            deps.store, ctx, SecurityGroup, group_id, "delete_security_group"
        )
        if any(group.id in d.get("security_groups", []) for d in repo.raw_list(deps.store, Port)):
            raise InUse("SecurityGroup", f"Security Group {group.id} in use.")
        compares = [Compare.unchanged(kv)]
        freed = quota_logic.slot_keys(group.project_id, "security_group", group.quota_slot)
        ops: list[Op] = [Delete(group.key)]
        if is_default and default_kv is not None:
            ops.append(Delete(default_kv.key))
        for rule_kv in deps.store.range(SecurityGroupRule.prefix()).items:
            rule = SecurityGroupRule.from_bytes(rule_kv.value)
            if rule.security_group_id == group.id:
                ops += [Delete(rule.key), Delete(sg_logic.fingerprint_key(rule))]
                freed += quota_logic.slot_keys(
                    rule.project_id, "security_group_rule", rule.quota_slot
                )
        ops += [Delete(k) for k in freed]
        if not deps.store.txn(compares, ops).succeeded:
            raise Conflict(f"security group {group.id} changed while being deleted; retry")
    allocation.release(deps.cache, freed)
    log.info("event=security_group.delete security_group_id=%s", group.id)


@router.post("/security-group-rules", status_code=201)
def create_rule(body: RuleCreateBody, request: Request, ctx: CtxDep) -> Response:
    deps = repo.Deps(request)
    req = body.security_group_rule.model_dump(exclude_none=True)
    policy.require_write(ctx, "create_security_group_rule")
    if "protocol" in req:
        req["protocol"] = str(req["protocol"])
    if req.get("remote_group_id") is not None:
        repo.fetch(deps.store, ctx, SecurityGroup, req["remote_group_id"])

    def build() -> Plan[SecurityGroupRule]:
        group, kv = repo.fetch_owned(
            deps.store, ctx, SecurityGroup, req["security_group_id"], "create_security_group_rule"
        )
        fields = {k: v for k, v in req.items() if k not in ("tenant_id",)}
        rule = repo.make(SecurityGroupRule, **{**fields, "project_id": group.project_id})
        if rule.remote_ip_prefix is not None:
            version = 6 if ":" in rule.remote_ip_prefix else 4
            if f"IPv{version}" != rule.ethertype:
                raise InvalidInput(
                    f"Conflicting value ethertype {rule.ethertype} for CIDR {rule.remote_ip_prefix}"
                )
        fingerprint = sg_logic.fingerprint_key(rule)
        existing = deps.store.get(fingerprint)
        if existing is not None:
            raise Conflict(
                f"Security group rule already exists. Rule id is {existing.value.decode()}."
            )
        plan: Plan[SecurityGroupRule] = Plan(
            rule,
            [
                Compare.unchanged(kv),
                Compare.absent(lock_key("security_groups", group.id)),
                Compare.absent(fingerprint),
            ],
        )
        slot = quota_logic.claim(
            deps.store,
            deps.cache,
            deps.settings.default_quotas,
            group.project_id,
            "security_group_rule",
            rule.id,
        )
        plan.merge(slot)  # type: ignore[arg-type]
        rule = rule.evolve(quota_slot=slot.result)
        plan.ops += [Put(rule.key, rule.to_bytes()), Put(fingerprint, rule.id.encode())]
        plan.result = rule
        return plan

    rule = commit(deps.store, deps.cache, build, "create_security_group_rule")
    log.info(
        "event=security_group_rule.create security_group_rule_id=%s security_group_id=%s",
        rule.id,
        rule.security_group_id,
    )
    return repo.json_response(
        {"security_group_rule": views.security_group_rule(rule.model_dump())}, 201
    )


@router.get("/security-group-rules")
def list_rules(request: Request, ctx: CtxDep) -> Response:
    deps = repo.Deps(request)
    items = [
        views.security_group_rule(d) for d in repo.owned_list(deps.store, ctx, SecurityGroupRule)
    ]
    return repo.list_response(
        deps, "security_group_rules", items, views.ATTRS["security_group_rules"]
    )


@router.get("/security-group-rules/{rule_id}")
def show_rule(rule_id: str, request: Request, ctx: CtxDep) -> Response:
    rule, _ = repo.fetch(repo.Deps(request).store, ctx, SecurityGroupRule, rule_id)
    return repo.show_response(
        "security_group_rule", views.security_group_rule(rule.model_dump()), request
    )


@router.delete("/security-group-rules/{rule_id}", status_code=204)
def delete_rule(rule_id: str, request: Request, ctx: CtxDep) -> None:
    deps = repo.Deps(request)
    rule, kv = repo.fetch_owned(
        deps.store, ctx, SecurityGroupRule, rule_id, "delete_security_group_rule"
    )
    freed = quota_logic.slot_keys(rule.project_id, "security_group_rule", rule.quota_slot)
    ops: list[Op] = [
        Delete(rule.key),
        Delete(sg_logic.fingerprint_key(rule)),
        *[Delete(k) for k in freed],
    ]
    if not deps.store.txn([Compare.unchanged(kv)], ops).succeeded:
        raise not_found("security_group_rules", rule_id)
    allocation.release(deps.cache, freed)
    log.info("event=security_group_rule.delete security_group_rule_id=%s", rule.id)
