"""Distributed routers in the pure planner: where they are realized, order, removal, restarts."""

from __future__ import annotations

from dataclasses import replace

import kernel_sim
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from spanwire.agent import desired, naming, security
from spanwire.agent.plan import ops as o
from spanwire.agent.plan import plan
from spanwire.agent.plan.security_groups import ruleset_digest
from spanwire.agent.state import NodeKernel, RoutingNs
from spanwire.model import FixedIP, Network, Node, Port, SecurityGroupRule, Subnet
from spanwire.model.router import DEVICE_OWNER_INTERFACE

NODES = {n: Node(id=n, underlay_ip=f"10.255.0.{i}", netns=f"swtest-{n}")
         for i, n in enumerate(["node1", "node2", "node3", "node4"], 1)}
A = Network(id="aaaaaaaa-0000-4aaa-8aaa-000000000001", project_id="p", segmentation_id=101)
B = Network(id="bbbbbbbb-0000-4aaa-8aaa-000000000002", project_id="p", segmentation_id=102)
C = Network(id="cccccccc-0000-4aaa-8aaa-000000000003", project_id="p", segmentation_id=103)
NETS = {n.id: n for n in (A, B, C)}
SUBS = {n.id: Subnet(id=n.id.replace("0000", "5555"), project_id="p", network_id=n.id,
                     cidr=f"10.{i}.0.0/24", gateway_ip=f"10.{i}.0.1")
        for i, n in enumerate((A, B, C))}
ROUTER = "dddddddd-0000-4aaa-8aaa-00000000000r"
RULES = [SecurityGroupRule(id=f"sg-{d}", project_id="p", security_group_id="sg", direction=d,
                           remote_group_id="sg" if d == "ingress" else None)
         for d in ("ingress", "egress")]


def vm(i: int, net: Network, node: str) -> Port:
    sub = SUBS[net.id]
    return Port(id=f"{i:08x}-3333-4aaa-8aaa-000000000000", project_id="p", network_id=net.id,
                mac_address=f"fa:16:3e:00:00:{i:02x}", binding_host_id=node,
                fixed_ips=[FixedIP(subnet_id=sub.id, ip_address=sub.cidr[:-4] + str(10 + i))],
                security_groups=["sg"])


def interface(net: Network) -> Port:
    sub = SUBS[net.id]
    return Port(id=f"ffff{net.id[:4]}-3333-4aaa-8aaa-000000000000", project_id="p",
                network_id=net.id, mac_address=f"fa:16:3e:ff:00:{net.segmentation_id:02x}",
                fixed_ips=[FixedIP(subnet_id=sub.id, ip_address=sub.gateway_ip)],
                device_owner=DEVICE_OWNER_INTERFACE, device_id=ROUTER,
                port_security_enabled=False)


VMS = [vm(1, A, "node1"), vm(2, B, "node2"), vm(3, C, "node3"), vm(4, A, "node2")]
ROUTED = [*VMS, interface(A), interface(B)]


def want(node: str = "node1", ports: list[Port] = ROUTED) -> NodeKernel:
    return desired.compute(NODES[node], NODES, NETS, list(SUBS.values()), ports, "/run/sw",
                           groups=security.gather(ports, RULES))


def empty(node: str = "node1", ports: list[Port] = ROUTED) -> NodeKernel:
    taps = {naming.tap(p.id) for p in ports if p.binding_host_id == node}
    return NodeKernel(node_ns=NODES[node].netns, loose_taps=frozenset(taps))


def converge(d: NodeKernel, a: NodeKernel) -> NodeKernel:
    after = kernel_sim.run(a, plan(d, a))
    assert plan(d, after) == [], "a second plan after applying the first must be empty"
    return after


def rns(node: str, net: Network) -> str:
    return naming.routing_ns(NODES[node].netns, net.id)


def rtr(node: str) -> str:
    return naming.router_ns(NODES[node].netns, ROUTER)


def test_router_realized_only_where_an_attached_network_has_a_port() -> None:
    # node1: VM in A → router, A and B (B without a local port); node2: A and B ports
    assert set(want("node1").namespaces) == {rns("node1", A), rns("node1", B), rtr("node1")}
    assert set(want("node2").namespaces) == {rns("node2", A), rns("node2", B), rtr("node2")}
    # node3: only C, which is not attached; node4: nothing at all
    assert set(want("node3").namespaces) == {rns("node3", C)}
    assert want("node4").namespaces == {}
    # without interfaces no router and no foreign namespace anywhere
    assert set(want("node1", VMS).namespaces) == {rns("node1", A)}


def test_routes_point_at_the_other_subnets_and_b_reaches_node2_directly() -> None:
    d = want("node1")
    a, b = d.namespaces[rns("node1", A)], d.namespaces[rns("node1", B)]
    r = d.namespaces[rtr("node1")]
    leg_a = naming.leg_network_end(ROUTER)
    assert {(x.dst, x.dev) for x in a.routes if x.dev == leg_a} == {("10.1.0.0/24", leg_a)}
    assert {(x.dst, x.dev) for x in r.routes} == {
        ("10.0.0.0/24", naming.leg_router_end(A.id)), ("10.1.0.0/24", naming.leg_router_end(B.id))}
    # B on node1: no taps, no DHCP, no table, but a /32 over VXLAN to the VM on node2
    assert not b.taps and b.dhcp is None and b.security is None
    assert any(x.dst == "10.1.0.12/32" and x.via == "10.255.0.2" for x in b.routes)


def test_empty_to_full_creates_before_use_and_restart_is_no_op() -> None:
    d = want("node1")
    ops = plan(d, empty())
    create_leg = next(i for i, op in enumerate(ops) if isinstance(op, o.CreateLeg))
    created_ns = [i for i, op in enumerate(ops) if isinstance(op, o.CreateNetns)]
    assert len(created_ns) == 3 and max(created_ns) < create_leg
    leg_route = next(i for i, op in enumerate(ops) if isinstance(op, o.ReplaceRoute)
                     and op.route.dev.startswith(naming.NETWORK_END))
    assert create_leg < leg_route
    after = converge(d, empty())
    for name, want_ns in d.namespaces.items():
        got = after.namespaces[name]
        assert got.routes == want_ns.routes and got.addrs == want_ns.addrs
        assert {(x.name, x.mtu, x.up) for x in got.legs} == {
            (x.name, x.mtu, x.up) for x in want_ns.legs}
    # read back as actual (legs without peers, as the kernel reader gives them)
    as_actual = NodeKernel(node_ns=d.node_ns, namespaces={
        n: replace(x, dhcp=replace(x.dhcp, pid=7) if x.dhcp else None, router_id="",
                   legs=frozenset(replace(leg, peer_ns="", peer="") for leg in x.legs),
                   security_digest=None if x.security is None else ruleset_digest(x.security),
                   nft_tables=frozenset({"spanwire"}) if x.security else frozenset())
        for n, x in d.namespaces.items()})
    assert plan(d, as_actual) == []


def test_deleting_an_interface_removes_router_legs_and_foreign_namespace() -> None:
    full = converge(want("node1"), empty())
    d = want("node1", [*VMS, interface(A)])  # B's interface removed
    ops = plan(d, full)
    after = converge(d, full)
    assert set(after.namespaces) == {rns("node1", A), rtr("node1")}
    assert {x.name for x in after.namespaces[rtr("node1")].legs} == {naming.leg_router_end(A.id)}
    assert not any(x.dst == "10.1.0.0/24" for x in after.namespaces[rns("node1", A)].routes)
    # the route via the leg goes before the leg, the leg before B's namespace
    kinds = [(type(op).__name__, getattr(op, "ns", "")) for op in ops]
    assert kinds[-1] == ("DeleteNetns", rns("node1", B))
    # router deleted (last interface gone): everything goes, A keeps its VM
    gone = converge(want("node1", VMS), after)
    assert set(gone.namespaces) == {rns("node1", A)}
    assert not gone.namespaces[rns("node1", A)].legs
    assert not any(x.dev.startswith("rr") for x in gone.namespaces[rns("node1", A)].addrs)


def _mutate(d: NodeKernel, data: st.DataObject) -> NodeKernel:
    """Drop namespaces, legs (both ends), entries; break link state."""
    spaces: dict[str, RoutingNs] = {}
    for name in sorted(d.namespaces):
        x = d.namespaces[name]
        if data.draw(st.booleans(), f"drop {name}"):
            continue
        keep = lambda items, label: frozenset(  # noqa: E731
            e for e in sorted(items) if data.draw(st.booleans(), label))
        spaces[name] = replace(
            x, router_id="", security=None, lo_up=data.draw(st.booleans()),
            legs=frozenset(replace(leg, peer_ns="", peer="", up=data.draw(st.booleans()),
                                   mtu=data.draw(st.sampled_from([leg.mtu, 1500])))
                           for leg in x.legs),
            routes=keep(x.routes, "routes"), addrs=keep(x.addrs, "addrs"),
            nft_tables=frozenset(), security_digest=None, dhcp=None)
    # a leg exists only as a pair: both namespaces and both ends, or neither
    for name, x in d.namespaces.items():
        for leg in x.legs:
            if not leg.peer_ns:
                continue
            pair = (name, leg.name), (leg.peer_ns, leg.peer)
            if all(ns in spaces for ns, _ in pair) and data.draw(st.booleans(), "keep leg"):
                continue
            for ns, dev in pair:
                if ns in spaces:
                    s = spaces[ns]
                    spaces[ns] = replace(
                        s, legs=frozenset(g for g in s.legs if g.name != dev),
                        routes=frozenset(r for r in s.routes if r.dev != dev),
                        addrs=frozenset(a for a in s.addrs if a.dev != dev))
    for name, x in spaces.items():  # the sim keeps the router end's peer (it deletes it)
        if name in d.namespaces and d.namespaces[name].router_id:
            peers = {g.name: g for g in d.namespaces[name].legs}
            spaces[name] = replace(x, legs=frozenset(
                replace(g, peer_ns=peers[g.name].peer_ns, peer=peers[g.name].peer)
                for g in x.legs))
    plugged = {t.name for x in spaces.values() for t in x.taps}
    wanted = {t.name for x in d.namespaces.values() for t in x.taps}
    return NodeKernel(node_ns=d.node_ns, namespaces=spaces,
                      loose_taps=frozenset(wanted - plugged))


@settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data(), node=st.sampled_from(["node1", "node2"]))
def test_plan_converges_with_routers_from_arbitrary_actual_state(data: st.DataObject,
                                                                 node: str) -> None:
    d = want(node)
    after = converge(d, _mutate(d, data))
    assert set(after.namespaces) == set(d.namespaces)
    for name, x in d.namespaces.items():
        got = after.namespaces[name]
        assert got.routes == x.routes and got.addrs == x.addrs
        assert {(g.name, g.mtu, g.up) for g in got.legs} == {(g.name, g.mtu, g.up) for g in x.legs}
