"""Neutron semantics in-process: status, paging, routers, floating IPs, groups, tokens."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

from api_helpers import ADMIN_PASSWORD, auth_body
from fastapi.testclient import TestClient

from spanwire.api.app import create_app
from spanwire.api.settings import ApiSettings
from spanwire.model import PortStatus
from spanwire.store import connect


def _make(c: TestClient, coll: str, key: str, **body: object) -> dict:
    r = c.post(f"/v2.0/{coll}", json={key: body})
    assert r.status_code == 201, r.text
    return dict(r.json()[key])


def test_port_status_comes_from_the_agent(client: TestClient) -> None:
    net = _make(client, "networks", "network")
    _make(client, "subnets", "subnet", network_id=net["id"], cidr="10.0.0.0/24")
    port = _make(client, "ports", "port", network_id=net["id"])
    assert port["status"] == "DOWN"
    store = client.app.state.store  # type: ignore[attr-defined]
    store.put(
        PortStatus.key_of(port["id"]),
        PortStatus(id=port["id"], node="n1", status="ACTIVE").to_bytes(),
    )
    assert client.get(f"/v2.0/ports/{port['id']}").json()["port"]["status"] == "ACTIVE"
    assert (
        client.get("/v2.0/ports", params={"status": "ACTIVE"}).json()["ports"][0]["id"]
        == port["id"]
    )


def test_paging_sorting_fields_and_revisions(client: TestClient) -> None:
    for i in range(5):
        _make(client, "networks", "network", name=f"net{i}", mtu=1400 + i)
    r = client.get("/v2.0/networks", params={"limit": 2, "sort_key": "mtu", "sort_dir": "desc"})
    body = r.json()
    assert [n["mtu"] for n in body["networks"]] == [1404, 1403]
    nxt = next(link for link in body["networks_links"] if link["rel"] == "next")["href"]
    page2 = client.get(nxt.replace("http://testserver", "")).json()
    assert [n["mtu"] for n in page2["networks"]] == [1402, 1401]
    only = client.get("/v2.0/networks", params={"fields": "name", "name": "net3"}).json()
    assert only == {"networks": [{"name": "net3"}]}
    net = client.get("/v2.0/networks", params={"name": "net0"}).json()["networks"][0]
    upd = client.put(f"/v2.0/networks/{net['id']}", json={"network": {"name": "renamed"}})
    assert upd.json()["network"]["revision_number"] == net["revision_number"] + 1


def test_router_interfaces_and_floating_ips(client: TestClient) -> None:
    ext = _make(client, "networks", "network", **{"router:external": True})
    _make(client, "subnets", "subnet", network_id=ext["id"], cidr="203.0.113.0/24")
    net = _make(client, "networks", "network")
    sub = _make(client, "subnets", "subnet", network_id=net["id"], cidr="10.0.0.0/24")
    vm = _make(client, "ports", "port", network_id=net["id"])
    fip = _make(client, "floatingips", "floatingip", floating_network_id=ext["id"])
    # No router reaches the external network yet: Neutron's 404.
    r = client.put(f"/v2.0/floatingips/{fip['id']}", json={"floatingip": {"port_id": vm["id"]}})
    assert r.status_code == 404
    assert r.json()["NeutronError"]["type"] == "ExternalGatewayForFloatingIPNotFound"
    router = _make(client, "routers", "router", external_gateway_info={"network_id": ext["id"]})
    gw_ip = router["external_gateway_info"]["external_fixed_ips"][0]["ip_address"]
    assert gw_ip.startswith("203.0.113.")
    r = client.put(
        f"/v2.0/routers/{router['id']}/add_router_interface", json={"subnet_id": sub["id"]}
    )
    assert r.status_code == 200 and r.json()["subnet_id"] == sub["id"]
    iface = client.get(f"/v2.0/ports/{r.json()['port_id']}").json()["port"]
    assert iface["device_owner"] == "network:router_interface"
    assert iface["fixed_ips"][0]["ip_address"] == "10.0.0.1"
    again = client.put(
        f"/v2.0/routers/{router['id']}/add_router_interface", json={"subnet_id": sub["id"]}
    )
    assert again.status_code == 400
    assert client.delete(f"/v2.0/ports/{iface['id']}").status_code == 409
    r = client.put(f"/v2.0/floatingips/{fip['id']}", json={"floatingip": {"port_id": vm["id"]}})
    assert r.status_code == 200 and r.json()["floatingip"]["router_id"] == router["id"]
    assert r.json()["floatingip"]["status"] == "ACTIVE"
    # In use: the interface is needed by the floating IP, the router has ports.
    assert (
        client.put(
            f"/v2.0/routers/{router['id']}/remove_router_interface", json={"subnet_id": sub["id"]}
        ).status_code
        == 409
    )
    assert client.delete(f"/v2.0/routers/{router['id']}").status_code == 409
    # Deleting the VM port disassociates its floating IP, as Neutron does.
    assert client.delete(f"/v2.0/ports/{vm['id']}").status_code == 204
    assert client.get(f"/v2.0/floatingips/{fip['id']}").json()["floatingip"]["port_id"] is None
    assert (
        client.put(
            f"/v2.0/routers/{router['id']}/remove_router_interface", json={"subnet_id": sub["id"]}
        ).status_code
        == 200
    )
    assert client.delete(f"/v2.0/floatingips/{fip['id']}").status_code == 204
    assert client.delete(f"/v2.0/routers/{router['id']}").status_code == 204
    assert client.delete(f"/v2.0/networks/{ext['id']}").status_code == 204


def test_security_groups(client: TestClient) -> None:
    groups = client.get("/v2.0/security-groups").json()["security_groups"]
    default = next(g for g in groups if g["name"] == "default")
    kinds = sorted(
        (r["direction"], r["ethertype"], r["remote_group_id"] is not None)
        for r in default["security_group_rules"]
    )
    assert kinds == [
        ("egress", "IPv4", False),
        ("egress", "IPv6", False),
        ("ingress", "IPv4", True),
        ("ingress", "IPv6", True),
    ]
    rule = {
        "security_group_id": default["id"],
        "direction": "ingress",
        "protocol": "tcp",
        "port_range_min": 22,
        "port_range_max": 22,
        "remote_ip_prefix": "0.0.0.0/0",
    }
    _make(client, "security-group-rules", "security_group_rule", **rule)
    dup = client.post("/v2.0/security-group-rules", json={"security_group_rule": rule})
    assert dup.status_code == 409
    bad = client.post(
        "/v2.0/security-group-rules",
        json={"security_group_rule": {**rule, "port_range_min": 30, "port_range_max": 20}},
    )
    assert bad.status_code == 400
    net = _make(client, "networks", "network")
    _make(client, "subnets", "subnet", network_id=net["id"], cidr="10.0.0.0/24")
    port = _make(client, "ports", "port", network_id=net["id"])
    assert port["security_groups"] == [default["id"]]
    sg = _make(client, "security-groups", "security_group", name="web")
    client.put(f"/v2.0/ports/{port['id']}", json={"port": {"security_groups": [sg["id"]]}})
    assert client.delete(f"/v2.0/security-groups/{sg['id']}").status_code == 409
    off = client.put(
        f"/v2.0/ports/{port['id']}",
        json={"port": {"port_security_enabled": False, "security_groups": []}},
    )
    assert off.status_code == 200 and off.json()["port"]["security_groups"] == []
    assert client.delete(f"/v2.0/security-groups/{sg['id']}").status_code == 204


def test_quota_details(client: TestClient) -> None:
    project = client.get(
        "/identity/v3/auth/tokens", headers={"X-Subject-Token": client.headers["X-Auth-Token"]}
    ).json()["token"]["project"]["id"]
    _make(client, "networks", "network")
    details = client.get(f"/v2.0/quotas/{project}/details").json()["quota"]
    assert details["network"] == {"limit": 100, "used": 1, "reserved": 0}
    client.put(f"/v2.0/quotas/{project}", json={"quota": {"network": 1}})
    r = client.post("/v2.0/networks", json={"network": {}})
    assert r.status_code == 409 and r.json()["NeutronError"]["type"] == "OverQuota"
    assert client.delete(f"/v2.0/quotas/{project}").status_code == 204
    assert client.get(f"/v2.0/quotas/{project}").json()["quota"]["network"] == 100


def test_tokens_expire(tmp_path: Path) -> None:
    store = connect(f"sqlite:///{tmp_path}/state.db")
    try:
        app = create_app(store, ApiSettings(token_ttl=1), admin_password=ADMIN_PASSWORD)
        c = TestClient(app)
        tok = c.post("/identity/v3/auth/tokens", json=auth_body("admin", ADMIN_PASSWORD, "admin"))
        h = {"X-Auth-Token": tok.headers["X-Subject-Token"]}
        assert c.get("/v2.0/networks", headers=h).status_code == 200
        time.sleep(1.2)
        assert c.get("/v2.0/networks", headers=h).status_code == 401
    finally:
        store.close()


def test_serve_refuses_without_an_admin_password(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if k != "SPANWIRE_ADMIN_PASSWORD"}
    out = subprocess.run(
        [
            sys.executable,
            "-m",
            "spanwire.cli.main",
            "serve",
            "--store",
            f"sqlite:///{tmp_path}/s.db",
        ],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert out.returncode == 2
    assert "SPANWIRE_ADMIN_PASSWORD" in out.stderr and "Traceback" not in out.stderr
