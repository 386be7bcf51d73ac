"""The one place that builds store keys: `/spanwire/v1/<kind>/<id>[/<sub>...]`."""

from __future__ import annotations

import re

ROOT = "/spanwire/v1/"
_SEGMENT = re.compile(r"^[A-Za-z0-9_.:@-]+$")


def _check(segment: str) -> str:
    if not _SEGMENT.match(segment):
        raise ValueError(f"invalid key segment {segment!r}: use letters, digits and _ . : @ -")
    return segment


def key(kind: str, *parts: str) -> str:
    """The key of one object (or a sub-key of it)."""
    if not parts:
        raise ValueError("key() needs at least an id; use prefix() for a kind")
    return ROOT + "/".join(_check(p) for p in (kind, *parts))


def prefix(kind: str, *parts: str) -> str:
    """The prefix under which every object of `kind` (or of a sub-path) lives."""
    return ROOT + "".join(_check(p) + "/" for p in (kind, *parts))


def split(full_key: str) -> list[str]:
    """Inverse of key(): ['kind', 'id', ...]."""
    if not full_key.startswith(ROOT):
        raise ValueError(f"{full_key!r} is not a spanwire key")
    return full_key[len(ROOT) :].split("/")
