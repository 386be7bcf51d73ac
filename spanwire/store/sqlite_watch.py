"""Watches and leases for the SQLite store.

`PRAGMA data_version` changes whenever *another* connection (any thread, any
process) commits. One `CommitSignal` per store checks it on its own connection
and wakes every watch of the process; each watch (a thread with its own
connection) reads the log only when something happened. The signal checks
when the database or its write-ahead log is written (inotify on their
directory: every commit writes the WAL), and every quarter second in case a
write was missed; only where inotify is unavailable does it poll every few
milliseconds. Polling at 2 ms cost every idle agent about 4% of a CPU, taken
from the data plane it runs next to.
"""

from __future__ import annotations

import contextlib
import logging
import os
import sqlite3
import threading
import time
from typing import TYPE_CHECKING

from inotify_simple import INotify, flags

from spanwire.errors import Compacted, Unavailable
from spanwire.store.base import Event, EventType, Lease, QueuedWatch
from spanwire.store.common import prefix_range
from spanwire.store.sqlite_db import open_connection

if TYPE_CHECKING:
    from spanwire.store.sqlite import SqliteStore

log = logging.getLogger("spanwire.store.sqlite")

BATCH = 1000
# Even with no data_version change, re-read this often (guards against a missed signal).
FORCE_READ_EVERY = 1.0
# With inotify, check data_version at least this often (guards against a missed event).
WRITE_WAIT = 0.25
# After a write event, how long at most to keep checking at the polling pace for the commit
# to show (it does once the writer has synced the WAL and updated its index; the check
# stops at the first new data_version, so this bound only matters for writes that commit
# nothing new to us, like a checkpoint).
SETTLE = 1.0
# The first checks after a write event come faster: a commit shows about a millisecond
# after its WAL write (the fsync), and at the polling pace it was seen 2 ms later than
# that (a watch saw a commit 2.9 ms after the put; with these checks, 1.5). A few
# dozen quick checks per write cost nothing; a whole settle window of them would.
QUICK_POLL = 0.0005
QUICK_WINDOW = 0.01


def settle_pace(poll: float) -> list[float]:
    """The sleeps between data_version checks after a write event, until a commit shows:
    quick for QUICK_WINDOW, then at the polling pace, for about SETTLE in all."""
    quick = min(QUICK_POLL, poll)
    return [quick] * round(QUICK_WINDOW / quick) + \
        [poll] * max(1, round((SETTLE - QUICK_WINDOW) / poll))


class DatabaseWrites:
    """Blocks until the database file or its WAL is written (inotify on their directory).

    The directory rather than the files: SQLite deletes and recreates the WAL.
    Events for other files there are read and ignored.
    """

    def __init__(self, path: str) -> None:
        path = os.path.abspath(path)
        base = os.path.basename(path)
        self._names = {base, base + "-wal"}
        self._inotify = INotify()
        try:
            self._inotify.add_watch(os.path.dirname(path),
                                    flags.MODIFY | flags.CREATE | flags.MOVED_TO)
        except OSError:
            self._inotify.close()
            raise

    def wait(self, timeout: float) -> bool:
        """True once the database was written (or events were lost), False after `timeout`."""
        deadline = time.monotonic() + timeout
        while (left := deadline - time.monotonic()) > 0:
            for event in self._inotify.read(timeout=max(1, round(left * 1000))):
                if event.name in self._names or event.mask & flags.Q_OVERFLOW:
                    return True
        return False

    def close(self) -> None:
        self._inotify.close()


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
        self.checks = 0  # data_version reads so far: an idle store makes a few a second

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
        writes = self._database_writes()
        try:
            conn = open_connection(self._path, self._busy)
            last = None
            pace = settle_pace(self._poll)
            step = len(pace)  # sleeps of `pace` done since the last write event
            while True:
                with self._cond:
                    if self._users <= 0:
                        self._thread = None
                        return
                version = conn.execute("PRAGMA data_version").fetchone()[0]
                self.checks += 1
                if version != last:
                    last, step = version, len(pace)
                    with self._cond:
                        self._generation += 1
                        self._cond.notify_all()
                # A write after the check above is an event still to be read: none is lost.
                # But a commit is visible only once the writer has also updated the WAL
                # index, a shared memory map that inotify does not see, a moment after
                # its last WAL write: after an event, keep checking for a little while.
                if writes is None:
                    time.sleep(self._poll)
                elif step < len(pace):
                    time.sleep(pace[step])
                    step += 1
                else:
                    try:
                        if writes.wait(WRITE_WAIT):
                            step = 0
                    except OSError as exc:  # inotify failed under us: poll from now on
                        log.warning("event=inotify_failed path=%s error=%s (polling every "
                                    "%.0f ms)", self._path, exc, 1000 * self._poll)
                        writes.close()
                        writes = None
        except (sqlite3.Error, Unavailable) as exc:  # the watches report it to their users
            with self._cond:
                self._error = exc
                self._thread = None
                self._cond.notify_all()
        finally:
            if writes is not None:
                writes.close()
            if conn is not None:
                with contextlib.suppress(sqlite3.Error):
                    conn.close()

    def _database_writes(self) -> DatabaseWrites | None:
        try:
            return DatabaseWrites(self._path)
        except OSError as exc:
            log.warning("event=inotify_unavailable path=%s error=%s (polling every %.0f ms)",
                        self._path, exc, 1000 * self._poll)
            return None


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
