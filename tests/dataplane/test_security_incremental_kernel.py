"""Incremental security-group transactions on the real kernel, in throwaway namespaces.

One namespace gets a table by REPLACE and then only incremental transactions;
after each, its table must be exactly what a fresh REPLACE of the same desired
state leaves in a second namespace (handles dropped, elements sorted). nft
needs no interfaces for `ifname` maps, so no VMs are built here: the flows
themselves are tested by test_nft_security_groups.py.
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
from collections.abc import Iterator
from typing import Any

import pytest

from spanwire.agent.plan import security_groups as sg
from spanwire.dataplane import netns, nft
from spanwire.model import AddressPair, FixedIP, Port, SecurityGroupRule

pytestmark = [pytest.mark.root]

WEB = "aaaaaaaa-0000-4000-8000-00000000000a"
OTHER = "bbbbbbbb-0000-4000-8000-00000000000b"
NEW = "cccccccc-0000-4000-8000-00000000000c"


def mkport(n: int, groups: list[str], **kw: Any) -> Port:
    return Port(id=f"{n:08x}-{n:04x}-4000-8000-000000000000", project_id="p", network_id="net",
                mac_address=f"fa:16:3e:00:0a:{n:02x}", security_groups=groups,
                fixed_ips=[FixedIP(subnet_id="s", ip_address=f"10.9.0.{10 + n}")], **kw)


def rule(group: str, direction: str, **kw: Any) -> SecurityGroupRule:
    return SecurityGroupRule(project_id="p", security_group_id=group, direction=direction, **kw)


RULES = [rule(WEB, "egress"), rule(WEB, "ingress", protocol="icmp"),
         rule(WEB, "ingress", protocol="tcp", port_range_min=22, remote_group_id=WEB),
         rule(WEB, "ingress", protocol="udp", port_range_min=53, remote_group_id=OTHER),
         rule(OTHER, "egress", protocol="tcp"),
         rule(OTHER, "ingress", remote_ip_prefix="10.0.0.0/8")]
NEW_RULES = [rule(NEW, "ingress", remote_group_id=NEW), rule(NEW, "egress", protocol="udp")]


@pytest.fixture
def spaces() -> Iterator[tuple[str, str]]:
    if os.geteuid() != 0 or shutil.which("nft") is None:
        pytest.skip("needs root and nft")
    prefix = "sgi" + secrets.token_hex(3)
    names = (f"{prefix}-inc", f"{prefix}-new")
    try:
        for name in names:
            netns.create(name)
        yield names
    finally:
        for name in names:
            netns.remove(name)


def normalised(ns: str) -> list[str]:
    """The table as the kernel lists it, without handles, element order or object order
    (rule order inside a chain is kept: it is the chain's meaning)."""
    listing = nft.list_table(ns) or {"nftables": []}
    objects, rules = [], {}
    for item in listing["nftables"]:
        kind, body = next(iter(item.items()))
        if kind == "metainfo":
            continue
        body = {k: v for k, v in body.items() if k != "handle"}
        if "elem" in body:
            body["elem"] = sorted(body["elem"], key=lambda e: json.dumps(e, sort_keys=True))
        if kind == "rule":
            rules.setdefault(body["chain"], []).append(body)
        else:
            objects.append(json.dumps({kind: body}, sort_keys=True))
    return [*sorted(objects), json.dumps(rules, sort_keys=True)]


def test_incremental_transactions_leave_what_a_replace_would(spaces: tuple[str, str]) -> None:
    inc, fresh = spaces
    p = [mkport(n, [WEB]) for n in range(1, 5)]
    o5, n6 = mkport(5, [OTHER]), mkport(6, [NEW, WEB])
    members = {WEB: [x.ips[0] for x in p], OTHER: [o5.ips[0]]}
    moved = p[0].evolve(fixed_ips=[FixedIP(subnet_id="s", ip_address="10.9.0.99")],
                        allowed_address_pairs=[AddressPair(ip_address="10.9.1.0/24")])
    extra = rule(WEB, "ingress", protocol="tcp", port_range_min=8080, port_range_max=8090)
    steps = [
        ("add a port", [*p, o5], RULES, members),
        ("remove a port", [p[0], *p[2:], o5], RULES, members),
        ("change a port's IPs", [moved, *p[2:], o5], RULES, members),
        ("add a rule", [moved, *p[2:], o5], [*RULES, extra], members),
        ("remove a rule", [moved, *p[2:], o5], RULES, members),
        ("membership", [moved, *p[2:], o5], RULES,
         {**members, OTHER: ["10.9.0.200", "10.9.0.201"]}),
        ("a prefix member: an interval set replaces the plain one", [moved, *p[2:], o5],
         RULES, {**members, OTHER: ["10.9.0.200", "10.8.0.0/16"]}),
        ("port in a new group", [moved, *p[2:], o5, n6], [*RULES, *NEW_RULES],
         {**members, NEW: [n6.ips[0]]}),
        ("last port of a group", [moved, *p[2:], o5], [*RULES, *NEW_RULES], members),
        ("last port of a remote group", [moved, *p[2:]], RULES, members),
        ("port security off", [moved.evolve(port_security_enabled=False), *p[2:]], RULES,
         members),
    ]
    applied = sg.compile_ruleset([*p[:3], o5], RULES, members)
    (op,) = sg.plan_ruleset(inc, applied, nft.read_digest(inc))
    assert op.change == sg.RulesetChange.REPLACE
    nft.apply(inc, op.payload)
    kinds = []
    for what, ports, rules, mem in steps:
        desired = sg.compile_ruleset(ports, rules, mem)
        op, seal = sg.plan_ruleset(inc, desired, nft.read_digest(inc), applied)
        assert seal.change == sg.RulesetChange.SEAL
        kinds.append(str(op.change))
        nft.apply(inc, op.payload)
        nft.apply(inc, seal.payload)
        nft.delete_table(fresh)
        (whole,) = sg.plan_ruleset(fresh, desired, None)
        nft.apply(fresh, whole.payload)
        assert nft.read_digest(inc) == desired.digest, what
        assert normalised(inc) == normalised(fresh), what
        applied = desired
    assert kinds == ["incremental"] * 5 + ["sets"] + ["incremental"] * 5
    assert sg.plan_ruleset(inc, applied, nft.read_digest(inc), applied) == []
