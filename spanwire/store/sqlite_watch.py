"""Watches and leases for the SQLite store.

A watch is a poller thread with its own connection: `PRAGMA data_version`
changes whenever *another* connection (any thread, any process) commits, so an
idle watch costs one tiny query every few milliseconds and reads the log only
when something happened.
"""

from __future__ import annotations

import contextlib
import sqlite3
import threading
from typing import TYPE_CHECKING

from spanwire.errors import Compacted, Unavailable
from spanwire.store.base import Event, EventType, Lease, QueuedWatch
from spanwire.store.common import prefix_range
from spanwire.store.sqlite_db import open_connection

if TYPE_CHECKING:
    from spanwire.store.sqlite import SqliteStore

BATCH = 1000
# Even with no data_version change, re-read this often (guards against a missed signal).
FORCE_READ_EVERY = 1.0


class SqliteWatch(QueuedWatch):
    """Events under `prefix` from `start_revision` on, read from the `log` table."""

    def __init__(
        self, store: SqliteStore, prefix: str, start_revision: int, poll_interval: float
    ) -> None:
        super().__init__(prefix, start_revision)
        self._start, self._end = prefix_range(prefix)
        self._stop = threading.Event()
        self._poll = poll_interval
        # Cursor: next (revision, sub-index) to read.
        self._cursor = (start_revision, 0)
        # Its own connection: data_version only moves for commits by *other* connections.
        self._conn = open_connection(store.path, store._pool.busy_timeout_s)
        self._thread = threading.Thread(
            target=self._run, name=f"sqlite-watch-{prefix}", daemon=True
        )
        self._thread.start()

    def close(self) -> None:
        self._stop.set()
        if self._thread is not threading.current_thread():
            self._thread.join(timeout=5)
        with contextlib.suppress(sqlite3.Error):
            self._conn.close()

    def _run(self) -> None:
        last_version = None
        waited = 0.0
        try:
            while not self._stop.is_set():
                version = self._conn.execute("PRAGMA data_version").fetchone()[0]
                if version != last_version or waited >= FORCE_READ_EVERY:
                    last_version, waited = version, 0.0
                    while self._read_batch():
                        pass
                self._stop.wait(self._poll)
                waited += self._poll
        except Compacted as exc:
            self._queue.put(exc)
        except (sqlite3.Error, Unavailable) as exc:
            if not self._stop.is_set():
                self._queue.put(Unavailable(f"SQLite watch on {self.prefix!r} failed: {exc}"))

    def _read_batch(self) -> bool:
        """Queue the next batch of matching events; True if there may be more."""
        rev, sub = self._cursor
        conn = self._conn
        conn.execute("BEGIN")
        try:
            head, compacted = conn.execute(
                "SELECT revision, compact_revision FROM meta WHERE id = 1"
            ).fetchone()
            if rev < compacted:
                raise Compacted(rev, compacted)
            params: list[object] = [rev, sub, self._start]
            upper = ""
            if self._end:
                upper = " AND key < ?"
                params.append(self._end)
            rows = conn.execute(
                "SELECT rev, sub, key, type, value FROM log "
                # Row-value form so SQLite seeks on the primary key instead of scanning.
                "WHERE (rev, sub) >= (?, ?) AND key >= ?" + upper + " ORDER BY rev, sub LIMIT ?",
                (*params, BATCH),
            ).fetchall()
        finally:
            conn.execute("COMMIT")
        for r_rev, r_sub, key, kind, value in rows:
            self._queue.put(Event(EventType(kind), key.decode("utf-8"), bytes(value), r_rev))
            self._cursor = (r_rev, r_sub + 1)
        if len(rows) < BATCH:
            # Everything matching up to `head` is queued: skip the rest of the scan.
            self._cursor = max(self._cursor, (head + 1, 0))
            return False
        return True


class SqliteLease(Lease):
    """A lease row; expiry is enforced by every connected process (see SqliteStore)."""

    def __init__(self, store: SqliteStore, lease_id: int, ttl: int) -> None:
        super().__init__(lease_id, ttl)
        self._store = store

    def keepalive(self) -> int:
        return self._store._keepalive(self.id)

    def revoke(self) -> None:
        if self._thread is not threading.current_thread():
            self.stop_keepalive()
        self._store._revoke(self.id)
