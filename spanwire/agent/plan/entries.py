"""Sysctls, addresses, neighbours, FDB entries and routes of one routing namespace.

Entries are keyed the way the kernel keys them (a route by destination, a
neighbour by device and address, an FDB entry by device and MAC), so a changed
entry is one `replace`, never a delete followed by an add that could drop a
packet in between.
"""

from __future__ import annotations

from collections.abc import Callable, Hashable, Iterable
from typing import TypeVar

from spanwire.agent.plan import ops as o
from spanwire.agent.state import Addr, Fdb, Neigh, Route, RoutingNs

E = TypeVar("E")


def _diff(
    want: Iterable[E], have: Iterable[E], key: Callable[[E], Hashable]
) -> tuple[list[E], list[E]]:
    """(entries to write, entries to remove), both sorted for determinism.

    Works on the set differences only: a namespace with a thousand ports whose
    entries are all in place costs two C-level set differences, not a Python
    loop over every entry. A changed entry (same key, other value) is written
    (a replace), not removed; of two wanted entries with one key, the last in
    sorted order wins.
    """
    want_set, have_set = frozenset(want), frozenset(have)
    write = {key(e): e for e in sorted(want_set - have_set)}  # type: ignore[type-var]
    remove = [e for e in have_set - want_set if key(e) not in write]
    return sorted(write.values()), sorted(remove)  # type: ignore[type-var]


def _on_dev(entries: frozenset[E], devs: set[str]) -> frozenset[E]:
    """`entries` without those on `devs`: a difference, so the rest keep their stored hashes."""
    if not devs:
        return entries
    return entries.difference([e for e in entries if getattr(e, "dev", None) in devs])


def plan(
    d: RoutingNs, a: RoutingNs, missing: set[str], gone: set[str], deleted: set[str]
) -> tuple[list[o.Op], list[o.Op], list[o.Op]]:
    """(sysctl ops, entry writes, entry removals).

    `missing`: desired taps that do not exist yet (their entries wait);
    `gone`: links whose actual entries no longer hold (recreated, replugged);
    `deleted`: links about to be deleted (their entries go with them).
    """
    ns = d.name
    sysctls = [
        o.SetSysctl(ns, k, v)
        for k, v in sorted(d.sysctls - a.sysctls)
        if not any(f"/{tap}/" in k for tap in missing)
    ]
    writes: list[o.Op] = []
    removes: list[o.Op] = []
    skip_have = gone | deleted

    add, rem = _diff(_on_dev(d.addrs, missing), _on_dev(a.addrs, skip_have), lambda e: e)
    writes += [o.AddAddr(ns, e) for e in add]
    removes += [o.DelAddr(ns, e) for e in rem]

    nw, nr = _diff(_on_dev(d.neighs, missing), _on_dev(a.neighs, skip_have), _neigh_key)
    fw, fr = _diff(_on_dev(d.fdbs, missing), _on_dev(a.fdbs, skip_have), _fdb_key)
    rw, rr = _diff(_on_dev(d.routes, missing), _on_dev(a.routes, skip_have), _route_key)
    writes += [o.ReplaceNeigh(ns, e) for e in nw]
    writes += [o.ReplaceFdb(ns, e) for e in fw]
    writes += [o.ReplaceRoute(ns, e) for e in rw]
    removes = (
        [o.DelRoute(ns, e) for e in rr]
        + [o.DelFdb(ns, e) for e in fr]
        + [o.DelNeigh(ns, e) for e in nr]
        + removes
    )
    return sysctls, writes, removes


def _neigh_key(e: Neigh) -> Hashable:
    return (e.dev, e.ip)


def _fdb_key(e: Fdb) -> Hashable:
    return (e.dev, e.mac)


def _route_key(e: Route) -> Hashable:
    return e.dst


__all__ = ["Addr", "plan"]
