"""Race-free per-project quotas via numbered slots.

A project may hold at most `limit` objects of a kind because every object
claims a slot key `quota_slots/<project>/<kind>/<n>` with 0 <= n < limit,
created with Compare.absent in the object's own transaction. Concurrent
creates in one project then contend only when they pick the same slot, not
on one counter key (which would serialise every create of a project).

The quota record (`quotas/<project>`) is compared too, so a limit change and a
create never interleave. When a limit is lowered below slots that may still
be in use, `high` remembers the old bound and creates fall back to counting
every slot under a per-kind lock key, which is exact but serial.
"""

from __future__ import annotations

import json
from typing import Any

from spanwire.api import ipam
from spanwire.api.allocation import Plan, UsedCache
from spanwire.api.errors import OverQuota
from spanwire.api.kvcache import KVCache
from spanwire.store import keys
from spanwire.store.base import Compare, KeyValue, Put, Store

UNLIMITED_SLOTS = 2**31 - 1


def bound(limit: int) -> int:
    return UNLIMITED_SLOTS if limit < 0 else limit


def quota_key(project: str) -> str:
    return keys.key("quotas", project)


def slot_prefix(project: str, resource: str) -> str:
    return keys.prefix("quota_slots", project, resource)


def slot_key(project: str, resource: str, slot: int) -> str:
    return keys.key("quota_slots", project, resource, str(slot))


def read(
    store: Store, project: str, defaults: dict[str, int], kv_cache: KVCache | None = None
) -> tuple[KeyValue | None, dict[str, int], dict[str, int]]:
    """(record kv, limits, high-water slot bounds) of a project, defaults filled in."""
    key = quota_key(project)
    kv = kv_cache.get(key, negative=True) if kv_cache is not None else store.get(key)
    data: dict[str, Any] = json.loads(kv.value) if kv else {}
    limits = {**defaults, **data.get("limits", {})}
    high = {r: max(bound(limits[r]), int(data.get("high", {}).get(r, 0))) for r in limits}
    return kv, limits, high


def record_value(limits: dict[str, int], high: dict[str, int]) -> bytes:
    return json.dumps({"schema_version": 1, "limits": limits, "high": high}).encode()


def claim(
    store: Store,
    cache: UsedCache,
    defaults: dict[str, int],
    project: str,
    resource: str,
    owner_id: str,
    kv_cache: KVCache | None = None,
) -> Plan[int]:
    """Compares and ops that take one `resource` slot for `project` (OverQuota if none).

    The quota record may come from `kv_cache`: it is compared, so staleness only retries.
    """
    kv, limits, high = read(store, project, defaults, kv_cache)
    limit, hi = limits[resource], high[resource]
    plan: Plan[int] = Plan(
        result=-1, compares=[Compare(quota_key(project), kv.mod_revision if kv else 0)]
    )
    prefix = slot_prefix(project, resource)
    over = OverQuota(f"Quota exceeded for resources: ['{resource}'].")
    if hi <= bound(limit):
        name = cache.claim(prefix, [(0, bound(limit) - 1)], fmt=str)
        if name is None:
            raise over
    else:
        # The lock is read *before* counting: any create committed after this
        # read bumped it, so our compare fails instead of admitting on a stale count.
        lock = keys.key("quota_lock", project, resource)
        lock_kv = store.get(lock)
        taken = {k.key[len(prefix) :] for k in store.range(prefix).items}
        if len(taken) >= limit:
            raise over
        name = ipam.pick([(0, hi - 1)], taken, fmt=str)
        if name is None:
            raise over
        plan.compares.append(Compare(lock, lock_kv.mod_revision if lock_kv else 0))
        plan.ops.append(Put(lock, owner_id.encode()))
    key = slot_key(project, resource, int(name))
    plan.compares.append(Compare.absent(key))
    plan.ops.append(Put(key, owner_id.encode()))
    plan.result = int(name)
    return plan


def slot_keys(project: str, resource: str, slot: int | None) -> list[str]:
    """The slot key an object holds, as a list (empty for objects created without one)."""
    return [] if slot is None else [slot_key(project, resource, slot)]


def usage(store: Store, project: str) -> dict[str, int]:
    counts: dict[str, int] = {}
    for kv in store.range(keys.prefix("quota_slots", project)).items:
        resource = keys.split(kv.key)[2]
        counts[resource] = counts.get(resource, 0) + 1
    return counts
