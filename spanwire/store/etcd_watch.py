"""A resumable watch over etcd's JSON gateway (`POST /v3/watch`, a streamed response).

etcd3gw's own watch helper neither reports compaction nor resumes a broken
stream, so this module opens the stream itself with the same etcd3gw client
(URL, session) and adds both: after a dropped stream it reconnects (to the next
member if needed) from the last queued revision + 1, and a `canceled` answer
carrying `compact_revision` becomes `Compacted` for the caller.
"""

from __future__ import annotations

import contextlib
import json
import socket
import threading
from typing import Any

import requests

from spanwire.errors import Compacted
from spanwire.store.base import Event, EventType, QueuedWatch
from spanwire.store.common import prefix_range
from spanwire.store.etcd_client import CONNECT_TIMEOUT, Endpoints, b64, unb64

# With no byte for this long the stream is presumed dead and reopened. etcd sends
# progress notifications on idle watches (every 5 s on members we start), which
# also advance the resume point.
IDLE_TIMEOUT = 30.0


class _Broken(Exception):
    """The stream ended or errored; reconnect from the resume point."""


class EtcdWatch(QueuedWatch):
    def __init__(self, endpoints: Endpoints, prefix: str, start_revision: int) -> None:
        super().__init__(prefix, start_revision)
        start, end = prefix_range(prefix)
        self._key, self._end = b64(start or b"\0"), b64(end or b"\0")
        self._endpoints = endpoints
        self._session = Endpoints._session()
        self._stop = threading.Event()
        self._resume = start_revision  # next revision to ask for on (re)connect
        self._response: requests.Response | None = None
        self.reconnects = 0
        self._thread = threading.Thread(target=self._run, name=f"etcd-watch-{prefix}", daemon=True)
        self._thread.start()

    def close(self) -> None:
        self._stop.set()
        self._abort_stream()
        if self._thread is not threading.current_thread():
            self._thread.join(timeout=5)
        self._session.close()

    def _abort_stream(self) -> None:
        """Wake the reader blocked in recv() by shutting the socket down under it."""
        resp = self._response
        if resp is None:
            return
        # Only the reader thread closes the response; closing it here would pull
        # the file object out from under a blocked read.
        with contextlib.suppress(Exception):
            fd = resp.raw._fp.fileno()  # type: ignore[union-attr]
            with socket.socket(fileno=socket.dup(fd)) as sock:
                sock.shutdown(socket.SHUT_RDWR)

    def _run(self) -> None:
        backoff = 0.02
        while not self._stop.is_set():
            index = self._endpoints.current()
            delivered_before = self._resume
            try:
                self._stream(index)
            except Compacted as exc:
                self._queue.put(exc)
                return
            except (_Broken, requests.exceptions.RequestException, ValueError, OSError):
                pass
            finally:
                resp, self._response = self._response, None
                if resp is not None:
                    with contextlib.suppress(Exception):
                        resp.close()
            if self._stop.is_set():
                return
            self.reconnects += 1
            if self._resume == delivered_before:
                # Nothing came through: this member is likely down, try the next one.
                self._endpoints.failed(index)
                self._stop.wait(backoff)
                backoff = min(backoff * 2, 1.0)
            else:
                backoff = 0.02

    def _stream(self, index: int) -> None:
        client = self._endpoints.client(index, session=self._session)
        request = {
            "create_request": {
                "key": self._key,
                "range_end": self._end,
                "start_revision": self._resume,
                "progress_notify": True,
            }
        }
        resp = self._session.post(
            client.get_url("/watch"),
            json=request,
            stream=True,
            timeout=(CONNECT_TIMEOUT, IDLE_TIMEOUT),
            # Passed to etcd as gRPC metadata: cancel the stream if this member loses
            # its leader, instead of silently serving a partitioned minority.
            headers={"Grpc-Metadata-hasleader": "true"},
        )
        self._response = resp
        if self._stop.is_set():
            return
        if resp.status_code != 200:
            raise _Broken(f"HTTP {resp.status_code}")
        buffer = b""
        for chunk in resp.iter_content(chunk_size=None):
            buffer += chunk
            while b"\n" in buffer:
                line, buffer = buffer.split(b"\n", 1)
                if line.strip():
                    self._handle(json.loads(line))
        raise _Broken("stream ended")

    def _handle(self, message: dict[str, Any]) -> None:
        if "error" in message:
            raise _Broken(str(message["error"]))
        result = message.get("result") or {}
        if result.get("canceled"):
            compact_revision = int(result.get("compact_revision") or 0)
            if compact_revision:
                raise Compacted(self._resume, compact_revision)
            raise _Broken(result.get("cancel_reason") or "watch canceled")
        if result.get("created"):
            return
        events = result.get("events") or []
        if not events:
            # A progress notification: everything up to header.revision was sent.
            header_rev = int((result.get("header") or {}).get("revision") or 0)
            self._resume = max(self._resume, header_rev + 1)
            return
        last = self._resume - 1
        for raw in events:
            kv = raw["kv"]
            revision = int(kv["mod_revision"])
            if revision < self._resume:
                continue  # already queued before a reconnect
            kind = EventType.DELETE if raw.get("type") == "DELETE" else EventType.PUT
            key = unb64(kv["key"]).decode("utf-8", errors="surrogateescape")
            self._queue.put(Event(kind, key, unb64(kv.get("value")), revision))
            last = revision
        # etcd never splits one revision across responses (no `fragment`), so
        # resuming after the last revision of a response loses nothing.
        self._resume = max(self._resume, last + 1)
