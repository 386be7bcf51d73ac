"""Remembered per-port results (`agent.memo`) never change what the agent computes.

The desired state of a node, computed pass after pass while ports come, change
and go (memos warm), must equal the same state computed from scratch (memos
emptied), and the cache's incrementally kept group membership must equal one
gathered from every port.
"""

from __future__ import annotations

from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from spanwire.agent import desired, memo, security
from spanwire.agent.cache import ModelCache
from spanwire.model import AddressPair, FixedIP, Network, Node, Port, SecurityGroupRule, Subnet
from spanwire.store import Event, EventType

NODES = {n: Node(id=n, underlay_ip=f"10.255.0.{i}", netns=f"swmemo-{n}")
         for i, n in enumerate(["node1", "node2", "node3"], 1)}
NET = Network(id="11111111-cccc-4aaa-8aaa-000000000001", project_id="p", segmentation_id=300)
SUBS = [Subnet(id=f"22222222-cccc-4aaa-8aaa-00000000000{i}", project_id="p", network_id=NET.id,
               cidr=f"10.{i}.0.0/24", gateway_ip=f"10.{i}.0.1") for i in (1, 2)]
GROUPS = ["web", "db"]
RULES = [SecurityGroupRule(id=f"r-{g}-{d}", project_id="p", security_group_id=g, direction=d,
                           remote_group_id=g if d == "ingress" else None)
         for g in GROUPS for d in ("ingress", "egress")]


def make_port(slot: int, host: str, groups: list[str], ip: int, secured: bool,
              pair: bool, subnet: int) -> Port:
    return Port(id=f"{slot:08x}-4444-4aaa-8aaa-000000000000", project_id="p",
                network_id=NET.id, mac_address=f"fa:16:3e:00:01:{ip:02x}",
                fixed_ips=[FixedIP(subnet_id=SUBS[subnet].id,
                                   ip_address=f"10.{subnet + 1}.0.{10 + ip}")],
                binding_host_id=host, security_groups=groups, port_security_enabled=secured,
                allowed_address_pairs=[AddressPair(ip_address="10.9.0.0/24")] if pair else [])


PORTS = st.builds(make_port, st.integers(0, 5), st.sampled_from(sorted(NODES)),
                  st.lists(st.sampled_from(GROUPS), max_size=2, unique=True),
                  st.integers(0, 40), st.booleans(), st.booleans(), st.integers(0, 1))
STEPS = st.lists(st.one_of(PORTS, st.integers(0, 5)), min_size=1, max_size=12)


def compute(ports: dict[str, Port], node: str, groups: security.Security) -> Any:
    return desired.compute(NODES[node], NODES, {NET.id: NET}, SUBS, list(ports.values()),
                           "/run/swmemo", groups=groups)


@settings(max_examples=60, deadline=None)
@given(STEPS)
def test_desired_state_from_memory_equals_a_fresh_computation(steps: list[Any]) -> None:
    cache = ModelCache()
    for obj in (*NODES.values(), NET, *SUBS, *RULES):
        cache.apply(Event(EventType.PUT, obj.key, obj.to_bytes(), 1))
    for step in steps:
        if isinstance(step, Port):
            cache.apply(Event(EventType.PUT, step.key, step.to_bytes(), 1))
        else:  # delete the port in that slot, if any
            key = Port(id=f"{step:08x}-4444-4aaa-8aaa-000000000000", project_id="p",
                       network_id=NET.id, mac_address="fa:16:3e:00:00:00").key
            cache.apply(Event(EventType.DELETE, key, b"", 1))
        ports = {p.id: p for p in cache.ports}
        fresh_groups = security.gather(ports.values(), RULES)
        assert dict(cache.security_view().members) == dict(fresh_groups.members)
        for node in NODES:
            warm = compute(ports, node, cache.security_view())
            memo.forget()
            assert warm == compute(ports, node, fresh_groups), f"{node} after {step!r}"


def test_a_memo_answers_for_the_same_object_in_the_same_context_only() -> None:
    m: memo.IdentityMemo[int] = memo.IdentityMemo(capacity=2)
    calls: list[str] = []

    def value(tag: str) -> int:
        calls.append(tag)
        return len(calls)

    one, other = object(), object()
    assert m.get("k", one, 1, lambda: value("a")) == 1
    assert m.get("k", one, 1, lambda: value("b")) == 1  # hit
    assert m.get("k", other, 1, lambda: value("c")) == 2  # a new object: computed again
    assert m.get("k", other, 2, lambda: value("d")) == 3  # a new context: computed again
    m.get("x", one, 1, lambda: value("e"))
    m.get("y", one, 1, lambda: value("f"))  # full: starts over
    assert m.get("k", other, 2, lambda: value("g")) == 6
    assert calls == ["a", "c", "d", "e", "f", "g"]


def test_a_union_of_the_same_parts_is_the_same_set() -> None:
    u = memo.UnionMemo()
    a, b = frozenset({1, 2}), frozenset({2, 3})
    first = u.union("k", [a, b])
    assert first == {1, 2, 3}
    assert u.union("k", [a, b]) is first
    assert u.union("k", [a, frozenset({2, 3})]) is first  # equal parts: the same value
    assert u.union("k", [a]) == {1, 2}
    assert u.union("k", [a, b]) is not first  # another pass came in between
