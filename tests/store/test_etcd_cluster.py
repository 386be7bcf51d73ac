"""A 3-member etcd cluster loses its leader to SIGKILL: callers must not notice.

A writer numbers its puts before, while and after the kill; reads and an open
watch continue throughout. Afterwards every acknowledged write must be present, the
watch must have seen each exactly once in revision order, and the killed member,
restarted, must catch up.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Iterator

import pytest

from spanwire.errors import SpanwireError
from spanwire.store import Event, Store, connect
from spanwire.store.etcd_client import Endpoints
from spanwire.store.etcd_server import ETCD_BINARY, EtcdCluster

HAVE_ETCD = os.access(ETCD_BINARY, os.X_OK)

pytestmark = [
    pytest.mark.etcd,
    pytest.mark.slow,
    pytest.mark.skipif(not HAVE_ETCD, reason="etcd not installed"),
    pytest.mark.filterwarnings("error::pytest.PytestUnhandledThreadExceptionWarning"),
]

PREFIX = "/spanwire/test/cluster/"


@pytest.fixture
def cluster() -> Iterator[EtcdCluster]:
    c = EtcdCluster(size=3)
    c.start()
    try:
        yield c
    finally:
        c.stop()


def _leader_index(cluster: EtcdCluster) -> int:
    for i, member in enumerate(cluster.members):
        endpoint = Endpoints([("127.0.0.1", member.client_port)], timeout=5)
        try:
            status = endpoint.post("/maintenance/status", {})
        finally:
            endpoint.close()
        if status["leader"] == status["header"]["member_id"]:
            return i
    raise AssertionError("no leader found")


class Writer(threading.Thread):
    """Puts /seq/<n> = n as fast as it can, recording which ones were acknowledged."""

    def __init__(self, store: Store) -> None:
        super().__init__(daemon=True)
        self.store = store
        self.acked: dict[int, int] = {}  # n -> revision
        self.errors: list[str] = []
        self.stop = threading.Event()

    def run(self) -> None:
        n = 0
        while not self.stop.is_set():
            try:
                self.acked[n] = self.store.put(f"{PREFIX}{n:06d}", b"%d" % n)
            except SpanwireError as exc:
                self.errors.append(f"{n}: {exc}")
            n += 1

    def wait_for(self, count: int, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while len(self.acked) < count:
            assert time.monotonic() < deadline, f"{len(self.acked)} writes acked: {self.errors}"
            time.sleep(0.01)


def test_sigkill_leader_loses_no_acknowledged_write(cluster: EtcdCluster) -> None:
    leader = _leader_index(cluster)
    # The client talks to the leader first, so the kill also forces a failover.
    order = [leader] + [i for i in range(3) if i != leader]
    url = "etcd://" + ",".join(cluster.members[i].endpoint for i in order)
    with connect(url) as store:
        watch = store.watch(PREFIX, store.revision() + 1)
        writer = Writer(store)
        writer.start()
        try:
            writer.wait_for(150, timeout=30)
            cluster.kill(leader)
            killed_at = len(writer.acked)
            writer.wait_for(killed_at + 300, timeout=60)
            # Reads keep working on the survivors.
            assert store.get(f"{PREFIX}{killed_at + 10:06d}") is not None
        finally:
            writer.stop.set()
            writer.join(10)
        assert writer.errors == [], "a caller noticed the kill"
        acked = writer.acked

        listing = store.range(PREFIX)
        present = {int(kv.value) for kv in listing.items}
        lost = sorted(set(acked) - present)
        assert not lost, f"lost acknowledged writes: {lost[:10]}"

        events: list[Event] = []
        deadline = time.monotonic() + 20
        while len({e.key for e in events}) < len(present) and time.monotonic() < deadline:
            event = watch.get(timeout=1)
            if event is not None:
                events.append(event)
        watch.close()
        revisions = [e.revision for e in events]
        assert revisions == sorted(set(revisions)), "watch saw an event twice or out of order"
        seen = {int(e.value) for e in events}
        assert set(acked) <= seen, f"watch missed: {sorted(set(acked) - seen)[:10]}"
        # A put whose answer was lost in the kill is sent again (puts are idempotent),
        # so a key may carry one extra identical PUT; its last event is the acked one.
        last: dict[str, Event] = {}
        for e in events:
            if e.key in last:
                assert last[e.key].value == e.value, f"{e.key} changed value on retry"
            last[e.key] = e
        assert len(events) - len(last) <= 3, "more duplicate events than in-flight retries"
        mismatched = [
            (k, e.revision, acked[int(e.value)])
            for k, e in last.items()
            if int(e.value) in acked and acked[int(e.value)] != e.revision
        ]
        assert not mismatched, mismatched

        # The killed member comes back and catches up from its peers.
        cluster.start_member(leader)
        cluster.wait_healthy([leader], timeout=30)
        with connect(f"etcd://{cluster.members[leader].endpoint}") as alone:
            deadline = time.monotonic() + 10
            while len(alone.range(PREFIX).items) < len(present):
                assert time.monotonic() < deadline, "restarted member did not catch up"
                time.sleep(0.1)
