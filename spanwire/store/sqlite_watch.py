"""Watches and leases for the SQLite store.

`PRAGMA data_version` changes whenever *another* connection (any thread, any
process) commits. One `CommitSignal` per store polls it on its own connection
every few milliseconds and wakes every watch of the process; each watch (a
thread with its own connection) reads the log only when something happened.
An agent has a watch per kind it caches: one poller instead of one per watch
is what keeps an idle agent near 0 % CPU.
"""

from __future__ import annotations

import contextlib
import sqlite3
import threading
import time
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


class CommitSignal:
    """Counts commits seen by polling `PRAGMA data_version`; watches wait on it.

    The poller thread runs only while some watch is registered.
    """

    def __init__(self, path: str, busy_timeout: float, poll_interval: float) -> None:
        self._path, self._busy, self._poll = path, busy_timeout, poll_interval
        self._cond = threading.Condition()
        self._generation = 0
        self._users = 0
        self._thread: threading.Thread | None = None
        self._error: BaseException | None = None

    def register(self) -> None:
        with self._cond:
            self._users += 1
            if self._thread is None:
                self._error = None
                self._thread = threading.Thread(target=self._run, name="sqlite-commit-signal",
                                                daemon=True)
                self._thread.start()

    def unregister(self) -> None:
        with self._cond:
            self._users -= 1
            self._cond.notify_all()

    def wait(self, seen: int, timeout: float, stop: threading.Event) -> int:
        """The generation after a commit newer than `seen`, after `timeout`, or once
        `stop` is set (`unregister` wakes every waiter to look)."""
        with self._cond:
            self._cond.wait_for(lambda: self._generation != seen or self._error is not None
                                or stop.is_set(), timeout)
            if self._error is not None:
                raise Unavailable(f"SQLite commit signal failed: {self._error}")
            return self._generation

    def _run(self) -> None:
        conn = None
        try:
            conn = open_connection(self._path, self._busy)
            last = None
            while True:
                with self._cond:
                    if self._users <= 0:
                        self._thread = None
                        return
                version = conn.execute("PRAGMA data_version").fetchone()[0]
                if version != last:
                    last = version
                    with self._cond:
                        self._generation += 1
                        self._cond.notify_all()
                time.sleep(self._poll)
        except (sqlite3.Error, Unavailable) as exc:  # the watches report it to their users
            with self._cond:
                self._error = exc
                self._thread = None
                self._cond.notify_all()
        finally:
            if conn is not None:
                with contextlib.suppress(sqlite3.Error):
                    conn.close()


class SqliteWatch(QueuedWatch):
    """Events under `prefix` from `start_revision` on, read from the `log` table."""

    def __init__(
        self, store: SqliteStore, prefix: str, start_revision: int, signal: CommitSignal
    ) -> None:
        super().__init__(prefix, start_revision)
        self._start, self._end = prefix_range(prefix)
        self._stop = threading.Event()
        self._signal = signal
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
        self._signal.unregister()  # also wakes this watch's thread
        if self._thread is not threading.current_thread():
            self._thread.join(timeout=5)
        with contextlib.suppress(sqlite3.Error):
            self._conn.close()

    def _run(self) -> None:
        seen = -1
        try:
            while not self._stop.is_set():
                # Read first (the start revision may be in the past), then sleep until a
                # commit; at least every FORCE_READ_EVERY in case a signal was missed.
                while self._read_batch():
                    pass
                seen = self._signal.wait(seen, FORCE_READ_EVERY, self._stop)
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
