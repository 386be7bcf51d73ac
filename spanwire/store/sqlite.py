"""The embedded store: one SQLite file with etcd v3 semantics, shared by local processes.

Why SQLite can stand in for etcd on one machine: WAL mode lets readers run
while one writer holds the lock; `BEGIN IMMEDIATE` serializes writers across
processes, so the global revision, compare-and-swap and the event log stay
consistent however many api or agent processes share the file.
"""

from __future__ import annotations

import contextlib
import secrets
import sqlite3
import threading
import time
import weakref
from collections.abc import Sequence
from pathlib import Path

from spanwire.errors import InvalidInput, LeaseExpired, Unavailable
from spanwire.store.base import (
    Compare,
    Delete,
    KeyValue,
    Listing,
    Op,
    Put,
    Store,
    TxnResult,
)
from spanwire.store.common import (
    check_lease_id,
    check_revision,
    check_ttl,
    check_txn,
    key_bytes,
    prefix_range,
    value_bytes,
)
from spanwire.store.sqlite_db import (
    SCHEMA,
    ConnectionPool,
    Writer,
    any_due,
    compact_log,
    expire_due,
    revoke_lease,
    transaction,
)
from spanwire.store.sqlite_watch import CommitSignal, SqliteLease, SqliteWatch

DEFAULT_HISTORY = 100_000


def _kv(row: tuple[bytes, bytes, int, int, int, int]) -> KeyValue:
    key, value, create_rev, mod_rev, version, lease = row
    return KeyValue(key.decode("utf-8"), bytes(value), create_rev, mod_rev, version, lease)


class SqliteStore(Store):
    """`sqlite:///abs/path/state.db`: etcd semantics on one file, safe across processes."""

    def __init__(
        self,
        path: str,
        history: int = DEFAULT_HISTORY,
        busy_timeout: float = 10.0,
        sweep_interval: float = 0.25,
        poll_interval: float = 0.002,
    ) -> None:
        self.url = f"sqlite://{path}"
        self.path = path
        self.history = history
        self._poll = poll_interval
        self._pool = ConnectionPool(path, busy_timeout)
        self._watches: weakref.WeakSet[SqliteWatch] = weakref.WeakSet()
        self._signal = CommitSignal(path, busy_timeout, poll_interval)
        self._stop = threading.Event()
        try:
            with self._pool.connection() as conn:
                conn.executescript("BEGIN IMMEDIATE;" + SCHEMA + "COMMIT;")
        except sqlite3.Error as exc:
            self._pool.close()
            raise Unavailable(f"cannot initialize SQLite store at {path}: {exc}") from exc
        # Any connected process enforces lease expiry, so a dead owner's keys go away
        # even if the process that granted the lease is gone.
        self._sweeper = threading.Thread(
            target=self._sweep, args=(sweep_interval,), name="sqlite-lease-sweeper", daemon=True
        )
        self._sweeper.start()

    # reads

    def get(self, key: str) -> KeyValue | None:
        k = key_bytes(key)
        with self._pool.connection() as conn:
            row = conn.execute(
                "SELECT key, value, create_rev, mod_rev, version, lease FROM kv WHERE key = ?",
                (k,),
            ).fetchone()
        return _kv(row) if row else None

    def range(self, prefix: str) -> Listing:
        start, end = prefix_range(prefix)
        sql = "SELECT key, value, create_rev, mod_rev, version, lease FROM kv WHERE key >= ?"
        params: tuple[bytes, ...] = (start,)
        if end:
            sql, params = sql + " AND key < ?", (start, end)
        with self._pool.connection() as conn, transaction(conn, write=False):
            (revision,) = conn.execute("SELECT revision FROM meta WHERE id = 1").fetchone()
            rows = conn.execute(sql + " ORDER BY key", params).fetchall()
        return Listing([_kv(r) for r in rows], revision)

    def revision(self) -> int:
        with self._pool.connection() as conn:
            return int(conn.execute("SELECT revision FROM meta WHERE id = 1").fetchone()[0])

    # writes

    def put(self, key: str, value: bytes, lease: int = 0) -> int:
        return self.txn([], [Put(key, value, lease)]).revision

    def delete(self, key: str) -> bool:
        k = key_bytes(key)
        with self._pool.connection() as conn, transaction(conn, write=True):
            expire_due(conn, self.history)
            writer = Writer(conn, self.history)
            existed = writer.delete(k)
            writer.finish()
        return existed

    def txn(
        self,
        compares: Sequence[Compare],
        success: Sequence[Op],
        failure: Sequence[Op] = (),
    ) -> TxnResult:
        check_txn(compares, success, failure)
        with self._pool.connection() as conn, transaction(conn, write=True):
            expire_due(conn, self.history)
            ok = all(self._holds(conn, c) for c in compares)
            writer = Writer(conn, self.history)
            for op in success if ok else failure:
                if isinstance(op, Put):
                    writer.put(key_bytes(op.key), value_bytes(op.value), op.lease)
                elif isinstance(op, Delete):
                    writer.delete(key_bytes(op.key))
            revision = writer.finish()
        return TxnResult(ok, revision)

    @staticmethod
    def _holds(conn: sqlite3.Connection, compare: Compare) -> bool:
        row = conn.execute(
            "SELECT mod_rev FROM kv WHERE key = ?", (key_bytes(compare.key),)
        ).fetchone()
        return (row[0] if row else 0) == compare.mod_revision

    def compact(self, revision: int) -> None:
        check_revision(revision)
        with self._pool.connection() as conn, transaction(conn, write=True):
            (current,) = conn.execute("SELECT revision FROM meta WHERE id = 1").fetchone()
            if revision > current:
                raise InvalidInput(
                    f"cannot compact to revision {revision}: the store is at {current}"
                )
            compact_log(conn, revision)

    # watches

    def watch(self, prefix: str, start_revision: int) -> SqliteWatch:
        check_revision(start_revision, "start_revision")
        prefix_range(prefix)
        self._signal.register()
        w = SqliteWatch(self, prefix, start_revision, self._signal)
        self._watches.add(w)
        return w

    # leases

    def grant_lease(self, ttl: int) -> SqliteLease:
        check_ttl(ttl)
        with self._pool.connection() as conn, transaction(conn, write=True):
            while True:
                lease_id = secrets.randbits(62) + 1
                try:
                    conn.execute(
                        "INSERT INTO leases (id, ttl, expires_at) VALUES (?, ?, ?)",
                        (lease_id, ttl, time.time() + ttl),
                    )
                    break
                except sqlite3.IntegrityError:
                    continue
        return SqliteLease(self, lease_id, ttl)

    def _keepalive(self, lease_id: int) -> int:
        check_lease_id(lease_id)
        with self._pool.connection() as conn, transaction(conn, write=True):
            expire_due(conn, self.history)
            row = conn.execute("SELECT ttl FROM leases WHERE id = ?", (lease_id,)).fetchone()
            if row is None:
                raise LeaseExpired(f"lease {lease_id} expired or was revoked")
            conn.execute(
                "UPDATE leases SET expires_at = ? WHERE id = ?", (time.time() + row[0], lease_id)
            )
        return int(row[0])

    def _revoke(self, lease_id: int) -> None:
        """Revoke now; a lease that is already gone is fine (its keys are gone too)."""
        with self._pool.connection() as conn, transaction(conn, write=True):
            revoke_lease(conn, lease_id, self.history)

    def _sweep(self, interval: float) -> None:
        while not self._stop.wait(interval):
            try:
                with self._pool.connection() as conn:
                    if not any_due(conn):
                        continue
                    with transaction(conn, write=True):
                        expire_due(conn, self.history)
            except (sqlite3.Error, Unavailable):
                # Busy or closing: the next sweep (or the next write) catches up.
                continue

    def status(self) -> dict[str, object]:
        """Facts for `spanwire store status`: revision, history kept, live leases, file size."""
        with self._pool.connection() as conn, transaction(conn, write=False):
            revision, compacted = conn.execute(
                "SELECT revision, compact_revision FROM meta WHERE id = 1"
            ).fetchone()
            (keys,) = conn.execute("SELECT count(*) FROM kv").fetchone()
            (leases,) = conn.execute("SELECT count(*) FROM leases").fetchone()
        size = sum(
            Path(self.path + suffix).stat().st_size
            for suffix in ("", "-wal")
            if Path(self.path + suffix).exists()
        )
        return {
            "backend": "sqlite",
            "path": self.path,
            "revision": revision,
            "compact_revision": compacted,
            "keys": keys,
            "leases": leases,
            "size_bytes": size,
        }

    def close(self) -> None:
        self._stop.set()
        for w in list(self._watches):
            w.close()
        if self._sweeper is not threading.current_thread():
            self._sweeper.join(timeout=5)
        with contextlib.suppress(sqlite3.Error):
            self._pool.close()
