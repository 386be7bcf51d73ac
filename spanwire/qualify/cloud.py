"""Tenant-side helpers for the testbed: networks, ports, the api process, clouds.yaml.

When no api runs (tests, or `spanwire.cli.serve` missing) these write model
objects straight into the store with their own valid VNI/IP/MAC choices, and
give ports the project's `default` security group, as the api would: agents
enforce security groups, so a port without a group could only do DHCP.
"""

from __future__ import annotations

import ipaddress
import os
import secrets
import socket
import subprocess
import time
from typing import TYPE_CHECKING

import httpx

from spanwire.cli.serve import serve_argv
from spanwire.errors import InvalidInput, NotFound, Unavailable
from spanwire.model import FixedIP, Network, Port, SecurityGroup, SecurityGroupRule, Subnet
from spanwire.store import Store, keys
from spanwire.store.base import Compare, Put

if TYPE_CHECKING:
    from spanwire.qualify.testbed import Testbed

PROJECT = "testbed"


def add_network(store: Store, name: str, vni: int, cidr: str, project: str = PROJECT,
                dns: tuple[str, ...] = ()) -> tuple[Network, Subnet]:
    net = Network(project_id=project, name=name, segmentation_id=vni)
    hosts = ipaddress.IPv4Network(cidr)
    subnet = Subnet(project_id=project, network_id=net.id, name=f"{name}-v4", cidr=cidr,
                    gateway_ip=str(hosts.network_address + 1), dns_nameservers=list(dns))
    store.put(net.key, net.to_bytes())
    store.put(subnet.key, subnet.to_bytes())
    return net, subnet


def find_network(store: Store, name_or_id: str) -> Network:
    matches = []
    for kv in store.range(Network.prefix()).items:
        net = Network.from_bytes(kv.value)
        if name_or_id in (net.id, net.name):
            matches.append(net)
    if not matches:
        raise NotFound(f"no network named {name_or_id!r}; create one with `openstack network "
                       "create` (or the testbed helpers)")
    if len(matches) > 1:
        raise InvalidInput(f"{len(matches)} networks are named {name_or_id!r}; use its id")
    return matches[0]


def subnets_of(store: Store, network_id: str) -> list[Subnet]:
    subs = [Subnet.from_bytes(kv.value) for kv in store.range(Subnet.prefix()).items]
    return sorted((s for s in subs if s.network_id == network_id), key=lambda s: s.id)


def default_group(store: Store, project: str) -> str:
    """The id of `project`'s `default` security group, created on first use.

    Neutron's default rules: ingress from members of the group itself, egress
    anywhere (IPv4 and IPv6; the data plane enforces IPv4). The index key is
    the api's (`default_sg/<project>`), created with Compare.absent in the same
    transaction as the group, so the api and these helpers share one default.
    """
    index = keys.key("default_sg", project)
    for _ in range(5):
        kv = store.get(index)
        if kv is not None and store.get(SecurityGroup.key_of(kv.value.decode())) is not None:
            return kv.value.decode()
        group = SecurityGroup(project_id=project, name="default",
                              description="Default security group")
        rules = [SecurityGroupRule(project_id=project, security_group_id=group.id,
                                   direction=direction, ethertype=ethertype,
                                   remote_group_id=group.id if direction == "ingress" else None)
                 for ethertype in ("IPv4", "IPv6") for direction in ("ingress", "egress")]
        puts = [Put(index, group.id.encode()), Put(group.key, group.to_bytes()),
                *(Put(rule.key, rule.to_bytes()) for rule in rules)]
        compare = Compare.unchanged(kv) if kv is not None else Compare.absent(index)
        if store.txn([compare], puts).succeeded:
            return group.id
    raise Unavailable(f"could not create the default security group of project {project}")


def add_port(store: Store, network: Network, node: str, name: str = "",
             ip: str | None = None, security_groups: list[str] | None = None) -> Port:
    """A port bound to `node` with the next free address of the network's first subnet.

    `security_groups` None: the project's default group (as the api does).
    """
    subnets = subnets_of(store, network.id)
    if not subnets:
        raise InvalidInput(f"network {network.id} has no subnet")
    subnet = subnets[0]
    if ip is None:
        used = {subnet.gateway_ip}
        for kv in store.range(Port.prefix()).items:
            other = Port.from_bytes(kv.value)
            used.update(f.ip_address for f in other.fixed_ips if f.subnet_id == subnet.id)
        cidr = ipaddress.IPv4Network(subnet.cidr)
        free = (str(h) for h in cidr.hosts() if str(h) not in used)
        ip = next(free, None)
        if ip is None:
            raise Unavailable(f"subnet {subnet.cidr} is full")
    mac = "fa:16:3e:" + ":".join(f"{b:02x}" for b in secrets.token_bytes(3))
    if security_groups is None:
        security_groups = [default_group(store, network.project_id)]
    port = Port(project_id=network.project_id, network_id=network.id, name=name,
                mac_address=mac, fixed_ips=[FixedIP(subnet_id=subnet.id, ip_address=ip)],
                binding_host_id=node, device_owner="compute:nova", device_id=name,
                security_groups=security_groups)
    store.put(port.key, port.to_bytes())
    return port


def gateway_ports(store: Store, router_id: str) -> dict[str, Port]:
    """Node → that node's own gateway port of `router_id` (claimed by its agent)."""
    from spanwire.model.router import DEVICE_OWNER_GATEWAY

    ports = (Port.from_bytes(kv.value) for kv in store.range(Port.prefix()).items)
    return {p.binding_host_id: p for p in ports if p.device_owner == DEVICE_OWNER_GATEWAY
            and p.device_id == router_id and p.binding_host_id}


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def start_api(bed: Testbed, timeout: float = 30.0) -> None:
    """Run `spanwire serve` on 127.0.0.1 and write clouds.yaml for it."""
    st = bed.state
    secret_path = os.path.join(st.state_dir, "admin-password")
    password = secrets.token_urlsafe(18)
    st.files.append(secret_path)
    st.save()
    fd = os.open(secret_path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as handle:
        handle.write(password + "\n")
    port = _free_port()
    env = dict(os.environ, SPANWIRE_ADMIN_PASSWORD=password)
    log_path = os.path.join(st.state_dir, "logs", "api.log")
    with open(log_path, "ab") as out:
        proc = subprocess.Popen(
            serve_argv(st.store_url, f"127.0.0.1:{port}"),
            stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, env=env,
            start_new_session=True,
        )
    st.pids["api"] = proc.pid
    st.api_url = f"http://127.0.0.1:{port}"
    st.save()
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise Unavailable(f"spanwire serve exited ({proc.returncode}); see {log_path}")
        try:
            httpx.get(st.api_url + "/", timeout=0.5)
            break
        except httpx.HTTPError:
            time.sleep(0.2)
    else:
        raise Unavailable(f"spanwire serve did not answer on {st.api_url}; see {log_path}")
    clouds = os.path.join(st.state_dir, "clouds.yaml")
    st.files.append(clouds)
    st.save()
    with open(clouds, "w") as handle:
        handle.write(
            "clouds:\n"
            "  spanwire:\n"
            "    auth:\n"
            f"      auth_url: {st.api_url}/identity/v3\n"
            "      username: admin\n"
            f"      password: {password}\n"
            "      project_name: admin\n"
            "      user_domain_name: Default\n"
            "      project_domain_name: Default\n"
            "    identity_api_version: 3\n"
            "    interface: public\n"
        )
    os.chmod(clouds, 0o600)


def api_create_port(api_url: str, password: str, network: Network, node: str, name: str,
                    ip: str | None = None, security_groups: list[str] | None = None) -> Port:
    """Create the port through the Neutron API (so its IPAM and MAC allocation apply)."""
    from spanwire.errors import SpanwireError

    auth = {"auth": {
        "identity": {"methods": ["password"], "password": {"user": {
            "name": "admin", "domain": {"name": "Default"}, "password": password}}},
        "scope": {"project": {"name": "admin", "domain": {"name": "Default"}}},
    }}
    try:
        with httpx.Client(base_url=api_url, timeout=10) as client:
            token = client.post("/identity/v3/auth/tokens", json=auth)
            token.raise_for_status()
            headers = {"X-Auth-Token": token.headers["X-Subject-Token"]}
            body = {"port": {"network_id": network.id, "name": name, "binding:host_id": node,
                             "device_owner": "compute:nova", "device_id": name,
                             "project_id": network.project_id}}
            if ip is not None:
                body["port"]["fixed_ips"] = [{"ip_address": ip}]
            if security_groups is not None:
                body["port"]["security_groups"] = security_groups
            reply = client.post("/v2.0/ports", json=body, headers=headers)
            reply.raise_for_status()
            data = reply.json()["port"]
    except (httpx.HTTPError, KeyError, ValueError) as exc:
        raise SpanwireError(f"api at {api_url} could not create the port: {exc}") from exc
    return Port(id=data["id"], project_id=data.get("project_id") or network.project_id,
                network_id=network.id, name=name, mac_address=data["mac_address"],
                fixed_ips=[FixedIP(**f) for f in data["fixed_ips"]], binding_host_id=node)
