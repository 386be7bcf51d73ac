"""Input checks and key-range helpers shared by every backend.

Both backends validate the same way *before* talking to their engine, so a bad
transaction fails identically (InvalidInput) on SQLite and on etcd.
"""

from __future__ import annotations

from collections.abc import Sequence

from spanwire.errors import InvalidInput
from spanwire.store.base import Compare, Delete, Op, Put

# etcd's default --max-txn-ops; SQLite enforces the same so code that works on
# one machine also works against a production cluster.
MAX_TXN_OPS = 128


def key_bytes(key: str) -> bytes:
    """The UTF-8 key, rejecting what etcd would reject or misorder."""
    if not isinstance(key, str) or not key:
        raise InvalidInput(f"store key must be a non-empty string, got {key!r}")
    return key.encode("utf-8")


def value_bytes(value: bytes) -> bytes:
    if not isinstance(value, bytes):
        raise InvalidInput(f"store value must be bytes, got {type(value).__name__}")
    return value


def prefix_range(prefix: str) -> tuple[bytes, bytes]:
    """[start, end) covering every key that starts with `prefix` (bytewise, like etcd).

    The empty prefix means every key: etcd spells that as key=b"\\0", range_end=b"\\0";
    callers that compare bytes themselves get end=b"" meaning "no upper bound".
    """
    if not isinstance(prefix, str):
        raise InvalidInput(f"store prefix must be a string, got {prefix!r}")
    start = prefix.encode("utf-8")
    end = bytearray(start)
    while end:
        if end[-1] < 0xFF:
            end[-1] += 1
            return start, bytes(end)
        end.pop()
    return start, b""


def check_revision(revision: int, what: str = "revision") -> int:
    if not isinstance(revision, int) or isinstance(revision, bool) or revision < 1:
        raise InvalidInput(f"{what} must be an integer >= 1, got {revision!r}")
    return revision


def check_lease_id(lease: int) -> int:
    if not isinstance(lease, int) or isinstance(lease, bool) or lease < 0:
        raise InvalidInput(f"lease must be a lease id (int >= 0), got {lease!r}")
    return lease


def check_ttl(ttl: int) -> int:
    if not isinstance(ttl, int) or isinstance(ttl, bool) or ttl < 1:
        raise InvalidInput(f"lease ttl must be an integer number of seconds >= 1, got {ttl!r}")
    return ttl


def _check_branch(ops: Sequence[Op], name: str) -> None:
    seen: set[str] = set()
    for op in ops:
        if isinstance(op, Put):
            key_bytes(op.key)
            value_bytes(op.value)
            check_lease_id(op.lease)
        elif isinstance(op, Delete):
            key_bytes(op.key)
        else:
            raise InvalidInput(f"txn {name} op must be Put or Delete, got {op!r}")
        if op.key in seen:
            # etcd refuses this ("duplicate key given in txn request"); so do we.
            raise InvalidInput(f"txn {name} touches {op.key!r} more than once")
        seen.add(op.key)


def check_txn(compares: Sequence[Compare], success: Sequence[Op], failure: Sequence[Op]) -> None:
    """Reject malformed transactions with a message naming the problem."""
    for c in compares:
        if not isinstance(c, Compare):
            raise InvalidInput(f"txn compare must be a Compare, got {c!r}")
        key_bytes(c.key)
        if not isinstance(c.mod_revision, int) or c.mod_revision < 0:
            raise InvalidInput(f"compare mod_revision must be an int >= 0, got {c.mod_revision!r}")
    if max(len(compares), len(success), len(failure)) > MAX_TXN_OPS:
        raise InvalidInput(f"a txn may hold at most {MAX_TXN_OPS} compares and ops per branch")
    _check_branch(success, "success")
    _check_branch(failure, "failure")
