"""`plan(desired, actual) -> list[Op]`: pure, deterministic, ordered.

Order: routing namespaces, then router namespaces (their legs need both
ends' namespaces), then the addresses and routes on legs just created, then
stale namespaces. Per namespace: create → (sysctls, security-group table, links, link sysctls,
addresses, neighbours/FDB, routes, DHCP) → per namespace removals (routes,
FDB, neighbours, addresses, then links) → delete namespaces. Creation comes
before use and deletion after last use, and when desired equals actual the
result is empty: that is what makes an agent restart hitless.
"""

from __future__ import annotations

from dataclasses import replace

from spanwire.agent import naming
from spanwire.agent.plan import dhcp, entries, links, nat, security
from spanwire.agent.plan.nft_table import RulesetChange
from spanwire.agent.plan.ops import (
    AddAddr,
    Announce,
    CreateLeg,
    CreateNetns,
    DeleteLink,
    DeleteNetns,
    Op,
    SetLink,
    StopDhcp,
)
from spanwire.agent.state import NodeKernel, RoutingNs


def _missing_legs(d: RoutingNs, a: RoutingNs) -> set[str]:
    """Network ends of legs that do not exist yet: their router's pass creates them."""
    have = {leg.name for leg in a.legs}
    return {leg.name for leg in d.legs if not leg.peer_ns and leg.name not in have}


def plan_namespace(node_ns: str, d: RoutingNs, a: RoutingNs, loose: frozenset[str]) -> list[Op]:
    """Ops that turn namespace `a` into `d` (both exist, or `a` is empty).

    Entries on legs that do not exist yet are left out (see `plan_new_legs`).
    """
    have_taps = {t.name for t in a.taps}
    missing = {t.name for t in d.taps if t.name not in have_taps and t.name not in loose}
    missing |= _missing_legs(d, a)
    early, late, gone = links.plan(node_ns, d, a, loose)
    deleted = {op.name for op in late if isinstance(op, DeleteLink)}
    ns_sysctls, writes, removes = entries.plan(d, a, missing, gone, deleted)
    per_link = [op for op in ns_sysctls if "/conf/tap" in op.key or "/neigh/" in op.key]
    global_sysctls = [op for op in ns_sysctls if op not in per_link]
    filtering = security.plan(d, a)
    seals = [op for op in filtering if op.change == RulesetChange.SEAL]
    return [
        *global_sysctls,
        # Filtering goes in before any tap is up: a new port is never unfiltered (the
        # transaction may still run while a tap move finishes, see `apply`).
        *(op for op in filtering if op.change != RulesetChange.SEAL),
        *early,
        *per_link,
        *writes,
        *nat.plan(d, a),
        *dhcp.plan(d, a),
        *removes,
        *late,
        *seals,  # last: nothing the port needs waits for the digest (see plan_ruleset)
    ]


def plan_new_legs(d: RoutingNs, a: RoutingNs, created: set[tuple[str, str]]) -> list[Op]:
    """Addresses and routes of `d` on its legs in `created` ((ns, leg) pairs just created)."""
    new = {leg for leg in _missing_legs(d, a) if (d.name, leg) in created}
    if not new:
        return []
    only = replace(d, sysctls=frozenset(),
                   addrs=frozenset(e for e in d.addrs if e.dev in new),
                   neighs=frozenset(e for e in d.neighs if e.dev in new),
                   fdbs=frozenset(), routes=frozenset(e for e in d.routes if e.dev in new))
    return entries.plan(only, RoutingNs(name=d.name), set(), set(), set())[1]


def plan(desired: NodeKernel, actual: NodeKernel) -> list[Op]:
    ops: list[Op] = []
    names = sorted(desired.namespaces, key=lambda n: (bool(desired.namespaces[n].router_id), n))
    for name in names:
        want = desired.namespaces[name]
        have = actual.namespaces.get(name)
        if have is None:
            ops.append(CreateNetns(name))
            have = RoutingNs(name=name, lo_up=False)
        ops += plan_namespace(desired.node_ns, want, have, actual.loose_taps)
    created = {(op.leg.peer_ns, op.leg.peer) for op in ops if isinstance(op, CreateLeg)}
    for name in names:
        want = desired.namespaces[name]
        ops += plan_new_legs(want, actual.namespaces.get(name) or RoutingNs(name=name), created)
    for name in sorted(set(actual.namespaces) - set(desired.namespaces)):
        stale = actual.namespaces[name]
        if stale.dhcp is not None:
            ops.append(StopDhcp(name, stale.dhcp.pid))
        ops.append(DeleteNetns(name))
    return ops + _announcements(desired, ops)


def _announcements(desired: NodeKernel, ops: list[Op]) -> list[Op]:
    """Last, when everything behind them is in place: gratuitous ARP for every address
    that just appeared on a provider network (a floating IP, a node's SNAT address),
    and for all addresses of a gateway whose MAC changed."""
    out: dict[tuple[str, str, str], None] = {}
    for op in ops:
        if isinstance(op, AddAddr) and op.addr.dev.startswith(naming.GATEWAY_PREFIX):
            out[(op.ns, op.addr.dev, op.addr.cidr.split("/")[0])] = None
        elif isinstance(op, SetLink) and op.mac and op.name.startswith(naming.GATEWAY_PREFIX):
            rns = desired.namespaces.get(op.ns)
            for addr in sorted(rns.addrs if rns is not None else ()):
                if addr.dev == op.name:
                    out[(op.ns, addr.dev, addr.cidr.split("/")[0])] = None
    return [Announce(ns, dev, ip) for ns, dev, ip in out]


__all__ = ["plan", "plan_namespace"]
