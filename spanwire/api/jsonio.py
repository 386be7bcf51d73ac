"""JSON in and out of the API handlers, through orjson.

A listing of 10,000 ports is about 8 MB of JSON, and a replica that has not
listed them before parses and encodes every stored port once (see
`repo.RenderCache`). With the standard library encoder that alone took a
third of a second; orjson does the same work several times faster. Response
bodies are built from plain dicts of JSON-native values (see `views`), which
is exactly what orjson encodes; its output is UTF-8 rather than `\\u` escapes,
which is the same JSON to any client.
"""

from __future__ import annotations

from typing import Any

import orjson


def dumps(value: Any) -> bytes:
    """Compact JSON bytes (no spaces), as every API response is written."""
    return orjson.dumps(value)


def loads(data: bytes | str) -> Any:
    return orjson.loads(data)
