"""The state store: one small interface (`Store`), two backends, chosen by URL.

store = connect("sqlite:///var/lib/spanwire/state.db")
store = connect("etcd://10.0.0.1:2379,10.0.0.2:2379,10.0.0.3:2379")
"""

from __future__ import annotations

from spanwire.errors import InvalidInput
from spanwire.store.base import (
    Compare,
    Delete,
    Event,
    EventType,
    KeyValue,
    Lease,
    Listing,
    Op,
    Put,
    Store,
    TxnResult,
    Watch,
)
from spanwire.store.urls import ACCEPTED, parse

DEFAULT_URL = "sqlite:///var/lib/spanwire/state.db"

__all__ = [
    "ACCEPTED",
    "DEFAULT_URL",
    "Compare",
    "Delete",
    "Event",
    "EventType",
    "KeyValue",
    "Lease",
    "Listing",
    "Op",
    "Put",
    "Store",
    "TxnResult",
    "Watch",
    "connect",
]


def _float_option(url: str, options: dict[str, str], name: str) -> float | None:
    if name not in options:
        return None
    try:
        value = float(options[name])
    except ValueError:
        value = -1.0
    if value <= 0:
        raise InvalidInput(f"store URL {url!r}: {name} must be a positive number of seconds")
    return value


def connect(url: str) -> Store:
    """Open the store named by `url`.

    InvalidInput for a malformed URL (the message lists the accepted forms);
    Unavailable if the store cannot be reached within a bounded time.
    """
    parsed = parse(url)
    if parsed.scheme == "sqlite":
        from spanwire.store.sqlite import SqliteStore

        unknown = set(parsed.options) - {"history"}
        if unknown:
            raise InvalidInput(f"store URL {url!r}: unknown option(s) {sorted(unknown)}")
        history = parsed.options.get("history", "100000")
        if not history.isdigit() or int(history) < 1:
            raise InvalidInput(f"store URL {url!r}: history must be a positive integer")
        return SqliteStore(parsed.path, history=int(history))
    from spanwire.store.etcd import EtcdStore

    unknown = set(parsed.options) - {"timeout"}
    if unknown:
        raise InvalidInput(f"store URL {url!r}: unknown option(s) {sorted(unknown)}")
    timeout = _float_option(url, parsed.options, "timeout")
    return EtcdStore(list(parsed.endpoints), timeout=timeout or 5.0)
