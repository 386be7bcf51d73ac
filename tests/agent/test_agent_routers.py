"""A distributed router on real kernels: VMs in two subnets on two nodes talk east-west."""

from __future__ import annotations

import secrets

import pytest
from test_agent_connectivity import ping, tcp_ok

from spanwire.agent import naming
from spanwire.dataplane import netns
from spanwire.model import FixedIP, Port, Router, Subnet
from spanwire.model.router import DEVICE_OWNER_INTERFACE
from spanwire.qualify import cloud, underlay
from spanwire.qualify.testbed import Testbed

pytestmark = [pytest.mark.root, pytest.mark.slow]


def add_interface(bed: Testbed, router: Router, subnet: Subnet) -> Port:
    """What the api's add_router_interface writes: the gateway IP, no host, no port security."""
    port = Port(project_id=router.project_id, network_id=subnet.network_id,
                mac_address="fa:16:3e:" + ":".join(f"{b:02x}" for b in secrets.token_bytes(3)),
                fixed_ips=[FixedIP(subnet_id=subnet.id, ip_address=str(subnet.gateway_ip))],
                device_owner=DEVICE_OWNER_INTERFACE, device_id=router.id,
                port_security_enabled=False)
    bed.store().put(port.key, port.to_bytes())
    return port


def settle(bed: Testbed, timeout: float = 20.0) -> None:
    bed.settle(timeout)


def test_router_routes_east_west_on_the_source_node_and_goes_with_its_interfaces(
        bed: Testbed) -> None:
    store = bed.store()
    red, red_sub = cloud.add_network(store, "red", vni=5201, cidr="10.20.0.0/24")
    green, green_sub = cloud.add_network(store, "green", vni=5202, cidr="10.30.0.0/24")
    router = Router(project_id=cloud.PROJECT, name="r1")
    store.put(router.key, router.to_bytes())
    if_red = add_interface(bed, router, red_sub)
    if_green = add_interface(bed, router, green_sub)
    _, l1 = bed.vm_create("red", "ra", node="node1")
    _, l2 = bed.vm_create("green", "gb", node="node2")
    # red also has a port on node2, so red's namespace there has a security-group
    # table and sees only the replies of ra→gb connections (routed on node2)
    _, l3 = bed.vm_create("red", "rc", node="node2")
    assert l1 is not None and l2 is not None and l3 is not None and l1.router == "10.20.0.1"
    settle(bed)

    node_ns = {n: underlay.node_ns(bed.state.prefix, n) for n in ("node1", "node2", "node3")}
    rtr = {n: naming.router_ns(ns, router.id) for n, ns in node_ns.items()}
    green_on_1 = naming.routing_ns(node_ns["node1"], green.id)
    red_on_2 = naming.routing_ns(node_ns["node2"], red.id)
    assert netns.exists(rtr["node1"]) and netns.exists(rtr["node2"])
    assert netns.exists(green_on_1) and netns.exists(red_on_2)
    assert not netns.exists(rtr["node3"])  # no port of an attached network there

    try:
        assert ping(bed, "ra", l2.ip)
        assert ping(bed, "gb", l1.ip)
        assert ping(bed, "rc", l2.ip)  # routed on node2, never leaves it
        assert tcp_ok(bed, "gb", l2.ip, "ra")
        # a restarted agent finds its router, legs and foreign namespace right
        assert bed.restart_agent_first_pass("node1") == 0
        assert ping(bed, "ra", l2.ip, count=1)

        # the green interface goes: the path is cut, green's router legs and the
        # namespaces realized only for the router are removed
        store.delete(if_green.key)
        settle(bed)
        assert not ping(bed, "ra", l2.ip, count=1)
        assert not netns.exists(green_on_1)
        assert netns.exists(rtr["node1"]) and netns.exists(rtr["node2"])  # red ports there
        assert not bed.vm_exec("rc", ["ping", "-c", "1", "-W", "1", l2.ip]).returncode == 0
        bed.vm_delete("rc")  # node2 now has no port in red: no router, no red there
        settle(bed)
        assert not netns.exists(rtr["node2"]) and not netns.exists(red_on_2)

        store.delete(if_red.key)
        store.delete(router.key)
        settle(bed)
        assert not netns.exists(rtr["node1"])
        assert not [n for n in netns.list_names(bed.state.prefix)
                    if any(naming.is_router_ns(ns, n) for ns in node_ns.values())]
    finally:
        for name in [n for n in ("ra", "gb", "rc") if n in bed.state.vms]:
            bed.vm_delete(name)
