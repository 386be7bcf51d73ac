"""SQLite plumbing for the embedded store: schema, connections, and one write step.

Every write goes through `Writer`, which is what keeps SQLite faithful to etcd:
one global revision in `meta`, every change appended to `log` at that revision
(with a sub-index for several changes in one txn), and expired leases deleted
with delete events before anything else is written.
"""

from __future__ import annotations

import contextlib
import sqlite3
import threading
import time
from collections.abc import Iterator
from pathlib import Path

from spanwire.errors import LeaseExpired, Unavailable

SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (
    id INTEGER PRIMARY KEY CHECK (id = 1),
    revision INTEGER NOT NULL,
    compact_revision INTEGER NOT NULL
);
INSERT OR IGNORE INTO meta (id, revision, compact_revision) VALUES (1, 1, 0);
CREATE TABLE IF NOT EXISTS kv (
    key BLOB PRIMARY KEY,
    value BLOB NOT NULL,
    create_rev INTEGER NOT NULL,
    mod_rev INTEGER NOT NULL,
    version INTEGER NOT NULL,
    lease INTEGER NOT NULL DEFAULT 0
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS kv_lease ON kv (lease) WHERE lease != 0;
CREATE TABLE IF NOT EXISTS log (
    rev INTEGER NOT NULL,
    sub INTEGER NOT NULL,
    key BLOB NOT NULL,
    type TEXT NOT NULL CHECK (type IN ('put', 'delete')),
    value BLOB NOT NULL,
    PRIMARY KEY (rev, sub)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS leases (
    id INTEGER PRIMARY KEY,
    ttl INTEGER NOT NULL,
    expires_at REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS leases_expiry ON leases (expires_at);
"""

# How often a write also trims the log; trimming keeps `history` revisions.
AUTO_COMPACT_EVERY = 1024


def open_connection(path: str, busy_timeout_s: float) -> sqlite3.Connection:
    """A connection in autocommit mode (we issue BEGIN ourselves) with WAL and busy wait."""
    try:
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        conn = sqlite3.connect(
            path, timeout=busy_timeout_s, isolation_level=None, check_same_thread=False
        )
        conn.execute(f"PRAGMA busy_timeout = {int(busy_timeout_s * 1000)}")
        conn.execute("PRAGMA journal_mode = WAL")
        # FULL: an acknowledged write survives power loss, as it does on etcd.
        conn.execute("PRAGMA synchronous = FULL")
        conn.execute("PRAGMA foreign_keys = OFF")
    except (OSError, sqlite3.Error) as exc:
        raise Unavailable(f"cannot open SQLite store at {path}: {exc}") from exc
    return conn


class ConnectionPool:
    """Idle connections handed to one thread at a time (sqlite3 objects are not shareable)."""

    def __init__(self, path: str, busy_timeout_s: float) -> None:
        self.path = path
        self.busy_timeout_s = busy_timeout_s
        self._idle: list[sqlite3.Connection] = []
        self._all: list[sqlite3.Connection] = []
        self._lock = threading.Lock()
        self.closed = False

    def open(self) -> sqlite3.Connection:
        """A new connection owned by the caller but closed with the pool."""
        conn = open_connection(self.path, self.busy_timeout_s)
        with self._lock:
            self._all.append(conn)
        return conn

    @contextlib.contextmanager
    def connection(self) -> Iterator[sqlite3.Connection]:
        if self.closed:
            raise Unavailable(f"SQLite store {self.path} is closed")
        with self._lock:
            conn = self._idle.pop() if self._idle else None
        if conn is None:
            conn = self.open()
        try:
            yield conn
        except sqlite3.OperationalError as exc:
            # Locked past busy_timeout, disk full, I/O error: the store is not usable now.
            raise Unavailable(f"SQLite store {self.path}: {exc}") from exc
        finally:
            with self._lock:
                self._idle.append(conn)

    def close(self) -> None:
        self.closed = True
        with self._lock:
            conns, self._all, self._idle = self._all, [], []
        for conn in conns:
            with contextlib.suppress(sqlite3.Error):
                conn.close()


@contextlib.contextmanager
def transaction(conn: sqlite3.Connection, write: bool) -> Iterator[sqlite3.Connection]:
    """BEGIN IMMEDIATE for writes (take the lock up front, no upgrade deadlocks), BEGIN for reads.

    A read transaction in WAL mode is a snapshot: every SELECT inside it sees
    the same revision.
    """
    try:
        conn.execute("BEGIN IMMEDIATE" if write else "BEGIN")
    except sqlite3.OperationalError as exc:
        raise Unavailable(f"SQLite store busy or unavailable: {exc}") from exc
    try:
        yield conn
    except BaseException:
        if conn.in_transaction:
            conn.execute("ROLLBACK")
        raise
    try:
        conn.execute("COMMIT")
    except sqlite3.OperationalError as exc:
        if conn.in_transaction:
            conn.execute("ROLLBACK")
        raise Unavailable(f"SQLite commit failed: {exc}") from exc


class Writer:
    """One etcd-style revision step inside an open write transaction.

    Changes are buffered into revision `base + 1`; `finish()` bumps the global
    revision only if something changed (etcd does not bump on no-op deletes).
    """

    def __init__(self, conn: sqlite3.Connection, history: int) -> None:
        self.conn = conn
        self.history = history
        self.base: int = conn.execute("SELECT revision FROM meta WHERE id = 1").fetchone()[0]
        self.sub = 0

    @property
    def rev(self) -> int:
        return self.base + 1

    def put(self, key: bytes, value: bytes, lease: int) -> None:
        if lease:
            found = self.conn.execute("SELECT 1 FROM leases WHERE id = ?", (lease,)).fetchone()
            if found is None:
                raise LeaseExpired(f"lease {lease} not found (expired or revoked)")
        cur = self.conn.execute(
            "UPDATE kv SET value = ?, mod_rev = ?, version = version + 1, lease = ? WHERE key = ?",
            (value, self.rev, lease, key),
        )
        if cur.rowcount == 0:
            self.conn.execute(
                "INSERT INTO kv (key, value, create_rev, mod_rev, version, lease) "
                "VALUES (?, ?, ?, ?, 1, ?)",
                (key, value, self.rev, self.rev, lease),
            )
        self._log(key, "put", value)

    def delete(self, key: bytes) -> bool:
        cur = self.conn.execute("DELETE FROM kv WHERE key = ?", (key,))
        if cur.rowcount == 0:
            return False
        self._log(key, "delete", b"")
        return True

    def _log(self, key: bytes, kind: str, value: bytes) -> None:
        self.conn.execute(
            "INSERT INTO log (rev, sub, key, type, value) VALUES (?, ?, ?, ?, ?)",
            (self.rev, self.sub, key, kind, value),
        )
        self.sub += 1

    def finish(self) -> int:
        """Commit the step's revision (if anything changed); return the store revision."""
        if self.sub == 0:
            return self.base
        self.conn.execute("UPDATE meta SET revision = ? WHERE id = 1", (self.rev,))
        if self.rev % AUTO_COMPACT_EVERY == 0 and self.rev > self.history:
            compact_log(self.conn, self.rev - self.history)
        return self.rev


def compact_log(conn: sqlite3.Connection, revision: int) -> None:
    """Drop log rows older than `revision` (inside a write transaction); never moves back."""
    (current,) = conn.execute("SELECT compact_revision FROM meta WHERE id = 1").fetchone()
    if revision <= current:
        return
    conn.execute("DELETE FROM log WHERE rev < ?", (revision,))
    conn.execute("UPDATE meta SET compact_revision = ? WHERE id = 1", (revision,))


def revoke_lease(conn: sqlite3.Connection, lease_id: int, history: int) -> bool:
    """Delete a lease and its keys at one new revision, logging delete events.

    True if the lease existed.
    """
    if conn.execute("DELETE FROM leases WHERE id = ?", (lease_id,)).rowcount == 0:
        return False
    rows = conn.execute("SELECT key FROM kv WHERE lease = ? ORDER BY key", (lease_id,))
    keys = [r[0] for r in rows]
    writer = Writer(conn, history)
    for key in keys:
        writer.delete(key)
    writer.finish()
    return True


def expire_due(conn: sqlite3.Connection, history: int, now: float | None = None) -> int:
    """Revoke every lease past its expiry (inside a write transaction); returns how many."""
    now = time.time() if now is None else now
    due = [r[0] for r in conn.execute("SELECT id FROM leases WHERE expires_at <= ?", (now,))]
    for lease_id in due:
        revoke_lease(conn, lease_id, history)
    return len(due)


def any_due(conn: sqlite3.Connection, now: float | None = None) -> bool:
    """Cheap read-only check so idle processes do not take the write lock to sweep."""
    now = time.time() if now is None else now
    row = conn.execute("SELECT 1 FROM leases WHERE expires_at <= ? LIMIT 1", (now,)).fetchone()
    return row is not None
