"""Restarts, store outages, deletion, isolation and scale, on a real kernel."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import time

import pytest
from conftest import make_state_dir, need_root

from spanwire.agent import naming
from spanwire.dataplane import netns, process
from spanwire.qualify import cloud, underlay, vm
from spanwire.qualify.testbed import Testbed

pytestmark = [pytest.mark.root, pytest.mark.slow]


def start_ping(bed: Testbed, src: str, dst_ip: str, interval: float = 0.01
               ) -> subprocess.Popen[str]:
    ns = vm.vm_ns(bed.state.prefix, src)
    return subprocess.Popen(process.in_ns(ns, ["ping", "-n", "-i", str(interval), dst_ip]),
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def stop_ping(proc: subprocess.Popen[str]) -> tuple[int, int]:
    """SIGINT (ping prints its summary); (transmitted, received)."""
    time.sleep(0.2)  # let the last echo come back
    proc.send_signal(signal.SIGINT)
    out, _ = proc.communicate(timeout=10)
    match = re.search(r"(\d+) packets transmitted, (\d+) received", out)
    assert match, out[-500:]
    return int(match.group(1)), int(match.group(2))


def test_agent_restarts_under_ping_lose_nothing_and_write_nothing(bed: Testbed) -> None:
    cloud.add_network(bed.store(), "restart", vni=5101, cidr="10.10.0.0/24")
    _, l1 = bed.vm_create("restart", "r1", node="node1")
    _, l2 = bed.vm_create("restart", "r2", node="node2")
    assert l1 and l2
    ping = start_ping(bed, "r1", l2.ip)
    try:
        for i in range(10):
            node = ("node1", "node2")[i % 2]
            writes = bed.restart_agent_first_pass(node)
            assert writes == 0, f"restart {i} of {node} made {writes} writes"
    finally:
        sent, received = stop_ping(ping)
    assert sent > 100 and received == sent, (sent, received)


def test_port_then_network_deletion_leaves_no_trace(bed: Testbed) -> None:
    net, _ = cloud.add_network(bed.store(), "doomed", vni=5102, cidr="10.20.0.0/24")
    p1, _ = bed.vm_create("doomed", "d1", node="node1", dhcp=False)
    p2, _ = bed.vm_create("doomed", "d2", node="node2", dhcp=False)
    p3, _ = bed.vm_create("doomed", "d3", node="node3", dhcp=False)
    spaces = {n: naming.routing_ns(underlay.node_ns(bed.state.prefix, n), net.id)
              for n in ("node1", "node2", "node3")}
    assert all(netns.exists(ns) for ns in spaces.values())

    bed.vm_delete("d3")  # deletes its port
    ip3 = p3.ips[0]
    _eventually(lambda: not netns.exists(spaces["node3"]))
    for n in ("node1", "node2"):
        _eventually(lambda n=n: ip3 not in _ip(spaces[n], "route"))
    bed.vm_delete("d1")
    bed.vm_delete("d2")
    store = bed.store()
    for sub in cloud.subnets_of(store, net.id):
        store.delete(sub.key)
    store.delete(net.key)
    for n, ns in spaces.items():
        _eventually(lambda ns=ns: not netns.exists(ns))
        assert not os.path.exists(os.path.join(bed.state.state_dir, "run", n, ns))
    for ns in spaces.values():
        pids = [p for p in os.listdir("/proc") if p.isdigit()
                and ns in " ".join(process.cmdline(int(p)) or ())]
        assert pids == []
    for p in (p1, p2, p3):
        tap = naming.tap(p.id)
        for n in ("node1", "node2", "node3"):
            assert tap not in _ip(underlay.node_ns(bed.state.prefix, n), "link")


def test_same_cidr_in_two_projects_stays_isolated(bed: Testbed) -> None:
    store = bed.store()
    cloud.add_network(store, "tenant-a", vni=5201, cidr="10.30.0.0/24", project="a")
    cloud.add_network(store, "tenant-b", vni=5202, cidr="10.30.0.0/24", project="b")
    _, a1 = bed.vm_create("tenant-a", "a1", node="node1")
    _, a2 = bed.vm_create("tenant-a", "a2", node="node2")
    _, b1 = bed.vm_create("tenant-b", "b1", node="node1")
    _, b2 = bed.vm_create("tenant-b", "b2", node="node2")
    assert a1 and a2 and b1 and b2
    assert (a1.ip, a2.ip) == (b1.ip, b2.ip)  # truly overlapping addresses
    assert _ping(bed, "a1", a2.ip) and _ping(bed, "b1", b2.ip)
    # a1's packets to a2's address reach a2 only: with a2 down, b2 (same IP) stays silent
    bed.vm_exec("a2", ["ip", "link", "set", "eth0", "down"])
    assert not _ping(bed, "a1", a2.ip, count=2)
    assert _ping(bed, "b1", b2.ip)
    bed.vm_exec("a2", ["ip", "link", "set", "eth0", "up"])


def test_fifty_ports_over_three_nodes_converge(bed: Testbed) -> None:
    store = bed.store()
    nets = [cloud.add_network(store, f"scale{i}", vni=5300 + i, cidr=f"10.4{i}.0.0/24")[0]
            for i in range(2)]
    nodes = ["node1", "node2", "node3"]
    ports = []
    for i in range(50):
        port = cloud.add_port(store, nets[i % 2], nodes[i % 3], name=f"s{i}")
        vm.create(bed.kernel, bed.state.prefix, f"s{i}", underlay.node_ns(bed.state.prefix,
                  nodes[i % 3]), port.id, port.mac_address)
        bed.state.vms[f"s{i}"] = {"node": nodes[i % 3], "port": port.id,
                                  "network": nets[i % 2].id}
        ports.append(port)
    bed.state.save()
    bed.wait_port_active([p.id for p in ports], timeout=60)
    for n in nodes:  # every node converged: nothing left to do between store and kernel
        _eventually(lambda n=n: bed.pending_ops(n) == [])
    for n in nodes:
        for net in nets:
            ns = naming.routing_ns(underlay.node_ns(bed.state.prefix, n), net.id)
            routes = _ip(ns, "route")
            expected = [p for p in ports if p.network_id == net.id]
            assert all(p.ips[0] in routes for p in expected), ns
    # a sample of VMs gets DHCP and talks across nodes
    leases = {i: vm.dhcp(bed.state.prefix, f"s{i}", os.path.join(bed.state.state_dir, "run"))
              for i in (0, 2, 4, 7, 9)}
    assert _ping(bed, "s0", leases[2].ip) and _ping(bed, "s0", leases[4].ip)
    assert _ping(bed, "s7", leases[9].ip)  # scale1, node2 -> node1
    assert not _ping(bed, "s7", leases[0].ip, count=1)  # scale0: no route between networks


def _ping(bed: Testbed, src: str, ip: str, count: int = 3) -> bool:
    return bed.vm_exec(src, ["ping", "-c", str(count), "-i", "0.2", "-W", "1", ip]).returncode == 0


def _ip(ns: str, what: str) -> str:
    return process.run(ns, ["ip", "-o", what, "show"], check=False).stdout


def _eventually(check, timeout: float = 15.0) -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return
        time.sleep(0.05)
    assert check()


def test_store_outage_keeps_forwarding_and_agents_resync() -> None:
    need_root()
    from spanwire.store.etcd_server import ETCD_BINARY, EtcdCluster

    if not os.access(ETCD_BINARY, os.X_OK):
        pytest.skip("etcd not installed")
    state_dir = make_state_dir()
    cluster = EtcdCluster(size=1)
    cluster.start()
    bed = None
    try:
        bed = Testbed.up(state_dir, nodes=2, store_url=cluster.url, api=False)
        cloud.add_network(bed.store(), "outage", vni=5401, cidr="10.50.0.0/24")
        _, l1 = bed.vm_create("outage", "o1", node="node1")
        _, l2 = bed.vm_create("outage", "o2", node="node2")
        assert l1 and l2
        ping = start_ping(bed, "o1", l2.ip, interval=0.02)
        try:
            cluster.terminate(0)
            time.sleep(3)
            assert _ping(bed, "o2", l1.ip)
            cluster.start_member(0)
            cluster.wait_healthy()
        finally:
            sent, received = stop_ping(ping)
        assert sent > 50 and received == sent, (sent, received)
        bed._store = None  # reconnect
        _, l3 = bed.vm_create("outage", "o3", node="node2")  # agents are back on the store
        assert l3 and _ping(bed, "o1", l3.ip)
    finally:
        try:
            if bed is not None:
                bed.down()
        finally:
            cluster.stop()
            import shutil

            shutil.rmtree(state_dir, ignore_errors=True)
