"""Race-free allocation: every reservation is a key created with Compare.absent
in the same store transaction as the object that holds it.

IPs (`ipam/<subnet>/<ip>`), MACs (`macs/<mac>`), VNIs (`vnis/<vni>`) and quota
slots are all claimed that way, so two replicas can never hand out the same
one: one transaction wins, the other fails its compare, learns which keys
were taken and retries with fresh picks. Each replica caches what it believes
is used (a hint only: correctness comes from the compares, never the cache).
"""

from __future__ import annotations

import logging
import random
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Generic, TypeVar

from spanwire.api import ipam
from spanwire.api.errors import Retry
from spanwire.api.kvcache import KVCache
from spanwire.errors import Conflict, SpanwireError, Unavailable
from spanwire.store import keys
from spanwire.store.base import Compare, Op, Put, Store

log = logging.getLogger("spanwire.api.allocation")
T = TypeVar("T")
MAX_ATTEMPTS = 40
READ_RETRIES = 3


@dataclass
class Plan(Generic[T]):
    """One transaction: compares, ops, and the value returned when it commits."""

    result: T
    compares: list[Compare] = field(default_factory=list)
    ops: list[Op] = field(default_factory=list)

    def merge(self, other: Plan[object]) -> None:
        self.compares += other.compares
        self.ops += other.ops


class UsedCache:
    """Per-replica hint of which names under a prefix are taken (IPs, VNIs, slots)."""

    RELOAD_AFTER_MISSES = 3

    def __init__(self, store: Store) -> None:
        self.store = store
        self._sets: dict[str, set[str]] = {}
        self._cursors: dict[str, int] = {}
        self._misses: dict[str, int] = {}
        self._lock = threading.Lock()

    def _load(self, prefix: str) -> set[str]:
        names = {kv.key[len(prefix) :] for kv in self.store.range(prefix).items}
        with self._lock:
            if len(self._sets) > 4096:
                self._sets.clear()
            self._sets[prefix] = names
            self._misses.pop(prefix, None)
        return names

    def claim(
        self, prefix: str, pools: Sequence[ipam.Range], fmt: Callable[[int], str] | None = None
    ) -> str | None:
        """A member of `pools` believed free, marked used at once (other threads skip it).

        Picks go forward from a per-prefix cursor (random at first and after
        each lost race, see `ipam.pick_from`). When nothing looks free the
        cache is reloaded once from the store (other replicas may have
        released names) before giving up.
        """
        size = ipam.pool_size(pools)
        if size <= 0:
            return None
        for fresh in (False, True):
            if fresh or prefix not in self._sets:
                self._load(prefix)
            with self._lock:
                used = self._sets.setdefault(prefix, set())
                start = self._cursors.get(prefix)
                hit = ipam.pick_from(
                    pools, used, random.randrange(size) if start is None else start % size, fmt
                )
                if hit is not None:
                    used.add(hit[0])
                    self._cursors[prefix] = hit[1] + 1
                    return hit[0]
        return None

    def _missed(self, prefix: str) -> None:
        """Another replica allocates here: jump elsewhere; after a few misses, reload
        the whole prefix (learning one taken name per lost race is too slow when
        the other replica has taken hundreds)."""
        with self._lock:
            self._cursors.pop(prefix, None)
            self._misses[prefix] = self._misses.get(prefix, 0) + 1
            if self._misses[prefix] >= self.RELOAD_AFTER_MISSES:
                self._sets.pop(prefix, None)
                self._misses.pop(prefix, None)

    def add(self, prefix: str, name: str) -> None:
        with self._lock:
            self._sets.setdefault(prefix, set()).add(name)

    def discard(self, prefix: str, name: str) -> None:
        with self._lock:
            if prefix in self._sets:
                self._sets[prefix].discard(name)

    def forget(self, prefix: str) -> None:
        with self._lock:
            self._sets.pop(prefix, None)

    def learn(self, compares: Sequence[Compare]) -> None:
        """After a failed txn: keep taken reservation keys as used, free our own misses."""
        for cmp in compares:
            prefix, _, name = cmp.key.rpartition("/")
            if cmp.mod_revision != 0 or prefix + "/" not in self._sets:
                continue
            if self.store.get(cmp.key) is not None:
                self.add(prefix + "/", name)
                self._missed(prefix + "/")
            else:
                self.discard(prefix + "/", name)


def commit(
    store: Store,
    cache: UsedCache,
    build: Callable[[], Plan[T]],
    what: str,
    kv: KVCache | None = None,
) -> T:
    """Build a plan and commit it; rebuild and retry on a lost race.

    Reads cached in `kv` are dropped when the txn fails, so the rebuild sees
    fresh values; written keys are dropped after success.
    """
    refused_fresh = False
    unavailable = 0
    for attempt in range(MAX_ATTEMPTS):
        if kv is not None:
            kv.track()
        try:
            plan = build()
        except Unavailable:
            # Reads are idempotent: a store that is slow under load gets a
            # few more chances before the client sees a 503.
            unavailable += 1
            if unavailable > READ_RETRIES:
                raise
            time.sleep(0.1 * unavailable)
            continue
        except SpanwireError:
            # A refusal (over quota, pool full, not found...) may rest on a stale
            # cached read; refuse only when fresh data says the same.
            if kv is None or refused_fresh:
                raise
            refused_fresh = True
            kv.forget_tracked()
            continue
        if _txn(store, plan, what):
            if kv is not None:
                kv.invalidate(*(op.key for op in plan.ops))
            return plan.result
        if kv is not None:
            kv.invalidate(*(c.key for c in plan.compares if c.mod_revision != 0))
        cache.learn(plan.compares)
        log.debug("event=txn.retry what=%s attempt=%d", what, attempt)
        time.sleep(random.uniform(0, 0.002 * min(attempt + 1, 20)))
    raise Retry(f"{what}: too much contention in the store, retry the request")


def _txn(store: Store, plan: Plan[object], what: str) -> bool:
    """Run the plan's txn; when the store cannot say whether it applied, find out.

    The put of the object itself is unique to this attempt (a fresh id, or a
    new revision_number and timestamp), so it is present exactly if the txn applied.
    """
    try:
        return store.txn(plan.compares, plan.ops).succeeded
    except Unavailable as exc:
        target = getattr(plan.result, "key", None)
        puts = [op for op in plan.ops if isinstance(op, Put)]
        witness = next((op for op in puts if op.key == target), puts[-1] if puts else None)
        if witness is None:
            raise
        log.warning("event=txn.outcome_unknown what=%s key=%s error=%s", what, witness.key, exc)
        for wait in (0.05, 0.2, 0.5, 1.0):
            time.sleep(wait)
            try:
                kv = store.get(witness.key)
            except Unavailable:
                continue
            return kv is not None and kv.value == witness.value
        raise


def release(cache: UsedCache, reservation_keys: Sequence[str]) -> None:
    """After a committed delete: the names are free again in this replica's cache."""
    for key in reservation_keys:
        prefix, _, name = key.rpartition("/")
        cache.discard(prefix + "/", name)


def ip_key(subnet_id: str, address: str) -> str:
    return keys.key("ipam", subnet_id, address)


def mac_key(mac: str) -> str:
    return keys.key("macs", mac)


def vni_key(vni: int) -> str:
    return keys.key("vnis", str(vni))


def claim_ip(cache: UsedCache, subnet_id: str, pools: Sequence[ipam.Range]) -> str | None:
    return cache.claim(keys.prefix("ipam", subnet_id), pools)


def claim_vni(cache: UsedCache, lo: int, hi: int) -> int | None:
    name = cache.claim(keys.prefix("vnis"), [(lo, hi)], fmt=str)
    return None if name is None else int(name)


def random_mac(prefix: str) -> str:
    """A MAC with Neutron's OUI; 24 random bits make collisions rare, the key makes them safe."""
    tail = random.getrandbits(24)
    return f"{prefix}:{tail >> 16:02x}:{(tail >> 8) & 0xFF:02x}:{tail & 0xFF:02x}"


@contextmanager
def guard(store: Store, kind: str, resource_id: str) -> Iterator[str]:
    """Hold `locks/<kind>/<id>` while deleting a parent, so no child is created meanwhile.

    Creators of children compare the lock absent; the lock rides on a lease so
    a replica that dies mid-delete cannot wedge the parent for longer than it.
    """
    key = keys.key("locks", kind, resource_id)
    lease = store.grant_lease(30)
    try:
        if not store.txn([Compare.absent(key)], [Put(key, b"deleting", lease.id)]).succeeded:
            raise Conflict(f"{kind} {resource_id} is being deleted by another request; retry")
        yield key
    finally:
        lease.revoke()


def lock_key(kind: str, resource_id: str) -> str:
    return keys.key("locks", kind, resource_id)
