"""North-south in the pure planner: gateway claims, gateways, floating IPs, NAT, announcements.

One router with its gateway on a flat provider network ("public"), attached
to two tenant networks. node1 and node2 are wired to "public", node3 is not.
Every node that realizes the router has its own gateway port; floating IPs
live on the node of their port.
"""

from __future__ import annotations

import struct
from dataclasses import replace

import kernel_sim
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from spanwire.agent import desired, naming, north_south, security
from spanwire.agent.plan import nat, plan
from spanwire.agent.plan import ops as o
from spanwire.agent.plan.security_groups import META_CHAIN, RulesetChange, ruleset_digest
from spanwire.agent.routers import DEFAULT
from spanwire.agent.state import Addr, Gateway, NodeKernel, Route, RoutingNs
from spanwire.dataplane import garp
from spanwire.model import (
    FixedIP,
    FloatingIP,
    Network,
    Node,
    Port,
    Router,
    SecurityGroupRule,
    Subnet,
)
from spanwire.model.router import DEVICE_OWNER_GATEWAY, DEVICE_OWNER_INTERFACE

WIRED = {"public": "px0"}
NODES = {n: Node(id=n, underlay_ip=f"10.255.0.{i}", netns=f"swtest-{n}",
                 provider_mappings=WIRED if n != "node3" else {})
         for i, n in enumerate(["node1", "node2", "node3"], 1)}
EXT = Network.model_validate({"id": "eeeeeeee-0000-4aaa-8aaa-000000000001", "project_id": "admin",
                              "router:external": True, "provider:network_type": "flat",
                              "provider:physical_network": "public"})
EXT_SUB = Subnet(id="eeeeeeee-5555-4aaa-8aaa-000000000001", project_id="admin",
                 network_id=EXT.id, cidr="203.0.113.0/24", gateway_ip="203.0.113.1")
A = Network(id="aaaaaaaa-0000-4aaa-8aaa-000000000001", project_id="p", segmentation_id=301)
B = Network(id="bbbbbbbb-0000-4aaa-8aaa-000000000002", project_id="p", segmentation_id=302)
NETS = {n.id: n for n in (EXT, A, B)}
SUBS = {n.id: Subnet(id=n.id.replace("0000", "5555"), project_id="p", network_id=n.id,
                     cidr=f"10.{40 + i}.0.0/24", gateway_ip=f"10.{40 + i}.0.1")
        for i, n in enumerate((A, B))}
SUBS[EXT.id] = EXT_SUB
ROUTER_ID = "dddddddd-0000-4aaa-8aaa-000000000001"
ROUTER = Router(id=ROUTER_ID, project_id="p", external_gateway_info={"network_id": EXT.id})
QG = naming.gateway(ROUTER_ID)
RULES = [SecurityGroupRule(id=f"sg-{d}", project_id="p", security_group_id="sg", direction=d,
                           remote_group_id="sg" if d == "ingress" else None)
         for d in ("ingress", "egress")]
VM_NETS = {1: A, 2: A, 3: B, 4: A, 5: B}
VM_NODES = {1: "node1", 2: "node2", 3: "node1", 4: "node3", 5: "node2"}


def vm(i: int, node: str | None = None) -> Port:
    net = VM_NETS[i]
    sub = SUBS[net.id]
    return Port(id=f"{i:08x}-3333-4aaa-8aaa-000000000000", project_id="p", network_id=net.id,
                mac_address=f"fa:16:3e:00:00:{i:02x}", binding_host_id=node or VM_NODES[i],
                fixed_ips=[FixedIP(subnet_id=sub.id, ip_address=sub.cidr[:-4] + str(10 + i))],
                security_groups=["sg"])


def interface(net: Network) -> Port:
    sub = SUBS[net.id]
    return Port(id=f"ffff{net.id[:4]}-3333-4aaa-8aaa-000000000000", project_id="p",
                network_id=net.id, mac_address=f"fa:16:3e:ff:00:{net.segmentation_id % 256:02x}",
                fixed_ips=[FixedIP(subnet_id=sub.id, ip_address=sub.gateway_ip)],
                device_owner=DEVICE_OWNER_INTERFACE, device_id=ROUTER_ID,
                port_security_enabled=False)


def gateway_port(node: str, mac: str | None = None, ip: str | None = None) -> Port:
    """`node`'s own gateway port of the router, as the API's allocator hands it out."""
    n = int(node[-1])
    return Port(id=f"9999000{n}-3333-4aaa-8aaa-000000000000", project_id="admin",
                network_id=EXT.id, mac_address=mac or f"fa:16:3e:aa:00:{n:02x}",
                fixed_ips=[FixedIP(subnet_id=EXT_SUB.id, ip_address=ip or f"203.0.113.{10 + n}")],
                device_owner=DEVICE_OWNER_GATEWAY, device_id=ROUTER_ID, binding_host_id=node)


def fip(n: int, vm_index: int | None) -> FloatingIP:
    port = vm(vm_index) if vm_index is not None else None
    return FloatingIP(id=f"f1f1f1f1-0000-4aaa-8aaa-{n:012d}", project_id="p",
                      floating_network_id=EXT.id, floating_ip_address=f"203.0.113.{n}",
                      port_id=port.id if port else None, router_id=ROUTER_ID if port else None,
                      fixed_ip_address=port.fixed_ips[0].ip_address if port else None)


VMS = [vm(i) for i in sorted(VM_NODES)]
INTERFACES = [interface(A), interface(B)]
GATEWAYS = [gateway_port("node1"), gateway_port("node2")]
FIPS = [fip(101, 1), fip(102, 2), fip(103, None)]


def replace_router(**changes: object) -> Router:
    return Router.model_validate({**ROUTER.model_dump(), **changes})


def want(node: str = "node1", vms: list[Port] = VMS, fips: list[FloatingIP] = FIPS,
         gateways: list[Port] = GATEWAYS, router: Router = ROUTER) -> NodeKernel:
    ports = [*vms, *INTERFACES, *gateways]
    return desired.compute(NODES[node], NODES, NETS, list(SUBS.values()), ports, "/run/sw",
                           groups=security.gather(ports, RULES),
                           router_objects={router.id: router}, floating_ips=fips)


def empty(node: str = "node1", vms: list[Port] = VMS) -> NodeKernel:
    taps = {naming.tap(p.id) for p in vms if p.binding_host_id == node}
    return NodeKernel(node_ns=NODES[node].netns, loose_taps=frozenset(taps))


def converge(d: NodeKernel, a: NodeKernel) -> kernel_sim.Run:
    done = kernel_sim.execute(a, plan(d, a))
    assert plan(d, done.kernel) == [], "a second plan after applying the first must be empty"
    return done


def rtr(node: str = "node1") -> str:
    return naming.router_ns(NODES[node].netns, ROUTER_ID)


def rns(net: Network, node: str = "node1") -> str:
    return naming.routing_ns(NODES[node].netns, net.id)


def on_gateway(x: RoutingNs) -> set[str]:
    return {a.cidr for a in x.addrs if a.dev == QG}


def nat_rules(doc: dict) -> dict[str, list[list[dict]]]:
    """Chain → rule expressions, in document order (the digest rule left out)."""
    out: dict[str, list[list[dict]]] = {}
    for cmd in doc["nftables"]:
        rule = cmd.get("add", {}).get("rule")
        if rule and rule["chain"] != META_CHAIN:
            out.setdefault(rule["chain"], []).append(rule["expr"])
    return out


def meta(expr: list[dict], key: str) -> object:
    return next((e["match"]["right"] for e in expr if "match" in e
                 and e["match"]["left"].get("meta", {}).get("key") == key), None)


def payload(expr: list[dict], field: str) -> object:
    return next((e["match"]["right"] for e in expr if "match" in e
                 and e["match"]["left"].get("payload", {}).get("field") == field), None)


def read_back(d: NodeKernel) -> NodeKernel:
    """`d` as `actual.read` would find it after a restart (fields it cannot see cleared)."""
    def one(x: RoutingNs) -> RoutingNs:
        return replace(
            x, router_id="", security=None, nat=None,
            dhcp=replace(x.dhcp, pid=7) if x.dhcp else None,
            legs=frozenset(replace(leg, peer_ns="", peer="") for leg in x.legs),
            gateway=None if x.gateway is None else replace(x.gateway, parent=""),
            security_digest=None if x.security is None else ruleset_digest(x.security),
            nat_digest=None if x.nat is None else ruleset_digest(x.nat),
            nft_tables=frozenset(t for t, doc in (("spanwire", x.security), (nat.TABLE, x.nat))
                                 if doc is not None))
    return NodeKernel(node_ns=d.node_ns, namespaces={n: one(x) for n, x in d.namespaces.items()})


# -- claims --------------------------------------------------------------------


def test_claims_follow_realization_and_wiring() -> None:
    routers = {ROUTER_ID: ROUTER}
    ports = [*VMS, *INTERFACES]
    realized = [x.router_id for x in want("node1").namespaces.values() if x.router_id]
    assert realized == [ROUTER_ID]
    # realized, reachable, no port yet: claim; with its own port: nothing to do
    assert north_south.claims(NODES["node1"], realized, routers, NETS, ports) == ([ROUTER_ID], [])
    assert north_south.claims(NODES["node1"], realized, routers, NETS,
                              [*ports, gateway_port("node1")]) == ([], [])
    # another node's port is not this node's address
    assert north_south.claims(NODES["node1"], realized, routers, NETS,
                              [*ports, gateway_port("node2")]) == ([ROUTER_ID], [])
    # node3 realizes the router (vm4) but is not wired to "public"
    assert [x.router_id for x in want("node3").namespaces.values() if x.router_id] == [ROUTER_ID]
    assert north_south.claims(NODES["node3"], [ROUTER_ID], routers, NETS, ports) == ([], [])
    # no longer realized: its port goes back
    assert north_south.claims(NODES["node1"], [], routers, NETS,
                              [*ports, gateway_port("node1")]) == ([], [ROUTER_ID])
    # a router without gateway, or with it on a non-external network, claims nothing
    bare = {ROUTER_ID: replace_router(external_gateway_info=None)}
    assert north_south.claims(NODES["node1"], realized, bare, NETS, ports) == ([], [])
    internal = {ROUTER_ID: replace_router(external_gateway_info={"network_id": A.id})}
    assert north_south.claims(NODES["node1"], realized, internal, NETS, ports) == ([], [])


# -- realize ---------------------------------------------------------------------


def test_gateway_device_addresses_and_routes() -> None:
    for node in ("node1", "node2"):
        r = want(node).namespaces[rtr(node)]
        n = int(node[-1])
        assert r.gateway == Gateway(name=QG, mac=f"fa:16:3e:aa:00:{n:02x}", mtu=EXT.mtu,
                                    parent="px0")
        fip_ip = {"node1": "203.0.113.101/32", "node2": "203.0.113.102/32"}[node]
        assert on_gateway(r) == {f"203.0.113.{10 + n}/24", fip_ip}
        assert {x for x in r.routes if x.dev == QG} == {
            Route(dst="203.0.113.0/24", dev=QG), Route(dst=DEFAULT, dev=QG, via="203.0.113.1")}


def test_floating_ip_only_on_the_node_of_its_port() -> None:
    cidrs = {node: on_gateway(want(node).namespaces[rtr(node)]) for node in ("node1", "node2")}
    assert "203.0.113.101/32" in cidrs["node1"] and "203.0.113.101/32" not in cidrs["node2"]
    assert "203.0.113.102/32" in cidrs["node2"] and "203.0.113.102/32" not in cidrs["node1"]
    # the unassociated one nowhere
    assert not any("203.0.113.103/32" in c for c in cidrs.values())
    # a floating IP of another router, or naming an address its port does not have: nowhere
    other = fip(101, 1).model_copy(update={"router_id": "cccccccc-0000-4aaa-8aaa-000000000009"})
    wrong = fip(101, 1).model_copy(update={"fixed_ip_address": "10.40.0.99"})
    for bad in (other, wrong):
        assert "203.0.113.101/32" not in on_gateway(want(fips=[bad]).namespaces[rtr()])


def test_nat_table_dnat_on_gateway_only_and_fip_snat_before_subnet_snat() -> None:
    r = want("node1").namespaces[rtr()]
    assert r.nat is not None
    chains = nat_rules(r.nat)
    assert set(chains) == {"dnat", "snat"}
    # DNAT: only what arrives from the provider network, for node1's one floating IP
    assert [meta(x, "iifname") for x in chains["dnat"]] == [QG]
    assert [payload(x, "daddr") for x in chains["dnat"]] == ["203.0.113.101"]
    assert chains["dnat"][0][-1] == {"dnat": {"family": "ip", "addr": "10.40.0.11"}}
    # SNAT: the floating IP's pair first, then the attached subnets to node1's address
    assert all(meta(x, "oifname") == QG for x in chains["snat"])
    assert [x[-1]["snat"]["addr"] for x in chains["snat"]] == ["203.0.113.101", "203.0.113.11"]
    assert payload(chains["snat"][0], "saddr") == "10.40.0.11"
    assert payload(chains["snat"][1], "saddr") == {"set": [
        {"prefix": {"addr": "10.40.0.0", "len": 24}}, {"prefix": {"addr": "10.41.0.0", "len": 24}}]}
    # node2 translates only its own
    chains2 = nat_rules(want("node2").namespaces[rtr("node2")].nat or {})
    assert [payload(x, "daddr") for x in chains2["dnat"]] == ["203.0.113.102"]
    assert [x[-1]["snat"]["addr"] for x in chains2["snat"]] == ["203.0.113.102", "203.0.113.12"]


def test_enable_snat_false_keeps_fips_and_drops_subnet_snat() -> None:
    no_snat = replace_router(external_gateway_info={"network_id": EXT.id, "enable_snat": False})
    r = want("node1", router=no_snat).namespaces[rtr()]
    chains = nat_rules(r.nat or {})
    assert [x[-1]["snat"]["addr"] for x in chains["snat"]] == ["203.0.113.101"]
    assert [payload(x, "daddr") for x in chains["dnat"]] == ["203.0.113.101"]
    # nothing to translate: no table at all (the gateway itself stays)
    bare = want("node1", router=no_snat, fips=[]).namespaces[rtr()]
    assert bare.nat is None and bare.gateway is not None
    assert on_gateway(bare) == {"203.0.113.11/24"}


def test_routing_namespaces_default_route_via_the_leg_only_with_a_gateway() -> None:
    leg = naming.leg_network_end(ROUTER_ID)
    default = Route(dst=DEFAULT, dev=leg, via=naming.LEG_ROUTER_IP)
    d = want("node1")
    for net in (A, B):
        assert default in d.namespaces[rns(net)].routes
    bare = want("node1", router=replace_router(external_gateway_info=None), gateways=[])
    for net in (A, B):
        assert not any(x.dst == DEFAULT for x in bare.namespaces[rns(net)].routes)
    r = bare.namespaces[rtr()]
    assert r.gateway is None and r.nat is None and not on_gateway(r)
    assert not any(x.dst == DEFAULT for x in r.routes)
    # east-west is unchanged by north-south
    assert {x for x in r.routes} == {x for x in d.namespaces[rtr()].routes if x.dev != QG}


def test_no_gateway_until_the_node_port_is_claimed_or_where_not_wired() -> None:
    unclaimed = want("node1", gateways=[gateway_port("node2")]).namespaces[rtr()]
    assert unclaimed.gateway is None and unclaimed.nat is None and not on_gateway(unclaimed)
    assert not any(x.dev == QG for x in unclaimed.routes)
    # node3 is not wired to "public": even a port bound to it would not give it a gateway
    r3 = want("node3", gateways=[*GATEWAYS, gateway_port("node3")]).namespaces[rtr("node3")]
    assert r3.gateway is None and r3.nat is None


# -- plan ------------------------------------------------------------------------


def test_empty_to_full_converges_and_announces_every_new_gateway_address() -> None:
    d = want("node1")
    ops = plan(d, empty())
    done = converge(d, empty())
    got = done.kernel.namespaces[rtr()]
    want_r = d.namespaces[rtr()]
    assert want_r.gateway is not None and want_r.nat is not None
    assert got.gateway == replace(want_r.gateway, parent="")
    assert got.addrs == want_r.addrs and got.routes == want_r.routes
    assert got.nat_digest == ruleset_digest(want_r.nat) and got.security_digest is None
    assert got.nft_tables == {nat.TABLE}
    # the gateway is created down in the router namespace, then brought up
    create = ops.index(o.CreateGateway(d.node_ns, rtr(), want_r.gateway))
    assert ops[create + 1] == o.SetLink(rtr(), QG, up=True)
    # announcements last, each after its address was added, one per gateway address
    announces = [i for i, op in enumerate(ops) if isinstance(op, o.Announce)]
    assert announces == list(range(len(ops) - len(announces), len(ops)))
    added = {(op.ns, op.addr.dev, op.addr.cidr.split("/")[0]): i
             for i, op in enumerate(ops) if isinstance(op, o.AddAddr)}
    for i in announces:
        op = ops[i]
        assert isinstance(op, o.Announce) and added[(op.ns, op.dev, op.ip)] < i
    assert {(a.ns, a.dev, a.ip, a.mac) for a in done.announced} == {
        (rtr(), QG, "203.0.113.11", "fa:16:3e:aa:00:01"),
        (rtr(), QG, "203.0.113.101", "fa:16:3e:aa:00:01")}
    assert len(done.announced) == 2


def test_warm_restart_plans_nothing() -> None:
    for node in ("node1", "node2", "node3"):
        d = want(node)
        assert plan(d, read_back(d)) == []
    # and the digests are what the simulated kernel holds after a cold start
    d = want("node1")
    after = converge(d, empty()).kernel
    assert after.namespaces[rtr()].nat_digest == read_back(d).namespaces[rtr()].nat_digest


def test_moving_a_floating_ip_to_another_node() -> None:
    moved = [fip(101, 5), fip(102, 2), fip(103, None)]  # vm1's address now on vm5 (node2)
    old = converge(want("node1"), empty("node1")).kernel
    ops = plan(want("node1", fips=moved), old)
    nat_ops = [op for op in ops if isinstance(op, o.ApplyRuleset)]
    assert [(op.ns, op.change, op.table) for op in nat_ops] == [
        (rtr(), RulesetChange.REPLACE, nat.TABLE)]
    assert [op for op in ops if not isinstance(op, o.ApplyRuleset)] == [
        o.DelAddr(rtr(), Addr(QG, "203.0.113.101/32"))]
    done = converge(want("node1", fips=moved), old)
    assert done.announced == ()

    new = converge(want("node2"), empty("node2")).kernel
    ops = plan(want("node2", fips=moved), new)
    assert {type(op) for op in ops} == {o.AddAddr, o.ApplyRuleset, o.Announce}
    assert [op for op in ops if isinstance(op, o.AddAddr)] == [
        o.AddAddr(rtr("node2"), Addr(QG, "203.0.113.101/32"))]
    assert ops[-1] == o.Announce(rtr("node2"), QG, "203.0.113.101")
    done = converge(want("node2", fips=moved), new)
    assert [a.mac for a in done.announced] == ["fa:16:3e:aa:00:02"]
    chains = nat_rules(want("node2", fips=moved).namespaces[rtr("node2")].nat or {})
    assert sorted(payload(x, "daddr") for x in chains["dnat"]) == ["203.0.113.101",
                                                                   "203.0.113.102"]


def test_clearing_the_gateway_removes_link_nat_and_default_routes() -> None:
    full = converge(want("node1"), empty()).kernel
    cleared = want("node1", router=replace_router(external_gateway_info=None), gateways=[],
                   fips=[fip(101, None), fip(102, None)])
    ops = plan(cleared, full)
    assert o.DeleteLink(rtr(), QG) in ops
    assert o.ApplyRuleset(rtr(), RulesetChange.DELETE, table=nat.TABLE) in ops
    leg = naming.leg_network_end(ROUTER_ID)
    assert {op for op in ops if isinstance(op, o.DelRoute)} == {
        o.DelRoute(rns(net), Route(DEFAULT, leg, naming.LEG_ROUTER_IP)) for net in (A, B)}
    # what is on the gateway goes with it; nothing new is created or announced
    assert not any(isinstance(op, (o.DelAddr, o.CreateGateway, o.Announce, o.AddAddr))
                   for op in ops)
    after = converge(cleared, full).kernel
    r = after.namespaces[rtr()]
    assert r.gateway is None and r.nat_digest is None and nat.TABLE not in r.nft_tables
    assert not on_gateway(r) and not any(x.dev == QG for x in r.routes)
    assert not any(x.dst == DEFAULT for x in after.namespaces[rns(A)].routes)
    # the gateway port still in the store (the API has not removed it yet) changes nothing
    assert plan(want("node1", router=replace_router(external_gateway_info=None),
                     fips=[]), after) == []


def test_gateway_mac_change_is_set_link_not_recreate() -> None:
    full = converge(want("node1"), empty()).kernel
    d = want("node1", gateways=[gateway_port("node1", mac="fa:16:3e:bb:00:01")])
    ops = plan(d, full)
    assert o.SetLink(rtr(), QG, mtu=EXT.mtu, mac="fa:16:3e:bb:00:01", up=True) in ops
    assert not any(isinstance(op, (o.CreateGateway, o.DeleteLink, o.AddAddr, o.DelAddr,
                                   o.ApplyRuleset)) for op in ops)
    # the provider network learns the new MAC for every address at once
    announced = {op.ip for op in ops if isinstance(op, o.Announce)}
    assert announced == {a.cidr.split("/")[0] for a in d.namespaces[rtr()].addrs
                         if a.dev == QG} and announced
    gw = converge(d, full).kernel.namespaces[rtr()].gateway
    assert gw is not None and gw.mac == "fa:16:3e:bb:00:01"


def test_gateway_address_change_replaces_address_nat_and_announces() -> None:
    full = converge(want("node1"), empty()).kernel
    d = want("node1", gateways=[gateway_port("node1", ip="203.0.113.50")])
    ops = plan(d, full)
    assert o.AddAddr(rtr(), Addr(QG, "203.0.113.50/24")) in ops
    assert o.DelAddr(rtr(), Addr(QG, "203.0.113.11/24")) in ops
    assert [op for op in ops if isinstance(op, o.Announce)] == [
        o.Announce(rtr(), QG, "203.0.113.50")]
    chains = nat_rules(d.namespaces[rtr()].nat or {})
    assert chains["snat"][-1][-1]["snat"]["addr"] == "203.0.113.50"
    converge(d, full)


# -- the simulated kernel is as strict as the real one ------------------------------


def test_sim_rejects_announce_before_address_and_gateway_without_parent() -> None:
    d = want("node1")
    ops = plan(d, empty())
    announce = next(op for op in ops if isinstance(op, o.Announce))
    early = [op for op in ops if not isinstance(op, o.Announce)]
    first_addr = next(i for i, op in enumerate(early)
                      if isinstance(op, o.AddAddr) and op.addr.dev == QG)
    with pytest.raises(kernel_sim.SimError, match="does not hold"):
        kernel_sim.run(empty(), [*early[:first_addr], announce])
    gw = next(op for op in ops if isinstance(op, o.CreateGateway))
    with pytest.raises(kernel_sim.SimError, match="parent"):
        kernel_sim.run(empty(), [o.CreateNetns(rtr()),
                                 replace(gw, gateway=replace(gw.gateway, parent=""))])
    with pytest.raises(kernel_sim.SimError, match="exists"):
        kernel_sim.run(empty(), [o.CreateNetns(rtr()), gw, gw])
    with pytest.raises(kernel_sim.SimError, match="down"):
        kernel_sim.run(empty(), [o.CreateNetns(rtr()), gw,
                                 o.AddAddr(rtr(), Addr(QG, "203.0.113.11/24")),
                                 o.Announce(rtr(), QG, "203.0.113.11")])


def test_sim_keeps_nat_and_security_digests_apart() -> None:
    after = converge(want("node1"), empty()).kernel
    for net in (A, B):
        x = after.namespaces[rns(net)]
        assert x.nat_digest is None and nat.TABLE not in x.nft_tables
    r = after.namespaces[rtr()]
    assert r.security_digest is None and r.nft_tables == {nat.TABLE}
    deleted = kernel_sim.run(after, [o.ApplyRuleset(rtr(), RulesetChange.DELETE,
                                                    table=nat.TABLE)])
    assert deleted.namespaces[rtr()].nat_digest is None
    assert deleted.namespaces[rtr()].nft_tables == frozenset()


# -- gratuitous ARP frames -----------------------------------------------------------


def test_garp_frame_is_a_broadcast_request_for_the_address_itself() -> None:
    data = garp.frame("fa:16:3e:aa:00:01", "203.0.113.101")
    assert len(data) == 42
    mac = bytes.fromhex("fa163eaa0001")
    ip = bytes([203, 0, 113, 101])
    assert data[:6] == b"\xff" * 6 and data[6:12] == mac
    assert struct.unpack("!H", data[12:14]) == (0x0806,)
    htype, ptype, hlen, plen, oper, sha, spa, tha, tpa = struct.unpack(
        "!HHBBH6s4s6s4s", data[14:])
    assert (htype, ptype, hlen, plen, oper) == (1, 0x0800, 6, 4, 1)
    assert (sha, spa, tpa) == (mac, ip, ip) and tha == b"\0" * 6


@pytest.mark.parametrize("mac", ["fa:16:3e:aa:00", "fa:16:3e:aa:00:01:02", "zz:16:3e:aa:00:01",
                                 ""])
def test_garp_frame_rejects_a_bad_mac(mac: str) -> None:
    with pytest.raises(ValueError):
        garp.frame(mac, "203.0.113.101")


# -- property: any world to any world, in one plan ----------------------------------


@st.composite
def worlds(draw: st.DrawFn) -> dict:
    nodes = st.sampled_from([None, "node1", "node2", "node3"])
    vms = [vm(i, node) for i in sorted(VM_NODES) if (node := draw(nodes, f"vm{i}"))]
    present = {int(p.id[:8], 16) for p in vms}
    targets = {n: draw(st.sampled_from([None, *sorted(VM_NODES)]), f"fip{n}")
               for n in (101, 102, 103)}
    fips = [fip(n, t if t in present else None) for n, t in targets.items()]
    gateways = [gateway_port(n, mac=draw(st.sampled_from([None, "fa:16:3e:bb:00:0" + n[-1]])),
                             ip=draw(st.sampled_from([None, f"203.0.113.{60 + int(n[-1])}"])))
                for n in ("node1", "node2") if draw(st.booleans(), f"port {n}")]
    info = draw(st.sampled_from([None, {"network_id": EXT.id},
                                 {"network_id": EXT.id, "enable_snat": False}]))
    return {"vms": vms, "fips": fips, "gateways": gateways,
            "router": replace_router(external_gateway_info=info)}


def _replug(kernel: NodeKernel, node: str, vms: list[Port]) -> NodeKernel:
    """The hypervisor's new taps for `vms` on `node`, next to what is plugged already."""
    plugged = {t.name for x in kernel.namespaces.values() for t in x.taps}
    wanted = {naming.tap(p.id) for p in vms if p.binding_host_id == node}
    return replace(kernel, loose_taps=frozenset(wanted - plugged))


@settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(first=worlds(), second=worlds(), node=st.sampled_from(["node1", "node2", "node3"]))
def test_plan_converges_between_arbitrary_north_south_worlds(first: dict, second: dict,
                                                             node: str) -> None:
    d1, d2 = want(node, **first), want(node, **second)
    cold = kernel_sim.run(empty(node, second["vms"]), plan(d2, empty(node, second["vms"])))
    assert plan(d2, cold) == []
    before = _replug(converge(d1, empty(node, first["vms"])).kernel, node, second["vms"])
    ops = plan(d2, before)
    done = converge(d2, before)
    # every address that appeared on a gateway, and every address of a gateway whose
    # MAC changed, and only those, was announced once
    new = {(op.ns, op.addr.cidr.split("/")[0]) for op in ops
           if isinstance(op, o.AddAddr) and op.addr.dev == QG}
    new |= {(op.ns, a.cidr.split("/")[0]) for op in ops
            if isinstance(op, o.SetLink) and op.name == QG and op.mac
            for a in d2.namespaces[op.ns].addrs if a.dev == QG}
    assert sorted((a.ns, a.ip) for a in done.announced) == sorted(new)
    for name, x in d2.namespaces.items():
        got = done.kernel.namespaces[name]
        assert got.addrs == x.addrs and got.routes == x.routes
        assert got.gateway == (None if x.gateway is None else replace(x.gateway, parent=""))
        assert got.nat_digest == (None if x.nat is None else ruleset_digest(x.nat))


def test_default_route_only_where_the_gateway_is_realized() -> None:
    """node3 is not wired to the provider network; node2 has not claimed its port yet:
    neither sends its VMs' default traffic to a router that cannot take it out."""
    def default(node: str, gateways: list[Port]) -> set[str]:
        d = want(node, gateways=gateways)
        return {r.dev for x in d.namespaces.values() if not x.router_id for r in x.routes
                if r.dst == "0.0.0.0/0"}

    assert default("node1", GATEWAYS) == {naming.leg_network_end(ROUTER_ID)}
    assert default("node3", GATEWAYS) == set()
    assert default("node2", [gateway_port("node1")]) == set()


def test_a_port_left_on_another_network_is_released_and_claimed_again() -> None:
    old = gateway_port("node1").model_copy(update={"network_id": B.id})
    claim, release = north_south.claims(NODES["node1"], [ROUTER_ID], {ROUTER_ID: ROUTER}, NETS,
                                        [old])
    assert (claim, release) == ([ROUTER_ID], [ROUTER_ID])
    # and it is never realized meanwhile
    d = want("node1", gateways=[old])
    assert d.namespaces[rtr()].gateway is None
