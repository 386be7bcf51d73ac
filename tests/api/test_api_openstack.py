"""Real OpenStack clients against a real `spanwire serve`: the `openstack` CLI and openstacksdk."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import httpx
import openstack
import pytest
from api_helpers import auth_body, make_account, write_clouds_yaml
from conftest import Cloud

OPENSTACK = str(Path(sys.executable).with_name("openstack"))


class Cli:
    def __init__(self, clouds_yaml: Path, cloud: str) -> None:
        self.env = dict(os.environ, OS_CLIENT_CONFIG_FILE=str(clouds_yaml))
        self.cloud = cloud

    def __call__(self, *args: str, check: bool = True) -> Any:
        cmd = [OPENSTACK, "--os-cloud", self.cloud, *args]
        json_out = args[-1] not in ("--wait",) and args[0] not in ("--help",)
        out = subprocess.run(
            [*cmd, "-f", "json"] if self._formats(args) else cmd,
            env=self.env,
            capture_output=True,
            text=True,
            timeout=120,
        )
        if check:
            assert out.returncode == 0, f"{' '.join(args)}: {out.stderr[-2000:]}"
        if out.returncode == 0 and json_out and self._formats(args):
            return json.loads(out.stdout)
        return out

    @staticmethod
    def _formats(args: tuple[str, ...]) -> bool:
        return any(a in args for a in ("create", "show", "list"))


@pytest.fixture(scope="module")
def cli(cloud: Cloud) -> Cli:
    member = make_account(cloud.url, cloud.admin_token, "cli-proj", "cli-user", "member")
    path = write_clouds_yaml(
        cloud.tmp / "clouds.yaml", cloud.url, {"member": member, "admin": cloud.admin}
    )
    return Cli(path, "member")


def test_openstack_cli(cli: Cli) -> None:
    admin = Cli(Path(cli.env["OS_CLIENT_CONFIG_FILE"]), "admin")
    ext = admin(
        "network",
        "create",
        "public",
        "--external",
        "--share",
        "--provider-network-type",
        "flat",
        "--provider-physical-network",
        "physnet1",
    )
    admin(
        "subnet",
        "create",
        "public-v4",
        "--network",
        "public",
        "--subnet-range",
        "203.0.113.0/24",
        "--no-dhcp",
    )
    net = cli("network", "create", "cli-net")
    assert net["router:external"] is False and net["status"] == "ACTIVE"
    sub = cli(
        "subnet",
        "create",
        "cli-sub",
        "--network",
        "cli-net",
        "--subnet-range",
        "192.168.10.0/24",
        "--dns-nameserver",
        "192.0.2.53",
    )
    assert sub["gateway_ip"] == "192.168.10.1"
    port = cli(
        "port",
        "create",
        "cli-port",
        "--network",
        "cli-net",
        "--fixed-ip",
        f"subnet={sub['id']},ip-address=192.168.10.20",
    )
    assert port["fixed_ips"][0]["ip_address"] == "192.168.10.20"
    assert port["mac_address"].startswith("fa:16:3e:")
    listed = cli("port", "list", "--network", "cli-net")
    assert [p["ID"] for p in listed] == [port["id"]]
    cli("port", "set", "cli-port", "--name", "cli-port2", "--description", "renamed")
    shown = cli("port", "show", "cli-port2")
    assert shown["revision_number"] == 1 and shown["status"] == "DOWN"
    cli("router", "create", "cli-router")
    cli("router", "set", "cli-router", "--external-gateway", "public")
    cli("router", "add", "subnet", "cli-router", "cli-sub")
    router = cli("router", "show", "cli-router")
    assert router["external_gateway_info"]["network_id"] == ext["id"]
    assert router["interfaces_info"][0]["ip_address"] == "192.168.10.1"
    fip = cli("floating", "ip", "create", "public", "--port", "cli-port2")
    assert fip["port_id"] == port["id"] and fip["fixed_ip_address"] == "192.168.10.20"
    cli("security", "group", "create", "web")
    rule = cli(
        "security",
        "group",
        "rule",
        "create",
        "web",
        "--protocol",
        "tcp",
        "--dst-port",
        "443",
        "--remote-ip",
        "0.0.0.0/0",
    )
    assert rule["port_range_min"] == 443
    assert len(cli("security", "group", "rule", "list", "web")) == 3  # + default egress v4/v6
    cli("port", "set", "cli-port2", "--security-group", "web")
    cli("floating", "ip", "delete", fip["id"])
    cli("router", "remove", "subnet", "cli-router", "cli-sub")
    cli("router", "delete", "cli-router")
    cli("port", "delete", "cli-port2")
    cli("security", "group", "delete", "web")
    cli("subnet", "delete", "cli-sub")
    cli("network", "delete", "cli-net")
    assert cli("network", "show", "cli-net", check=False).returncode != 0


def test_openstack_cli_identity_admin(cli: Cli, cloud: Cloud) -> None:
    """`openstack project/user/role` create project members (what an operator does)."""
    admin = Cli(Path(cli.env["OS_CLIENT_CONFIG_FILE"]), "admin")
    project = admin("project", "create", "ops-proj")
    admin("user", "create", "ops-user", "--password", "ops-pw", "--project", "ops-proj")
    admin("role", "add", "--project", "ops-proj", "--user", "ops-user", "reader")
    assignments = admin("role", "assignment", "list", "--project", "ops-proj")
    assert [a["Role"] for a in assignments] == ["reader"]
    tok = httpx.post(
        f"{cloud.url}/identity/v3/auth/tokens", json=auth_body("ops-user", "ops-pw", "ops-proj")
    )
    assert tok.status_code == 201
    assert tok.json()["token"]["project"]["id"] == project["id"]
    assert [r["name"] for r in tok.json()["token"]["roles"]] == ["reader"]


def test_openstacksdk(cloud: Cloud) -> None:
    acct = make_account(cloud.url, cloud.admin_token, "sdk-proj", "sdk-user", "member")
    conn = openstack.connect(
        auth_url=f"{cloud.url}/identity/v3",
        username=acct.user,
        password=acct.password,
        project_name=acct.project,
        user_domain_name="Default",
        project_domain_name="Default",
        region_name="RegionOne",
    )
    adm = openstack.connect(
        auth_url=f"{cloud.url}/identity/v3",
        username="admin",
        password=cloud.admin.password,
        project_name="admin",
        user_domain_name="Default",
        project_domain_name="Default",
        region_name="RegionOne",
    )
    try:
        ext = adm.network.create_network(
            name="sdk-ext",
            is_router_external=True,
            provider_network_type="flat",
            provider_physical_network="physnet-sdk",
        )
        adm.network.create_subnet(network_id=ext.id, cidr="198.51.100.0/24", ip_version=4)
        net = conn.network.create_network(name="sdk-net")
        sub = conn.network.create_subnet(
            network_id=net.id,
            cidr="10.20.0.0/24",
            ip_version=4,
            allocation_pools=[{"start": "10.20.0.10", "end": "10.20.0.200"}],
        )
        ports = [conn.network.create_port(network_id=net.id, name=f"p{i}") for i in range(5)]
        ips = {p.fixed_ips[0]["ip_address"] for p in ports}
        assert len(ips) == 5 and all(10 <= int(ip.rsplit(".", 1)[1]) <= 200 for ip in ips)
        # list with filters, and paginated (the SDK follows ports_links).
        assert [p.name for p in conn.network.ports(name="p3")] == ["p3"]
        assert len(list(conn.network.ports(network_id=net.id, limit=2))) == 5
        assert conn.network.get_network(net.id).subnet_ids == [sub.id]
        updated = conn.network.update_port(ports[0], name="renamed", admin_state_up=False)
        assert updated.revision_number == 1 and updated.is_admin_state_up is False
        assert conn.network.update_network(net, description="d").description == "d"
        router = conn.network.create_router(
            name="sdk-r", external_gateway_info={"network_id": ext.id}
        )
        conn.network.add_interface_to_router(router, subnet=sub.id)
        fip = conn.network.create_ip(floating_network_id=ext.id)
        assert fip.status == "DOWN"
        fip = conn.network.update_ip(fip, port_id=ports[1].id)
        assert fip.fixed_ip_address == ports[1].fixed_ips[0]["ip_address"]
        assert fip.router_id == router.id
        sg = conn.network.create_security_group(name="sdk-sg")
        rule = conn.network.create_security_group_rule(
            security_group_id=sg.id, direction="ingress", protocol="icmp", ethertype="IPv4"
        )
        assert conn.network.get_security_group_rule(rule.id).protocol == "icmp"
        default = next(conn.network.security_groups(name="default"))
        assert len(default.security_group_rules) == 4
        adm.network.update_quota(acct.project_id, ports=6)
        assert conn.network.get_quota(acct.project_id).ports == 6
        with pytest.raises(openstack.exceptions.ConflictException):
            conn.network.create_port(network_id=net.id)  # 5 + the router interface = 6
        conn.network.delete_security_group_rule(rule)
        conn.network.delete_security_group(sg)
        conn.network.update_ip(fip, port_id=None)
        conn.network.delete_ip(fip)
        conn.network.remove_interface_from_router(router, subnet=sub.id)
        conn.network.delete_router(router)
        for p in ports:
            conn.network.delete_port(p)
        conn.network.delete_subnet(sub)
        conn.network.delete_network(net)
        assert conn.network.find_network("sdk-net") is None
    finally:
        conn.close()
        adm.close()
