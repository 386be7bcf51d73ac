"""The store interface: a small, typed key-value API with etcd v3 semantics.

Every backend (etcd for production, SQLite for one machine) implements exactly
this, and one conformance suite runs against all of them. Resource code never
sees a backend; it sees `Store`.

Semantics follow etcd v3 so that the SQLite engine is a faithful stand-in:
a single global revision counts every committed change; a transaction that
changes anything commits at one new revision; keys carry create/mod revisions
and a version; a watch from revision R delivers every event with revision >= R
exactly once, in order; leases expire and delete their keys.
"""

from __future__ import annotations

import queue
import threading
from abc import ABC, abstractmethod
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from enum import StrEnum

from spanwire.errors import Conflict


@dataclass(frozen=True, slots=True)
class KeyValue:
    key: str
    value: bytes
    create_revision: int
    mod_revision: int
    version: int
    lease: int = 0


class EventType(StrEnum):
    PUT = "put"
    DELETE = "delete"


@dataclass(frozen=True, slots=True)
class Event:
    """One change. `value` is empty for deletes; `revision` is the change's revision."""

    type: EventType
    key: str
    value: bytes
    revision: int


@dataclass(frozen=True, slots=True)
class Compare:
    """Holds when the key's mod_revision equals `mod_revision`; 0 means "key absent"."""

    key: str
    mod_revision: int

    @classmethod
    def absent(cls, key: str) -> Compare:
        return cls(key, 0)

    @classmethod
    def unchanged(cls, kv: KeyValue) -> Compare:
        return cls(kv.key, kv.mod_revision)


@dataclass(frozen=True, slots=True)
class Put:
    key: str
    value: bytes
    lease: int = 0


@dataclass(frozen=True, slots=True)
class Delete:
    key: str


Op = Put | Delete


@dataclass(frozen=True, slots=True)
class TxnResult:
    succeeded: bool
    revision: int


@dataclass(frozen=True, slots=True)
class Listing:
    """A consistent range read: `items` as of `revision` (watch from revision + 1)."""

    items: list[KeyValue]
    revision: int


class Watch(ABC):
    """An ordered stream of events under one prefix.

    Backends resume transparently after a dropped connection (from the last
    delivered revision + 1). If the needed history was compacted they raise
    `spanwire.errors.Compacted`, and the caller re-lists.
    """

    def __init__(self, prefix: str, start_revision: int) -> None:
        self.prefix = prefix
        self.start_revision = start_revision
        self.last_revision = start_revision - 1

    @abstractmethod
    def get(self, timeout: float | None = None) -> Event | None:
        """Next event, or None if none arrived within `timeout` seconds."""

    @abstractmethod
    def close(self) -> None: ...

    def __iter__(self) -> Iterator[Event]:
        while True:
            event = self.get(timeout=None)
            if event is not None:
                yield event

    def __enter__(self) -> Watch:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class QueuedWatch(Watch):
    """A watch fed by a background thread through a queue (both backends work so).

    The feeder puts events in order, or one exception (such as Compacted);
    once an exception is delivered, every later `get` raises it again, because
    a watch with a hole in its history must not quietly continue.
    """

    def __init__(self, prefix: str, start_revision: int) -> None:
        super().__init__(prefix, start_revision)
        self._queue: queue.Queue[Event | BaseException] = queue.Queue()
        self._error: BaseException | None = None

    def get(self, timeout: float | None = None) -> Event | None:
        if self._error is not None:
            raise self._error
        try:
            item = self._queue.get(timeout=timeout)
        except queue.Empty:
            return None
        if isinstance(item, BaseException):
            self._error = item
            raise item
        self.last_revision = item.revision
        return item


class Lease(ABC):
    """A TTL'd lease; keys put with it vanish (with delete events) when it expires."""

    def __init__(self, lease_id: int, ttl: int) -> None:
        self.id = lease_id
        self.ttl = ttl
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.lost: BaseException | None = None

    @abstractmethod
    def keepalive(self) -> int:
        """Refresh the lease; return its TTL. Raise LeaseExpired if it is gone."""

    @abstractmethod
    def revoke(self) -> None:
        """End the lease now, deleting its keys."""

    def start_keepalive(self, interval: float | None = None) -> None:
        """Refresh in a daemon thread every ttl/3 s until `stop_keepalive` or loss.

        A lost lease is recorded in `self.lost` rather than raised, because the
        owner (an agent) decides what losing liveness means for it.
        """
        period = interval if interval is not None else max(self.ttl / 3.0, 0.2)

        def run() -> None:
            while not self._stop.wait(period):
                try:
                    self.keepalive()
                except Exception as exc:  # noqa: BLE001 - recorded for the owner
                    self.lost = exc
                    return

        self._thread = threading.Thread(target=run, name=f"lease-{self.id}", daemon=True)
        self._thread.start()

    def stop_keepalive(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)


class Store(ABC):
    """The state store. Thread-safe; one instance per process is enough."""

    url: str

    @abstractmethod
    def get(self, key: str) -> KeyValue | None: ...

    @abstractmethod
    def range(self, prefix: str) -> Listing:
        """Every key starting with `prefix`, sorted by key, at one revision."""

    @abstractmethod
    def put(self, key: str, value: bytes, lease: int = 0) -> int:
        """Unconditional write; returns the new revision."""

    @abstractmethod
    def delete(self, key: str) -> bool:
        """Unconditional delete; True if the key existed."""

    @abstractmethod
    def txn(
        self,
        compares: Sequence[Compare],
        success: Sequence[Op],
        failure: Sequence[Op] = (),
    ) -> TxnResult:
        """If every compare holds apply `success`, else `failure`, atomically."""

    @abstractmethod
    def revision(self) -> int:
        """The store's current global revision."""

    @abstractmethod
    def watch(self, prefix: str, start_revision: int) -> Watch:
        """Events under `prefix` with revision >= `start_revision`."""

    @abstractmethod
    def grant_lease(self, ttl: int) -> Lease: ...

    @abstractmethod
    def compact(self, revision: int) -> None:
        """Forget history before `revision` (watches from older revisions raise Compacted)."""

    @abstractmethod
    def close(self) -> None: ...

    def __enter__(self) -> Store:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # Conveniences built on txn, identical for every backend.

    def create(self, key: str, value: bytes, lease: int = 0) -> int:
        """Put only if absent; Conflict otherwise. Returns the revision."""
        result = self.txn([Compare.absent(key)], [Put(key, value, lease)])
        if not result.succeeded:
            raise Conflict(f"{key} already exists")
        return result.revision

    def update(self, kv: KeyValue, value: bytes, lease: int | None = None) -> int:
        """Put only if `kv` is still the current version; Conflict otherwise."""
        result = self.txn(
            [Compare.unchanged(kv)], [Put(kv.key, value, kv.lease if lease is None else lease)]
        )
        if not result.succeeded:
            raise Conflict(f"{kv.key} changed since revision {kv.mod_revision}")
        return result.revision

    def delete_if_unchanged(self, kv: KeyValue) -> int:
        """Delete only if `kv` is still the current version; Conflict otherwise."""
        result = self.txn([Compare.unchanged(kv)], [Delete(kv.key)])
        if not result.succeeded:
            raise Conflict(f"{kv.key} changed since revision {kv.mod_revision}")
        return result.revision
