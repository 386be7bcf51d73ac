"""`/v2.0/networks`: tenant (VXLAN) and provider (flat) networks.

A VXLAN network claims its VNI (`vnis/<vni>`) and a flat network its physical
network (`flat_nets/<physnet>`) with Compare.absent in the network's own
transaction; deleting a network holds a guard lock so no port can be created
on it meanwhile.
"""

from __future__ import annotations

import json
import logging
from typing import Any, Literal

from fastapi import APIRouter, Request
from fastapi.responses import Response
from pydantic import BaseModel, ConfigDict, Field

from spanwire.api import allocation, policy, quota_logic, repo, views
from spanwire.api.allocation import Plan, commit, guard
from spanwire.api.context import Context, CtxDep
from spanwire.api.errors import InUse
from spanwire.errors import Conflict, Unavailable
from spanwire.model import Network, Subnet
from spanwire.model.network import VNI_MAX, VNI_MIN
from spanwire.store import keys
from spanwire.store.base import Compare, Delete, Put, Store

router = APIRouter(prefix="/v2.0", tags=["networks"])
log = logging.getLogger("spanwire.api.networks")


class NetworkUpdate(BaseModel):
    model_config = ConfigDict(extra="forbid", populate_by_name=True)
    name: str | None = Field(default=None, max_length=255)
    description: str | None = Field(default=None, max_length=255)
    admin_state_up: bool | None = None
    shared: bool | None = None
    router_external: bool | None = Field(default=None, alias="router:external")
    mtu: int | None = Field(default=None, ge=68, le=9216)
    port_security_enabled: bool | None = None


class NetworkCreate(NetworkUpdate):
    project_id: str | None = Field(default=None, max_length=128)
    tenant_id: str | None = Field(default=None, max_length=128)
    network_type: Literal["vxlan", "flat"] | None = Field(
        default=None, alias="provider:network_type"
    )
    physical_network: str | None = Field(
        default=None, max_length=64, alias="provider:physical_network"
    )
    segmentation_id: int | None = Field(
        default=None, ge=VNI_MIN, le=VNI_MAX, alias="provider:segmentation_id"
    )
    availability_zone_hints: list[str] | None = None


class NetworkCreateBody(BaseModel):
    model_config = ConfigDict(extra="forbid")
    network: NetworkCreate


class NetworkUpdateBody(BaseModel):
    model_config = ConfigDict(extra="forbid")
    network: NetworkUpdate


def subnet_index_key(network_id: str) -> str:
    return keys.key("network_subnets", network_id)


def subnet_index(store: Store, network_id: str) -> tuple[dict[str, str], int]:
    """{subnet_id: cidr} of a network and the index key's mod_revision (0 if absent)."""
    kv = store.get(subnet_index_key(network_id))
    return (json.loads(kv.value), kv.mod_revision) if kv else ({}, 0)


def flat_key(physnet: str) -> str:
    return keys.key("flat_nets", repo.check_id(physnet, "provider:physical_network"))


def render(net: dict[str, Any], subnets: dict[str, str], ctx: Context) -> dict[str, Any]:
    return views.network(net, sorted(subnets), ctx.is_admin)


@router.post("/networks", status_code=201)
def create_network(body: NetworkCreateBody, request: Request, ctx: CtxDep) -> Response:
    deps = repo.Deps(request)
    req = body.network.model_dump(exclude_none=True)
    policy.require_write(ctx, "create_network")
    project = repo.check_id(policy.target_project(ctx, req, "create_network"), "project_id")
    for attr in (
        "network_type",
        "physical_network",
        "segmentation_id",
        "router_external",
        "shared",
    ):
        if attr in req:
            policy.require_admin(ctx, f"create_network:{attr}")
    net_type = req.pop("network_type", "vxlan")
    settings = deps.settings

    def build() -> Plan[Network]:
        plan: Plan[Network] = Plan(result=None)  # type: ignore[arg-type]
        fields: dict[str, Any] = {k: v for k, v in req.items() if k != "tenant_id"}
        fields.update(project_id=project, network_type=net_type)
        fields.setdefault("mtu", settings.default_mtu)
        if net_type == "vxlan":
            vni = req.get("segmentation_id")
            if vni is None:
                vni = allocation.claim_vni(deps.cache, settings.vni_min, settings.vni_max)
                if vni is None:
                    raise Unavailable(
                        "Unable to create the network. No tenant network is "
                        "available for allocation."
                    )
            fields["segmentation_id"] = vni
            plan.compares.append(Compare.absent(allocation.vni_key(vni)))
            reservation = allocation.vni_key(vni)
        else:
            reservation = flat_key(str(req.get("physical_network", "")))
            plan.compares.append(Compare.absent(reservation))
        if ("segmentation_id" in req or net_type == "flat") and deps.store.get(reservation):
            segment = req.get("segmentation_id", req.get("physical_network"))
            raise Conflict(f"Unable to create the network. The segment {segment} is in use.")
        net = repo.make(Network, **fields)
        slot = quota_logic.claim(
            deps.store, deps.cache, settings.default_quotas, project, "network", net.id
        )
        plan.merge(slot)  # type: ignore[arg-type]
        net = net.evolve(quota_slot=slot.result)
        plan.ops += [Put(reservation, net.id.encode()), Put(net.key, net.to_bytes())]
        plan.result = net
        return plan

    net = commit(deps.store, deps.cache, build, "create_network")
    log.info(
        "event=network.create network_id=%s project_id=%s vni=%s",
        net.id,
        project,
        net.segmentation_id,
    )
    return repo.json_response({"network": render(net.model_dump(), {}, ctx)}, 201)


@router.get("/networks")
def list_networks(request: Request, ctx: CtxDep) -> Response:
    deps = repo.Deps(request)
    index = {
        keys.split(kv.key)[1]: json.loads(kv.value)
        for kv in deps.store.range(keys.prefix("network_subnets")).items
    }
    items = [
        render(d, index.get(d["id"], {}), ctx)
        for d in repo.raw_list(deps.store, Network)
        if policy.can_see(ctx, "networks", d)
    ]
    return repo.list_response(deps, "networks", items, views.ATTRS["networks"])


@router.get("/networks/{network_id}")
def show_network(network_id: str, request: Request, ctx: CtxDep) -> Response:
    deps = repo.Deps(request)
    net, _ = repo.fetch(deps.store, ctx, Network, network_id)
    subnets, _ = subnet_index(deps.store, net.id)
    return repo.show_response("network", render(net.model_dump(), subnets, ctx), request)


@router.put("/networks/{network_id}")
def update_network(
    network_id: str, body: NetworkUpdateBody, request: Request, ctx: CtxDep
) -> Response:
    deps = repo.Deps(request)
    changes = body.network.model_dump(exclude_none=True)
    for attr in ("router_external", "shared"):
        if attr in changes:
            policy.require_admin(ctx, f"update_network:{attr}")

    def build() -> Plan[Network]:
        net, kv = repo.fetch_owned(deps.store, ctx, Network, network_id, "update_network")
        new = repo.evolve(net, **changes)
        return Plan(new, [Compare.unchanged(kv)], [Put(new.key, new.to_bytes())])

    net = commit(deps.store, deps.cache, build, "update_network")
    log.info("event=network.update network_id=%s fields=%s", net.id, sorted(changes))
    subnets, _ = subnet_index(deps.store, net.id)
    return repo.json_response({"network": render(net.model_dump(), subnets, ctx)})


@router.delete("/networks/{network_id}", status_code=204)
def delete_network(network_id: str, request: Request, ctx: CtxDep) -> None:
    deps = repo.Deps(request)
    net, _ = repo.fetch_owned(deps.store, ctx, Network, network_id, "delete_network")
    with guard(deps.store, "networks", net.id):
        net, kv = repo.fetch_owned(deps.store, ctx, Network, network_id, "delete_network")
        if deps.store.range(keys.prefix("network_ports", net.id)).items:
            raise InUse(
                "Network",
                f"Unable to complete operation on network {net.id}. There are "
                "one or more ports still in use on the network.",
            )
        subnets, index_rev = subnet_index(deps.store, net.id)
        compares = [Compare.unchanged(kv), Compare(subnet_index_key(net.id), index_rev)]
        ops: list[Put | Delete] = [Delete(net.key), Delete(subnet_index_key(net.id))]
        released = []
        if net.network_type == "vxlan" and net.segmentation_id is not None:
            released.append(allocation.vni_key(net.segmentation_id))
        elif net.physical_network:
            released.append(flat_key(net.physical_network))
        for subnet_id in subnets:
            found = repo.load(deps.store, Subnet, subnet_id)
            if found is not None:
                ops.append(Delete(found[0].key))
                released += quota_logic.slot_keys(
                    found[0].project_id, "subnet", found[0].quota_slot
                )
        released += quota_logic.slot_keys(net.project_id, "network", net.quota_slot)
        ops += [Delete(k) for k in released]
        if not deps.store.txn(compares, ops).succeeded:
            raise Conflict(f"network {net.id} changed while being deleted; retry")
    allocation.release(deps.cache, released)
    log.info("event=network.delete network_id=%s", net.id)
