"""One conformance suite, run against every backend: SQLite and a real etcd member.

If a test here passes on SQLite but not on etcd (or the reverse), the embedded
store is not a faithful stand-in and code tested on one machine would behave
differently in production.
"""

from __future__ import annotations

import multiprocessing
import socket
import time

import pytest
from store_helpers import Backend, cas_increments

from spanwire.errors import Compacted, Conflict, InvalidInput, LeaseExpired, Unavailable
from spanwire.store import Compare, Delete, Event, EventType, Put, Store, Watch, connect


def drain(watch: Watch, count: int, timeout: float = 10.0) -> list[Event]:
    """Exactly `count` events, failing if they do not arrive within `timeout` s."""
    events: list[Event] = []
    deadline = time.monotonic() + timeout
    while len(events) < count:
        remaining = deadline - time.monotonic()
        assert remaining > 0, f"only {len(events)} of {count} events arrived: {events}"
        event = watch.get(timeout=remaining)
        if event is not None:
            events.append(event)
    return events


def wait_for(condition, timeout: float, what: str) -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"timed out after {timeout}s waiting for {what}"
        time.sleep(0.05)


# basics


def test_put_get_delete_revision(store: Store, prefix: str) -> None:
    key = prefix + "a"
    assert store.get(key) is None
    r0 = store.revision()
    r1 = store.put(key, b"one")
    assert r1 == r0 + 1 == store.revision()
    kv = store.get(key)
    assert kv is not None
    assert (kv.key, kv.value, kv.create_revision, kv.mod_revision, kv.version, kv.lease) == (
        key,
        b"one",
        r1,
        r1,
        1,
        0,
    )
    r2 = store.put(key, b"two")
    kv2 = store.get(key)
    assert kv2 is not None
    assert (kv2.value, kv2.create_revision, kv2.mod_revision, kv2.version) == (b"two", r1, r2, 2)
    assert store.delete(key) is True
    assert store.revision() == r2 + 1
    assert store.get(key) is None
    assert store.delete(key) is False
    assert store.revision() == r2 + 1, "deleting a missing key must not bump the revision"


def test_binary_and_empty_values(store: Store, prefix: str) -> None:
    store.put(prefix + "bin", bytes(range(256)))
    store.put(prefix + "empty", b"")
    assert store.get(prefix + "bin").value == bytes(range(256))  # type: ignore[union-attr]
    assert store.get(prefix + "empty").value == b""  # type: ignore[union-attr]


def test_range_is_sorted_prefix_only_and_at_one_revision(store: Store, prefix: str) -> None:
    for name in ["c", "a", "b/x", "b", "é"]:
        store.put(prefix + name, name.encode())
    store.put(prefix[:-1] + "X", b"outside")  # shares the prefix minus its slash
    listing = store.range(prefix)
    assert [kv.key for kv in listing.items] == [prefix + n for n in ["a", "b", "b/x", "c", "é"]]
    assert listing.revision == store.revision()
    assert store.range(prefix + "b").revision == listing.revision
    assert [kv.key for kv in store.range(prefix + "b").items] == [prefix + "b", prefix + "b/x"]
    assert store.range(prefix + "zzz").items == []


def test_range_pages_through_many_keys(store: Store, prefix: str) -> None:
    """More keys than one etcd page (2,000): still complete, sorted, at one revision."""
    for start in range(0, 2500, 100):
        store.txn([], [Put(f"{prefix}{start + i:05d}", b"v" * 10) for i in range(100)])
    head = store.revision()
    listing = store.range(prefix)
    assert [kv.key for kv in listing.items] == [f"{prefix}{i:05d}" for i in range(2500)]
    assert listing.revision == head


# transactions


def test_txn_create_if_absent(store: Store, prefix: str) -> None:
    key = prefix + "ip/10.0.0.5"
    rev = store.create(key, b"port-1")
    assert store.get(key).mod_revision == rev  # type: ignore[union-attr]
    with pytest.raises(Conflict):
        store.create(key, b"port-2")
    assert store.get(key).value == b"port-1"  # type: ignore[union-attr]
    assert store.revision() == rev, "a failed txn must not bump the revision"


def test_txn_update_and_delete_if_unchanged(store: Store, prefix: str) -> None:
    key = prefix + "k"
    store.put(key, b"1")
    stale = store.get(key)
    assert stale is not None
    store.update(stale, b"2")
    with pytest.raises(Conflict):
        store.update(stale, b"3")
    with pytest.raises(Conflict):
        store.delete_if_unchanged(stale)
    fresh = store.get(key)
    assert fresh is not None and fresh.value == b"2" and fresh.version == 2
    store.delete_if_unchanged(fresh)
    assert store.get(key) is None


def test_multi_op_txn_commits_at_one_revision(store: Store, prefix: str) -> None:
    store.put(prefix + "old1", b"x")
    store.put(prefix + "old2", b"x")
    before = store.revision()
    watch = store.watch(prefix, before + 1)
    try:
        result = store.txn(
            [Compare.absent(prefix + "new1"), Compare.unchanged(store.get(prefix + "old1"))],  # type: ignore[arg-type]
            [
                Put(prefix + "new1", b"1"),
                Put(prefix + "new2", b"2"),
                Delete(prefix + "old1"),
                Delete(prefix + "old2"),
                Delete(prefix + "never"),
            ],
        )
        assert result == type(result)(True, before + 1)
        keys = {kv.key: kv for kv in store.range(prefix).items}
        assert set(keys) == {prefix + "new1", prefix + "new2"}
        assert {kv.mod_revision for kv in keys.values()} == {before + 1}
        events = drain(watch, 4)
        assert {e.revision for e in events} == {before + 1}
        assert [(e.type, e.key) for e in events] == [
            (EventType.PUT, prefix + "new1"),
            (EventType.PUT, prefix + "new2"),
            (EventType.DELETE, prefix + "old1"),
            (EventType.DELETE, prefix + "old2"),
        ]
        assert watch.get(timeout=0.3) is None
    finally:
        watch.close()


def test_txn_failure_branch(store: Store, prefix: str) -> None:
    store.put(prefix + "k", b"v")
    result = store.txn(
        [Compare.absent(prefix + "k")],
        [Put(prefix + "success", b"s")],
        [Put(prefix + "failure", b"f"), Delete(prefix + "k")],
    )
    assert not result.succeeded
    assert result.revision == store.revision()
    assert store.get(prefix + "success") is None
    assert store.get(prefix + "failure").value == b"f"  # type: ignore[union-attr]
    assert store.get(prefix + "k") is None
    # A failed compare with no failure ops changes nothing.
    rev = store.revision()
    assert store.txn([Compare(prefix + "failure", 1)], [Delete(prefix + "failure")]) == (
        type(result)(False, rev)
    )


def test_concurrent_cas_from_eight_processes(backend: Backend, store: Store, prefix: str) -> None:
    """8 processes x 200 CAS increments, each with its own connect(): exactly 1,600."""
    key = prefix + "counter"
    store.put(key, b"0")
    ctx = multiprocessing.get_context("spawn")
    with ctx.Pool(8) as pool:
        conflicts = pool.starmap(cas_increments, [(backend.url, key, 200)] * 8, chunksize=1)
    assert store.get(key).value == b"1600", f"conflicts per process: {conflicts}"  # type: ignore[union-attr]
    assert store.get(key).version == 1601  # type: ignore[union-attr]


# watches


def _write_mix(store: Store, prefix: str) -> list[tuple[EventType, str, bytes, int]]:
    """A mix of puts, deletes and multi-op txns; returns the events they must produce."""
    expected: list[tuple[EventType, str, bytes, int]] = []
    for i in range(20):
        key = f"{prefix}k{i % 7}"
        if i % 5 == 4 and store.get(key) is not None:
            rev = store.revision() + 1
            assert store.delete(key)
            expected.append((EventType.DELETE, key, b"", rev))
        elif i % 6 == 5:
            a, b = f"{prefix}t{i}a", f"{prefix}t{i}b"
            rev = store.txn([], [Put(a, b"A"), Put(b, b"B")]).revision
            expected += [(EventType.PUT, a, b"A", rev), (EventType.PUT, b, b"B", rev)]
        else:
            value = f"v{i}".encode()
            expected.append((EventType.PUT, key, value, store.put(key, value)))
        store.put(prefix[:-1] + "-elsewhere", b"noise")  # outside the prefix: never seen
    return expected


def _shape(events: list[Event]) -> list[tuple[EventType, str, bytes, int]]:
    return [(e.type, e.key, e.value, e.revision) for e in events]


def test_watch_delivers_every_event_once_in_order(store: Store, prefix: str) -> None:
    store.put(prefix + "before", b"x")
    start = store.revision() + 1
    with store.watch(prefix, start) as watch:
        expected = _write_mix(store, prefix)
        assert _shape(drain(watch, len(expected))) == expected
        assert watch.get(timeout=0.3) is None
        assert watch.last_revision == expected[-1][3]
    # Starting in the past replays history from that revision.
    with store.watch(prefix, start) as replay:
        assert _shape(drain(replay, len(expected))) == expected


def test_watch_resumes_after_close_and_reopen(store: Store, prefix: str) -> None:
    start = store.revision() + 1
    watch = store.watch(prefix, start)
    puts = [store.put(f"{prefix}{i}", b"%d" % i) for i in range(10)]
    first = drain(watch, 4)
    watch.close()
    puts += [store.put(f"{prefix}{i}", b"%d" % i) for i in range(10, 15)]
    with store.watch(prefix, watch.last_revision + 1) as again:
        rest = drain(again, 11)
        assert again.get(timeout=0.3) is None
    assert [e.revision for e in first + rest] == puts


def test_watch_survives_member_restart(backend: Backend, store: Store, prefix: str) -> None:
    """A broken etcd stream resumes from the last delivered revision, transparently."""
    if backend.cluster is None:
        pytest.skip("only etcd has a stream that can break")
    start = store.revision() + 1
    with store.watch(prefix, start) as watch:
        revs = [store.put(f"{prefix}{i}", b"before") for i in range(5)]
        assert [e.revision for e in drain(watch, 3)] == revs[:3]
        backend.cluster.restart(0)
        revs += [store.put(f"{prefix}{i}", b"after") for i in range(5, 10)]
        events = drain(watch, 7, timeout=20)
        assert [e.revision for e in events] == revs[3:]
        assert watch.get(timeout=0.3) is None
        assert getattr(watch, "reconnects", 1) >= 1


# compaction


def test_compaction_then_relist_and_rewatch(store: Store, prefix: str) -> None:
    first = store.put(prefix + "a", b"1")
    for i in range(5):
        store.put(prefix + "a", b"%d" % i)
    head = store.revision()
    store.compact(head)
    store.compact(first)  # older than what is already compacted: a no-op
    with pytest.raises(InvalidInput):
        store.compact(head + 1000)
    with store.watch(prefix, first) as stale, pytest.raises(Compacted) as info:
        stale.get(timeout=5)
    assert info.value.compact_revision == head and info.value.requested == first
    listing = store.range(prefix)
    assert [kv.value for kv in listing.items] == [b"4"]
    with store.watch(prefix, listing.revision + 1) as fresh:
        rev = store.put(prefix + "b", b"new")
        [event] = drain(fresh, 1)
        assert (event.key, event.revision) == (prefix + "b", rev)


# leases


def test_lease_not_kept_alive_expires(store: Store, prefix: str) -> None:
    lease = store.grant_lease(1)
    store.put(prefix + "alive", b"agent-1", lease=lease.id)
    store.put(prefix + "stays", b"x")
    assert store.get(prefix + "alive").lease == lease.id  # type: ignore[union-attr]
    with store.watch(prefix, store.revision() + 1) as watch:
        wait_for(lambda: store.get(prefix + "alive") is None, 8, "the lease to expire")
        [event] = drain(watch, 1)
        assert (event.type, event.key) == (EventType.DELETE, prefix + "alive")
    assert store.get(prefix + "stays") is not None
    with pytest.raises(LeaseExpired):
        lease.keepalive()
    with pytest.raises(LeaseExpired):
        store.put(prefix + "late", b"x", lease=lease.id)
    lease.revoke()  # already gone: not an error


def test_kept_alive_lease_survives_its_ttl(store: Store, prefix: str) -> None:
    lease = store.grant_lease(1)
    store.put(prefix + "alive", b"x", lease=lease.id)
    lease.start_keepalive(interval=0.2)
    try:
        time.sleep(max(lease.ttl, 1) * 2.5)
        assert lease.lost is None
        assert store.get(prefix + "alive") is not None
    finally:
        lease.stop_keepalive()
    assert lease.keepalive() >= 1
    with store.watch(prefix, store.revision() + 1) as watch:
        lease.revoke()
        assert store.get(prefix + "alive") is None
        assert drain(watch, 1)[0].type is EventType.DELETE


# bad input and unreachable stores


@pytest.mark.parametrize(
    "url",
    [
        "",
        "state.db",
        "sqlite://relative/state.db",
        "sqlite:///",
        "etcd://",
        "etcd://host",
        "etcd://host:notaport",
        "etcd://a:1,,b:2",
        "etcd://[::1:2379",
        "etcd://h:1?timeout=-1",
        "sqlite:///x.db?bogus=1",
    ],
)
def test_malformed_url(url: str) -> None:
    with pytest.raises(InvalidInput) as info:
        connect(url)
    message = str(info.value)
    assert "sqlite:///" in message or "option" in message or "timeout" in message


@pytest.mark.parametrize("url", ["redis://localhost:6379", "postgres:///db", "http://x:1"])
def test_unknown_scheme(url: str) -> None:
    with pytest.raises(InvalidInput, match=r"sqlite:///.*etcd://"):
        connect(url)


def test_unreachable_etcd_fails_fast_and_names_endpoints() -> None:
    dead = []
    for _ in range(2):
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            dead.append(s.getsockname()[1])
    url = f"etcd://127.0.0.1:{dead[0]},127.0.0.1:{dead[1]}"
    started = time.monotonic()
    with pytest.raises(Unavailable) as info:
        connect(url)
    assert time.monotonic() - started < 6
    assert f"127.0.0.1:{dead[0]}" in str(info.value) and f"127.0.0.1:{dead[1]}" in str(info.value)


def test_silent_etcd_endpoint_times_out() -> None:
    """A listener that never answers (hung process, black hole) must not hang us."""
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(8)
        port = listener.getsockname()[1]
        started = time.monotonic()
        with pytest.raises(Unavailable, match=f"127.0.0.1:{port}"):
            connect(f"etcd://127.0.0.1:{port}")
        assert time.monotonic() - started < 6


def test_bad_arguments_are_invalid_input(store: Store, prefix: str) -> None:
    bad_calls = [
        lambda: store.put("", b"x"),
        lambda: store.put(prefix + "k", "not bytes"),  # type: ignore[arg-type]
        lambda: store.get(""),
        lambda: store.txn([], [Put(prefix + "k", b"1"), Delete(prefix + "k")]),
        lambda: store.txn([], [Put(f"{prefix}{i}", b"") for i in range(129)]),
        lambda: store.watch(prefix, 0),
        lambda: store.grant_lease(0),
        lambda: store.compact(0),
    ]
    for call in bad_calls:
        with pytest.raises(InvalidInput):
            call()
    assert store.range(prefix).items == []
