"""Projects cannot see or change each other's objects; readers cannot write; admin sees all."""

from __future__ import annotations

from conftest import account
from fastapi.testclient import TestClient


def test_projects_are_isolated_and_readers_read_only(client: TestClient) -> None:
    a, ha = account(client, "proj-a", "alice", "member")
    b, hb = account(client, "proj-b", "bob", "member")
    _, reader = account(client, "proj-a", "rita", "reader")
    net = client.post("/v2.0/networks", json={"network": {"name": "a-net"}}, headers=ha).json()
    net_id = net["network"]["id"]
    assert net["network"]["project_id"] == a.project_id
    assert "provider:segmentation_id" not in net["network"]  # admin-only attribute
    sub = client.post(
        "/v2.0/subnets",
        json={"subnet": {"network_id": net_id, "cidr": "10.0.0.0/24", "ip_version": 4}},
        headers=ha,
    ).json()
    port = client.post("/v2.0/ports", json={"port": {"network_id": net_id}}, headers=ha).json()
    port_id = port["port"]["id"]

    # B sees none of A's objects, and gets 404 (not 403) for each.
    for coll in ("networks", "subnets", "ports", "security-groups"):
        listing = client.get(f"/v2.0/{coll}", headers=hb).json()
        key = coll.replace("-", "_")
        assert all(i["project_id"] == b.project_id for i in listing[key]), coll
    assert client.get(f"/v2.0/networks/{net_id}", headers=hb).status_code == 404
    assert client.get(f"/v2.0/subnets/{sub['subnet']['id']}", headers=hb).status_code == 404
    assert client.get(f"/v2.0/ports/{port_id}", headers=hb).status_code == 404
    assert (
        client.put(
            f"/v2.0/networks/{net_id}", json={"network": {"name": "x"}}, headers=hb
        ).status_code
        == 404
    )
    assert client.delete(f"/v2.0/ports/{port_id}", headers=hb).status_code == 404
    assert (
        client.post("/v2.0/ports", json={"port": {"network_id": net_id}}, headers=hb).status_code
        == 404
    )
    # B may not create objects in A's project.
    r = client.post("/v2.0/networks", json={"network": {"project_id": a.project_id}}, headers=hb)
    assert r.status_code == 403

    # The reader sees A's objects but cannot write.
    assert client.get(f"/v2.0/networks/{net_id}", headers=reader).status_code == 200
    assert client.get("/v2.0/ports", headers=reader).json()["ports"][0]["id"] == port_id
    for method, path, body in (
        ("post", "/v2.0/networks", {"network": {"name": "r"}}),
        ("put", f"/v2.0/networks/{net_id}", {"network": {"name": "r"}}),
        ("post", "/v2.0/ports", {"port": {"network_id": net_id}}),
        ("delete", f"/v2.0/ports/{port_id}", None),
        ("post", "/v2.0/routers", {"router": {"name": "r"}}),
        ("post", "/v2.0/security-groups", {"security_group": {"name": "r"}}),
    ):
        r = client.request(method, path, json=body, headers=reader)
        assert r.status_code == 403, (method, path, r.text)

    # A shared network is visible to B, who may put a port on it but not change it.
    client.put(f"/v2.0/networks/{net_id}", json={"network": {"shared": True}})
    assert client.get(f"/v2.0/networks/{net_id}", headers=hb).status_code == 200
    assert (
        client.put(
            f"/v2.0/networks/{net_id}", json={"network": {"name": "x"}}, headers=hb
        ).status_code
        == 403
    )
    assert (
        client.post("/v2.0/ports", json={"port": {"network_id": net_id}}, headers=hb).status_code
        == 201
    )

    # Admin sees everything.
    projects = {n["project_id"] for n in client.get("/v2.0/ports").json()["ports"]}
    assert {a.project_id, b.project_id} <= projects
