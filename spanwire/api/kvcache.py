"""Optimistic per-replica cache of read-mostly keys (networks, subnets, groups, quotas).

Safe only because every value read through it is also *compared* in the
transaction that depends on it: a stale entry makes the transaction fail,
`commit` drops the compared entries, and the retry reads fresh values. In
the common case a port create then costs one store round trip (the txn)
instead of seven reads and a txn.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Any, TypeVar

from spanwire.store.base import KeyValue, Store

T = TypeVar("T")


class KVCache:
    TTL = 30.0
    MAX_ENTRIES = 50_000

    def __init__(self, store: Store) -> None:
        self.store = store
        self._entries: dict[str, tuple[float, KeyValue | None]] = {}
        self._lock = threading.Lock()
        self._local = threading.local()
        self._parsed: dict[str, tuple[int, Any]] = {}

    def track(self) -> None:
        """Start recording the keys this thread reads (see `forget_tracked`)."""
        self._local.keys = []

    def forget_tracked(self) -> None:
        """Drop what this thread read since `track`: a refusal based on it must be re-checked
        against fresh data, since only a transaction's compares catch stale reads."""
        self.invalidate(*getattr(self._local, "keys", ()))
        self._local.keys = []

    def get(self, key: str, negative: bool = False) -> KeyValue | None:
        tracked = getattr(self._local, "keys", None)
        if tracked is not None:
            tracked.append(key)
        """The cached kv (or a fresh read). Absence is cached only if `negative`:
        callers that compare the key absent may use it, lookups that would turn
        into a 404 must not (the object may have just been created elsewhere)."""
        now = time.monotonic()
        with self._lock:
            hit = self._entries.get(key)
        if hit is not None and hit[0] > now and (hit[1] is not None or negative):
            return hit[1]
        kv = self.store.get(key)
        with self._lock:
            if len(self._entries) >= self.MAX_ENTRIES:
                self._entries.clear()
            self._entries[key] = (now + self.TTL, kv)
        return kv

    def parsed(self, kv: KeyValue, parse: Callable[[bytes], T]) -> T:
        """`parse(kv.value)`, memoised by key and mod_revision (objects are frozen)."""
        with self._lock:
            hit = self._parsed.get(kv.key)
        if hit is not None and hit[0] == kv.mod_revision:
            return hit[1]  # type: ignore[no-any-return]
        obj = parse(kv.value)
        with self._lock:
            if len(self._parsed) >= self.MAX_ENTRIES:
                self._parsed.clear()
            self._parsed[kv.key] = (kv.mod_revision, obj)
        return obj

    def invalidate(self, *keys: str) -> None:
        with self._lock:
            for key in keys:
                self._entries.pop(key, None)
