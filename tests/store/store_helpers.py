"""Helpers for the store tests, in a plain module so spawned child processes can import them."""

from __future__ import annotations

import random
import time
from dataclasses import dataclass

from spanwire.store import Compare, Put, connect
from spanwire.store.etcd_server import EtcdCluster


@dataclass
class Backend:
    """What a conformance test gets: a backend's name, its URL, and its etcd (if any)."""

    name: str
    url: str
    cluster: EtcdCluster | None = None


def cas_increments(url: str, key: str, count: int) -> int:
    """Increment the integer at `key` `count` times by compare-and-swap; return conflicts seen."""
    store = connect(url)
    conflicts = streak = 0
    try:
        done = 0
        while done < count:
            kv = store.get(key)
            assert kv is not None
            result = store.txn([Compare.unchanged(kv)], [Put(key, b"%d" % (int(kv.value) + 1))])
            if result.succeeded:
                done, streak = done + 1, 0
            else:
                # Back off with jitter, as a real client would: on etcd every failed
                # txn still costs a raft round and an fsync.
                conflicts, streak = conflicts + 1, min(streak + 1, 6)
                time.sleep(random.uniform(0, 0.001 * 2**streak))
    finally:
        store.close()
    return conflicts


def grant_and_exit(url: str, key: str) -> None:
    """Take a 1 s lease, attach `key` to it, and exit without revoking (a crashed agent)."""
    store = connect(url)
    lease = store.grant_lease(1)
    store.put(key, b"alive", lease=lease.id)
    store.close()
