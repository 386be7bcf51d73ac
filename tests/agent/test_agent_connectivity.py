"""VMs of one network on different nodes reach each other over VXLAN, with DHCP."""

from __future__ import annotations

import time

import pytest

from spanwire.qualify import cloud
from spanwire.qualify.testbed import Testbed

pytestmark = [pytest.mark.root, pytest.mark.slow]


def ping(bed: Testbed, vm: str, ip: str, count: int = 3, size: int = 56) -> bool:
    proc = bed.vm_exec(vm, ["ping", "-c", str(count), "-i", "0.2", "-W", "1", "-M", "do",
                            "-s", str(size), ip])
    return proc.returncode == 0


def tcp_ok(bed: Testbed, server: str, server_ip: str, client: str) -> bool:
    """One second of iperf3 TCP from `client` to `server`."""
    from spanwire.dataplane import process
    from spanwire.qualify import vm

    srv = process.spawn(vm.vm_ns(bed.state.prefix, server), ["iperf3", "-s", "-1"])
    try:
        time.sleep(0.3)
        proc = bed.vm_exec(client, ["iperf3", "-c", server_ip, "-t", "1", "-J"], timeout=20)
        return proc.returncode == 0 and '"bytes"' in proc.stdout
    finally:
        process.stop_child(srv)


def test_vms_on_two_nodes_ping_and_tcp_with_dhcp_mtu(bed: Testbed) -> None:
    cloud.add_network(bed.store(), "blue", vni=5001, cidr="10.0.0.0/24", dns=("10.0.0.2",))
    p1, l1 = bed.vm_create("blue", "a1", node="node1")
    p2, l2 = bed.vm_create("blue", "a2", node="node2")
    assert l1 is not None and l2 is not None
    assert (l1.ip, l2.ip) == (p1.ips[0], p2.ips[0])
    assert l1.mtu == l2.mtu == 1450
    assert l1.router == "10.0.0.1" and l1.dns == "10.0.0.2"
    link = bed.vm_exec("a1", ["ip", "-o", "link", "show", "eth0"]).stdout
    assert "mtu 1450" in link
    assert ping(bed, "a1", "10.0.0.1")  # anycast gateway, answered locally
    assert ping(bed, "a1", l2.ip)
    assert ping(bed, "a2", l1.ip, size=1450 - 28)  # full MTU, DF set
    assert not ping(bed, "a2", l1.ip, count=1, size=1451 - 28)
    assert tcp_ok(bed, "a2", l2.ip, "a1")
    # port security: a1 may not send from an address that is not its port's
    bed.vm_exec("a1", ["ip", "addr", "add", "10.0.0.250/24", "dev", "eth0"])
    spoofed = bed.vm_exec("a1", ["ping", "-c", "2", "-i", "0.2", "-W", "1", "-I", "10.0.0.250",
                                 l2.ip])
    assert spoofed.returncode != 0
    assert ping(bed, "a1", l2.ip)
