"""etcd-only behaviour: failover between endpoints and honest answers on ambiguity."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator

import pytest

from spanwire.errors import Unavailable
from spanwire.store import connect
from spanwire.store.etcd_client import Endpoints, b64
from spanwire.store.etcd_server import EtcdCluster, free_ports

pytestmark = [
    pytest.mark.etcd,
    pytest.mark.filterwarnings("error::pytest.PytestUnhandledThreadExceptionWarning"),
]


@pytest.fixture
def hangup_server() -> Iterator[int]:
    """A port that accepts a request, reads it, and hangs up without answering.

    That is what a member killed mid-request looks like: the request may have
    been applied, and no answer came back.
    """
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(16)
    listener.settimeout(0.2)
    stop = threading.Event()

    def serve() -> None:
        while not stop.is_set():
            try:
                conn, _ = listener.accept()
            except OSError:
                continue
            with conn:
                conn.settimeout(1)
                try:
                    conn.recv(65536)
                except OSError:
                    pass

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    try:
        yield listener.getsockname()[1]
    finally:
        stop.set()
        thread.join(5)
        listener.close()


def _live(cluster: EtcdCluster) -> tuple[str, int]:
    return ("127.0.0.1", cluster.members[0].client_port)


def test_dead_first_endpoint_is_skipped(etcd_member: EtcdCluster) -> None:
    [dead] = free_ports(1)
    url = f"etcd://127.0.0.1:{dead},{etcd_member.endpoints[0]}"
    started = time.monotonic()
    with connect(url) as store:
        rev = store.put("/failover/k", b"v")
        assert store.get("/failover/k").mod_revision == rev  # type: ignore[union-attr]
        with store.watch("/failover/", rev) as watch:
            assert watch.get(timeout=5).revision == rev  # type: ignore[union-attr]
    assert time.monotonic() - started < 5


def test_idempotent_request_fails_over_after_hangup(
    etcd_member: EtcdCluster, hangup_server: int
) -> None:
    endpoints = Endpoints([("127.0.0.1", hangup_server), _live(etcd_member)], timeout=5)
    try:
        resp = endpoints.post("/kv/put", {"key": b64(b"/failover/p"), "value": b64(b"v")})
        assert int(resp["header"]["revision"]) > 1
    finally:
        endpoints.close()


def test_txn_with_unknown_outcome_is_reported_not_replayed(
    etcd_member: EtcdCluster, hangup_server: int
) -> None:
    endpoints = Endpoints([("127.0.0.1", hangup_server), _live(etcd_member)], timeout=5)
    txn = {"compare": [], "success": [{"request_put": {"key": b64(b"/amb/k"), "value": b64(b"1")}}]}
    try:
        with pytest.raises(Unavailable, match="outcome unknown"):
            endpoints.post("/kv/txn", txn, idempotent=False)
        # The caller re-reads and retries; the next request goes to the live member.
        endpoints.post("/kv/txn", txn, idempotent=False)
    finally:
        endpoints.close()


def test_next_page_continues_after_the_last_raw_key_at_the_first_revision() -> None:
    """The next page is computed from the undecoded answer, so it can be requested early."""
    from spanwire.store.etcd import _first_page, _next_page

    first = _first_page("/spanwire/v1/ports/")
    answer = {"kvs": [{"key": b64(b"/spanwire/v1/ports/a")}, {"key": b64(b"/spanwire/v1/ports/b")}]}
    assert _next_page(first, answer, 42) is None, "no `more`: that was the last page"
    following = _next_page(first, {**answer, "more": True}, 42)
    assert following == {**first, "revision": 42, "key": b64(b"/spanwire/v1/ports/b\0")}
    assert "revision" not in first, "the first request is not modified"
    assert _next_page(first, {"more": True}, 42) is None, "an empty page ends the listing"
