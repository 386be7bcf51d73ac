"""SQLite-only behaviour: bounded history, several processes sharing one file."""

from __future__ import annotations

import multiprocessing
import sqlite3
import time
from pathlib import Path

import pytest
from store_helpers import grant_and_exit

from spanwire.errors import Compacted, Unavailable
from spanwire.store import connect, sqlite_watch
from spanwire.store.sqlite import SqliteStore
from spanwire.store.sqlite_db import AUTO_COMPACT_EVERY

pytestmark = pytest.mark.filterwarnings("error::pytest.PytestUnhandledThreadExceptionWarning")


def test_history_is_bounded_automatically(tmp_dir: Path) -> None:
    store = connect(f"sqlite://{tmp_dir}/state.db?history=100")
    try:
        for i in range(AUTO_COMPACT_EVERY + 50):
            store.put("/k", b"%d" % i)
        with sqlite3.connect(tmp_dir / "state.db") as db:
            (rows,) = db.execute("SELECT count(*) FROM log").fetchone()
            (compacted,) = db.execute("SELECT compact_revision FROM meta").fetchone()
        assert compacted == AUTO_COMPACT_EVERY - 100
        assert rows == store.revision() - compacted + 1  # one row per revision kept
        with store.watch("/", 2) as old, pytest.raises(Compacted):
            old.get(timeout=2)
        with store.watch("/", compacted) as kept:
            assert kept.get(timeout=2).revision == compacted  # type: ignore[union-attr]
    finally:
        store.close()


def test_lease_of_a_dead_process_is_expired_by_another(tmp_dir: Path) -> None:
    """The granting process exits; a different process's sweeper deletes the keys."""
    url = f"sqlite://{tmp_dir}/state.db"
    store = connect(url)
    try:
        with store.watch("/agents/", store.revision() + 1) as watch:
            proc = multiprocessing.get_context("spawn").Process(
                target=grant_and_exit, args=(url, "/agents/node-1")
            )
            proc.start()
            proc.join(30)
            assert proc.exitcode == 0
            put = watch.get(timeout=5)
            assert put is not None and put.key == "/agents/node-1"
            deleted = watch.get(timeout=5)
            assert deleted is not None and deleted.type.value == "delete"
        assert store.get("/agents/node-1") is None
    finally:
        store.close()


def test_unwritable_path_is_unavailable(tmp_dir: Path) -> None:
    blocker = tmp_dir / "file"
    blocker.write_text("not a directory")
    with pytest.raises(Unavailable, match="cannot open"):
        connect(f"sqlite://{blocker}/state.db")


def test_watch_sees_writes_from_another_connection_quickly(tmp_dir: Path) -> None:
    a = SqliteStore(f"{tmp_dir}/state.db")
    b = SqliteStore(f"{tmp_dir}/state.db")
    try:
        with a.watch("/x/", a.revision() + 1) as watch:
            started = time.monotonic()
            b.put("/x/1", b"v")
            assert watch.get(timeout=2) is not None
            assert time.monotonic() - started < 0.5
    finally:
        a.close()
        b.close()


def test_an_idle_watch_waits_for_database_writes_not_for_a_clock(tmp_dir: Path) -> None:
    """With nothing committed, the commit signal reads data_version a few times a second
    (it used to poll every 2 ms: 4% of a CPU per idle agent); another connection's
    commits still wake the watch."""
    url = f"sqlite://{tmp_dir}/state.db"
    store, writer = connect(url), connect(url)
    try:
        assert isinstance(store, SqliteStore)
        with store.watch("/k", store.revision() + 1) as watch:
            time.sleep(0.3)
            before = store._signal.checks
            time.sleep(1.0)
            idle = store._signal.checks - before
            assert idle <= 10, f"{idle} data_version reads in an idle second"
            for i in range(3):
                writer.put("/k", b"%d" % i)
                event = watch.get(timeout=2)
                assert event is not None and event.value == b"%d" % i
    finally:
        writer.close()
        store.close()


def test_after_a_write_event_the_first_checks_come_quickly_then_at_the_polling_pace() -> None:
    """A commit shows about a millisecond after its WAL write: checking only every 2 ms
    made a port's event reach the agents 2 ms late. Quick checks are limited to a short
    window, so a write that commits nothing new (a checkpoint) costs what it did."""
    pace = sqlite_watch.settle_pace(0.002)
    quick = [s for s in pace if s < 0.002]
    assert quick == pace[:len(quick)] and all(s <= 0.0005 for s in quick)
    assert 0.005 <= sum(quick) <= 0.02, "quick for a few milliseconds only"
    assert abs(sum(pace) - sqlite_watch.SETTLE) < 0.01
    assert sqlite_watch.settle_pace(0.0002)[0] == 0.0002, "never slower than asked"
