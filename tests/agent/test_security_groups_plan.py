"""Pure tests of the security-group compiler: no root, no kernel.

Packets are judged by a small interpreter of the nft JSON subset the compiler
emits (payload/meta/ct matches, sets, vmaps, jump/goto/return/accept/drop), so the
tests check behaviour — what passes, what is dropped — not the text. The
real-kernel tests in tests/dataplane prove nft agrees with this reading.
"""

from __future__ import annotations

import ipaddress
import json
import random
from dataclasses import dataclass, replace
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from spanwire.agent import naming
from spanwire.agent.plan import security_groups as sg
from spanwire.model import AddressPair, FixedIP, Port, SecurityGroupRule

WEB = "aaaaaaaa-0000-4000-8000-000000000001"
OTHER = "bbbbbbbb-0000-4000-8000-000000000002"
NUMS = {"icmp": 1, "tcp": 6, "udp": 17}


def mkport(n: int, groups: list[str], **kw: Any) -> Port:
    return Port(id=f"{n:08x}-1111-4000-8000-000000000000", project_id="p", network_id="net",
                mac_address=f"fa:16:3e:00:00:{n:02x}", security_groups=groups,
                fixed_ips=[FixedIP(subnet_id="s", ip_address=f"10.0.0.{10 + n}")], **kw)


def rule(group: str, direction: str, **kw: Any) -> SecurityGroupRule:
    return SecurityGroupRule(project_id="p", security_group_id=group, direction=direction, **kw)


def default_rules(group: str) -> list[SecurityGroupRule]:
    return [rule(group, "ingress", remote_group_id=group), rule(group, "egress"),
            rule(group, "ingress", ethertype="IPv6", remote_group_id=group),
            rule(group, "egress", ethertype="IPv6")]


A, B, C = mkport(1, [WEB]), mkport(2, [WEB]), mkport(3, [OTHER])
MEMBERS = {WEB: ["10.0.0.11", "10.0.0.12"], OTHER: ["10.0.0.13"]}


@dataclass(frozen=True)
class Pkt:
    src: str
    dst: str
    proto: str = "tcp"
    dport: int = 22
    sport: int = 40000
    iif: str = ""
    oif: str = ""
    smac: str = ""
    itype: int = 8
    icode: int = 0
    ct: str = "new"
    v6: bool = False


def vm(port: Port) -> tuple[str, str]:
    return naming.tap(port.id), port.mac_address


def flow(src: Port | str, dst: Port | str, **kw: Any) -> Pkt:
    """A packet from a VM (or a remote address arriving on the VXLAN) to a VM."""
    s_ip, iif, smac = (src, "vx100", "02:00:0a:ff:00:02") if isinstance(src, str) else (
        src.ips[0], *vm(src))
    d_ip, oif = (dst, "vx100") if isinstance(dst, str) else (dst.ips[0], naming.tap(dst.id))
    return Pkt(src=s_ip, dst=d_ip, iif=iif, oif=oif, smac=smac, **kw)


class Nft:
    """Evaluates a compiled document the way the kernel would, for the subset we emit."""

    def __init__(self, doc: dict[str, Any] | sg.Ruleset) -> None:
        self.chains: dict[str, list[list[dict[str, Any]]]] = {}
        self.sets: dict[str, list[Any]] = {}
        self.maps: dict[str, dict[str, Any]] = {}
        self.specs: dict[str, dict[str, Any]] = {}
        for cmd in as_doc(doc)["nftables"]:
            add = cmd.get("add", {})
            if "chain" in add:
                self.chains[add["chain"]["name"]] = []
                self.specs[add["chain"]["name"]] = add["chain"]
            elif "rule" in add:
                self.chains[add["rule"]["chain"]].append(add["rule"]["expr"])
            elif "set" in add:
                self.sets[add["set"]["name"]] = add["set"].get("elem", [])
            elif "map" in add:
                self.maps[add["map"]["name"]] = {}
            elif "element" in add:
                assert add["element"]["name"] in self.maps, "elements of a declared map"
                for key, verdict in add["element"]["elem"]:
                    assert verdict["jump"]["target"] in self.chains, "jump to an existing chain"
                    self.maps[add["element"]["name"]][key] = verdict

    def field(self, left: dict[str, Any], p: Pkt) -> Any:
        if "ct" in left:
            return p.ct
        if "meta" in left:
            key = left["meta"]["key"]
            return {"iifname": p.iif, "oifname": p.oif, "nfproto": "ipv6" if p.v6 else "ipv4",
                    "l4proto": NUMS.get(p.proto, p.proto)}[key]
        proto, name = left["payload"]["protocol"], left["payload"]["field"]
        if proto == "ether":
            return p.smac
        if proto == "ip":
            return None if p.v6 else {"saddr": p.src, "daddr": p.dst}[name]
        if proto != p.proto:
            return None
        return {"dport": p.dport, "sport": p.sport, "type": p.itype, "code": p.icode}[name]

    def matches(self, value: Any, right: Any) -> bool:
        if isinstance(right, str) and right.startswith("@"):
            return any(self.matches(value, e) for e in self.sets[right[1:]])
        if isinstance(right, dict) and "prefix" in right:
            net = ipaddress.ip_network(f"{right['prefix']['addr']}/{right['prefix']['len']}")
            return ipaddress.ip_address(value) in net
        if isinstance(right, dict) and "range" in right:
            return right["range"][0] <= value <= right["range"][1]
        if isinstance(right, list):
            return value in right
        return NUMS.get(right, right) == value if isinstance(value, int) else value == right

    def run(self, chain: str, p: Pkt) -> str | None:
        """'accept', 'drop' or None (fell off the end / returned).

        A `jump` comes back here when its chain returns; a `goto` does not: what
        the chain gone to decides is what this one decides (the kernel keeps no
        return address for a goto).
        """
        for exprs in self.chains[chain]:
            for e in exprs:
                if "match" in e:
                    value = self.field(e["match"]["left"], p)
                    if value is None or not self.matches(value, e["match"]["right"]):
                        break
                    continue
                if "vmap" in e:
                    key = self.field(e["vmap"]["key"], p)
                    target = self.maps[e["vmap"]["data"][1:]].get(key)
                    if target is None:
                        break
                    e = target
                if "jump" in e:
                    verdict = self.run(e["jump"]["target"], p)
                    if verdict:
                        return verdict
                    break
                if "goto" in e:
                    return self.run(e["goto"]["target"], p)
                verb = next(iter(e))
                return None if verb == "return" else verb
        return None

    def verdict(self, p: Pkt, local: str = "") -> str:
        """`local`: 'in' (to the namespace), 'out' (from it); default: forwarded."""
        hooks = {"in": ["prerouting", "input"], "out": ["output"]}.get(
            local, ["prerouting", "forward"])
        for hook in hooks:
            if self.run(hook, p) == "drop":
                return "drop"
        return "accept"

    def base_chains(self) -> dict[str, Any]:
        return {name: spec for name, spec in self.specs.items() if "hook" in spec}


def as_doc(doc: dict[str, Any] | sg.Ruleset) -> dict[str, Any]:
    return doc.document() if isinstance(doc, sg.Ruleset) else doc


def ok(doc: dict[str, Any] | sg.Ruleset, p: Pkt, local: str = "") -> bool:
    return Nft(doc).verdict(p, local) == "accept"


def compile_(ports: list[Port], rules: list[SecurityGroupRule],
             members: dict[str, list[str]] | None = None) -> sg.Ruleset:
    return sg.compile_ruleset(ports, rules, MEMBERS if members is None else members)


def test_default_group_allows_members_and_all_egress_denies_the_rest() -> None:
    doc = compile_([A, B, C], default_rules(WEB) + default_rules(OTHER))
    assert ok(doc, flow(A, B, dport=5432)) and ok(doc, flow(B, A, proto="udp", dport=53))
    assert not ok(doc, flow(C, B)), "ingress from a non-member is denied"
    assert not ok(doc, flow("10.0.0.99", A)), "ingress from a remote non-member is denied"
    assert ok(doc, flow(A, "10.0.0.99", dport=443)), "egress to anywhere is allowed"
    assert ok(doc, flow(A, "10.0.0.99", ct="established")) and ok(doc, flow(C, B, ct="related"))
    assert not ok(doc, flow(A, B, ct="invalid"))
    assert ok(doc, flow(A, "10.0.0.1", proto="icmp"), local="in"), "the gateway answers pings"


def test_tcp_udp_port_ranges_and_single_ports() -> None:
    rules = [rule(WEB, "egress"), rule(WEB, "ingress", protocol="tcp", port_range_min=22,
                                         port_range_max=22),
             rule(WEB, "ingress", protocol="tcp", port_range_min=80, port_range_max=90),
             rule(WEB, "ingress", protocol="17", port_range_min=53)]
    doc = compile_([A, B], rules)
    for port, proto, want in [(22, "tcp", True), (23, "tcp", False), (80, "tcp", True),
                              (90, "tcp", True), (91, "tcp", False), (53, "udp", True),
                              (54, "udp", False), (22, "udp", False), (53, "tcp", False)]:
        assert ok(doc, flow(C, B, proto=proto, dport=port)) is want, (proto, port)


def test_icmp_type_code_and_numeric_protocols() -> None:
    rules = [rule(WEB, "ingress", protocol="icmp", port_range_min=8, port_range_max=0),
             rule(WEB, "ingress", protocol="1", port_range_min=13),
             rule(WEB, "ingress", protocol="132"), rule(WEB, "ingress", protocol="icmp",
                                                         port_range_min=300)]
    doc = compile_([A], rules)
    assert ok(doc, flow(C, A, proto="icmp", itype=8, icode=0))
    assert not ok(doc, flow(C, A, proto="icmp", itype=8, icode=1))
    assert ok(doc, flow(C, A, proto="icmp", itype=13, icode=5)), "type without code: any code"
    assert not ok(doc, flow(C, A, proto="icmp", itype=0))
    assert ok(doc, flow(C, A, proto=132)) and not ok(doc, flow(C, A, proto="tcp"))
    any_icmp = compile_([A], [rule(WEB, "ingress", protocol="icmp")])
    assert ok(any_icmp, flow(C, A, proto="icmp", itype=17)) and not ok(any_icmp, flow(C, A))


def test_remote_ip_prefix_both_directions() -> None:
    rules = [rule(WEB, "ingress", remote_ip_prefix="10.1.0.0/16"),
             rule(WEB, "egress", remote_ip_prefix="192.0.2.0/24", protocol="tcp"),
             rule(WEB, "ingress", remote_ip_prefix="0.0.0.0/0", protocol="udp")]
    doc = compile_([A], rules)
    assert ok(doc, flow("10.1.2.3", A)) and not ok(doc, flow("10.2.0.1", A))
    assert ok(doc, flow("10.2.0.1", A, proto="udp")), "0.0.0.0/0 matches everything IPv4"
    assert ok(doc, flow(A, "192.0.2.9")) and not ok(doc, flow(A, "198.51.100.1"))
    assert not ok(doc, flow(A, "192.0.2.9", proto="udp"))


def test_remote_group_is_a_set_and_membership_change_is_a_set_update() -> None:
    rules = [rule(WEB, "ingress", protocol="tcp", port_range_min=22, remote_group_id=OTHER)]
    before = compile_([A], rules, {OTHER: ["10.0.0.13"]})
    after = compile_([A], rules, {OTHER: ["10.0.0.14", "10.0.0.15"]})
    assert ok(before, flow(C, A)) and not ok(after, flow(C, A))
    assert ok(after, flow("10.0.0.15", A)) and not ok(after, flow("10.0.0.15", A, dport=23))

    def sets(doc: sg.Ruleset) -> list[dict[str, Any]]:
        return [c["add"]["set"] for c in doc.document()["nftables"] if "set" in c.get("add", {})]

    assert [(s["name"], s.get("flags")) for s in sets(after)] == [("sg_bbbbbbbb0000", None)]
    ops = sg.plan_ruleset("ns", after, sg.ruleset_digest(before))
    assert [op.change for op in ops] == [sg.RulesetChange.SETS]
    payload = json.loads(ops[0].payload)["nftables"]
    assert not any("rule" in c.get("add", {}) and c["add"]["rule"]["chain"] != sg.META_CHAIN
                   for c in payload), "a membership change rewrites no rule"
    assert ok(compile_([A], rules, {}), flow(C, A)) is False, "unknown group: empty set"
    # A prefix member (an allowed address pair) needs an interval set: another set, whose
    # kind the kernel cannot change in place, so the table's shape changes.
    pairs = compile_([A], rules, {OTHER: ["10.0.0.14", "10.0.8.0/24"]})
    assert ok(pairs, flow("10.0.8.7", A)) and not ok(pairs, flow("10.0.8.7", A, dport=23))
    assert [(s["name"], s.get("flags")) for s in sets(pairs)] == [("sgn_bbbbbbbb0000",
                                                                    ["interval"])]
    assert [op.change for op in sg.plan_ruleset("ns", pairs, sg.ruleset_digest(after))] == \
        [sg.RulesetChange.REPLACE]


def test_egress_is_governed_by_egress_rules_dhcp_always_allowed() -> None:
    rules = [rule(WEB, "egress", protocol="tcp", port_range_min=443),
             rule(WEB, "ingress")]
    doc = compile_([A, B], rules)
    assert ok(doc, flow(A, "192.0.2.1", dport=443)) and not ok(doc, flow(A, "192.0.2.1", dport=80))
    assert not ok(doc, flow(A, "10.0.0.1", proto="icmp"), local="in"), "egress to gateway too"
    dhcp = replace(flow(A, "255.255.255.255", proto="udp", dport=67, sport=68), oif="")
    assert ok(doc, dhcp, local="in")
    assert ok(doc, replace(dhcp, src="0.0.0.0"), local="in"), "DISCOVER from 0.0.0.0"
    rogue = flow(A, B, proto="udp", sport=67, dport=68)
    assert not ok(compile_([A, B], default_rules(WEB)), rogue), "a VM is no DHCP server"
    offer = Pkt(src="10.0.0.1", dst="10.0.0.11", proto="udp", sport=67, dport=68,
                oif=naming.tap(A.id))
    closed = compile_([A], [rule(WEB, "egress")])
    assert ok(closed, offer, local="out"), "our dnsmasq's replies reach a closed port"
    assert not ok(closed, replace(offer, dport=69), local="out")


def test_anti_spoofing_drops_forged_ip_and_mac() -> None:
    doc = compile_([A, B], default_rules(WEB))
    assert ok(doc, flow(A, B))
    assert not ok(doc, replace(flow(A, B), src="10.0.0.99")), "forged source IP"
    assert not ok(doc, replace(flow(A, B), src=B.ips[0])), "another port's IP"
    assert not ok(doc, replace(flow(A, B), smac="fa:16:3e:00:00:77")), "forged MAC"
    assert not ok(doc, replace(flow(A, B), smac=B.mac_address)), "another port's MAC"
    assert not ok(doc, replace(flow(A, B), v6=True)), "IPv6 not supported: dropped"


def test_allowed_address_pairs_prefixes_and_pair_macs() -> None:
    pairs = [AddressPair(ip_address="10.0.5.0/24"),
             AddressPair(ip_address="10.0.0.50", mac_address="fa:16:3e:00:00:99")]
    a = mkport(1, [WEB], allowed_address_pairs=pairs)
    doc = compile_([a, B], [rule(WEB, "ingress"), rule(WEB, "egress")])
    assert ok(doc, replace(flow(a, B), src="10.0.5.77"))
    assert ok(doc, replace(flow(a, B), src="10.0.0.50", smac="fa:16:3e:00:00:99"))
    assert not ok(doc, replace(flow(a, B), src="10.0.0.50")), "pair IP needs the pair's MAC"
    assert not ok(doc, replace(flow(a, B), smac="fa:16:3e:00:00:99")), "pair MAC, fixed IP"
    assert not ok(doc, replace(flow(a, B), src="10.0.6.1"))


def test_port_security_disabled_means_no_filtering_at_all() -> None:
    d = mkport(4, [WEB], port_security_enabled=False)
    udp_only = [rule(WEB, "egress", protocol="udp"), rule(WEB, "ingress", protocol="udp")]
    doc = compile_([A, d], udp_only)
    assert ok(doc, replace(flow(d, A), src="10.0.0.99", smac="fa:16:3e:00:00:77", proto="udp"))
    assert ok(doc, flow(C, d, dport=23)) and ok(doc, flow(d, "192.0.2.1", dport=80))
    assert not ok(doc, flow(A, d, dport=80)), "A's own egress rules still apply"
    assert not ok(doc, flow(d, A, dport=80)), "and A's ingress rules"
    assert naming.tap(d.id) not in sg.render(doc)


def test_no_groups_means_only_dhcp_and_replies() -> None:
    lonely = mkport(5, [])
    doc = compile_([lonely], [])
    assert not ok(doc, flow(lonely, B)) and not ok(doc, flow(B, lonely))
    assert ok(doc, flow(B, lonely, ct="established"))


def test_deterministic_and_ipv6_rules_skipped() -> None:
    rules = default_rules(WEB) + default_rules(OTHER) + [
        rule(WEB, "ingress", protocol="tcp", port_range_min=p) for p in range(20, 40)]
    docs = []
    for seed in range(5):
        rnd = random.Random(seed)
        ports, rs = [A, B, C], list(rules)
        rnd.shuffle(ports)
        rnd.shuffle(rs)
        members = {k: rnd.sample(v, len(v)) for k, v in MEMBERS.items()}
        docs.append(sg.render(sg.compile_ruleset(ports, rs, members)))
    assert len(set(docs)) == 1
    assert "ip6" not in docs[0]
    twice = compile_([A], [rule(WEB, "egress"), rule(WEB, "egress", description="again")])
    assert sg.render(twice) == sg.render(compile_([A], [rule(WEB, "egress")])), "deduplicated"
    both = compile_([A.evolve(security_groups=[WEB, OTHER])],
                    [rule(WEB, "egress", protocol="udp"), rule(OTHER, "egress", protocol="tcp")])
    assert ok(both, flow(A, B)) and ok(both, flow(A, B, proto="udp"))
    assert not ok(both, flow(A, B, proto="icmp"))


def test_document_is_one_atomic_table_replacement_with_a_digest() -> None:
    doc = compile_([A, B], default_rules(WEB))
    cmds = doc.document()["nftables"]
    assert [next(iter(c)) for c in cmds[1:4]] == ["add", "delete", "add"]
    assert all("table" in c[next(iter(c))] for c in cmds[1:4])
    digest = sg.ruleset_digest(doc)
    assert sg.digest_from_comment(cmds[-1]["add"]["rule"]["comment"]) == digest


def test_plan_is_a_no_op_when_the_digest_matches() -> None:
    doc = compile_([A, B], default_rules(WEB))
    assert sg.plan_ruleset("ns", doc, sg.ruleset_digest(doc)) == []
    assert [op.change for op in sg.plan_ruleset("ns", doc, None)] == [sg.RulesetChange.REPLACE]
    changed = compile_([A, B], [*default_rules(WEB), rule(WEB, "ingress", protocol="tcp")])
    ops = sg.plan_ruleset("ns", changed, sg.ruleset_digest(doc))
    assert [op.change for op in ops] == [sg.RulesetChange.REPLACE]
    assert ops[0].payload == sg.render(changed)
    assert sg.plan_ruleset("ns", None, sg.ruleset_digest(doc))[0].change == "delete"
    assert sg.plan_ruleset("ns", None, None) == []


PROTOS = st.sampled_from([None, "tcp", "udp", "icmp", "6", "17", "1", "47", "132"])
PORTS = st.one_of(st.none(), st.integers(0, 65535))


@st.composite
def rules_(draw: st.DrawFn) -> SecurityGroupRule:
    proto = draw(PROTOS)
    lo = hi = None
    if proto in ("tcp", "udp", "6", "17", "icmp", "1"):
        lo, hi = draw(PORTS), draw(PORTS)
        if proto not in ("icmp", "1") and lo is not None and hi is not None and lo > hi:
            lo, hi = hi, lo
    remote = draw(st.sampled_from(["none", "prefix", "group"]))
    prefix = draw(st.sampled_from(["10.0.0.0/8", "0.0.0.0/0", "192.0.2.7/32", "2001:db8::/32"]))
    return rule(draw(st.sampled_from([WEB, OTHER])), draw(st.sampled_from(["ingress", "egress"])),
                ethertype=draw(st.sampled_from(["IPv4", "IPv6"])), protocol=proto,
                port_range_min=lo, port_range_max=hi,
                remote_ip_prefix=prefix if remote == "prefix" else None,
                remote_group_id=draw(st.sampled_from([WEB, OTHER, "cccc"]))
                if remote == "group" else None)


@settings(max_examples=150, deadline=None)
@given(rs=st.lists(rules_(), max_size=12), secure=st.lists(st.booleans(), min_size=3,
                                                           max_size=3), seed=st.integers(0, 99))
def test_compile_never_raises_is_deterministic_and_well_formed(
    rs: list[SecurityGroupRule], secure: list[bool], seed: int
) -> None:
    ports = [p.evolve(port_security_enabled=s) for p, s in zip([A, B, C], secure, strict=True)]
    doc = sg.compile_ruleset(ports, rs, MEMBERS)
    shuffled = list(rs)
    random.Random(seed).shuffle(shuffled)
    again = sg.compile_ruleset(list(reversed(ports)), shuffled, MEMBERS)
    assert sg.render(doc) == sg.render(again)
    nft = Nft(doc)
    for exprs in (e for chain in nft.chains.values() for e in chain):
        for e in exprs:
            if "vmap" in e:
                assert e["vmap"]["data"][1:] in nft.maps
            assert "jump" not in e or e["jump"]["target"] in nft.chains
            assert "goto" not in e or e["goto"]["target"] in nft.chains
            right = e.get("match", {}).get("right")
            if isinstance(right, str) and right.startswith("@"):
                assert right[1:] in nft.sets
    for p in ports:
        nft.verdict(flow(p, A if p is not A else B, proto="icmp"))


def test_ports_sharing_an_id_prefix_get_distinct_chains_and_custom_table() -> None:
    twins = [Port(id=f"12345678-{i}abc-4000-8000-000000000000", project_id="p",
                  network_id="net", mac_address=f"fa:16:3e:00:01:0{i}", security_groups=[WEB],
                  fixed_ips=[FixedIP(subnet_id="s", ip_address=f"10.0.1.{i}")]) for i in (1, 2)]
    doc = sg.compile_ruleset(twins, default_rules(WEB), {WEB: ["10.0.1.1", "10.0.1.2"]},
                             table="sgtest")
    cmds = doc.document()["nftables"]
    chains = [c["add"]["chain"]["name"] for c in cmds if "chain" in c.get("add", {})]
    assert len(chains) == len(set(chains)) == 2 * 1 + 2 + 4 + 1  # ports, group set, base, meta
    objects = [next(iter(cmd.values())) for cmd in cmds[1:]]
    assert {o.get("table", o.get("name")) for obj in objects for o in obj.values()} == {"sgtest"}
    update = json.loads(sg.render(sg.sets_update(doc)))["nftables"]
    assert [next(iter(c)) for c in update[1:]] == ["flush", "add", "flush", "add"]
    assert update[-1]["add"]["rule"]["table"] == "sgtest"


def test_one_forward_chain_and_only_base_chains_accept() -> None:
    """Egress and ingress share one `forward` base chain, so an `accept` anywhere below
    it would skip the other check: allow is `return`, deny `drop`."""
    nft = Nft(compile_([A, B, C], default_rules(WEB) + default_rules(OTHER)))
    assert {n: (s["hook"], s["prio"]) for n, s in nft.base_chains().items()} == {
        "prerouting": ("prerouting", -300), "input": ("input", 0),
        "forward": ("forward", 0), "output": ("output", 0)}
    forward = nft.chains["forward"]
    assert forward[0] == [sg._EST, {"accept": None}]
    assert [e[0]["vmap"]["data"] for e in forward[1:]] == ["@egress", "@ingress"]
    for name, rules in nft.chains.items():
        if name not in nft.base_chains():
            assert not any("accept" in e for r in rules for e in r), name


def test_a_new_flow_needs_the_senders_egress_and_the_receivers_ingress() -> None:
    """Both ports in this namespace: each check alone would let these through."""
    rules = [rule(WEB, "egress"), rule(WEB, "ingress", protocol="tcp", port_range_min=22),
             rule(OTHER, "egress", protocol="tcp", port_range_min=443),
             rule(OTHER, "ingress", protocol="tcp", port_range_min=80)]
    doc = compile_([A, C], rules)
    assert ok(doc, flow(A, C, dport=80)), "A may send anything, C takes 80"
    assert not ok(doc, flow(A, C, dport=22)), "A may send it, C's ingress refuses"
    assert not ok(doc, flow(C, A, dport=22)), "A takes 22, C's egress refuses"
    assert not ok(doc, flow(C, A, dport=443)), "C may send 443, A's ingress refuses"
    assert ok(doc, flow(C, "192.0.2.1", dport=443)) and ok(doc, flow("10.0.0.99", A))
    assert ok(doc, flow(C, A, dport=443, ct="established")), "replies skip both checks"


def test_a_port_in_several_groups_is_allowed_what_any_of_them_allows() -> None:
    both = mkport(4, [WEB, OTHER])
    rules = [rule(WEB, "ingress", protocol="tcp", port_range_min=22),
             rule(OTHER, "ingress", protocol="udp", port_range_min=53),
             rule(OTHER, "egress", protocol="icmp"), rule(WEB, "egress")]
    doc = compile_([A, both, C], rules)
    assert ok(doc, flow(A, both, dport=22)) and ok(doc, flow(A, both, proto="udp", dport=53))
    assert not ok(doc, flow(A, both, dport=23)), "neither group opens 23"
    assert ok(doc, flow(both, "192.0.2.1", dport=80)), "WEB's egress allows all"
    assert not ok(doc, flow(C, "192.0.2.1", dport=80)), "OTHER alone allows only icmp out"
    chains = Nft(doc).chains
    union = [n for n in chains if n.startswith("grp-") and "_" in n]
    assert sorted(union) == ["grp-aaaaaaaa0000_bbbbbbbb0000-i", "grp-aaaaaaaa0000_bbbbbbbb0000-o"]
    assert "grp-aaaaaaaa0000-i" in chains and "grp-bbbbbbbb0000-o" in chains


MERGED_SKELETON = sg._compile_skeleton


def _two_chain_skeleton(frag: sg.Fragment) -> sg.Content:
    """The skeleton before the merge: egress in `forward` (0), ingress in `forward-in` (10)."""
    content = MERGED_SKELETON(frag)
    (table,) = frag.inputs
    moved = next(t for c, t in content.rules if c == "forward" and "@ingress" in t)
    spec = {**sg.ref(table, "forward-in"), "type": "filter", "hook": "forward", "prio": 10,
            "policy": "accept"}
    est = sg.canon({"add": {"rule": {"family": "inet", "table": table, "chain": "forward-in",
                                     "expr": [sg._EST, {"accept": None}]}}})
    return replace(content, creates=(*content.creates, sg.canon({"add": {"chain": spec}})),
                   chains=(*content.chains, "forward-in"),
                   rules=(*[(c, t) for c, t in content.rules if t != moved], ("forward-in", est),
                          ("forward-in", moved.replace('"chain":"forward"',
                                                       '"chain":"forward-in"'))))


def test_a_table_of_the_two_chain_layout_is_replaced_whole(monkeypatch: Any) -> None:
    """An agent upgraded over a kernel holding the old layout: every digest differs
    (the compiler's fingerprint covers the skeleton), so it is one REPLACE."""
    try:
        monkeypatch.setattr(sg, "_compile_skeleton", _two_chain_skeleton)
        sg._fingerprint.cache_clear()
        old = compile_([A, B], default_rules(WEB))
        assert "forward-in" in Nft(old).base_chains()
        monkeypatch.undo()
        sg._fingerprint.cache_clear()
        new = compile_([A, B], default_rules(WEB))
    finally:
        sg._fingerprint.cache_clear()
    assert "forward-in" not in Nft(new).base_chains()
    assert not {(f.key, f.digest) for f in old.fragments} & {(f.key, f.digest)
                                                              for f in new.fragments}
    assert sg.incremental(old, new) is None
    for applied in (None, old):
        (op,) = sg.plan_ruleset("ns", new, old.digest, applied)
        assert op.change == sg.RulesetChange.REPLACE and op.payload == new.render()
