"""`/v2.0/subnets`: IPv4 subnets with Neutron's defaults and checks.

Creating a subnet compares and rewrites its network's subnet index
(`network_subnets/<net>`), so two racing creates of overlapping CIDRs on one
network cannot both succeed.
"""

from __future__ import annotations

import ipaddress
import json
import logging
from typing import Any, Literal

from fastapi import APIRouter, Request
from fastapi.responses import Response
from pydantic import BaseModel, ConfigDict, Field

from spanwire.api import allocation, ipam, policy, quota_logic, repo, views
from spanwire.api.allocation import Plan, commit, guard, lock_key
from spanwire.api.context import Context, CtxDep
from spanwire.api.errors import InUse, not_found
from spanwire.api.networks import subnet_index, subnet_index_key
from spanwire.errors import Conflict, InvalidInput
from spanwire.model import Network, Subnet
from spanwire.store import keys
from spanwire.store.base import Compare, Delete, Put

router = APIRouter(prefix="/v2.0", tags=["subnets"])
log = logging.getLogger("spanwire.api.subnets")


class PoolIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    start: str = Field(max_length=64)
    end: str = Field(max_length=64)


class RouteIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    destination: str = Field(max_length=64)
    nexthop: str = Field(max_length=64)


class SubnetUpdate(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: str | None = Field(default=None, max_length=255)
    description: str | None = Field(default=None, max_length=255)
    gateway_ip: str | None = Field(default=None, max_length=64)
    allocation_pools: list[PoolIn] | None = Field(default=None, max_length=64)
    dns_nameservers: list[str] | None = Field(default=None, max_length=16)
    host_routes: list[RouteIn] | None = Field(default=None, max_length=64)
    enable_dhcp: bool | None = None


class SubnetCreate(SubnetUpdate):
    network_id: str = Field(max_length=128)
    cidr: str = Field(max_length=64)
    ip_version: Literal[4, 6] = 4
    project_id: str | None = Field(default=None, max_length=128)
    tenant_id: str | None = Field(default=None, max_length=128)
    subnetpool_id: None = None
    ipv6_address_mode: None = None
    ipv6_ra_mode: None = None


class SubnetCreateBody(BaseModel):
    model_config = ConfigDict(extra="forbid")
    subnet: SubnetCreate


class SubnetUpdateBody(BaseModel):
    model_config = ConfigDict(extra="forbid")
    subnet: SubnetUpdate


def _ranges(pools: list[dict[str, str]]) -> list[ipam.Range]:
    return [
        (
            int(ipam.parse_ip(p["start"], "allocation_pools")),
            int(ipam.parse_ip(p["end"], "allocation_pools")),
        )
        for p in pools
    ]


def _addressing(
    net: ipaddress.IPv4Network, gateway: str | None, pools: list[dict[str, str]] | None
) -> dict[str, Any]:
    """Validated gateway_ip and allocation_pools (defaults filled in)."""
    if gateway is not None:
        gateway = ipam.check_gateway(net, gateway)
    ranges = _ranges(pools) if pools is not None else ipam.default_pools(net, gateway)
    ipam.check_pools(net, ranges, gateway)
    return {
        "gateway_ip": gateway,
        "allocation_pools": [
            {"start": str(ipaddress.IPv4Address(s)), "end": str(ipaddress.IPv4Address(e))}
            for s, e in sorted(ranges)
        ],
    }


def _extras(req: dict[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    if "dns_nameservers" in req:
        out["dns_nameservers"] = [
            str(ipam.parse_ip(d, "dns_nameservers")) for d in req["dns_nameservers"]
        ]
        if len(set(out["dns_nameservers"])) != len(out["dns_nameservers"]):
            raise InvalidInput("Duplicate nameserver in dns_nameservers")
    if "host_routes" in req:
        routes = []
        for r in req["host_routes"]:
            try:
                dest = str(ipaddress.IPv4Network(r["destination"], strict=True))
            except ValueError:
                raise InvalidInput(f"Invalid host route destination {r['destination']!r}") from None
            routes.append(
                {"destination": dest, "nexthop": str(ipam.parse_ip(r["nexthop"], "host_routes"))}
            )
        out["host_routes"] = routes
    return out


@router.post("/subnets", status_code=201)
def create_subnet(body: SubnetCreateBody, request: Request, ctx: CtxDep) -> Response:
    deps = repo.Deps(request)
    sent = body.subnet.model_fields_set
    req = body.subnet.model_dump(exclude_unset=True)
    policy.require_write(ctx, "create_subnet")
    project = repo.check_id(policy.target_project(ctx, req, "create_subnet"), "project_id")
    if req.get("ip_version", 4) != 4:
        raise InvalidInput("Only IPv4 subnets are supported (ip_version 4)")
    cidr = ipam.parse_cidr(req["cidr"])
    gateway = req.get("gateway_ip") if "gateway_ip" in sent else ipam.default_gateway(cidr)
    fields = {
        "project_id": project,
        "network_id": req["network_id"],
        "cidr": str(cidr),
        "name": req.get("name") or "",
        "description": req.get("description") or "",
        "enable_dhcp": True if req.get("enable_dhcp") is None else req["enable_dhcp"],
        **_addressing(cidr, gateway, req.get("allocation_pools")),
        **_extras(req),
    }

    def build() -> Plan[Subnet]:
        net, net_kv = repo.fetch(deps.store, ctx, Network, str(req["network_id"]))
        if not policy.owns(ctx, net.project_id):
            policy.require_admin(ctx, "create_subnet (network of another project)")
        index, index_rev = subnet_index(deps.store, net.id)
        clash = ipam.overlaps(str(cidr), list(index.values()))
        if clash is not None:
            raise InvalidInput(
                f"Invalid input for operation: Requested subnet with cidr: {cidr} "
                f"for network: {net.id} overlaps with another subnet ({clash})."
            )
        subnet = repo.make(Subnet, **fields)
        plan: Plan[Subnet] = Plan(
            subnet,
            [
                Compare.unchanged(net_kv),
                Compare(subnet_index_key(net.id), index_rev),
                Compare.absent(lock_key("networks", net.id)),
            ],
        )
        slot = quota_logic.claim(
            deps.store, deps.cache, deps.settings.default_quotas, project, "subnet", subnet.id
        )
        plan.merge(slot)  # type: ignore[arg-type]
        subnet = subnet.evolve(quota_slot=slot.result)
        index[subnet.id] = subnet.cidr
        plan.ops += [
            Put(subnet.key, subnet.to_bytes()),
            Put(subnet_index_key(net.id), json.dumps(index).encode()),
        ]
        plan.result = subnet
        return plan

    subnet = commit(deps.store, deps.cache, build, "create_subnet")
    log.info(
        "event=subnet.create subnet_id=%s network_id=%s cidr=%s",
        subnet.id,
        subnet.network_id,
        subnet.cidr,
    )
    return repo.json_response({"subnet": views.subnet(subnet.model_dump())}, 201)


@router.get("/subnets")
def list_subnets(request: Request, ctx: CtxDep) -> Response:
    deps = repo.Deps(request)
    items = repo.raw_list(deps.store, Subnet)
    if not ctx.is_admin:
        shared = {
            d["id"]
            for d in repo.raw_list(deps.store, Network)
            if policy.can_see(ctx, "networks", d)
        }
        items = [d for d in items if d["project_id"] == ctx.project_id or d["network_id"] in shared]
    return repo.list_response(
        deps, "subnets", [views.subnet(d) for d in items], views.ATTRS["subnets"]
    )


def _fetch_visible(deps: repo.Deps, ctx: Context, subnet_id: str) -> Subnet:
    found = repo.load(deps.store, Subnet, subnet_id)
    if found is not None and not policy.owns(ctx, found[0].project_id):
        net = repo.load(deps.store, Network, found[0].network_id)
        if net is None or not policy.can_see(ctx, "networks", net[0].model_dump()):
            found = None
    if found is None:
        raise not_found("subnets", subnet_id)
    return found[0]


@router.get("/subnets/{subnet_id}")
def show_subnet(subnet_id: str, request: Request, ctx: CtxDep) -> Response:
    subnet = _fetch_visible(repo.Deps(request), ctx, subnet_id)
    return repo.show_response("subnet", views.subnet(subnet.model_dump()), request)


@router.put("/subnets/{subnet_id}")
def update_subnet(
    subnet_id: str, body: SubnetUpdateBody, request: Request, ctx: CtxDep
) -> Response:
    deps = repo.Deps(request)
    sent = body.subnet.model_fields_set
    req = body.subnet.model_dump(exclude_unset=True)

    def build() -> Plan[Subnet]:
        subnet, kv = repo.fetch_owned(deps.store, ctx, Subnet, subnet_id, "update_subnet")
        changes: dict[str, Any] = {
            k: v
            for k, v in req.items()
            if k in ("name", "description", "enable_dhcp") and v is not None
        }
        if "gateway_ip" in sent or "allocation_pools" in sent:
            gateway = req.get("gateway_ip") if "gateway_ip" in sent else subnet.gateway_ip
            pools = req.get("allocation_pools") or [p.model_dump() for p in subnet.allocation_pools]
            changes.update(_addressing(subnet.network, gateway, pools))
        changes.update(_extras({k: v for k, v in req.items() if v is not None}))
        new = repo.evolve(subnet, **changes)
        return Plan(new, [Compare.unchanged(kv)], [Put(new.key, new.to_bytes())])

    subnet = commit(deps.store, deps.cache, build, "update_subnet")
    deps.cache.forget(keys.prefix("ipam", subnet.id))
    log.info("event=subnet.update subnet_id=%s fields=%s", subnet.id, sorted(req))
    return repo.json_response({"subnet": views.subnet(subnet.model_dump())})


@router.delete("/subnets/{subnet_id}", status_code=204)
def delete_subnet(subnet_id: str, request: Request, ctx: CtxDep) -> None:
    deps = repo.Deps(request)
    subnet, _ = repo.fetch_owned(deps.store, ctx, Subnet, subnet_id, "delete_subnet")
    with guard(deps.store, "subnets", subnet.id):
        subnet, kv = repo.fetch_owned(deps.store, ctx, Subnet, subnet_id, "delete_subnet")
        if deps.store.range(keys.prefix("ipam", subnet.id)).items:
            raise InUse(
                "Subnet",
                f"Unable to complete operation on subnet {subnet.id}: One or "
                "more ports have an IP allocation from this subnet.",
            )
        index, index_rev = subnet_index(deps.store, subnet.network_id)
        index.pop(subnet.id, None)
        slots = quota_logic.slot_keys(subnet.project_id, "subnet", subnet.quota_slot)
        ok = deps.store.txn(
            [Compare.unchanged(kv), Compare(subnet_index_key(subnet.network_id), index_rev)],
            [
                Delete(subnet.key),
                Put(subnet_index_key(subnet.network_id), json.dumps(index).encode()),
                *[Delete(k) for k in slots],
            ],
        ).succeeded
        if not ok:
            raise Conflict(f"subnet {subnet.id} changed while being deleted; retry")
    allocation.release(deps.cache, slots)
    deps.cache.forget(keys.prefix("ipam", subnet.id))
    log.info("event=subnet.delete subnet_id=%s", subnet.id)
