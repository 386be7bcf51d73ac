"""What the security-group compiler needs, gathered from the agent's model cache.

A namespace's table depends on more than its own ports: the rules of their
groups, and the addresses of every port in the cloud that is in a group one
of those rules names as `remote_group_id`. `gather` indexes that once per
reconcile; `ruleset` compiles one namespace; `networks_touched_by_*` tell the
runner which networks an event can change, so rule and membership updates
are event-driven (one namespace read and planned) instead of a full resync.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass

from spanwire.agent.plan.nft_table import Ruleset
from spanwire.agent.plan.security_groups import SortedMembers, compile_ruleset
from spanwire.model import Port, SecurityGroupRule


@dataclass(frozen=True)
class Security:
    """Rules by group id, and member addresses by group id."""

    rules: Mapping[str, tuple[SecurityGroupRule, ...]]
    members: Mapping[str, Sequence[str]]


def addresses(port: Port) -> list[str]:
    """What a port may send from, hence what makes it a member of its groups."""
    return [*port.ips, *(pair.ip_address for pair in port.allowed_address_pairs)]


def rules_by_group(rules: Iterable[SecurityGroupRule]) -> dict[str, tuple[SecurityGroupRule, ...]]:
    by_group: dict[str, list[SecurityGroupRule]] = {}
    for rule in sorted(rules, key=lambda r: r.id):
        by_group.setdefault(rule.security_group_id, []).append(rule)
    return {g: tuple(rs) for g, rs in by_group.items()}


class Membership(SortedMembers):
    """Member addresses by security group, kept current port by port.

    The agent's cache updates it on every port event, so a reconcile does not
    walk every port of the cloud to learn who is in which group; a group's
    sorted addresses are rebuilt only after one of its members changed.
    """

    def __init__(self, ports: Iterable[Port] = ()) -> None:
        self._of_port: dict[str, tuple[frozenset[str], tuple[str, ...]]] = {}
        self._by_group: dict[str, dict[str, tuple[str, ...]]] = {}
        self._sorted: dict[str, tuple[str, ...]] = {}
        for port in ports:
            self.update(port.id, port)

    def update(self, port_id: str, port: Port | None) -> None:
        """Port `port_id` is now `port` (None: deleted)."""
        now = _membership(port)
        before = self._of_port.get(port_id, _membership(None))
        if now == before:
            return
        for group in before[0]:
            self._by_group[group].pop(port_id, None)
            self._sorted.pop(group, None)
            if not self._by_group[group]:
                del self._by_group[group]
        for group in now[0]:
            self._by_group.setdefault(group, {})[port_id] = now[1]
            self._sorted.pop(group, None)
        if port is None:
            self._of_port.pop(port_id, None)
        else:
            self._of_port[port_id] = now

    def __getitem__(self, group: str) -> tuple[str, ...]:
        found = self._sorted.get(group)
        if found is None:
            ports = self._by_group[group]  # KeyError: not a group anyone is in
            found = tuple(sorted({a for addrs in ports.values() for a in addrs}))
            self._sorted[group] = found
        return found

    def __iter__(self) -> Iterator[str]:
        return iter(self._by_group)

    def __len__(self) -> int:
        return len(self._by_group)


def gather(ports: Iterable[Port], rules: Iterable[SecurityGroupRule]) -> Security:
    """Compiler inputs from scratch (the agent's cache keeps them incrementally)."""
    return Security(rules=rules_by_group(rules), members=Membership(ports))


def ruleset(local: list[Port], security: Security) -> Ruleset | None:
    """The namespace's compiled table; None when none of its ports is filtered."""
    if not any(p.port_security_enabled for p in local):
        return None
    return compile_ruleset(local, security.rules, security.members)


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
