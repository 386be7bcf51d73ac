"""Per-node SNAT addresses: gateway ports claimed by node agents, released with the gateway."""

from __future__ import annotations

import ipaddress
import threading
from concurrent.futures import ThreadPoolExecutor

import pytest
from fastapi.testclient import TestClient

from spanwire.api import node_gateways
from spanwire.api.errors import IpAddressGenerationFailure
from spanwire.errors import InvalidInput
from spanwire.store import keys
from spanwire.store.base import Store

EXT_CIDR = "203.0.113.0/24"


def _make(c: TestClient, coll: str, key: str, **body: object) -> dict:
    r = c.post(f"/v2.0/{coll}", json={key: body})
    assert r.status_code == 201, r.text
    return dict(r.json()[key])


def _store(c: TestClient) -> Store:
    return c.app.state.store  # type: ignore[attr-defined,no-any-return]


def _external(c: TestClient, cidr: str = EXT_CIDR, **subnet: object) -> tuple[dict, dict]:
    ext = _make(c, "networks", "network", **{"router:external": True})
    sub = _make(c, "subnets", "subnet", network_id=ext["id"], cidr=cidr, **subnet)
    return ext, sub


def _router(c: TestClient, ext: dict) -> dict:
    return _make(c, "routers", "router", external_gateway_info={"network_id": ext["id"]})


def _reservations(store: Store, *prefix: str) -> list[str]:
    return [kv.key for kv in store.range(keys.prefix(*prefix)).items]


def _gateway_ports(c: TestClient) -> list[dict]:
    r = c.get("/v2.0/ports", params={"device_owner": "network:router_gateway"})
    assert r.status_code == 200, r.text
    return list(r.json()["ports"])


def test_claim_allocates_a_port_on_the_external_subnet(client: TestClient) -> None:
    ext, sub = _external(client)
    router = _router(client, ext)
    port = node_gateways.claim(_store(client), router["id"], "node-a")
    assert port is not None
    assert port.device_owner == "network:router_gateway"
    assert port.device_id == router["id"]
    assert port.binding_host_id == "node-a"
    assert port.project_id == ""
    assert port.port_security_enabled is False
    assert port.security_groups == []
    assert port.network_id == ext["id"]
    assert port.name == "router-gateway:node-a"
    [fixed] = port.fixed_ips
    assert fixed.subnet_id == sub["id"]
    assert ipaddress.IPv4Address(fixed.ip_address) in ipaddress.IPv4Network(EXT_CIDR)
    central = router["external_gateway_info"]["external_fixed_ips"][0]["ip_address"]
    assert fixed.ip_address != central
    # The router still shows its central gateway address only.
    shown = client.get(f"/v2.0/routers/{router['id']}").json()["router"]
    assert shown["external_gateway_info"] == router["external_gateway_info"]
    assert node_gateways.node_gateways(_store(client), router["id"]) == [port]


def test_claim_is_idempotent_and_per_node(client: TestClient) -> None:
    ext, _ = _external(client)
    router = _router(client, ext)
    store = _store(client)
    a = node_gateways.claim(store, router["id"], "node-a")
    assert a is not None
    assert node_gateways.claim(store, router["id"], "node-a") == a
    b = node_gateways.claim(store, router["id"], "node-b")
    assert b is not None and b.id != a.id
    assert b.ips != a.ips and b.mac_address != a.mac_address
    assert [p.binding_host_id for p in node_gateways.node_gateways(store, router["id"])] == [
        "node-a",
        "node-b",
    ]


def test_racing_claims_make_one_port(client: TestClient) -> None:
    ext, sub = _external(client)
    router = _router(client, ext)
    store = _store(client)
    start = threading.Barrier(8)

    def racer(_: int) -> str:
        start.wait()
        port = node_gateways.claim(store, router["id"], "node-a")
        assert port is not None
        return port.id

    with ThreadPoolExecutor(8) as pool:
        ids = set(pool.map(racer, range(8)))
    assert len(ids) == 1
    assert [p.id for p in node_gateways.node_gateways(store, router["id"])] == list(ids)
    assert len([p for p in _gateway_ports(client) if p["binding:host_id"] == "node-a"]) == 1
    # Central gateway + one node: no IP reserved by a loser is left behind.
    assert len(_reservations(store, "ipam", sub["id"])) == 2


def test_claim_without_a_gateway_is_none(client: TestClient) -> None:
    store = _store(client)
    router = _make(client, "routers", "router", name="no-gateway")
    assert node_gateways.claim(store, router["id"], "node-a") is None
    assert node_gateways.claim(store, "no-such-router", "node-a") is None
    assert node_gateways.node_gateways(store, router["id"]) == []
    with pytest.raises(InvalidInput):
        node_gateways.claim(store, router["id"], "bad node id")


def test_release_frees_the_address(client: TestClient) -> None:
    # Room for exactly two addresses: the central gateway and one node.
    pool = [{"start": "198.51.100.2", "end": "198.51.100.3"}]
    ext, sub = _external(client, "198.51.100.0/29", allocation_pools=pool)
    router = _router(client, ext)
    store = _store(client)
    a = node_gateways.claim(store, router["id"], "node-a")
    assert a is not None
    with pytest.raises(IpAddressGenerationFailure):
        node_gateways.claim(store, router["id"], "node-b")
    assert node_gateways.release(store, router["id"], "node-a") is True
    assert node_gateways.release(store, router["id"], "node-a") is False
    assert client.get(f"/v2.0/ports/{a.id}").status_code == 404
    assert _reservations(store, "router_node_gateways", router["id"]) == []
    b = node_gateways.claim(store, router["id"], "node-b")
    assert b is not None and b.ips == a.ips
    assert len(_reservations(store, "ipam", sub["id"])) == 2


def _claim_two(client: TestClient) -> tuple[dict, dict, list[str]]:
    ext, sub = _external(client)
    router = _router(client, ext)
    store = _store(client)
    ports = [node_gateways.claim(store, router["id"], n) for n in ("node-a", "node-b")]
    macs = [keys.key("macs", p.mac_address) for p in ports if p is not None]
    assert len(macs) == 2
    return router, sub, macs


def _assert_no_node_gateways(client: TestClient, router_id: str, macs: list[str]) -> None:
    store = _store(client)
    assert node_gateways.node_gateways(store, router_id) == []
    assert [p for p in _gateway_ports(client) if p["binding:host_id"]] == []
    assert _reservations(store, "router_node_gateways", router_id) == []
    assert store.get(node_gateways.epoch_key(router_id)) is None
    assert all(store.get(m) is None for m in macs)


def test_clearing_the_gateway_releases_node_gateways(client: TestClient) -> None:
    router, sub, macs = _claim_two(client)
    r = client.put(f"/v2.0/routers/{router['id']}", json={"router": {"external_gateway_info": {}}})
    assert r.status_code == 200, r.text
    assert r.json()["router"]["external_gateway_info"] is None
    _assert_no_node_gateways(client, router["id"], macs)
    assert _reservations(_store(client), "ipam", sub["id"]) == []
    assert node_gateways.claim(_store(client), router["id"], "node-a") is None


def test_changing_the_gateway_network_releases_node_gateways(client: TestClient) -> None:
    router, sub, macs = _claim_two(client)
    store = _store(client)
    # Toggling SNAT keeps the nodes' addresses.
    r = client.put(
        f"/v2.0/routers/{router['id']}",
        json={
            "router": {
                "external_gateway_info": {"network_id": sub["network_id"], "enable_snat": False}
            }
        },
    )
    assert r.status_code == 200, r.text
    assert len(node_gateways.node_gateways(store, router["id"])) == 2
    other, other_sub = _external(client, "192.0.2.0/24")
    r = client.put(
        f"/v2.0/routers/{router['id']}",
        json={"router": {"external_gateway_info": {"network_id": other["id"]}}},
    )
    assert r.status_code == 200, r.text
    _assert_no_node_gateways(client, router["id"], macs)
    assert _reservations(store, "ipam", sub["id"]) == []
    again = node_gateways.claim(store, router["id"], "node-a")
    assert again is not None and again.fixed_ips[0].subnet_id == other_sub["id"]


def test_deleting_the_router_releases_node_gateways(client: TestClient) -> None:
    router, sub, macs = _claim_two(client)
    assert client.delete(f"/v2.0/routers/{router['id']}").status_code == 204
    _assert_no_node_gateways(client, router["id"], macs)
    store = _store(client)
    assert _reservations(store, "ipam", sub["id"]) == []
    assert _reservations(store, "router_ports", router["id"]) == []
    assert client.delete(f"/v2.0/networks/{sub['network_id']}").status_code == 204


def test_a_claim_during_a_release_makes_the_release_retry(client: TestClient) -> None:
    ext, _ = _external(client)
    router = _router(client, ext)
    store = _store(client)
    assert node_gateways.claim(store, router["id"], "node-a") is not None
    stale = node_gateways.plan_release_all(store, router["id"])
    assert node_gateways.claim(store, router["id"], "node-b") is not None
    # Committing the stale plan would leak node-b's port: its txn must fail.
    assert not store.txn(stale.compares, stale.ops).succeeded
    fresh = node_gateways.plan_release_all(store, router["id"])
    assert store.txn(fresh.compares, fresh.ops).succeeded
    assert node_gateways.node_gateways(store, router["id"]) == []


def test_ports_api_lists_them_and_refuses_direct_changes(client: TestClient) -> None:
    ext, _ = _external(client)
    router = _router(client, ext)
    port = node_gateways.claim(_store(client), router["id"], "node-a")
    assert port is not None
    listed = {p["id"]: p for p in _gateway_ports(client)}
    assert listed[port.id]["binding:host_id"] == "node-a"
    assert listed[port.id]["device_id"] == router["id"]
    assert listed[port.id]["fixed_ips"] == [f.model_dump() for f in port.fixed_ips]
    hosts = sorted(p["binding:host_id"] for p in listed.values() if p["device_id"] == router["id"])
    assert hosts == ["", "node-a"]  # the central gateway is unbound
    r = client.delete(f"/v2.0/ports/{port.id}")
    assert r.status_code == 409
    assert r.json()["NeutronError"]["message"] == (
        f"Port {port.id} cannot be deleted directly via the port API: "
        "has device owner network:router_gateway."
    )
    r = client.put(f"/v2.0/ports/{port.id}", json={"port": {"binding:host_id": "node-b"}})
    assert r.status_code == 409
    r = client.put(f"/v2.0/ports/{port.id}", json={"port": {"name": "renamed"}})
    assert r.status_code == 200, r.text
    again = node_gateways.claim(_store(client), router["id"], "node-a")
    assert again is not None and again.id == port.id and again.name == "renamed"
