"""Pure tests of incremental security-group updates: stable names, fragment diffs, digests.

A small model of an nft table (chains, sets, verdict maps) executes the
transactions with the kernel's checks that matter here (objects exist before
use, chains are unreferenced when deleted), so "incremental result equals a
fresh replacement" is checked without root; tests/dataplane proves the kernel agrees.
"""

from __future__ import annotations

import ipaddress
import itertools
import json
import re
from dataclasses import dataclass, field
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from spanwire.agent import naming
from spanwire.agent.plan import security_groups as sg
from spanwire.agent.plan.nft_table import grants_only
from spanwire.model import AddressPair, FixedIP, Port, SecurityGroupRule

WEB = "aaaaaaaa-0000-4000-8000-000000000001"
OTHER = "bbbbbbbb-0000-4000-8000-000000000002"
NEW = "cccccccc-0000-4000-8000-000000000003"


def mkport(n: int, groups: list[str], prefix: str = "00", **kw: Any) -> Port:
    return Port(id=f"{prefix}{n:06x}-1111-4000-8000-000000000000", project_id="p",
                network_id="net", mac_address=f"fa:16:3e:00:{n // 256:02x}:{n % 256:02x}",
                security_groups=groups, **kw,
                fixed_ips=[FixedIP(subnet_id="s", ip_address=f"10.{n // 250}.{n % 250}.9")])


def rule(group: str, direction: str, **kw: Any) -> SecurityGroupRule:
    return SecurityGroupRule(project_id="p", security_group_id=group, direction=direction, **kw)


RULES = [rule(WEB, "egress"), rule(WEB, "ingress", protocol="tcp", port_range_min=22,
                                   remote_group_id=WEB),
         rule(WEB, "ingress", protocol="udp", remote_group_id=OTHER),
         rule(OTHER, "egress", protocol="tcp"), rule(OTHER, "ingress", protocol="icmp")]
NEW_RULES = [rule(NEW, "ingress", remote_group_id=NEW), rule(NEW, "egress")]


@dataclass
class Table:
    """What the kernel holds after a sequence of transactions (the subset we emit)."""

    chains: dict[str, list[str]] = field(default_factory=dict)
    specs: dict[str, str] = field(default_factory=dict)
    sets: dict[str, set[str]] = field(default_factory=dict)
    maps: dict[str, dict[str, str]] = field(default_factory=dict)

    def refs(self) -> list[str]:
        """Every chain and set something refers to."""
        text = json.dumps([self.chains, self.maps])
        return re.findall(r'"target": "([^"]+)"', text) + re.findall(r'"@([^"]+)"', text)

    def run(self, payload: str) -> None:
        for cmd in json.loads(payload)["nftables"]:
            verb, body = next(iter(cmd.items()))
            if verb == "metainfo":
                continue
            kind, obj = next(iter(body.items()))
            name = obj.get("name", obj.get("chain"))
            getattr(self, f"_{verb}")(kind, name, obj)

    def _add(self, kind: str, name: str, obj: dict[str, Any]) -> None:
        if kind == "table":
            return
        if kind == "chain":
            assert name not in self.chains, f"chain {name} created twice"
            self.chains[name] = []
            self.specs[name] = json.dumps({k: v for k, v in obj.items() if k != "handle"})
        elif kind == "rule":
            text = json.dumps(obj["expr"], sort_keys=True) + obj.get("comment", "")
            for target in re.findall(r'"target": "([^"]+)"', text):
                assert target in self.chains, f"jump to missing chain {target}"
            for ref in re.findall(r'"@([^"]+)"', text):
                assert ref in self.sets or ref in self.maps, f"missing set {ref}"
            self.chains[name].append(text)
        elif kind == "set":
            self.sets[name] = {json.dumps(e, sort_keys=True) for e in obj.get("elem", [])}
        elif kind == "map":
            self.maps[name] = {}
        elif kind == "element":
            if name in self.sets:
                self.sets[name] |= {json.dumps(e, sort_keys=True) for e in obj["elem"]}
                return
            for key, verdict in obj["elem"]:
                assert key not in self.maps[name], f"{key} already in map {name}"
                assert verdict["jump"]["target"] in self.chains
                self.maps[name][key] = verdict["jump"]["target"]

    def _delete(self, kind: str, name: str, obj: dict[str, Any]) -> None:
        if kind == "table":
            self.chains, self.specs, self.sets, self.maps = {}, {}, {}, {}
        elif kind == "chain":
            assert not self.chains[name], f"chain {name} deleted with rules"
            assert name not in self.refs(), f"chain {name} deleted while referenced"
            del self.chains[name], self.specs[name]
        elif kind == "set":
            assert name not in self.refs(), f"set {name} deleted while referenced"
            del self.sets[name]
        elif kind == "element" and name in self.sets:
            for elem in obj["elem"]:  # the kernel refuses to delete what is not there
                self.sets[name].remove(json.dumps(elem, sort_keys=True))
        elif kind == "element":
            for key in obj["elem"]:
                del self.maps[name][key]

    def _flush(self, kind: str, name: str, obj: dict[str, Any]) -> None:
        if kind == "chain":
            self.chains[name] = []
        else:
            self.sets[name] = set()


def kernel(*payloads: str) -> Table:
    table = Table()
    for payload in payloads:
        table.run(payload)
    return table


def chains(rs: sg.Ruleset) -> set[str]:
    return {c["add"]["chain"]["name"] for c in rs.document()["nftables"]
            if "chain" in c.get("add", {})}


def test_names_do_not_depend_on_other_ports_or_groups() -> None:
    a, b = mkport(1, [WEB]), mkport(2, [OTHER])
    twin = a.model_copy(update={"id": a.id[:9] + "9" + a.id[10:],
                                "mac_address": "fa:16:3e:0f:0f:0f"})
    assert twin.id[:8] == a.id[:8] and naming.tap(twin.id) != naming.tap(a.id)
    before = chains(sg.compile_ruleset([a, b], RULES, {}))
    after = chains(sg.compile_ruleset([a, b, twin, mkport(3, [NEW])], [*RULES, *NEW_RULES], {}))
    assert before < after
    assert f"{a.id[:8]}{a.id[9:13]}-s" in before and "grp-aaaaaaaa0000-o" in before
    clash = Port(id=a.id.replace("-", "", 1), project_id="p", network_id="net",
                 mac_address="fa:16:3e:0e:0e:0e", security_groups=[WEB])
    both = chains(sg.compile_ruleset([a, clash], RULES, {}))
    assert len([c for c in both if c.endswith("-s")]) == 2, "a shared prefix gets a hash"


def apply_sequence(states: list[tuple[list[Port], list[SecurityGroupRule], dict[str, list[str]]]]
                   ) -> list[str]:
    """Replace with the first state, then plan each next one incrementally; check each
    result against a fresh replacement. Returns the change kinds."""
    first = sg.compile_ruleset(*states[0])
    (op,) = sg.plan_ruleset("ns", first, None)
    assert op.change == sg.RulesetChange.REPLACE and op.ruleset is first
    payloads, applied, kinds = [op.payload], first, []
    for state in states[1:]:
        desired = sg.compile_ruleset(*state)
        ops = sg.plan_ruleset("ns", desired, applied.digest, applied)
        if not ops:
            kinds.append("none")
            continue
        op, *seal = ops
        assert [o.change for o in seal] == [sg.RulesetChange.SEAL], "the digest goes last"
        assert op.ruleset is desired and '"delete": {"table"' not in op.payload
        assert "spanwire-sg " not in op.payload and desired.digest in seal[0].payload
        payloads += [o.payload for o in ops]
        kinds.append(str(op.change))
        assert kernel(*payloads) == kernel(desired.render()), kinds
        applied = desired
    return kinds


def test_incremental_sequence_equals_fresh_replacement() -> None:
    p = [mkport(n, [WEB]) for n in range(1, 5)]
    o3 = mkport(5, [OTHER])
    n6 = mkport(6, [NEW, WEB])
    members = {WEB: [x.ips[0] for x in p], OTHER: [o3.ips[0]]}
    moved = p[0].evolve(fixed_ips=[FixedIP(subnet_id="s", ip_address="10.0.0.77")],
                        allowed_address_pairs=[AddressPair(ip_address="10.3.0.0/24")])
    extra = rule(WEB, "ingress", protocol="tcp", port_range_min=8080)
    kinds = apply_sequence([
        ([*p[:3], o3], RULES, members),
        ([*p, o3], RULES, members),  # add a port
        ([p[0], *p[2:], o3], RULES, members),  # remove a port
        ([moved, *p[2:], o3], RULES, members),  # change its addresses
        ([moved, *p[2:], o3], [*RULES, extra], members),  # add a rule
        ([moved, *p[2:], o3], RULES, members),  # remove it
        ([moved, *p[2:], o3], RULES, {**members, OTHER: ["10.9.9.9"]}),  # membership
        # a prefix member: the set becomes an interval set (a new one), and back again
        ([moved, *p[2:], o3], RULES, {**members, OTHER: ["10.9.9.9", "10.8.0.0/24"]}),
        ([moved, *p[2:], o3, n6], [*RULES, *NEW_RULES], {**members, NEW: [n6.ips[0]]}),
        ([moved, *p[2:], o3], [*RULES, *NEW_RULES], members),  # last port of NEW goes
        ([moved, *p[2:]], RULES, members),  # last port of OTHER (still a remote group)
        ([moved.evolve(port_security_enabled=False), *p[2:]], RULES, members),
        ([moved, *p[2:]], RULES, members),
    ])
    assert kinds == ["incremental"] * 5 + ["sets"] + ["incremental"] * 6


def test_transaction_creates_before_use_and_deletes_after_last_use() -> None:
    base = [mkport(1, [WEB])]
    n6 = mkport(6, [NEW])
    before = sg.compile_ruleset(base, RULES, {})
    after = sg.compile_ruleset([*base, n6], [*RULES, *NEW_RULES], {NEW: [n6.ips[0]]})
    step = sg.incremental(before, after)
    assert step is not None and step[0] == sg.RulesetChange.INCREMENTAL
    cmds = [json.dumps(c, sort_keys=True) for c in json.loads(step[1])["nftables"]]

    def at(*needles: str) -> int:
        return next(i for i, c in enumerate(cmds) if all(n in c for n in needles))

    name = n6.id[:8] + n6.id[9:13]
    assert at('"add"', '"set"', "sg_cccccccc0000") < at('"chain": "grp-cccccccc0000-i"', '"rule"')
    assert at('"add"', '"chain"', "grp-cccccccc0000-i") < at('"target": "grp-cccccccc0000-i"')
    assert at('"add"', f'{name}-s"') < at('"element"', naming.tap(n6.id))
    assert not any("spanwire-sg " in c for c in cmds), "the digest is the seal's"
    assert not any('"delete"' in c or '"flush"' in c for c in cmds), \
        "a port coming up deletes nothing: its transaction needs no RCU grace period"
    back = sg.incremental(after, before)
    assert back is not None
    cmds = [json.dumps(c, sort_keys=True) for c in json.loads(back[1])["nftables"]]
    assert at('"delete"', '"element"') < at('"flush"', f'{name}-s"') \
        < at('"delete"', '"chain"', f'{name}-s"') < at('"delete"', "grp-cccccccc0000-i") \
        < at('"delete"', "sg_cccccccc0000")
    assert kernel(before.render(), step[1], back[1]) == kernel(before.render())


def test_digest_format_shape_and_fresh_compile_agree() -> None:
    ports = [mkport(n, [WEB]) for n in range(1, 4)]
    rs = sg.compile_ruleset(ports, RULES, {WEB: ["10.0.0.1"]})
    assert re.fullmatch(r"[0-9a-f]{32}-[0-9a-f]{32}", rs.digest)
    assert sg.ruleset_digest(rs) == rs.digest
    assert sg.render(rs) == json.dumps(rs.document(), sort_keys=True, separators=(",", ":"))
    last = rs.document()["nftables"][-1]["add"]["rule"]
    assert sg.digest_from_comment(last["comment"]) == rs.digest
    members = sg.compile_ruleset(ports, RULES, {WEB: ["10.0.0.2"]})
    assert members.shape == rs.shape and members.digest != rs.digest
    more = sg.compile_ruleset([*ports, mkport(9, [WEB])], RULES, {WEB: ["10.0.0.1"]})
    assert more.shape != rs.shape
    text = rs.render()
    sg.compiled.cache_clear()
    fresh = sg.compile_ruleset(list(reversed(ports)), list(reversed(RULES)), {WEB: ["10.0.0.1"]})
    assert fresh == rs and fresh.digest == rs.digest and fresh.render() == text


def test_one_changed_port_of_a_thousand_compiles_one_port(monkeypatch: pytest.MonkeyPatch
                                                           ) -> None:
    calls: list[str] = []
    real_port, real_group = sg._compile_port, sg._compile_group

    def port(frag: sg.Fragment) -> Any:
        calls.append(frag.name)
        return real_port(frag)

    def group(frag: sg.Fragment) -> Any:
        calls.append(frag.name)
        return real_group(frag)

    monkeypatch.setattr(sg, "_compile_port", port)
    monkeypatch.setattr(sg, "_compile_group", group)
    ports = [mkport(n, [WEB, OTHER], prefix="7e") for n in range(1000)]
    members = {WEB: [p.ips[0] for p in ports], OTHER: []}
    applied = sg.compile_ruleset(ports, RULES, members)
    applied.render()
    assert len([c for c in calls if not c.startswith("grp-")]) == 1000
    calls.clear()
    extra = mkport(1000, [WEB, OTHER], prefix="7e")
    desired = sg.compile_ruleset([*ports, extra], RULES, {**members, WEB: [
        *members[WEB], extra.ips[0]]})
    op, seal = sg.plan_ruleset("ns", desired, applied.digest, applied)
    assert (op.change, seal.change) == (sg.RulesetChange.INCREMENTAL, sg.RulesetChange.SEAL)
    assert calls == [f"7e{1000:06x}1111"], "only the new port is compiled"
    assert sg.plan_ruleset("ns", desired, desired.digest, applied) == []


def test_plan_selects_none_incremental_sets_or_replace() -> None:
    ports = [mkport(1, [WEB]), mkport(2, [WEB])]
    one = sg.compile_ruleset(ports, RULES, {WEB: ["10.0.0.1"]})
    two = sg.compile_ruleset([*ports, mkport(3, [WEB])], RULES, {WEB: ["10.0.0.1"]})
    moved = sg.compile_ruleset(ports, RULES, {WEB: ["10.0.0.2"]})

    def kinds(desired: Any, actual: str | None, applied: Any = None) -> list[str]:
        return [str(op.change) for op in sg.plan_ruleset("ns", desired, actual, applied)]

    assert kinds(one, one.digest) == kinds(one, one.digest, one) == []
    assert kinds(two, one.digest, one) == ["incremental", "seal"]
    assert kinds(moved, one.digest, one) == ["sets", "seal"]
    assert kinds(moved, one.digest) == ["sets"], "no applied table known: shape decides"
    # A new member only adds (routes may go in alongside, see `apply`); a moved one revokes.
    joined = sg.compile_ruleset(ports, RULES, {WEB: ["10.0.0.1", "10.0.0.9"]})
    grow = sg.plan_ruleset("ns", joined, one.digest, one)
    assert [str(op.change) for op in grow] == ["sets", "seal"]
    assert grants_only(grow[0].payload)
    assert not grants_only(sg.plan_ruleset("ns", moved, one.digest, one)[0].payload)
    assert not grants_only(sg.plan_ruleset("ns", moved, one.digest)[0].payload)
    assert kinds(two, one.digest) == ["replace"]
    assert kinds(two, "ffff-ffff", one) == ["replace"], "kernel is not what we applied"
    assert kinds(two, None, one) == ["replace"]
    other = sg.compile_ruleset(ports, RULES, {}, table="t2")
    assert kinds(other, one.digest, one) == ["replace"], "another table"
    (op,) = sg.plan_ruleset("ns", two, None)
    assert op.ruleset is two and op.payload == two.render() and op.table == "spanwire"
    assert kinds(None, one.digest, one) == ["delete"]
    plain = sg.seal("nat", [{"add": {"chain": {"family": "inet", "table": "nat", "name": "c"}}}])
    assert kinds(plain, sg.ruleset_digest(plain)) == []
    (op,) = sg.plan_ruleset("ns", plain, None)
    assert op.change == "replace" and op.ruleset is None and op.table == "nat"


@settings(max_examples=300, deadline=None)
@given(st.lists(st.one_of(
    st.builds(lambda c, d: f"10.0.{c}.{d}", st.integers(0, 3), st.integers(0, 255)),
    st.builds(lambda c, d, n: f"10.0.{c}.{d}/{n}", st.integers(0, 3), st.integers(0, 255),
              st.integers(0, 32)),
    st.sampled_from(["2001:db8::1", "010.0.0.1", "bogus", "0.0.0.0/0", "255.255.255.255",
                     "1.2.3.4/33", "10.0.0.256"])), max_size=12))
def test_members_cover_what_ipaddress_covers_without_overlaps(addresses: list[str]) -> None:
    """Exactly the addresses ipaddress.collapse_addresses covers, in elements that never
    overlap (an interval set refuses overlaps) and are never merged with a mere
    neighbour (a new member must be one added element)."""
    nets = [n for n in (sg._v4(a) for a in addresses) if n is not None]
    elems = [ipaddress.ip_network(e if isinstance(e, str) else
                                  f"{e['prefix']['addr']}/{e['prefix']['len']}")
             for e in sg._members(addresses)]
    assert list(ipaddress.collapse_addresses(elems)) == \
        list(ipaddress.collapse_addresses(nets))
    spans = sorted((int(n.network_address), int(n.broadcast_address)) for n in elems)
    assert all(a[1] < b[0] for a, b in itertools.pairwise(spans)), "overlapping elements"
    for net in nets:  # a given address or prefix is never widened into a neighbour's
        assert any(e.supernet_of(net) for e in elems)
        assert all(not e.overlaps(net) or e.supernet_of(net) or net.supernet_of(e)
                   for e in elems)


def test_a_new_member_next_to_another_is_one_added_element() -> None:
    before = sg._members(["10.0.0.2", "10.0.0.4"])
    after = sg._members(["10.0.0.2", "10.0.0.3", "10.0.0.4"])
    assert [e for e in after if e not in before] == ["10.0.0.3"] and \
        all(e in after for e in before)
