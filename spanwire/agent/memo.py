"""Remembered per-object results, so a pass over a thousand ports costs what changed.

The agent's model cache keeps the very same object for a port until the
store reports a change to it, and replaces it (never mutates it) when it
does. So "this is the object I computed from last time" is a pointer
comparison, and everything derived from one port (its links, entries,
filtering fragment) can be remembered against it. What stays O(ports) is
C-level: unions of small frozensets that carry their elements' hashes.

Pure in effect: a hit returns exactly what the computation would return
(same object, same context), so callers stay pure functions of their inputs.
"""

from __future__ import annotations

import weakref
from collections.abc import Callable, Hashable, Iterable
from typing import Generic, TypeVar

V = TypeVar("V")
T = TypeVar("T")
_ALL: weakref.WeakSet[IdentityMemo[object] | UnionMemo] = weakref.WeakSet()


def forget() -> None:
    """Empty every memo: what follows is computed from scratch (tests compare the two)."""
    for m in list(_ALL):
        m.clear()


class IdentityMemo(Generic[V]):
    """Values derived from one object in one context, kept while that object is asked about.

    Keyed by a stable key (an id): a changed object is a new object, which
    misses and replaces the entry. Bounded: when full it starts over, so a
    cloud that churns through ports does not keep every old one alive.
    """

    def __init__(self, capacity: int = 1 << 16) -> None:
        self.capacity = capacity
        self._entries: dict[Hashable, tuple[object, Hashable, V]] = {}
        _ALL.add(self)  # type: ignore[arg-type]

    def get(self, key: Hashable, obj: object, context: Hashable,
            compute: Callable[..., V], *args: object) -> V:
        """`compute(*args)`, or what it returned for this very object in an equal context."""
        hit = self._entries.get(key)
        if hit is not None and hit[0] is obj and (hit[1] is context or hit[1] == context):
            return hit[2]
        value = compute(*args)
        if len(self._entries) >= self.capacity:
            self._entries.clear()
        self._entries[key] = (obj, context, value)
        return value

    def clear(self) -> None:
        self._entries.clear()


class UnionMemo:
    """`frozenset().union(*parts)`, the same object again when the parts are the same.

    A namespace whose ports did not change then yields identical sets, which
    the planner's set differences compare by identity.
    """

    def __init__(self, capacity: int = 1 << 12) -> None:
        self.capacity = capacity
        self._last: dict[Hashable, tuple[tuple[frozenset[T], ...], frozenset[T]]] = {}  # type: ignore[valid-type]
        _ALL.add(self)

    def union(self, key: Hashable, parts: Iterable[frozenset[T]]) -> frozenset[T]:
        parts = tuple(parts)
        last = self._last.get(key)
        if last is not None and last[0] == parts:  # C-level: identical parts compare first
            return last[1]  # type: ignore[return-value]
        value: frozenset[T] = frozenset().union(*parts)
        if len(self._last) >= self.capacity:
            self._last.clear()
        self._last[key] = (parts, value)
        return value

    def clear(self) -> None:
        self._last.clear()
