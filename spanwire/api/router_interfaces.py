"""`PUT /v2.0/routers/{id}/add_router_interface` and `remove_router_interface`.

An interface is a port (device_owner `network:router_interface`) holding the
subnet's gateway address; its IP reservation key makes a second router on the
same subnet gateway fail cleanly, even across replicas.
"""

from __future__ import annotations

import logging
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import Response
from pydantic import BaseModel, ConfigDict, Field

from spanwire.api import allocation, repo, router_logic
from spanwire.api.allocation import Plan, commit
from spanwire.api.context import CtxDep
from spanwire.api.errors import InUse, not_found
from spanwire.api.port_alloc import plan_port, release_ops, router_index_key
from spanwire.api.routers import fips_using
from spanwire.errors import Conflict, InvalidInput
from spanwire.model import Network, Port, Router, Subnet
from spanwire.model.router import DEVICE_OWNER_INTERFACE
from spanwire.store.base import Compare, Put

router = APIRouter(prefix="/v2.0", tags=["routers"])
log = logging.getLogger("spanwire.api.routers")


class InterfaceBody(BaseModel):
    model_config = ConfigDict(extra="forbid")
    subnet_id: str | None = Field(default=None, max_length=128)
    port_id: str | None = Field(default=None, max_length=128)


def _interface_view(r: Router, port: Port) -> dict[str, Any]:
    subnets = [f.subnet_id for f in port.fixed_ips]
    return {
        "id": r.id,
        "tenant_id": r.project_id,
        "project_id": r.project_id,
        "port_id": port.id,
        "network_id": port.network_id,
        "subnet_id": subnets[0] if subnets else None,
        "subnet_ids": subnets,
    }


@router.put("/routers/{router_id}/add_router_interface")
def add_interface(router_id: str, body: InterfaceBody, request: Request, ctx: CtxDep) -> Response:
    deps = repo.Deps(request)
    if (body.subnet_id is None) == (body.port_id is None):
        raise InvalidInput("Either subnet_id or port_id must be specified (not both)")

    def build() -> Plan[Port]:
        r, kv = repo.fetch_owned(deps.store, ctx, Router, router_id, "add_router_interface")
        attached = {f.subnet_id for p in router_logic.interfaces(deps, r.id) for f in p.fixed_ips}
        if body.subnet_id is not None:
            subnet, _ = repo.fetch(deps.store, ctx, Subnet, body.subnet_id)
            if subnet.gateway_ip is None:
                raise InvalidInput(
                    f"Bad router request: Subnet {subnet.id} does not have a gateway IP."
                )
            if subnet.id in attached:
                raise InvalidInput(f"Router already has a port on subnet {subnet.id}")
            net, net_kv = repo.fetch(deps.store, ctx, Network, subnet.network_id)
            fields = {
                "project_id": r.project_id,
                "device_owner": DEVICE_OWNER_INTERFACE,
                "device_id": r.id,
                "port_security_enabled": False,
            }
            plan = plan_port(
                deps,
                net,
                net_kv,
                fields,
                [{"subnet_id": subnet.id, "ip_address": subnet.gateway_ip}],
                allow_gateway=True,
            )
            plan.compares.append(Compare.unchanged(kv))
            return plan
        port, port_kv = repo.fetch_owned(
            deps.store, ctx, Port, str(body.port_id), "add_router_interface"
        )
        if port.device_id or port.device_owner:
            raise InUse("Port", f"Port {port.id} is in use by {port.device_owner or 'a device'}")
        if not port.fixed_ips:
            raise InvalidInput(f"Bad router request: Router port {port.id} must have an IP")
        if {f.subnet_id for f in port.fixed_ips} & attached:
            raise InvalidInput("Router already has a port on one of the port's subnets")
        new = repo.evolve(
            port,
            device_owner=DEVICE_OWNER_INTERFACE,
            device_id=r.id,
            security_groups=[],
            port_security_enabled=False,
        )
        return Plan(
            new,
            [Compare.unchanged(kv), Compare.unchanged(port_kv)],
            [Put(new.key, new.to_bytes()), Put(router_index_key(r.id, new.id), b"")],
        )

    port = commit(deps.store, deps.cache, build, "add_router_interface")
    r, _ = repo.fetch(deps.store, ctx, Router, router_id)
    log.info("event=router.add_interface router_id=%s port_id=%s", r.id, port.id)
    return repo.json_response(_interface_view(r, port))


@router.put("/routers/{router_id}/remove_router_interface")
def remove_interface(
    router_id: str, body: InterfaceBody, request: Request, ctx: CtxDep
) -> Response:
    deps = repo.Deps(request)
    if body.subnet_id is None and body.port_id is None:
        raise InvalidInput("Either subnet_id or port_id must be specified")
    r, _ = repo.fetch_owned(deps.store, ctx, Router, router_id, "remove_router_interface")
    match = None
    for port, kv in router_logic.router_ports(deps, r.id):
        subnets = {f.subnet_id for f in port.fixed_ips}
        if port.device_owner == DEVICE_OWNER_INTERFACE and (
            port.id == body.port_id or (body.port_id is None and body.subnet_id in subnets)
        ):
            match = (port, kv, subnets)
    if match is None:
        err = not_found("routers", r.id)
        err.neutron_type = "RouterInterfaceNotFound"
        err.args = (
            f"Router {r.id} does not have an interface with id {body.port_id or body.subnet_id}",
        )
        raise err
    port, kv, subnets = match
    for fip in fips_using(deps, r.id):
        owner = repo.load(deps.store, Port, fip.port_id or "")
        if owner is not None and {f.subnet_id for f in owner[0].fixed_ips} & subnets:
            raise InUse(
                "RouterInterface",
                f"Router interface for subnet {sorted(subnets)[0]} on "
                f"router {r.id} cannot be deleted, as it is required by one or more "
                "floating IPs.",
            )
    ops, freed = release_ops(port)
    if not deps.store.txn([Compare.unchanged(kv)], ops).succeeded:
        raise Conflict(f"port {port.id} changed while being removed; retry")
    allocation.release(deps.cache, freed)
    log.info("event=router.remove_interface router_id=%s port_id=%s", r.id, port.id)
    return repo.json_response(_interface_view(r, port))
