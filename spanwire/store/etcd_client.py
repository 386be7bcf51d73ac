"""Requests to etcd's v3 JSON gateway through etcd3gw, with bounded failover between members.

etcd3gw gives us the gateway URLs, base64 handling conventions and the mapping
of HTTP failures to exceptions; this layer adds what a control plane needs on
top: a total deadline per operation, rotation to the next member on a
connection failure, and an honest answer when a non-idempotent request may or
may not have been applied (we never retry those blindly).
"""

from __future__ import annotations

import base64
import binascii
import json
import threading
import time
from typing import Any

import requests
from etcd3gw.client import Etcd3Client
from etcd3gw.exceptions import (
    ConnectionFailedError,
    ConnectionTimeoutError,
    Etcd3Exception,
)
from requests.adapters import HTTPAdapter

from spanwire.errors import InvalidInput, LeaseExpired, SpanwireError, Unavailable

API_PATH = "/v3/"
CONNECT_TIMEOUT = 1.0
# An idempotent request gets this share of the deadline per attempt: a proposal
# forwarded to a leader that just died is never answered (etcd only times it out
# after ~5 s), and re-sending it once a new leader exists succeeds at once.
ATTEMPT_SHARE = 0.4
ATTEMPT_MIN = 1.0

# gRPC status codes the gateway puts in error bodies.
CODE_INVALID_ARGUMENT = 3
CODE_NOT_FOUND = 5
CODE_OUT_OF_RANGE = 11
# etcd errors that prove the request was not applied, so retrying anywhere is safe.
_NOT_APPLIED = ("no leader", "too many requests", "not capable", "stopped")


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def unb64(text: str | None) -> bytes:
    """Decode a gateway field; binascii directly, since a 10,000-key range decodes 20,000
    of them and `base64.b64decode`'s argument normalisation is a measurable share of that."""
    return binascii.a2b_base64(text) if text else b""


class GatewayError(Exception):
    """etcd answered with a definite error (bad request, not found, compacted ...)."""

    def __init__(self, code: int, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


def _error_body(exc: Etcd3Exception) -> tuple[int, str]:
    try:
        body = json.loads(exc.detail_text or "")
        return int(body.get("code", 0)), str(body.get("error") or body.get("message") or body)
    except (ValueError, TypeError, AttributeError):
        return 0, (exc.detail_text or str(exc) or type(exc).__name__).strip()


def _describe(exc: BaseException) -> str:
    """A short reason for a transport failure (requests' messages run to several lines)."""
    cause = exc.__context__
    if isinstance(cause, requests.exceptions.ConnectTimeout):
        return "connect timed out"
    if isinstance(cause, requests.exceptions.ReadTimeout):
        return "no answer in time"
    if isinstance(cause, requests.exceptions.ConnectionError):
        reason = getattr(cause.args[0], "reason", None) if cause.args else None
        if type(reason).__name__ == "NewConnectionError":
            return "connection refused"
        detail = (
            type(reason).__name__
            if reason is not None
            else str(cause.args[0] if cause.args else cause)
        )
        return f"connection broken ({detail[:120]})"
    return str(exc) or type(exc).__name__


def _never_sent(exc: BaseException) -> bool:
    """True if the request provably never reached etcd (refused, or connect timed out)."""
    cause = exc.__context__
    if isinstance(cause, requests.exceptions.ConnectTimeout):
        return True
    if isinstance(cause, requests.exceptions.ConnectionError):
        reason = getattr(cause.args[0], "reason", None) if cause.args else None
        return type(reason).__name__ in ("NewConnectionError", "ConnectTimeoutError")
    return False


class Endpoints:
    """The members of one etcd cluster, with a sticky "current" one to talk to."""

    def __init__(self, endpoints: list[tuple[str, int]], timeout: float) -> None:
        if not endpoints:
            raise InvalidInput("etcd store needs at least one endpoint")
        self.endpoints = endpoints
        self.timeout = timeout
        self._sessions = [self._session() for _ in endpoints]
        self._current = 0
        self._lock = threading.Lock()

    @staticmethod
    def _session() -> requests.Session:
        session = requests.Session()
        # Endpoints are addressed directly; never through an environment proxy.
        session.trust_env = False
        adapter = HTTPAdapter(pool_connections=1, pool_maxsize=32, max_retries=0)
        session.mount("http://", adapter)
        return session

    @property
    def names(self) -> str:
        return ", ".join(f"{h}:{p}" for h, p in self.endpoints)

    def current(self) -> int:
        with self._lock:
            return self._current

    def failed(self, index: int) -> None:
        """Move off a member that just failed (unless someone already moved)."""
        with self._lock:
            if self._current == index:
                self._current = (index + 1) % len(self.endpoints)

    def client(
        self, index: int, timeout: Any = None, session: requests.Session | None = None
    ) -> Etcd3Client:
        """A light etcd3gw client for one member (cheap: it only holds host, port, session)."""
        host, port = self.endpoints[index]
        return Etcd3Client(
            host=host,
            port=port,
            timeout=timeout,
            api_path=API_PATH,
            session=session or self._sessions[index],
        )

    def post(
        self,
        path: str,
        payload: dict[str, Any],
        *,
        idempotent: bool = True,
        timeout: float | None = None,
    ) -> dict[str, Any]:
        """POST to the current member; on a connection failure try the next, until the deadline.

        Raises GatewayError for a definite etcd error, Unavailable when no member
        answered in time, or when a non-idempotent request failed after it may
        have been applied (the caller must re-read before deciding).
        """
        deadline = time.monotonic() + (self.timeout if timeout is None else timeout)
        backoff = 0.02
        last: dict[str, str] = {}
        while True:
            index = self.current()
            remaining = max(deadline - time.monotonic(), 0.05)
            budget = self.timeout if timeout is None else timeout
            # Non-idempotent requests wait as long as allowed: a timeout makes them ambiguous.
            attempt = (
                remaining
                if not idempotent
                else min(remaining, max(ATTEMPT_MIN, budget * ATTEMPT_SHARE))
            )
            client = self.client(index, timeout=(min(CONNECT_TIMEOUT, attempt), attempt))
            name = "{}:{}".format(*self.endpoints[index])
            try:
                result = client.post(client.get_url(path), json=payload)
                if not isinstance(result, dict):
                    raise ValueError(f"unexpected gateway answer {result!r:.200}")
                return result
            except (ConnectionFailedError, ConnectionTimeoutError) as exc:
                code, message = _error_body(exc)
                if exc.__context__ is not None:
                    message = _describe(exc)
                safe = _never_sent(exc) or any(s in message for s in _NOT_APPLIED)
            except Etcd3Exception as exc:
                code, message = _error_body(exc)
                raise GatewayError(code, message) from None
            except (requests.exceptions.RequestException, ValueError) as exc:
                message, safe = f"{type(exc).__name__}: {exc}", False
            last[name] = message.splitlines()[0][:200] if message else "error"
            self.failed(index)
            if not safe and not idempotent:
                raise Unavailable(
                    f"etcd request to {name} failed after it may have been applied "
                    f"({last[name]}); outcome unknown: re-read before retrying"
                )
            if time.monotonic() + backoff >= deadline:
                tried = "; ".join(f"{k}: {v}" for k, v in last.items())
                raise Unavailable(f"etcd unreachable (tried {self.names}): {tried}")
            time.sleep(backoff)
            backoff = min(backoff * 2, 0.25)

    def close(self) -> None:
        for session in self._sessions:
            session.close()


def to_spanwire(err: GatewayError, what: str) -> SpanwireError:
    """Map a definite etcd error to the project's error types."""
    if err.code == CODE_NOT_FOUND and "lease" in err.message:
        return LeaseExpired(f"{what}: {err.message}")
    if err.code in (CODE_INVALID_ARGUMENT, CODE_OUT_OF_RANGE):
        return InvalidInput(f"{what}: {err.message}")
    return Unavailable(f"{what}: etcd error {err.code}: {err.message}")
