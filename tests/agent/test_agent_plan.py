"""Pure planner tests: no root, no kernel. A simulated kernel executes the plans."""

from __future__ import annotations

from dataclasses import replace

import kernel_sim
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from spanwire.agent import desired, naming, security
from spanwire.agent.plan import ops as o
from spanwire.agent.plan import plan
from spanwire.agent.plan.security_groups import RulesetChange, ruleset_digest
from spanwire.agent.state import (
    Addr,
    Dhcp,
    Fdb,
    Neigh,
    NodeKernel,
    Route,
    RoutingNs,
    Tap,
    Vxlan,
)
from spanwire.model import FixedIP, Network, Node, Port, SecurityGroupRule, Subnet

NODES = {
    n: Node(id=n, underlay_ip=f"10.255.0.{i}", netns=f"swtest-{n}")
    for i, n in enumerate(["node1", "node2", "node3"], 1)
}
NET = Network(id="11111111-aaaa-4aaa-8aaa-000000000001", project_id="p", segmentation_id=100)
SUB = Subnet(id="22222222-aaaa-4aaa-8aaa-000000000001", project_id="p", network_id=NET.id,
             cidr="10.0.0.0/24", gateway_ip="10.0.0.1", dns_nameservers=["10.0.0.2"])
NET2 = Network(id="11111111-bbbb-4aaa-8aaa-000000000002", project_id="q", segmentation_id=200)
SUB2 = Subnet(id="22222222-bbbb-4aaa-8aaa-000000000002", project_id="q", network_id=NET2.id,
              cidr="10.0.0.0/24", gateway_ip="10.0.0.1")


def port(i: int, node: str, net: Network = NET, sub: Subnet = SUB) -> Port:
    return Port(id=f"{i:08x}-3333-4aaa-8aaa-000000000000", project_id=net.project_id,
                network_id=net.id, mac_address=f"fa:16:3e:00:00:{i:02x}",
                fixed_ips=[FixedIP(subnet_id=sub.id, ip_address=f"10.0.0.{10 + i}")],
                binding_host_id=node, security_groups=[f"default-{net.project_id}"])


def default_rules(project: str) -> list[SecurityGroupRule]:
    group = f"default-{project}"
    return [SecurityGroupRule(id=f"{group}-{d}", project_id=project, security_group_id=group,
                              direction=d, remote_group_id=group if d == "ingress" else None)
            for d in ("ingress", "egress")]


RULES = [*default_rules("p"), *default_rules("q")]


PORTS = [port(1, "node1"), port(2, "node1"), port(3, "node2"), port(4, "node3"),
         port(5, "node1", NET2, SUB2), port(6, "node2", NET2, SUB2)]


def want(ports: list[Port] = PORTS, rules: list[SecurityGroupRule] = RULES) -> NodeKernel:
    return desired.compute(NODES["node1"], NODES, {NET.id: NET, NET2.id: NET2},
                           [SUB, SUB2], ports, "/run/sw", groups=security.gather(ports, rules))


def digest(rns: RoutingNs) -> str | None:
    return None if rns.security is None else ruleset_digest(rns.security)


def empty(ports: list[Port] = PORTS) -> NodeKernel:
    """The node before the agent ran: only the hypervisor's taps exist."""
    taps = {naming.tap(p.id) for p in ports if p.binding_host_id == "node1"}
    return NodeKernel(node_ns="swtest-node1", loose_taps=frozenset(taps))


def converge(d: NodeKernel, a: NodeKernel) -> NodeKernel:
    ops = plan(d, a)
    after = kernel_sim.run(a, ops)
    assert plan(d, after) == [], "a second plan after applying the first must be empty"
    return after


def test_empty_to_full_creates_everything_in_order() -> None:
    d = want()
    ops = plan(d, empty())
    names = [type(op).__name__ for op in ops]
    assert names[0] == "CreateNetns"
    assert names.count("CreateNetns") == 2  # two networks with local ports
    assert names.count("CreateVxlan") == 2 and names.count("MoveTap") == 3
    assert names.count("StartDhcp") == 2
    # within a namespace: the vxlan is created and up before routes use it
    first_ns = [op for op in ops if getattr(op, "ns", None) == ops[0].ns]
    kinds = [type(op).__name__ for op in first_ns]
    assert kinds.index("CreateVxlan") < kinds.index("ReplaceRoute")
    assert kinds.index("MoveTap") < kinds.index("AddAddr")
    after = converge(d, empty())
    for name, rns in d.namespaces.items():
        got = after.namespaces[name]
        assert got.routes == rns.routes and got.neighs == rns.neighs and got.fdbs == rns.fdbs
        assert got.addrs == rns.addrs and got.sysctls == rns.sysctls
        assert {t.name for t in got.taps} == {t.name for t in rns.taps}


def test_full_to_full_is_no_ops() -> None:
    d = want()
    assert plan(d, converge(d, empty())) == []
    # the desired state itself, read back as actual, also needs nothing
    as_actual = NodeKernel(node_ns=d.node_ns, namespaces={
        n: replace(r, dhcp=replace(r.dhcp, pid=7) if r.dhcp else None,
                   security_digest=digest(r), nft_tables=frozenset({"spanwire"}))
        for n, r in d.namespaces.items()})
    assert plan(d, as_actual) == []


def test_deterministic() -> None:
    assert plan(want(), empty()) == plan(want(), empty())
    assert plan(want(list(reversed(PORTS))), empty()) == plan(want(), empty())


def test_only_remote_nodes_with_ports_get_fdb_entries() -> None:
    d = want()
    rns = d.namespaces[naming.routing_ns("swtest-node1", NET.id)]
    assert {f.dst for f in rns.fdbs} == {"10.255.0.2", "10.255.0.3"}
    rns2 = d.namespaces[naming.routing_ns("swtest-node1", NET2.id)]
    assert {f.dst for f in rns2.fdbs} == {"10.255.0.2"}
    # overlapping CIDRs live in separate namespaces with separate VNIs
    assert rns.vxlan and rns2.vxlan and rns.vxlan.vni != rns2.vxlan.vni


def test_leftovers_are_removed() -> None:
    d = want()
    full = converge(d, empty())
    name = naming.routing_ns("swtest-node1", NET.id)
    rns = full.namespaces[name]
    junk = replace(
        rns,
        routes=rns.routes | {Route("10.0.0.99/32", "vx100", "10.255.0.9")},
        fdbs=rns.fdbs | {Fdb("vx100", "02:00:0a:ff:00:09", "10.255.0.9")},
        taps=rns.taps | {Tap("tapdeadbeef-00", 1450)},
        addrs=rns.addrs | {Addr("tapdeadbeef-00", "10.0.0.1/24")},
        other_links=frozenset({"eth9"}),
    )
    stale = RoutingNs(name="swtest-node1-deadbeefdead", dhcp=Dhcp(("x",), (), pid=99))
    actual = NodeKernel(node_ns=d.node_ns, loose_taps=full.loose_taps,
                        namespaces={**full.namespaces, name: junk, stale.name: stale})
    ops = plan(d, actual)
    assert o.DelRoute(name, Route("10.0.0.99/32", "vx100", "10.255.0.9")) in ops
    assert o.DeleteLink(name, "tapdeadbeef-00") in ops and o.DeleteLink(name, "eth9") in ops
    # the address goes with its link: no separate write for it
    assert not any(isinstance(op, o.DelAddr) for op in ops)
    assert ops[-2:] == [o.StopDhcp(stale.name, 99), o.DeleteNetns(stale.name)]
    after = converge(d, actual)
    assert set(after.namespaces) == set(d.namespaces)


def test_port_deleted_then_network_deleted() -> None:
    d = want()
    full = converge(d, empty())
    without_port = [p for p in PORTS if p.id != PORTS[1].id]
    after = converge(want(without_port), full)
    name = naming.routing_ns("swtest-node1", NET.id)
    assert naming.tap(PORTS[1].id) not in {t.name for t in after.namespaces[name].taps}
    no_net = [p for p in without_port if p.network_id != NET.id]
    after = converge(want(no_net), after)
    assert name not in after.namespaces


def test_missing_tap_waits_without_failing() -> None:
    d = want()
    start = replace(empty(), loose_taps=frozenset())
    after = converge(d, start)
    name = naming.routing_ns("swtest-node1", NET.id)
    assert after.namespaces[name].taps == frozenset()
    assert all(r.dev.startswith("vx") for r in after.namespaces[name].routes)


def test_vxlan_with_wrong_vni_is_recreated() -> None:
    d = want()
    full = converge(d, empty())
    name = naming.routing_ns("swtest-node1", NET.id)
    vx = full.namespaces[name].vxlan
    assert vx is not None
    broken = replace(full.namespaces[name], vxlan=replace(vx, local="10.255.0.77", mtu=1500))
    ops = plan(d, replace(full, namespaces={**full.namespaces, name: broken}))
    assert ops[0] == o.DeleteLink(name, vx.name)
    assert isinstance(ops[1], o.CreateVxlan)


# -- property: converge from arbitrary actual states ----------------------------

def _mutations(d: NodeKernel) -> st.SearchStrategy[NodeKernel]:
    """Actual states derived from the desired one: parts missing, parts wrong, junk added."""
    names = sorted(d.namespaces)
    ips = st.sampled_from(["10.0.0.11", "10.0.0.12", "10.0.0.50", "10.0.0.1"])
    junk_route = st.builds(Route, st.builds(lambda ip: f"{ip}/32", ips),
                           st.sampled_from(["vx100", "vx200"]),
                           st.sampled_from([None, "10.255.0.9"]))
    junk_neigh = st.builds(Neigh, st.sampled_from(["vx100", "vx200"]), ips,
                           st.sampled_from(["02:00:00:00:00:01", "fa:16:3e:00:00:01"]))

    def mutate(rns: RoutingNs, data: st.DataObject) -> RoutingNs | None:
        if data.draw(st.booleans(), "drop ns"):
            return None
        def subset(items: frozenset, label: str) -> frozenset:  # type: ignore[type-arg]
            keep = data.draw(st.lists(st.booleans(), min_size=len(items),
                                      max_size=len(items)), label)
            return frozenset(e for e, k in zip(sorted(items), keep, strict=True) if k)
        vx = rns.vxlan
        if vx is not None and data.draw(st.booleans(), "vx"):
            vx = data.draw(st.sampled_from([None, replace(vx, up=False), replace(vx, mtu=1500),
                                            replace(vx, vni=vx.vni + 1)]), "vx variant")
        vx_name = vx.name if vx else None
        # A kernel keys routes by destination and neighbours by (device, address):
        # junk may replace a kept entry but never duplicates its key.
        routes = {r.dst: r for r in subset(rns.routes, "routes")}
        for r in data.draw(st.lists(junk_route, max_size=3), "junk routes"):
            if r.dev == vx_name:
                routes[r.dst] = r
        neighs = {(n.dev, n.ip): n for n in subset(rns.neighs, "neighs")}
        for n in data.draw(st.lists(junk_neigh, max_size=2), "junk neighs"):
            if n.dev == vx_name:
                neighs[(n.dev, n.ip)] = n
        taps = subset(rns.taps, "taps")
        tap_names = {t.name for t in taps}
        keep_dev = tap_names | ({vx_name} if vx_name else set())
        dhcp = rns.dhcp
        if dhcp is not None:
            dhcp = data.draw(st.sampled_from([None, replace(dhcp, pid=5),
                                              replace(dhcp, files=(), pid=6)]), "dhcp")
        # the table: right, absent, without digest, another ruleset, only other members
        good = digest(rns)
        assert good is not None
        sg_digest, sg_tables = data.draw(st.sampled_from([
            (good, {"spanwire"}), (None, set()), (None, {"spanwire"}),
            ("0" * 32 + "-" + "1" * 32, {"spanwire"}),
            ("0" * 32 + "-" + good.split("-")[1], {"spanwire"})]), "sg table")
        if data.draw(st.booleans(), "stale table"):
            sg_tables = sg_tables | {"spanwire_ps"}
        return replace(
            rns, vxlan=vx, security=None, security_digest=sg_digest,
            nft_tables=frozenset(sg_tables),
            taps=frozenset(replace(t, up=data.draw(st.booleans())) for t in taps),
            routes=frozenset(r for r in routes.values() if r.dev in keep_dev),
            neighs=frozenset(n for n in neighs.values() if n.dev in keep_dev),
            fdbs=frozenset(f for f in subset(rns.fdbs, "fdbs") if f.dev in keep_dev),
            addrs=frozenset(a for a in subset(rns.addrs, "addrs") if a.dev in keep_dev),
            sysctls=frozenset(kv for kv in subset(rns.sysctls, "sysctls")
                              if "/tap" not in kv[0] or any(t in kv[0] for t in tap_names)),
            lo_up=data.draw(st.booleans(), "lo"), dhcp=dhcp,
        )

    @st.composite
    def build(draw: st.DrawFn) -> NodeKernel:
        data = draw(st.data())
        spaces = {}
        for name in names:
            got = mutate(d.namespaces[name], data)
            if got is not None:
                spaces[name] = got
        if draw(st.booleans()):
            spaces["swtest-node1-0badc0de0bad"] = RoutingNs(
                name="swtest-node1-0badc0de0bad", vxlan=Vxlan("vx9", 9, "10.255.0.1", 4789, 1450,
                                                          "02:00:0a:ff:00:01"))
        plugged = {t.name for r in spaces.values() for t in r.taps}
        wanted = {t.name for r in d.namespaces.values() for t in r.taps}
        loose = frozenset(draw(st.sets(st.sampled_from(sorted(wanted - plugged)))
                               if wanted - plugged else st.just(set())))
        return NodeKernel(node_ns=d.node_ns, namespaces=spaces, loose_taps=loose)

    return build()


@settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data())
def test_plan_converges_from_arbitrary_actual_state(data: st.DataObject) -> None:
    d = want()
    actual = data.draw(_mutations(d))
    after = converge(d, actual)
    assert set(after.namespaces) == set(d.namespaces)
    for name, rns in d.namespaces.items():
        got = after.namespaces[name]
        present = {t.name for t in got.taps}
        assert got.vxlan == rns.vxlan
        assert got.fdbs == rns.fdbs
        assert got.routes == frozenset(r for r in rns.routes
                                       if r.dev.startswith("vx") or r.dev in present)
        assert got.dhcp is not None and got.dhcp.same_config(rns.dhcp)
        assert got.security_digest == digest(rns) and got.nft_tables == {"spanwire"}


def test_security_groups_follow_ports_rules_and_members() -> None:
    d = want()
    name = naming.routing_ns("swtest-node1", NET.id)
    doc = d.namespaces[name].security
    assert doc is not None
    text = doc.render()
    assert naming.tap(PORTS[0].id) in text and naming.tap(PORTS[1].id) in text
    assert "10.0.0.14" in text  # a remote node's port is a member of the default group
    assert naming.tap(PORTS[4].id) not in text  # another network, another namespace
    full = converge(d, empty())
    # a membership change elsewhere is a set update, a new rule an in-place
    # change of the table this agent applied (it tracks what it applied)
    moved = [p.evolve(fixed_ips=[FixedIP(subnet_id=SUB.id, ip_address="10.0.0.99")])
             if p.id == PORTS[3].id else p for p in PORTS]
    ops = plan(want(moved), full)
    assert [(op.ns, op.change) for op in ops if isinstance(op, o.ApplyRuleset)] == [
        (name, RulesetChange.SETS), (name, RulesetChange.SEAL)]
    assert isinstance(ops[-1], o.ApplyRuleset) and ops[-1].change == RulesetChange.SEAL, \
        "the digest's transaction (it waits on the kernel) comes after everything else"
    extra = SecurityGroupRule(id="r-tcp", project_id="p", security_group_id="default-p",
                              direction="ingress", protocol="tcp", port_range_min=7007,
                              remote_ip_prefix="0.0.0.0/0")
    ops = plan(want(PORTS, [*RULES, extra]), full)
    assert [(op.ns, op.change) for op in ops] == [(name, RulesetChange.INCREMENTAL),
                                                   (name, RulesetChange.SEAL)]
    # a kernel read back after a restart holds no applied table: a whole swap
    read_back = replace(full, namespaces={n: replace(x, security_applied=None)
                                          for n, x in full.namespaces.items()})
    ops = plan(want(PORTS, [*RULES, extra]), read_back)
    assert [(op.ns, op.change) for op in ops] == [(name, RulesetChange.REPLACE)]
    # no port security anywhere in the namespace: the table goes
    no_sec = [p.evolve(port_security_enabled=False) if p.network_id == NET.id else p
              for p in PORTS]
    assert want(no_sec).namespaces[name].security is None
    ops = plan(want(no_sec), full)
    assert o.ApplyRuleset(name, RulesetChange.DELETE, table="spanwire") in ops
    assert converge(want(no_sec), full).namespaces[name].nft_tables == frozenset()


def test_table_goes_in_before_taps_and_without_group_data_is_left_alone() -> None:
    d = want()
    ops = plan(d, empty())
    kinds = [type(op).__name__ for op in ops if getattr(op, "ns", None) == ops[0].ns]
    assert kinds.index("ApplyRuleset") < kinds.index("MoveTap")
    unmanaged = desired.compute(NODES["node1"], NODES, {NET.id: NET, NET2.id: NET2},
                                [SUB, SUB2], PORTS, "/run/sw")
    assert not any(isinstance(op, o.ApplyRuleset) for op in plan(unmanaged, empty()))
