"""`plan(desired, actual) -> list[Op]`: pure, deterministic, ordered.

Order: create namespaces → per namespace (sysctls, security-group table, links, link sysctls,
addresses, neighbours/FDB, routes, DHCP) → per namespace removals (routes,
FDB, neighbours, addresses, then links) → delete namespaces. Creation comes
before use and deletion after last use, and when desired equals actual the
result is empty: that is what makes an agent restart hitless.
"""

from __future__ import annotations

from spanwire.agent.plan import dhcp, entries, links, security
from spanwire.agent.plan.ops import CreateNetns, DeleteLink, DeleteNetns, Op, StopDhcp
from spanwire.agent.state import NodeKernel, RoutingNs


def plan_namespace(node_ns: str, d: RoutingNs, a: RoutingNs, loose: frozenset[str]) -> list[Op]:
    """Ops that turn routing namespace `a` into `d` (both exist, or `a` is empty)."""
    have_taps = {t.name for t in a.taps}
    missing = {t.name for t in d.taps if t.name not in have_taps and t.name not in loose}
    early, late, gone = links.plan(node_ns, d, a, loose)
    deleted = {op.name for op in late if isinstance(op, DeleteLink)}
    ns_sysctls, writes, removes = entries.plan(d, a, missing, gone, deleted)
    per_link = [op for op in ns_sysctls if "/conf/tap" in op.key or "/neigh/" in op.key]
    global_sysctls = [op for op in ns_sysctls if op not in per_link]
    return [
        *global_sysctls,
        # Filtering goes in before any tap is plugged: a new port is never unfiltered.
        *security.plan(d, a),
        *early,
        *per_link,
        *writes,
        *dhcp.plan(d, a),
        *removes,
        *late,
    ]


def plan(desired: NodeKernel, actual: NodeKernel) -> list[Op]:
    ops: list[Op] = []
    for name in sorted(desired.namespaces):
        want = desired.namespaces[name]
        have = actual.namespaces.get(name)
        if have is None:
            ops.append(CreateNetns(name))
            have = RoutingNs(name=name, lo_up=False)
        ops += plan_namespace(desired.node_ns, want, have, actual.loose_taps)
    for name in sorted(set(actual.namespaces) - set(desired.namespaces)):
        stale = actual.namespaces[name]
        if stale.dhcp is not None:
            ops.append(StopDhcp(name, stale.dhcp.pid))
        ops.append(DeleteNetns(name))
    return ops


__all__ = ["plan", "plan_namespace"]
