"""Neutron list semantics, pure: filters, `fields=`, sorting and limit/marker paging.

Parsed from the raw query string (repeated keys matter: `?name=a&name=b` means
name is a or b) and applied to already-rendered resource dicts, so every
collection behaves the same way.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlencode

from spanwire.errors import InvalidInput

CONTROL = {"fields", "limit", "marker", "sort_key", "sort_dir", "page_reverse"}
MAX_LIMIT = 10_000


@dataclass(frozen=True)
class ListQuery:
    filters: dict[str, list[str]] = field(default_factory=dict)
    fields: list[str] = field(default_factory=list)
    limit: int | None = None
    marker: str | None = None
    sort: list[tuple[str, bool]] = field(default_factory=list)  # (key, ascending)
    page_reverse: bool = False


def parse_bool(text: str) -> bool:
    low = text.strip().lower()
    if low in ("true", "1", "yes", "on"):
        return True
    if low in ("false", "0", "no", "off"):
        return False
    raise InvalidInput(f"'{text}' is not a boolean: use true or false")


def parse(params: Iterable[tuple[str, str]], attributes: set[str]) -> ListQuery:
    """Validate a query string against the collection's attributes (unknown -> 400)."""
    filters: dict[str, list[str]] = {}
    fields: list[str] = []
    sort_keys: list[str] = []
    sort_dirs: list[str] = []
    limit: int | None = None
    marker: str | None = None
    page_reverse = False
    for name, value in params:
        if name == "fields":
            fields.extend(f for f in value.split(",") if f)
        elif name == "limit":
            try:
                limit = int(value)
            except ValueError:
                raise InvalidInput(f"limit '{value}' is not an integer") from None
            if limit < 0:
                raise InvalidInput(f"limit must be >= 0, got {limit}")
            limit = min(limit, MAX_LIMIT) or None
        elif name == "marker":
            marker = value
        elif name == "sort_key":
            if value not in attributes:
                raise InvalidInput(f"{value} is an invalid attribute for sort_key")
            sort_keys.append(value)
        elif name == "sort_dir":
            if value not in ("asc", "desc"):
                raise InvalidInput(f"{value} is an invalid value for sort_dir: use asc or desc")
            sort_dirs.append(value)
        elif name == "page_reverse":
            page_reverse = parse_bool(value)
        elif name in attributes:
            filters.setdefault(name, []).append(value)
        else:
            raise InvalidInput(f"{name} is an invalid attribute for filtering")
    if sort_dirs and len(sort_dirs) != len(sort_keys):
        raise InvalidInput("the number of sort_keys and sort_dirs must be the same")
    sort = [(k, (sort_dirs[i] if sort_dirs else "asc") == "asc") for i, k in enumerate(sort_keys)]
    return ListQuery(filters, fields, limit, marker, sort, page_reverse)


def _matches_one(actual: Any, wanted: str) -> bool:
    if isinstance(actual, bool):
        try:
            return actual == parse_bool(wanted)
        except InvalidInput:
            return False
    if actual is None:
        return wanted in ("", "None", "null")
    if isinstance(actual, list):
        if "=" in wanted:  # fixed_ips=ip_address=10.0.0.5
            key, _, val = wanted.partition("=")
            return any(isinstance(a, dict) and str(a.get(key)) == val for a in actual)
        return any(str(a) == wanted for a in actual)
    if isinstance(actual, dict):
        return False
    return str(actual) == wanted


def matches(item: dict[str, Any], filters: dict[str, list[str]]) -> bool:
    return all(any(_matches_one(item.get(k), w) for w in wanted) for k, wanted in filters.items())


def _sort_value(value: Any) -> tuple[int, Any]:
    """None sorts first, and mixed types never compare (no TypeError -> no 500)."""
    if value is None:
        return (0, "")
    if isinstance(value, bool | int | float):
        return (1, float(value))
    return (2, str(value))


def _sorted_by_id(items: Sequence[dict[str, Any]]) -> bool:
    """Store listings come sorted by key, hence by id: skip re-sorting them."""
    return all(str(a.get("id")) <= str(b.get("id")) for a, b in itertools.pairwise(items))


def select(items: Sequence[dict[str, Any]], q: ListQuery) -> tuple[list[dict[str, Any]], bool]:
    """Filter, sort and page; returns the page and whether more items follow it."""
    found = [i for i in items if matches(i, q.filters)] if q.filters else list(items)
    if q.sort or not _sorted_by_id(found):
        keys = [*q.sort, ("id", q.sort[0][1] if q.sort else True)]
        for key, ascending in reversed(keys):
            found.sort(key=lambda i, k=key: _sort_value(i.get(k)), reverse=not ascending)
    if q.page_reverse:
        found.reverse()
    if q.marker is not None:
        pos = next((n for n, i in enumerate(found) if i.get("id") == q.marker), None)
        if pos is None:
            raise InvalidInput(f"marker {q.marker} could not be found")
        found = found[pos + 1 :]
    more = q.limit is not None and len(found) > q.limit
    page = found[: q.limit] if q.limit is not None else found
    if q.page_reverse:
        page.reverse()
    return page, more


def project_fields(item: dict[str, Any], fields: list[str]) -> dict[str, Any]:
    if not fields:
        return item
    return {f: item[f] for f in fields if f in item}


def links(
    url: str, collection: str, q: ListQuery, page: list[dict[str, Any]], more: bool
) -> dict[str, list[dict[str, str]]]:
    """Neutron's `<collection>_links`: next when more follow, previous when paged."""
    if q.limit is None or not page:
        return {}
    base: list[tuple[str, str]] = [("limit", str(q.limit))]
    for key, ascending in q.sort:
        base += [("sort_key", key), ("sort_dir", "asc" if ascending else "desc")]
    for name, values in q.filters.items():
        base += [(name, v) for v in values]
    out = []
    if more:
        out.append(
            {"rel": "next", "href": f"{url}?{urlencode([*base, ('marker', page[-1]['id'])])}"}
        )
    if q.marker is not None:
        prev = [*base, ("marker", page[0]["id"]), ("page_reverse", "True")]
        out.append({"rel": "previous", "href": f"{url}?{urlencode(prev)}"})
    return {f"{collection}_links": out} if out else {}
