"""Which networks a security-group event must reconcile (pure: the model cache only).

Getting this wrong would leave a rule or a membership change waiting for the
periodic resync (30 s) instead of taking effect at once.
"""

from __future__ import annotations

import pytest

from spanwire.agent import cache as cache_module
from spanwire.agent.cache import ModelCache
from spanwire.model import FixedIP, Port, SecurityGroup, SecurityGroupRule
from spanwire.store import Event, EventType, keys

NET_WEB, NET_DB, NET_OTHER = "net-web", "net-db", "net-other"


def _port(i: int, net: str, groups: list[str], ip: str) -> Port:
    return Port(id=f"port-{i}", project_id="p", network_id=net,
                mac_address=f"fa:16:3e:00:00:{i:02x}", security_groups=groups,
                fixed_ips=[FixedIP(subnet_id="s", ip_address=ip)])


def _put(cache: ModelCache, obj: Port | SecurityGroup | SecurityGroupRule) -> set[str] | None:
    return cache.apply(Event(EventType.PUT, obj.key, obj.to_bytes(), 1))


def _cache() -> tuple[ModelCache, SecurityGroupRule]:
    """web ports accept the db group; the db and other ports are in unrelated networks."""
    cache = ModelCache()
    from_db = SecurityGroupRule(id="r1", project_id="p", security_group_id="web",
                                direction="ingress", remote_group_id="db")
    for obj in (from_db, _port(1, NET_WEB, ["web"], "10.0.0.1"),
                _port(2, NET_DB, ["db"], "10.1.0.1"), _port(3, NET_OTHER, ["x"], "10.2.0.1")):
        cache.objects[obj.KIND][obj.id] = obj
    return cache, from_db


def test_rule_change_reaches_the_networks_of_its_groups_ports() -> None:
    cache, from_db = _cache()
    assert _put(cache, from_db.evolve(protocol="tcp")) == {NET_WEB}
    assert cache.apply(Event(EventType.DELETE, from_db.key, b"", 2)) == {NET_WEB}
    assert _put(cache, SecurityGroup(id="web", project_id="p", name="web")) == set()


def test_membership_change_reaches_the_networks_using_the_group_as_remote() -> None:
    cache, _ = _cache()
    db = cache.objects[Port.KIND]["port-2"]
    assert _put(cache, db.evolve(fixed_ips=[FixedIP(subnet_id="s", ip_address="10.1.0.9")])) \
        == {NET_DB, NET_WEB}
    now = cache.objects[Port.KIND]["port-2"]
    assert _put(cache, now.evolve(name="renamed")) == {NET_DB}  # not a membership change
    assert _put(cache, _port(4, NET_OTHER, ["db"], "10.2.0.4")) == {NET_OTHER, NET_WEB}
    other = cache.objects[Port.KIND]["port-3"]
    assert _put(cache, other.evolve(security_groups=["y"])) == {NET_OTHER}


def test_a_new_port_splits_its_own_network_from_those_it_reaches_through_groups() -> None:
    cache, _ = _cache()
    new = _port(4, NET_OTHER, ["db"], "10.2.0.4")
    assert cache.apply_split(Event(EventType.PUT, *_kv(new), 1)) == ({NET_OTHER}, {NET_WEB})
    # a port joining a group used as remote in its own network: that network comes first only
    mine = _port(5, NET_WEB, ["db"], "10.0.0.5")
    assert cache.apply_split(Event(EventType.PUT, *_kv(mine), 1)) == ({NET_WEB}, set())


def test_the_agent_plans_group_only_networks_after_the_ports_own() -> None:
    from spanwire.agent.runner import Agent

    agent = Agent("sqlite:///unused.db", "node1", "/nonexistent")
    cache, _ = _cache()
    agent.cache = cache
    for port in (_port(4, NET_OTHER, ["db"], "10.2.0.4"), _port(6, NET_DB, ["z"], "10.1.0.6")):
        cache.events.put(Event(EventType.PUT, *_kv(port), 1))
    assert agent._drain(0.05) == {NET_OTHER, NET_DB}
    assert agent._later == {NET_WEB}
    cache.events.put(Event(EventType.PUT, *_kv(_port(7, NET_WEB, ["q"], "10.0.0.7")), 2))
    cache.events.put(Event(EventType.PUT, *_kv(_port(8, NET_DB, ["db"], "10.1.0.8")), 3))
    assert agent._drain(0.05) == {NET_WEB, NET_DB}
    assert agent._later == set()  # already planned in the first pass: not twice


def _kv(port: Port) -> tuple[str, bytes]:
    return port.key, port.to_bytes()


def test_events_that_change_nothing_split_into_two_empty_sets() -> None:
    """The runner indexes the split: a plain empty set here once crashed its loop into a
    re-list (an unchanged PUT, the DELETE of an object it never saw)."""
    cache, _ = _cache()
    same = cache.objects[Port.KIND]["port-1"]
    assert cache.apply_split(Event(EventType.PUT, *_kv(same), 2)) == (set(), set())
    assert cache.apply_split(Event(EventType.DELETE, _port(9, NET_WEB, [], "10.0.0.9").key,
                                   b"", 3)) == (set(), set())
    assert cache.apply_split(Event(EventType.PUT, keys.key("nothing", "x"), b"{}", 4)) \
        == (set(), set())


def test_a_stored_port_is_handed_over_before_the_walk_over_every_port(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """The runner starts moving a new port's tap from `stored`: it must see the port the
    cache now holds, and before the networks it touches are worked out."""
    cache, _ = _cache()
    seen: list[str] = []

    def walk(*args: object) -> set[str]:
        seen.append("walk")
        return set()

    monkeypatch.setattr(cache_module.security, "networks_touched_by_port", walk)
    new = _port(4, NET_OTHER, ["db"], "10.2.0.4")

    def stored(port: Port) -> None:
        assert cache.objects[Port.KIND][port.id] is port and port == new
        seen.append("stored")

    cache.apply_split(Event(EventType.PUT, *_kv(new), 1), stored=stored)
    assert seen == ["stored", "walk"]
    cache.apply_split(Event(EventType.PUT, *_kv(new), 2), stored=stored)
    assert seen == ["stored", "walk"], "an unchanged port is not handed over again"
