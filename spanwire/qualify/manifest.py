"""A snapshot is the exact set of component versions plus the data-plane config.

Its identity is the hash of its canonical JSON, so the same versions and the
same config always name the same snapshot, on any machine.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from importlib import metadata
from typing import Any

from spanwire import __version__
from spanwire.dataplane.versions import probe_tool_versions

# The Python dependencies whose versions shape behaviour; the lock file pins them.
PYTHON_COMPONENTS = (
    "pyroute2",
    "etcd3gw",
    "fastapi",
    "uvicorn",
    "pydantic",
    "cryptography",
)


@dataclass(frozen=True)
class Manifest:
    components: dict[str, str]
    config: dict[str, Any] = field(default_factory=dict)

    def canonical(self) -> bytes:
        return json.dumps(
            {"components": self.components, "config": self.config},
            sort_keys=True,
            separators=(",", ":"),
        ).encode()

    @property
    def id(self) -> str:
        return hashlib.sha256(self.canonical()).hexdigest()[:16]

    def to_json(self) -> dict[str, Any]:
        return {"id": self.id, "components": self.components, "config": self.config}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Manifest:
        return cls(dict(data["components"]), dict(data.get("config", {})))


def python_versions() -> dict[str, str]:
    found: dict[str, str] = {}
    for name in PYTHON_COMPONENTS:
        try:
            found[f"py:{name}"] = metadata.version(name)
        except metadata.PackageNotFoundError:
            found[f"py:{name}"] = "absent"
    return found


def collect(config: dict[str, Any] | None = None) -> Manifest:
    """The manifest of this machine as it is now."""
    components = {"spanwire": __version__, **probe_tool_versions(), **python_versions()}
    return Manifest(components, dict(config or {}))


def diff(old: Manifest, new: Manifest) -> list[tuple[str, str | None, str | None]]:
    """(name, old, new) for every component or config value that differs."""
    rows: list[tuple[str, str | None, str | None]] = []
    for section, a, b in (
        ("", old.components, new.components),
        (
            "config:",
            {k: json.dumps(v) for k, v in old.config.items()},
            {k: json.dumps(v) for k, v in new.config.items()},
        ),
    ):
        for name in sorted(set(a) | set(b)):
            if a.get(name) != b.get(name):
                rows.append((section + name, a.get(name), b.get(name)))
    return rows
