"""The qualification topology's expectations, without root."""

from __future__ import annotations

import pytest

from spanwire.qualify.topology import (
    CROSS_NODE,
    CROSS_PROJECT,
    CROSS_SUBNET,
    SAME_NODE,
    SG_ALLOWED,
    SG_DENIED,
    bandwidth_pairs,
    connectivity_matrix,
    default_topology,
)


def test_overlapping_projects_on_every_node() -> None:
    topo = default_topology(["n1", "n2", "n3"])
    assert {v.node for v in topo.vms if v.project == "beta"} == {"n1", "n2", "n3"}
    assert [n.cidr for n in topo.networks].count("10.10.0.0/24") == 2
    a1, b1 = topo.vm("a1"), topo.vm("b1")
    assert a1.ip == b1.ip  # the deliberate overlap
    ips = [(v.network, v.ip) for v in topo.vms]
    assert len(ips) == len(set(ips))


def test_matrix_covers_every_class_and_expects_isolation() -> None:
    topo = default_topology(["n1", "n2"])
    probes = connectivity_matrix(topo)
    assert {p.path_class for p in probes} == {
        SAME_NODE, CROSS_NODE, CROSS_SUBNET, CROSS_PROJECT, SG_ALLOWED, SG_DENIED}
    for p in probes:
        src, = (v for v in topo.vms if v.name == p.src)
        if p.path_class == CROSS_PROJECT and not p.expect:
            assert all(v.ip != p.dst_ip for v in topo.vms if v.network == src.network)
        if p.expect:
            assert p.responder is not None
    # b1 shares a1's address: alpha VMs probing it must get a1, never b1.
    leak = [p for p in probes if p.path_class == CROSS_PROJECT and p.expect]
    assert leak and all(p.responder == "a1" for p in leak if p.src.startswith("a"))


def test_bandwidth_pairs_and_bad_input() -> None:
    pairs = bandwidth_pairs(default_topology(["n1", "n2"]))
    assert set(pairs) == {SAME_NODE, CROSS_NODE, CROSS_SUBNET}
    with pytest.raises(ValueError, match="at least 2 nodes"):
        default_topology(["n1"])


def test_security_group_probes_follow_neutron_semantics() -> None:
    probes = connectivity_matrix(default_topology(["n1", "n2"]))
    into_web = [p for p in probes if p.dst_ip == "10.10.0.61" and p.src.startswith("a")]
    assert {(p.proto, p.expect) for p in into_web} == {("tcp", True), ("icmp", False)}
    out_of_web = [p for p in probes if p.src == "w1" and p.path_class != CROSS_PROJECT]
    assert out_of_web and not any(p.expect for p in out_of_web)  # default group admits members


def test_routed_networks_reach_each_other_only_inside_the_project() -> None:
    probes = connectivity_matrix(default_topology(["n1", "n2"]))
    routed = [p for p in probes if p.path_class == CROSS_SUBNET]
    assert routed and all(p.expect for p in routed)
    assert {p.src for p in routed if p.dst_ip == "10.20.0.10"} >= {"a1", "a4"}
    beta_to_c1 = [p for p in probes if p.src.startswith("b") and p.dst_ip == "10.20.0.10"]
    assert beta_to_c1 and not any(p.expect for p in beta_to_c1)
