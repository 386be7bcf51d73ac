"""Parsing of store URLs: `sqlite:///abs/path/state.db` and `etcd://host:port[,host:port...]`."""

from __future__ import annotations

from dataclasses import dataclass, field
from urllib.parse import parse_qsl

from spanwire.errors import InvalidInput

ACCEPTED = (
    "sqlite:///absolute/path/state.db or etcd://host:port[,host:port...] "
    "(optional ?timeout=SECONDS for etcd)"
)


@dataclass(frozen=True, slots=True)
class StoreURL:
    scheme: str
    path: str = ""
    endpoints: tuple[tuple[str, int], ...] = ()
    options: dict[str, str] = field(default_factory=dict)


def _bad(url: str, why: str) -> InvalidInput:
    return InvalidInput(f"invalid store URL {url!r}: {why}; expected {ACCEPTED}")


def _endpoint(url: str, text: str) -> tuple[str, int]:
    if text.startswith("["):  # [v6]:port
        host, sep, rest = text[1:].partition("]")
        if not sep or not rest.startswith(":"):
            raise _bad(url, f"endpoint {text!r} is not [ipv6]:port")
        port_text = rest[1:]
    else:
        host, sep, port_text = text.rpartition(":")
        if not sep:
            raise _bad(url, f"endpoint {text!r} has no port")
    if not host or not port_text.isdigit() or not 0 < int(port_text) < 65536:
        raise _bad(url, f"endpoint {text!r} is not host:port")
    return host, int(port_text)


def parse(url: str) -> StoreURL:
    """Split a store URL into its parts; InvalidInput naming the accepted forms otherwise."""
    if not isinstance(url, str) or "://" not in url:
        raise _bad(str(url), "no scheme")
    scheme, _, rest = url.partition("://")
    rest, _, query = rest.partition("?")
    try:
        options = dict(parse_qsl(query, strict_parsing=True)) if query else {}
    except ValueError:
        raise _bad(url, f"malformed query {query!r}") from None
    if scheme == "sqlite":
        if not rest.startswith("/") or rest.endswith("/") or len(rest) < 2:
            raise _bad(url, "sqlite needs an absolute file path (three slashes)")
        return StoreURL("sqlite", path=rest, options=options)
    if scheme == "etcd":
        parts = [p for p in rest.rstrip("/").split(",")]
        if not rest or any(not p for p in parts):
            raise _bad(url, "etcd needs at least one host:port")
        return StoreURL("etcd", endpoints=tuple(_endpoint(url, p) for p in parts), options=options)
    raise _bad(url, f"unknown scheme {scheme!r}")
