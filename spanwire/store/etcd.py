"""The production store: an etcd 3.4+ cluster through its v3 JSON gateway (etcd3gw).

Every call is bounded by `timeout` seconds in total, fails over between the
listed members, and reads are linearizable (served through the leader's
quorum), so killing one member of three is invisible except for latency.
"""

from __future__ import annotations

import threading
import weakref
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from spanwire.errors import InvalidInput, LeaseExpired, Unavailable
from spanwire.store.base import (
    Compare,
    KeyValue,
    Lease,
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
from spanwire.store.etcd_client import (
    CODE_NOT_FOUND,
    CODE_OUT_OF_RANGE,
    Endpoints,
    GatewayError,
    b64,
    to_spanwire,
    unb64,
)
from spanwire.store.etcd_watch import EtcdWatch

RANGE_PAGE = 2000
CONNECT_PROBE_TIMEOUT = 4.0


def _revision(response: dict[str, Any]) -> int:
    return int((response.get("header") or {}).get("revision") or 0)


def _kv(raw: dict[str, Any]) -> KeyValue:
    return KeyValue(
        key=unb64(raw["key"]).decode("utf-8", errors="surrogateescape"),
        value=unb64(raw.get("value")),
        create_revision=int(raw.get("create_revision") or 0),
        mod_revision=int(raw.get("mod_revision") or 0),
        version=int(raw.get("version") or 0),
        lease=int(raw.get("lease") or 0),
    )


def _first_page(prefix: str) -> dict[str, Any]:
    start, end = prefix_range(prefix)
    return {"key": b64(start or b"\0"), "range_end": b64(end or b"\0"), "limit": RANGE_PAGE}


def _next_page(
    payload: dict[str, Any], resp: dict[str, Any], revision: int
) -> dict[str, Any] | None:
    """The request for the page after `resp` (at `revision`), or None if it was the last.

    Needs only the last raw key, so it can be sent before `resp` is decoded.
    """
    kvs = resp.get("kvs") or []
    if not resp.get("more") or not kvs:
        return None
    return {**payload, "revision": revision, "key": b64(unb64(kvs[-1]["key"]) + b"\0")}


def _op(op: Op) -> dict[str, Any]:
    if isinstance(op, Put):
        put: dict[str, Any] = {"key": b64(key_bytes(op.key)), "value": b64(value_bytes(op.value))}
        if op.lease:
            put["lease"] = op.lease
        return {"request_put": put}
    return {"request_delete_range": {"key": b64(key_bytes(op.key))}}


class EtcdStore(Store):
    """`etcd://host:port[,host:port...]`.

    When a member dies mid-request the answer is lost and nobody knows whether
    the request was applied. Reads, unconditional puts and deletes, leases and
    compaction are then simply sent again to the next member (same final state;
    a watcher may see one duplicate PUT of the same value). A txn is never sent
    again: the caller gets Unavailable ("outcome unknown") and re-reads, because
    replaying a compare-and-swap could apply it twice.
    """

    def __init__(self, endpoints: list[tuple[str, int]], timeout: float = 5.0) -> None:
        self._ep = Endpoints(endpoints, timeout)
        self.url = "etcd://" + ",".join(f"{h}:{p}" for h, p in endpoints)
        self._watches: weakref.WeakSet[EtcdWatch] = weakref.WeakSet()
        # Fetches the next page of a range while the caller decodes the current one.
        self._pager = ThreadPoolExecutor(max_workers=4, thread_name_prefix="etcd-range")
        try:
            # Fail fast (and clearly) at connect time rather than at first use.
            self._call(
                "/kv/range",
                {"key": b64(b"\0"), "count_only": True},
                "connect",
                timeout=min(timeout, CONNECT_PROBE_TIMEOUT),
            )
        except BaseException:
            self._pager.shutdown(wait=False)
            self._ep.close()
            raise

    @property
    def endpoints(self) -> list[str]:
        return [f"{h}:{p}" for h, p in self._ep.endpoints]

    def _call(
        self,
        path: str,
        payload: dict[str, Any],
        what: str,
        *,
        idempotent: bool = True,
        timeout: float | None = None,
    ) -> dict[str, Any]:
        try:
            return self._ep.post(path, payload, idempotent=idempotent, timeout=timeout)
        except GatewayError as err:
            raise to_spanwire(err, what) from None

    # reads

    def get(self, key: str) -> KeyValue | None:
        resp = self._call("/kv/range", {"key": b64(key_bytes(key))}, f"get {key}")
        kvs = resp.get("kvs") or []
        return _kv(kvs[0]) if kvs else None

    def range(self, prefix: str) -> Listing:
        """Paged at one revision, so big prefixes stay under gateway message limits."""
        for _attempt in range(3):
            try:
                return self._range_at_one_revision(prefix)
            except GatewayError as err:
                if err.code != CODE_OUT_OF_RANGE:
                    raise to_spanwire(err, f"range {prefix}") from None
                # Compacted between pages: start again at the new head.
        raise Unavailable(f"range {prefix}: history compacted repeatedly while paging")

    def _range_at_one_revision(self, prefix: str) -> Listing:
        """Every page at the first page's revision; the next page is requested before
        this one is decoded, so etcd encodes it while we decode (for 10,000 ports
        each side takes a few hundred milliseconds, and they no longer add up)."""
        payload = _first_page(prefix)
        resp = self._ep.post("/kv/range", payload)
        revision = _revision(resp)
        items: list[KeyValue] = []
        while True:
            following = _next_page(payload, resp, revision)
            if following is None:
                items.extend(_kv(raw) for raw in resp.get("kvs") or [])
                return Listing(items, revision)
            pending = self._pager.submit(self._ep.post, "/kv/range", following)
            try:
                items.extend(_kv(raw) for raw in resp.get("kvs") or [])
            except BaseException:
                pending.cancel()
                raise
            resp, payload = pending.result(), following

    def revision(self) -> int:
        resp = self._call("/kv/range", {"key": b64(b"\0"), "count_only": True}, "revision")
        return _revision(resp)

    # writes

    def put(self, key: str, value: bytes, lease: int = 0) -> int:
        payload: dict[str, Any] = {"key": b64(key_bytes(key)), "value": b64(value_bytes(value))}
        if check_lease_id(lease):
            payload["lease"] = lease
        # Idempotent: repeating it after an ambiguous failure leaves the same state.
        return _revision(self._call("/kv/put", payload, f"put {key}"))

    def delete(self, key: str) -> bool:
        resp = self._call("/kv/deleterange", {"key": b64(key_bytes(key))}, f"delete {key}")
        return int(resp.get("deleted") or 0) > 0

    def txn(
        self,
        compares: Sequence[Compare],
        success: Sequence[Op],
        failure: Sequence[Op] = (),
    ) -> TxnResult:
        check_txn(compares, success, failure)
        payload = {
            "compare": [
                {
                    "key": b64(key_bytes(c.key)),
                    "target": "MOD",
                    "result": "EQUAL",
                    "mod_revision": c.mod_revision,
                }
                for c in compares
            ],
            "success": [_op(op) for op in success],
            "failure": [_op(op) for op in failure],
        }
        # Not idempotent: a txn that may have been applied is reported, never replayed.
        resp = self._call("/kv/txn", payload, "txn", idempotent=False)
        return TxnResult(bool(resp.get("succeeded")), _revision(resp))

    def compact(self, revision: int) -> None:
        check_revision(revision)
        try:
            self._ep.post("/kv/compaction", {"revision": revision})
        except GatewayError as err:
            if "has been compacted" in err.message:
                return  # already compacted at least this far: nothing to do
            if "future revision" in err.message:
                raise InvalidInput(
                    f"cannot compact to revision {revision}: it is in the future"
                ) from None
            raise to_spanwire(err, "compact") from None

    # watches and leases

    def watch(self, prefix: str, start_revision: int) -> EtcdWatch:
        check_revision(start_revision, "start_revision")
        w = EtcdWatch(self._ep, prefix, start_revision)
        self._watches.add(w)
        return w

    def grant_lease(self, ttl: int) -> EtcdLease:
        check_ttl(ttl)
        resp = self._call("/lease/grant", {"TTL": ttl, "ID": 0}, "grant lease")
        if resp.get("error"):
            raise Unavailable(f"grant lease: {resp['error']}")
        return EtcdLease(self, int(resp["ID"]), int(resp.get("TTL") or ttl))

    def member_status(self, timeout: float = 1.5) -> dict[str, dict[str, Any]]:
        """Per endpoint: reachable?, version, leader, db size; one bounded probe each."""
        report: dict[str, dict[str, Any]] = {}
        for endpoint in self._ep.endpoints:
            name = f"{endpoint[0]}:{endpoint[1]}"
            probe = Endpoints([endpoint], timeout)
            try:
                st = probe.post("/maintenance/status", {})
                member = (st.get("header") or {}).get("member_id")
                report[name] = {
                    "healthy": bool(st.get("leader")) and st.get("leader") != "0",
                    "leader": st.get("leader") == member,
                    "version": st.get("version", "?"),
                    "db_size": int(st.get("dbSize") or 0),
                    "revision": _revision(st),
                }
            except (Unavailable, GatewayError) as exc:
                report[name] = {"healthy": False, "error": str(exc)}
            finally:
                probe.close()
        return report

    def status(self) -> dict[str, object]:
        """Facts for `spanwire store status`: cluster revision and every member's health."""
        return {"backend": "etcd", "revision": self.revision(), "members": self.member_status()}

    def close(self) -> None:
        for w in list(self._watches):
            w.close()
        self._pager.shutdown(wait=False, cancel_futures=True)
        self._ep.close()


class EtcdLease(Lease):
    def __init__(self, store: EtcdStore, lease_id: int, ttl: int) -> None:
        super().__init__(lease_id, ttl)
        self._store = store

    def keepalive(self) -> int:
        resp = self._store._call("/lease/keepalive", {"ID": self.id}, f"keepalive {self.id}")
        result = resp.get("result") or {}
        if resp.get("error"):
            raise Unavailable(f"keepalive lease {self.id}: {resp['error']}")
        ttl = int(result.get("TTL") or 0)
        if ttl <= 0:
            raise LeaseExpired(f"lease {self.id} expired or was revoked")
        return ttl

    def revoke(self) -> None:
        """Revoke now; a lease that is already gone is fine (its keys are gone too)."""
        if self._thread is not threading.current_thread():
            self.stop_keepalive()
        try:
            self._store._ep.post("/lease/revoke", {"ID": self.id})
        except GatewayError as err:
            if err.code != CODE_NOT_FOUND:
                raise to_spanwire(err, f"revoke lease {self.id}") from None
