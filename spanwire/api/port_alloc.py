"""Planning a port: its addresses, MAC, quota slot and indexes, as one transaction.

Shared by the ports API, router interfaces and gateways, and floating IPs,
so every way a port comes to exist reserves its IP and MAC the same way.
"""

from __future__ import annotations

import ipaddress
import json
from dataclasses import dataclass
from typing import Any

from spanwire.api import allocation, ipam, quota_logic, repo
from spanwire.api.allocation import Plan, lock_key
from spanwire.api.errors import IpAddressAlreadyAllocated, IpAddressGenerationFailure
from spanwire.api.networks import subnet_index_key
from spanwire.errors import InvalidInput
from spanwire.model import FixedIP, Network, Port, Subnet
from spanwire.model.router import DEVICE_OWNER_GATEWAY, DEVICE_OWNER_INTERFACE
from spanwire.store import keys
from spanwire.store.base import Compare, Delete, KeyValue, Op, Put

ROUTER_OWNERS = (DEVICE_OWNER_INTERFACE, DEVICE_OWNER_GATEWAY)


@dataclass
class Subnets:
    """A network's subnets as read for one plan (the kvs are compared on commit)."""

    items: dict[str, tuple[Subnet, KeyValue]]
    index_compare: Compare

    @classmethod
    def of(cls, deps: repo.Deps, network_id: str) -> Subnets:
        """Read through the replica's kv cache: the index and each used subnet are compared."""
        key = subnet_index_key(network_id)
        kv = deps.kv.get(key, negative=True)
        index = json.loads(kv.value) if kv is not None else {}
        items = {}
        for subnet_id in index:
            found = repo.load(deps.store, Subnet, subnet_id, deps.kv)
            if found is not None:
                items[subnet_id] = found
        return cls(items, Compare(key, kv.mod_revision if kv is not None else 0))

    def containing(self, address: str) -> Subnet | None:
        ip = ipaddress.IPv4Address(address)
        return next((s for s, _ in self.items.values() if ip in s.network), None)


def port_index_key(network_id: str, port_id: str) -> str:
    return keys.key("network_ports", network_id, port_id)


def router_index_key(router_id: str, port_id: str) -> str:
    return keys.key("router_ports", router_id, port_id)


def _pools(subnet: Subnet) -> list[ipam.Range]:
    return [
        (int(ipaddress.IPv4Address(p.start)), int(ipaddress.IPv4Address(p.end)))
        for p in subnet.allocation_pools
    ]


def _reserve(
    plan: Plan[Any], subnets: Subnets, subnet: Subnet, address: str, port_id: str
) -> FixedIP:
    _, kv = subnets.items[subnet.id]
    key = allocation.ip_key(subnet.id, address)
    plan.compares += [
        Compare.unchanged(kv),
        Compare.absent(lock_key("subnets", subnet.id)),
        Compare.absent(key),
    ]
    plan.ops.append(Put(key, port_id.encode()))
    return FixedIP(subnet_id=subnet.id, ip_address=address)


def _auto(
    deps: repo.Deps, plan: Plan[Any], subnets: Subnets, subnet: Subnet, port_id: str
) -> FixedIP:
    address = allocation.claim_ip(deps.cache, subnet.id, _pools(subnet))
    if address is None:
        raise IpAddressGenerationFailure(
            f"No more IP addresses available on network {subnet.network_id}."
        )
    return _reserve(plan, subnets, subnet, address, port_id)


def plan_ips(
    deps: repo.Deps,
    plan: Plan[Any],
    subnets: Subnets,
    spec: list[dict[str, Any]] | None,
    port_id: str,
    keep: list[FixedIP] = (),
    allow_gateway: bool = False,
) -> list[FixedIP]:
    """Fixed IPs for `spec` (None: one automatic address); reservations go into `plan`.

    `keep` are addresses the port already holds (updates): listing one keeps it.
    """
    if spec is None:
        if not subnets.items:
            return []
        errors: list[IpAddressGenerationFailure] = []
        for subnet, _ in subnets.items.values():
            try:
                return [_auto(deps, plan, subnets, subnet, port_id)]
            except IpAddressGenerationFailure as exc:
                errors.append(exc)
        raise errors[0]
    out: list[FixedIP] = []
    for entry in spec:
        subnet_id, address = entry.get("subnet_id"), entry.get("ip_address")
        if address is not None:
            address = str(ipam.parse_ip(address))
            owner = subnets.containing(address)
            if owner is None or (subnet_id is not None and owner.id != subnet_id):
                where = f"subnet {subnet_id}" if subnet_id else f"network {deps_network(subnets)}"
                raise InvalidInput(
                    f"IP address {address} is not a valid IP for the specified "
                    f"subnet: it does not belong to {where}."
                )
            subnet_id = owner.id
        if subnet_id is None or subnet_id not in subnets.items:
            raise InvalidInput(
                f"Invalid input for operation: fixed_ips included subnet "
                f"{subnet_id}, which is not a subnet of the port's network."
            )
        subnet = subnets.items[subnet_id][0]
        if address is None:
            out.append(_auto(deps, plan, subnets, subnet, port_id))
            continue
        if FixedIP(subnet_id=subnet_id, ip_address=address) in keep:
            out.append(FixedIP(subnet_id=subnet_id, ip_address=address))
            continue
        if not ipam.in_subnet(subnet.network, address):
            raise InvalidInput(f"IP address {address} is not a valid IP for subnet {subnet_id}.")
        if address == subnet.gateway_ip and not allow_gateway:
            raise IpAddressAlreadyAllocated(
                f"IP address {address} is the gateway of subnet "
                f"{subnet_id} and is reserved for a router."
            )
        if deps.store.get(allocation.ip_key(subnet_id, address)) is not None:
            raise IpAddressAlreadyAllocated(
                f"Unable to complete operation for network "
                f"{subnet.network_id}. The IP address {address} is "
                "in use."
            )
        out.append(_reserve(plan, subnets, subnet, address, port_id))
    if len({f.ip_address for f in out}) != len(out):
        raise InvalidInput("Duplicate IP address in fixed_ips")
    return out


def deps_network(subnets: Subnets) -> str:
    return next((s.network_id for s, _ in subnets.items.values()), "?")


def plan_port(
    deps: repo.Deps,
    net: Network,
    net_kv: KeyValue,
    fields: dict[str, Any],
    spec: list[dict[str, Any]] | None,
    quota: bool = True,
    allow_gateway: bool = False,
) -> Plan[Port]:
    """Everything a new port needs, in one plan; `fields` are the Port's own attributes."""
    port_id = str(fields.get("id") or repo.make_id())
    plan: Plan[Port] = Plan(
        result=None,  # type: ignore[arg-type]
        compares=[Compare.unchanged(net_kv), Compare.absent(lock_key("networks", net.id))],
    )
    subnets = Subnets.of(deps, net.id)
    plan.compares.append(subnets.index_compare)
    fixed = plan_ips(deps, plan, subnets, spec, port_id, allow_gateway=allow_gateway)
    mac = fields.get("mac_address") or allocation.random_mac(deps.settings.mac_prefix)
    slot: int | None = None
    project = str(fields.get("project_id", ""))
    if quota and project:
        claim = quota_logic.claim(
            deps.store, deps.cache, deps.settings.default_quotas, project, "port", port_id, deps.kv
        )
        plan.merge(claim)  # type: ignore[arg-type]
        slot = claim.result
    port = repo.make(
        Port,
        **{
            **fields,
            "id": port_id,
            "network_id": net.id,
            "mac_address": mac,
            "fixed_ips": [f.model_dump() for f in fixed],
            "quota_slot": slot,
        },
    )
    plan.compares.append(Compare.absent(allocation.mac_key(port.mac_address)))
    plan.ops.append(Put(allocation.mac_key(port.mac_address), port.id.encode()))
    plan.ops += [Put(port.key, port.to_bytes()), Put(port_index_key(net.id, port.id), b"")]
    if port.device_owner in ROUTER_OWNERS and repo.safe_id(port.device_id):
        plan.ops.append(Put(router_index_key(port.device_id, port.id), b""))
    plan.result = port
    return plan


def release_ops(port: Port) -> tuple[list[Op], list[str]]:
    """Ops deleting a port and everything it reserved; plus the freed reservation keys."""
    reservations = [allocation.ip_key(f.subnet_id, f.ip_address) for f in port.fixed_ips]
    reservations.append(allocation.mac_key(port.mac_address))
    reservations += quota_logic.slot_keys(port.project_id, "port", port.quota_slot)
    ops: list[Op] = [
        Delete(port.key),
        Delete(port_index_key(port.network_id, port.id)),
        *[Delete(k) for k in reservations],
    ]
    if port.device_owner in ROUTER_OWNERS and repo.safe_id(port.device_id):
        ops.append(Delete(router_index_key(port.device_id, port.id)))
    return ops, reservations
