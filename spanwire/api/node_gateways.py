"""Per-node SNAT addresses: one gateway port per (router, node), claimed by the node.

Every node that realizes a router does that router's default SNAT itself, with
its own address on the external network (DESIGN, "Data plane"). The api does
not know which nodes realize a router; the agents do, so they claim and
release these ports through this module, on the store, without a request.

A node gateway port is an ordinary port (device_owner `network:router_gateway`,
device_id the router, binding:host_id the node), planned by `plan_port` like
every port, so its IP and MAC are reserved by the usual keys and it is listed
under `router_ports/<router>/`. The router's central gateway port (the one in
`external_gateway_info`) has no binding:host_id. Two keys of its own:

- `router_node_gateways/<router>/<node>` holds the port id. It is created with
  Compare.absent in the port's transaction, so racing claims for one
  (router, node) make one port; the losers re-read and return the winner's.
- `router_node_gateway_epochs/<router>` is put by every claim and compared by
  `plan_release_all`, so a claim committing between the listing of a router's
  node gateways and their release (gateway cleared or changed, router
  deleted) fails that release's transaction (it is rebuilt) instead of
  leaking a port. Claims only put it, never compare it: nodes claiming for
  one router do not contend with each other.
"""

from __future__ import annotations

import logging

from spanwire.api import repo, router_logic
from spanwire.api.allocation import MAX_ATTEMPTS, Plan, commit
from spanwire.api.errors import IpAddressGenerationFailure, Retry
from spanwire.api.port_alloc import plan_port, release_ops
from spanwire.api.settings import ApiSettings
from spanwire.model import Network, Port, Router
from spanwire.model.router import DEVICE_OWNER_GATEWAY
from spanwire.store import keys
from spanwire.store.base import Compare, Delete, KeyValue, Op, Put, Store

log = logging.getLogger("spanwire.api.node_gateways")


def reservation_key(router_id: str, node_id: str) -> str:
    return keys.key("router_node_gateways", router_id, node_id)


def epoch_key(router_id: str) -> str:
    return keys.key("router_node_gateway_epochs", router_id)


class _Settled(Exception):
    """Raised inside a plan build when the answer needs no write (not an error)."""

    def __init__(self, port: Port | None) -> None:
        super().__init__("settled")
        self.port = port


def _held(
    store: Store, router_id: str, node_id: str
) -> tuple[KeyValue | None, tuple[Port, KeyValue] | None]:
    """The reservation kv of (router, node) and the port it names, if any."""
    held = store.get(reservation_key(router_id, node_id))
    if held is None:
        return None, None
    return held, repo.load(store, Port, held.value.decode())


def _plan(deps: repo.Deps, router: Router, node_id: str) -> Plan[Port]:
    """A new gateway port for `node_id`, preferring the central gateway's subnet."""
    gw = router.external_gateway_info
    assert gw is not None
    found = repo.load(deps.store, Network, gw.network_id, deps.kv)
    if found is None:
        raise _Settled(None)  # the gateway is going away with its network
    net, net_kv = found
    fields = {
        "name": f"router-gateway:{node_id}",
        "project_id": "",
        "device_owner": DEVICE_OWNER_GATEWAY,
        "device_id": router.id,
        "binding_host_id": node_id,
        "port_security_enabled": False,
    }
    preferred = [{"subnet_id": f.subnet_id} for f in gw.external_fixed_ips[:1]]
    try:
        plan = plan_port(deps, net, net_kv, fields, preferred or None, quota=False)
    except IpAddressGenerationFailure:
        if not preferred:
            raise
        plan = plan_port(deps, net, net_kv, fields, None, quota=False)
    if not plan.result.fixed_ips:
        raise IpAddressGenerationFailure(
            f"external network {net.id} has no subnet to give router {router.id} "
            f"an address on node {node_id}"
        )
    return plan


def claim(
    store: Store, router_id: str, node_id: str, settings: ApiSettings | None = None
) -> Port | None:
    """The gateway port of `router_id` on `node_id`, allocated on first call.

    Idempotent and safe to race (two agents, an agent and its retry): one
    port per (router, node) ever exists. None if the router does not exist or
    has no external gateway. Raises IpAddressGenerationFailure (409) when the
    external network has no free address, InvalidInput for a malformed node id.
    `settings` must match the api replicas' (only `mac_prefix` is used).
    """
    node = repo.check_id(node_id, "node_id")
    if not repo.safe_id(router_id):
        return None
    _, existing = _held(store, router_id, node)
    if existing is not None:
        # The usual call, on every reconcile: reads only. The reservation
        # cannot outlive the gateway: both go in one transaction.
        return existing[0]
    deps = repo.Deps.from_store(store, settings)
    key = reservation_key(router_id, node)

    def build() -> Plan[Port]:
        found = repo.load(store, Router, router_id)
        if found is None or found[0].external_gateway_info is None:
            raise _Settled(None)
        router, router_kv = found
        held, existing = _held(store, router.id, node)
        if existing is not None:
            raise _Settled(existing[0])
        plan = _plan(deps, router, node)
        # A reservation naming a port that is gone is replaced, not obeyed.
        plan.compares += [
            Compare.unchanged(router_kv),
            Compare.unchanged(held) if held is not None else Compare.absent(key),
        ]
        plan.ops += [Put(key, plan.result.id.encode()), Put(epoch_key(router.id), node.encode())]
        return plan

    try:
        port = commit(store, deps.cache, build, "claim_node_gateway", deps.kv)
    except _Settled as settled:
        return settled.port
    log.info(
        "event=router.node_gateway.claim router_id=%s node=%s port_id=%s ip=%s",
        router_id,
        node,
        port.id,
        ",".join(port.ips),
    )
    return port


def release(store: Store, router_id: str, node_id: str) -> bool:
    """Delete the gateway port of `router_id` on `node_id` and its reservations.

    One transaction; False if there was none (also when another release won).
    """
    if not (repo.safe_id(router_id) and repo.safe_id(node_id)):
        return False
    key = reservation_key(router_id, node_id)
    for _ in range(MAX_ATTEMPTS):
        held, found = _held(store, router_id, node_id)
        if held is None:
            return False
        compares = [Compare.unchanged(held)]
        ops: list[Op] = [Delete(key)]
        port_id = held.value.decode()
        if found is not None and found[0].device_id == router_id:
            port_ops, _ = release_ops(found[0])
            compares.append(Compare.unchanged(found[1]))
            ops += port_ops
        if store.txn(compares, ops).succeeded:
            log.info(
                "event=router.node_gateway.release router_id=%s node=%s port_id=%s",
                router_id,
                node_id,
                port_id,
            )
            return True
    raise Retry(f"release of router {router_id}'s gateway on {node_id}: too much contention")


def node_gateways(store: Store, router_id: str) -> list[Port]:
    """The per-node gateway ports of a router (binding:host_id set), by node."""
    if not repo.safe_id(router_id):
        return []
    ports = router_logic.ports_of(store, router_id)
    return sorted(
        (p for p, _ in ports if router_logic.is_node_gateway(p)), key=lambda p: p.binding_host_id
    )


def plan_release_all(store: Store, router_id: str) -> Plan[list[str]]:
    """Compares and ops releasing every node gateway of a router, for the caller's txn.

    The result is the freed reservation keys (for `allocation.release` after
    commit). The epoch is read before the listing, so a claim that commits
    after the listing makes the caller's transaction fail and be rebuilt.
    """
    epoch = store.get(epoch_key(router_id))
    plan: Plan[list[str]] = Plan(
        [],
        [Compare.unchanged(epoch) if epoch is not None else Compare.absent(epoch_key(router_id))],
        [Delete(epoch_key(router_id))],
    )
    for port, kv in router_logic.ports_of(store, router_id):
        if router_logic.is_node_gateway(port):
            ops, freed = release_ops(port)
            plan.compares.append(Compare.unchanged(kv))
            plan.ops += ops
            plan.result += freed
    plan.ops += [
        Delete(kv.key) for kv in store.range(keys.prefix("router_node_gateways", router_id)).items
    ]
    return plan
