"""Neutron's error behaviour, in-process (fast): status codes, error types, messages."""

from __future__ import annotations

from typing import Any

from conftest import account
from fastapi.testclient import TestClient


def _net(c: TestClient, **extra: Any) -> str:
    r = c.post("/v2.0/networks", json={"network": {"name": "n", **extra}})
    assert r.status_code == 201, r.text
    return str(r.json()["network"]["id"])


def _subnet(c: TestClient, net: str, cidr: str, **extra: Any) -> dict[str, Any]:
    r = c.post(
        "/v2.0/subnets",
        json={"subnet": {"network_id": net, "cidr": cidr, "ip_version": 4, **extra}},
    )
    assert r.status_code == 201, r.text
    return dict(r.json()["subnet"])


def _err(r: Any, status: int, kind: str | None = None) -> None:
    assert r.status_code == status, r.text
    body = r.json()["NeutronError"]
    assert body["message"] and body["detail"] == ""
    if kind is not None:
        assert body["type"] == kind, body


def test_invalid_and_overlapping_cidrs_are_400(client: TestClient) -> None:
    net = _net(client)
    for bad in ("10.0.0.0/33", "not-a-cidr", "10.0.0.1/24", "10.0.0.0/31"):
        r = client.post(
            "/v2.0/subnets", json={"subnet": {"network_id": net, "cidr": bad, "ip_version": 4}}
        )
        _err(r, 400)
    sub = _subnet(client, net, "10.0.0.0/24")
    assert sub["gateway_ip"] == "10.0.0.1"
    assert sub["allocation_pools"] == [{"start": "10.0.0.2", "end": "10.0.0.254"}]
    _err(
        client.post(
            "/v2.0/subnets",
            json={"subnet": {"network_id": net, "cidr": "10.0.0.128/25", "ip_version": 4}},
        ),
        400,
    )
    # The same CIDR on another network is fine (tenants' address spaces overlap freely).
    _subnet(client, _net(client), "10.0.0.0/24")


def test_unknown_attribute_and_bad_filters_are_400(client: TestClient) -> None:
    _err(client.post("/v2.0/networks", json={"network": {"name": "x", "colour": "red"}}), 400)
    _err(client.post("/v2.0/networks", json={"nope": {}}), 400)
    _err(client.post("/v2.0/networks", content=b"{not json"), 400)
    _err(client.get("/v2.0/networks", params={"colour": "red"}), 400)
    _err(client.get("/v2.0/networks", params={"limit": "many"}), 400)
    _err(client.get("/v2.0/networks", params={"sort_key": "id", "sort_dir": "up"}), 400)


def test_fixed_ip_errors(client: TestClient) -> None:
    net = _net(client)
    sub = _subnet(client, net, "10.1.0.0/29")  # pool .2-.6: five addresses
    _err(
        client.post(
            "/v2.0/ports",
            json={
                "port": {
                    "network_id": net,
                    "fixed_ips": [{"subnet_id": sub["id"], "ip_address": "10.9.9.9"}],
                }
            },
        ),
        400,
    )
    r = client.post(
        "/v2.0/ports", json={"port": {"network_id": net, "fixed_ips": [{"ip_address": "10.1.0.3"}]}}
    )
    assert r.status_code == 201
    _err(
        client.post(
            "/v2.0/ports",
            json={"port": {"network_id": net, "fixed_ips": [{"ip_address": "10.1.0.3"}]}},
        ),
        409,
        "IpAddressAlreadyAllocated",
    )
    for _ in range(4):
        assert client.post("/v2.0/ports", json={"port": {"network_id": net}}).status_code == 201
    _err(
        client.post("/v2.0/ports", json={"port": {"network_id": net}}),
        409,
        "IpAddressGenerationFailure",
    )
    _err(client.delete(f"/v2.0/networks/{net}"), 409, "NetworkInUse")
    _err(client.delete(f"/v2.0/subnets/{sub['id']}"), 409, "SubnetInUse")


def test_auth_errors(client: TestClient) -> None:
    _err(client.get("/v2.0/networks", headers={"X-Auth-Token": "bogus"}), 401)
    _err(client.get("/v2.0/networks", headers={"X-Auth-Token": ""}), 401)
    bad = {
        "auth": {
            "identity": {
                "methods": ["password"],
                "password": {
                    "user": {"name": "admin", "domain": {"name": "Default"}, "password": "wrong"}
                },
            }
        }
    }
    assert client.post("/identity/v3/auth/tokens", json=bad).status_code == 401
    _, reader = account(client, "p1", "reader1", "reader")
    _err(client.post("/v2.0/networks", json={"network": {"name": "x"}}, headers=reader), 403)
    _, member = account(client, "p1", "member1", "member")
    _err(
        client.post(
            "/v2.0/networks",
            json={"network": {"name": "x", "provider:segmentation_id": 7}},
            headers=member,
        ),
        403,
    )
    _err(client.get("/v2.0/networks/00000000-0000-0000-0000-000000000000"), 404, "NetworkNotFound")
    _err(client.get("/v2.0/networks/..%2F..%2Fetc"), 404)


def test_token_revocation_and_validation(client: TestClient) -> None:
    admin_token = client.headers["X-Auth-Token"]
    r = client.get("/identity/v3/auth/tokens", headers={"X-Subject-Token": admin_token})
    assert r.status_code == 200
    assert r.json()["token"]["project"]["name"] == "admin"
    _, member = account(client, "p2", "m2", "member")
    tok = member["X-Auth-Token"]
    assert (
        client.delete("/identity/v3/auth/tokens", headers={"X-Subject-Token": tok}).status_code
        == 204
    )
    _err(client.get("/v2.0/networks", headers=member), 401)


def test_vni_and_segment_conflicts(client: TestClient) -> None:
    net = client.post(
        "/v2.0/networks",
        json={"network": {"provider:network_type": "vxlan", "provider:segmentation_id": 4242}},
    )
    assert net.status_code == 201
    assert net.json()["network"]["provider:segmentation_id"] == 4242
    _err(client.post("/v2.0/networks", json={"network": {"provider:segmentation_id": 4242}}), 409)
    _err(client.post("/v2.0/networks", json={"network": {"provider:network_type": "flat"}}), 400)
    _err(client.post("/v2.0/networks", json={"network": {"provider:segmentation_id": 0}}), 400)
    _err(
        client.post("/v2.0/networks", json={"network": {"provider:segmentation_id": 16_777_216}}),
        400,
    )
