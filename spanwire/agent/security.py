"""What the security-group compiler needs, gathered from the agent's model cache.

A namespace's table depends on more than its own ports: the rules of their
groups, and the addresses of every port in the cloud that is in a group one
of those rules names as `remote_group_id`. `gather` indexes that once per
reconcile; `ruleset` compiles one namespace; `networks_touched_by_*` tell the
runner which networks an event can change, so rule and membership updates
are event-driven (one namespace read and planned) instead of a full resync.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from spanwire.agent.plan.nft_table import Ruleset
from spanwire.agent.plan.security_groups import compile_ruleset
from spanwire.model import Port, SecurityGroupRule


@dataclass(frozen=True)
class Security:
    """Rules by group id, and member addresses by (remote) group id."""

    rules: Mapping[str, tuple[SecurityGroupRule, ...]]
    members: Mapping[str, list[str]]


def addresses(port: Port) -> list[str]:
    """What a port may send from, hence what makes it a member of its groups."""
    return [*port.ips, *(pair.ip_address for pair in port.allowed_address_pairs)]


def gather(ports: Iterable[Port], rules: Iterable[SecurityGroupRule]) -> Security:
    by_group: dict[str, list[SecurityGroupRule]] = {}
    for rule in sorted(rules, key=lambda r: r.id):
        by_group.setdefault(rule.security_group_id, []).append(rule)
    remote = {r.remote_group_id for rs in by_group.values() for r in rs if r.remote_group_id}
    members: dict[str, list[str]] = {g: [] for g in remote}
    for port in ports:
        for group in port.security_groups:
            if group in members:
                members[group] += addresses(port)
    return Security(rules={g: tuple(rs) for g, rs in by_group.items()}, members=members)


def ruleset(local: list[Port], security: Security) -> Ruleset | None:
    """The namespace's compiled table; None when none of its ports is filtered."""
    secured = [p for p in local if p.port_security_enabled]
    if not secured:
        return None
    groups = sorted({g for p in secured for g in p.security_groups})
    rules = [r for g in groups for r in security.rules.get(g, ())]
    return compile_ruleset(local, rules, security.members)


def _networks_in_groups(groups: set[str], ports: Iterable[Port]) -> set[str]:
    return {p.network_id for p in ports if groups.intersection(p.security_groups)}


def networks_touched_by_rule(rules: Iterable[SecurityGroupRule | None],
                             ports: Iterable[Port]) -> set[str]:
    """A rule compiles into the namespaces of the ports of its own group."""
    return _networks_in_groups({r.security_group_id for r in rules if r is not None}, ports)


def _membership(port: Port | None) -> tuple[frozenset[str], tuple[str, ...]]:
    if port is None:
        return frozenset(), ()
    return frozenset(port.security_groups), tuple(sorted(addresses(port)))


def networks_touched_by_port(old: Port | None, new: Port | None,
                             rules: Iterable[SecurityGroupRule], ports: Iterable[Port]
                             ) -> set[str]:
    """Beyond the port's own network: where its groups are a remote group of some rule.

    Those namespaces hold the port's addresses in a set, so a change of its
    groups or addresses must reach them too.
    """
    if _membership(old) == _membership(new):
        return set()
    groups = _membership(old)[0] | _membership(new)[0]
    if not groups:
        return set()
    users = {r.security_group_id for r in rules if r.remote_group_id in groups}
    return _networks_in_groups(users, ports) if users else set()
