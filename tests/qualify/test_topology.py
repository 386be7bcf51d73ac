"""The qualification topology's expectations, without root."""

from __future__ import annotations

import pytest

from spanwire.qualify.topology import (
    CROSS_NODE,
    CROSS_PROJECT,
    CROSS_SUBNET,
    FLOATING_IP,
    OUTSIDE,
    PEER_PORT,
    SAME_NODE,
    SG_ALLOWED,
    SG_DENIED,
    SNAT,
    bandwidth_pairs,
    connectivity_matrix,
    default_topology,
    floating_placeholder,
    north_south_matrix,
    resolve,
    snat_placeholder,
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
    topo = default_topology(["n1", "n2"])
    probes = connectivity_matrix(topo)
    into_web = [p for p in probes if p.dst_ip == "10.10.0.61" and p.src.startswith("a")]
    assert {(p.proto, p.expect) for p in into_web} == {("tcp", True), ("icmp", False)}
    out_of_web = [p for p in probes if p.src == "w1" and p.path_class != CROSS_PROJECT]
    closed = {v.ip for v in topo.vms if not v.floating}  # only in the default group
    # the default group admits its members only; the public group (VMs with a
    # floating IP) admits anyone
    assert out_of_web and all(p.expect == (p.dst_ip not in closed) for p in out_of_web)
    assert any(not p.expect for p in out_of_web) and any(p.expect for p in out_of_web)


def test_north_south_probes_name_who_answers_and_which_address_is_seen() -> None:
    topo = default_topology(["n1", "n2", "n3"])
    probes = north_south_matrix(topo)
    fips = [p for p in probes if p.path_class == FLOATING_IP]
    # alpha's first VM on every node, beta's first (same fixed IP as a1) and w1
    assert {p.responder for p in fips if p.expect} == {"a1", "a3", "a5", "b1", "w1"}
    assert all(p.src == OUTSIDE for p in fips)
    # w1 keeps only its web group: the outside may use TCP but not ping it
    assert {(p.proto, p.expect) for p in fips if p.dst_ip == floating_placeholder("w1")} == {
        ("tcp", True), ("icmp", False)}
    snat = {p.src: p for p in probes if p.path_class == SNAT}
    assert set(snat) == {v.name for v in topo.vms}  # every network here has a router uplink
    assert snat["a1"].responder == floating_placeholder("a1")
    assert snat["a2"].responder == snat_placeholder("alpha-router", "n1")
    assert snat["b2"].responder == snat_placeholder("beta-router", "n2")
    assert snat["c1"].responder == snat_placeholder("alpha-router", "n3")
    assert all(p.port == PEER_PORT and p.dst_ip == OUTSIDE for p in snat.values())

    addresses = {floating_placeholder(v): f"203.0.113.{i}" for i, v in
                 enumerate(["a1", "a3", "a5", "b1", "w1"], 20)}
    addresses |= {snat_placeholder(r, n): f"203.0.113.{i}" for i, (r, n) in enumerate(
        [(r, n) for r in ("alpha-router", "beta-router") for n in ("n1", "n2", "n3")], 40)}
    real = resolve(probes, addresses, "203.0.113.1")
    assert not any(x in p.dst_ip + str(p.responder) for p in real for x in ("fip:", "snat:"))
    assert {p.dst_ip for p in real if p.path_class == SNAT} == {"203.0.113.1"}
    assert next(p for p in real if p.src == "a2").responder == \
        addresses[snat_placeholder("alpha-router", "n1")]
    with pytest.raises(KeyError):
        resolve(probes, {}, "203.0.113.1")


def test_routed_networks_reach_each_other_only_inside_the_project() -> None:
    probes = connectivity_matrix(default_topology(["n1", "n2"]))
    routed = [p for p in probes if p.path_class == CROSS_SUBNET]
    assert routed and all(p.expect for p in routed)
    assert {p.src for p in routed if p.dst_ip == "10.20.0.10"} >= {"a1", "a4"}
    beta_to_c1 = [p for p in probes if p.src.startswith("b") and p.dst_ip == "10.20.0.10"]
    assert beta_to_c1 and not any(p.expect for p in beta_to_c1)
