"""North-south on real kernels, through the API: floating IPs and SNAT on every node.

One 3-node testbed with the api, the provider network and the outside host;
one project whose router has its gateway on the provider network and a VM on
every node. Every node NATs its own VMs' traffic with its own address; the
interface counters of the nodes prove that no node carries another's traffic;
killing a node costs only its own VMs.
"""

from __future__ import annotations

import json
import shutil
import sys
import threading
from collections.abc import Iterator

import pytest
from conftest import make_state_dir, need_root
from test_agent_routers import settle

from spanwire.agent import naming
from spanwire.dataplane import netns, process
from spanwire.model import Port
from spanwire.qualify import cloud, failover, underlay
from spanwire.qualify.tenant import TenantAPI
from spanwire.qualify.testbed import Testbed

pytestmark = [pytest.mark.root, pytest.mark.slow]

PROJECT = "ns-project"
PEER_PORT = 7070
NODES = ("node1", "node2", "node3")


class World:
    def __init__(self, bed: Testbed) -> None:
        self.bed = bed
        self.api = TenantAPI(bed.state.api_url, bed.state.state_dir)
        self.ext = bed.state.external_network  # made by `up`, as an operator would
        subnet = self.api.network("blue", PROJECT, "10.40.0.0/24")
        self.router = self.api.router("rb", PROJECT, [subnet], external_network=self.ext)
        group = self.api.create("security_group", name="open", project_id=PROJECT)
        for proto in ("icmp", "tcp"):
            self.api.create("security_group_rule", security_group_id=group["id"],
                            direction="ingress", ethertype="IPv4", protocol=proto,
                            remote_ip_prefix="0.0.0.0/0", project_id=PROJECT)
        self.ips: dict[str, str] = {}
        self.ports: dict[str, str] = {}
        for index, node in enumerate(NODES, start=1):
            port, lease = bed.vm_create("blue", f"b{index}", node=node,
                                        security_groups=[group["id"]])
            assert lease is not None
            self.ips[f"b{index}"], self.ports[f"b{index}"] = lease.ip, port.id
        self.fips = {vm: self.api.floating_ip(self.ext, PROJECT, self.ports[vm])
                     for vm in ("b1", "b2")}
        self.peer = process.spawn(underlay.outside_ns(bed.state.prefix),
                                  [sys.executable, "-m", "spanwire.qualify.whoami",
                                   "--peer", str(PEER_PORT)])
        converge(bed, self.router)

    def close(self) -> None:
        process.stop_child(self.peer)
        self.api.close()


def gateway_ports(bed: Testbed, router_id: str) -> dict[str, Port]:
    return cloud.gateway_ports(bed.store(), router_id)


def converge(bed: Testbed, router_id: str, nodes: tuple[str, ...] = NODES,
             timeout: float = 30.0) -> None:
    """Until every node has claimed its gateway address and applied everything."""
    bed.wait_gateways(router_id, set(nodes), timeout)


@pytest.fixture(scope="module")
def world() -> Iterator[World]:
    need_root()
    state_dir = make_state_dir()
    try:
        bed = Testbed.up(state_dir, nodes=3, api=True)
        try:
            w = World(bed)
            try:
                yield w
            finally:
                w.close()
        finally:
            bed.down()
    finally:
        shutil.rmtree(state_dir, ignore_errors=True)


def outside(bed: Testbed, argv: list[str]) -> bool:
    return bed.outside_exec(argv, timeout=20).returncode == 0


def outside_ping(bed: Testbed, ip: str) -> bool:
    return outside(bed, ["ping", "-n", "-q", "-c", "3", "-i", "0.2", "-W", "1", ip])


def seen_as(bed: Testbed, vm: str) -> str:
    """The source address the outside host sees for a TCP connection from `vm`."""
    script = f"exec 3<>/dev/tcp/{underlay.OUTSIDE_IP}/{PEER_PORT} && head -n1 <&3"
    proc = bed.vm_exec(vm, ["timeout", "3", "bash", "-c", script], timeout=10)
    return proc.stdout.strip()


def counters(bed: Testbed, node: str, dev: str) -> int:
    """Packets received + sent by `dev` in the node's namespace."""
    out = process.run(underlay.node_ns(bed.state.prefix, node),
                      ["ip", "-s", "-j", "link", "show", dev]).stdout
    stats = json.loads(out)[0]["stats64"]
    return int(stats["rx"]["packets"]) + int(stats["tx"]["packets"])


def burst(bed: Testbed, argv_ns: str, ip: str, count: int = 300) -> None:
    process.run(argv_ns, ["ping", "-n", "-q", "-c", str(count), "-i", "0.002", "-W", "1", ip],
                timeout=30)


def test_every_node_claims_its_own_external_address(world: World) -> None:
    gws = gateway_ports(world.bed, world.router)
    addresses = {node: p.fixed_ips[0].ip_address for node, p in gws.items()}
    assert set(addresses) == set(NODES) and len(set(addresses.values())) == 3
    for node, ip in addresses.items():
        rtr = naming.router_ns(underlay.node_ns(world.bed.state.prefix, node), world.router)
        shown = process.run(rtr, ["ip", "-4", "-o", "addr", "show",
                                  naming.gateway(world.router)]).stdout
        assert f"{ip}/24" in shown


def test_floating_ips_are_reachable_from_outside_on_their_own_node(world: World) -> None:
    for vm, fip in world.fips.items():
        assert outside_ping(world.bed, fip), f"{vm}'s floating IP {fip}"
    # each floating IP lives on its VM's node only
    for index, node in enumerate(NODES, start=1):
        rtr = naming.router_ns(underlay.node_ns(world.bed.state.prefix, node), world.router)
        shown = process.run(rtr, ["ip", "-4", "-o", "addr"]).stdout
        for vm, fip in world.fips.items():
            assert (f"{fip}/32" in shown) == (vm == f"b{index}"), (node, vm)


def test_snat_leaves_each_node_with_its_address_or_the_floating_ip(world: World) -> None:
    gws = gateway_ports(world.bed, world.router)
    assert seen_as(world.bed, "b1") == world.fips["b1"]
    assert seen_as(world.bed, "b2") == world.fips["b2"]
    assert seen_as(world.bed, "b3") == gws["node3"].fixed_ips[0].ip_address


def test_counters_prove_no_node_carries_another_nodes_traffic(world: World) -> None:
    bed = world.bed
    out_ns = underlay.outside_ns(bed.state.prefix)
    before = {n: (counters(bed, n, underlay.PROVIDER_IFACE), counters(bed, n, "ul0"))
              for n in NODES}
    burst(bed, out_ns, world.fips["b1"])  # north-south to node1
    from spanwire.qualify import vm as vms

    burst(bed, vms.vm_ns(bed.state.prefix, "b3"), underlay.OUTSIDE_IP)  # SNAT out of node3
    burst(bed, vms.vm_ns(bed.state.prefix, "b1"), world.ips["b2"])  # east-west node1 → node2
    after = {n: (counters(bed, n, underlay.PROVIDER_IFACE), counters(bed, n, "ul0"))
             for n in NODES}
    provider = {n: after[n][0] - before[n][0] for n in NODES}
    underlay_ = {n: after[n][1] - before[n][1] for n in NODES}
    # 300 requests + 300 replies per burst on the path; ARP and the like elsewhere
    assert provider["node1"] >= 550 and provider["node3"] >= 550, provider
    assert provider["node2"] < 30, provider
    assert underlay_["node1"] >= 550 and underlay_["node2"] >= 550, underlay_
    assert underlay_["node3"] < 30, underlay_


def test_moving_a_floating_ip_is_announced_and_follows_the_port(world: World) -> None:
    bed = world.bed
    fip = world.fips["b1"]
    fip_id = next(f["id"] for f in world.api.client.get("/v2.0/floatingips").json()["floatingips"]
                  if f["floating_ip_address"] == fip)
    assert outside_ping(bed, fip)  # the outside's neighbour cache points at node1
    world.api.client.put(f"/v2.0/floatingips/{fip_id}",
                         json={"floatingip": {"port_id": world.ports["b3"]}}).raise_for_status()
    settle(bed)
    gw3 = gateway_ports(bed, world.router)["node3"]
    neigh = bed.outside_exec(["ip", "-j", "neigh", "show", fip]).stdout
    assert gw3.mac_address in neigh, neigh  # updated by the gratuitous ARP, not by expiry
    assert outside_ping(bed, fip)
    assert seen_as(bed, "b3") == fip
    world.api.client.put(f"/v2.0/floatingips/{fip_id}",
                         json={"floatingip": {"port_id": world.ports["b1"]}}).raise_for_status()
    settle(bed)
    assert outside_ping(bed, fip)


def test_killing_a_node_costs_only_its_own_vms(world: World) -> None:
    """Flows between the other nodes, and from them to the outside, lose nothing."""
    from spanwire.qualify import vm as vms

    bed = world.bed
    prefix = bed.state.prefix
    results: dict[str, failover.FailoverResult] = {}
    flows = {
        "outside->b1 (fip)": (underlay.outside_ns(prefix), world.fips["b1"]),
        "b2->outside (fip snat)": (vms.vm_ns(prefix, "b2"), underlay.OUTSIDE_IP),
        "b1->b2 (east-west)": (vms.vm_ns(prefix, "b1"), world.ips["b2"]),
    }
    killed = threading.Event()
    once = threading.Lock()

    def kill() -> None:
        with once:
            if not killed.is_set():
                killed.set()
                bed.kill_node("node3")

    def probe(name: str, src: str, dst: str) -> None:
        results[name] = failover.under_probe(name, src, dst, kill, seconds=4.0, settle=1.0)

    threads = [threading.Thread(target=probe, args=(n, *f)) for n, f in flows.items()]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert killed.is_set()
    assert not netns.exists(underlay.node_ns(prefix, "node3"))
    for name, result in results.items():
        assert result.sent >= 350 and result.lost == 0, (name, result)
