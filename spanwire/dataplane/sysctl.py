"""Sysctls of one network namespace, keyed relative to /proc/sys (e.g. net/ipv4/ip_forward).

Only `net/` keys are accepted: those are per namespace. Anything else would
change the host.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping

from spanwire.dataplane import netns
from spanwire.errors import InvalidInput

PROC = "/proc/sys/"


def _path(key: str) -> str:
    if not key.startswith("net/") or ".." in key:
        raise InvalidInput(f"sysctl {key!r} is not a per-namespace net/ key")
    return PROC + key


def read(ns: str, keys: Iterable[str]) -> dict[str, str | None]:
    """Current values (None where the key does not exist, e.g. a missing device)."""
    paths = {k: _path(k) for k in keys}

    def body() -> dict[str, str | None]:
        out: dict[str, str | None] = {}
        for key, path in paths.items():
            try:
                with open(path) as handle:
                    out[key] = handle.read().strip()
            except OSError:
                out[key] = None
        return out

    return netns.run_in(ns, body)


def write(ns: str, values: Mapping[str, str]) -> None:
    """Set every key in `values` inside namespace `ns`."""
    paths = {_path(k): v for k, v in values.items()}

    def body() -> None:
        for path, value in paths.items():
            fd = os.open(path, os.O_WRONLY)
            try:
                os.write(fd, value.encode())
            finally:
                os.close(fd)

    netns.run_in(ns, body)
