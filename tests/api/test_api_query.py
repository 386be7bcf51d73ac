"""Neutron list semantics, pure: filters, fields, sorting, paging and links."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from spanwire.api import query
from spanwire.errors import InvalidInput

ATTRS = {"id", "name", "admin_state_up", "fixed_ips", "mtu", "security_groups"}
ITEMS = [
    {
        "id": f"id{i}",
        "name": f"n{i % 3}",
        "admin_state_up": i % 2 == 0,
        "mtu": 1400 + i,
        "fixed_ips": [{"subnet_id": "s", "ip_address": f"10.0.0.{i}"}],
        "security_groups": ["sg"],
    }
    for i in range(10)
]


def test_filters_fields_and_booleans() -> None:
    q = query.parse(
        [
            ("name", "n1"),
            ("name", "n2"),
            ("admin_state_up", "True"),
            ("fields", "id"),
            ("fields", "name"),
        ],
        ATTRS,
    )
    page, more = query.select(ITEMS, q)
    assert {i["id"] for i in page} == {"id2", "id4", "id8"} and not more
    assert query.project_fields(page[0], q.fields) == {"id": page[0]["id"], "name": page[0]["name"]}
    q = query.parse([("fixed_ips", "ip_address=10.0.0.7")], ATTRS)
    assert [i["id"] for i in query.select(ITEMS, q)[0]] == ["id7"]
    q = query.parse([("security_groups", "sg")], ATTRS)
    assert len(query.select(ITEMS, q)[0]) == 10


@pytest.mark.parametrize(
    "params",
    [
        [("colour", "red")],
        [("limit", "x")],
        [("limit", "-1")],
        [("sort_key", "nope")],
        [("sort_key", "name"), ("sort_dir", "sideways")],
        [("admin_state_up", "x"), ("page_reverse", "maybe")],
        [("sort_key", "name"), ("sort_key", "id"), ("sort_dir", "asc")],
    ],
)
def test_bad_queries_are_400(params: list[tuple[str, str]]) -> None:
    with pytest.raises(InvalidInput):
        query.parse(params, ATTRS)


def test_sort_and_links() -> None:
    q = query.parse([("sort_key", "mtu"), ("sort_dir", "desc"), ("limit", "3")], ATTRS)
    page, more = query.select(ITEMS, q)
    assert [i["mtu"] for i in page] == [1409, 1408, 1407] and more
    links = query.links("http://x/v2.0/ports", "ports", q, page, more)["ports_links"]
    assert links[0]["rel"] == "next" and "marker=id7" in links[0]["href"]
    with pytest.raises(InvalidInput):
        query.select(ITEMS, query.parse([("marker", "missing")], ATTRS))


@settings(max_examples=40, deadline=None)
@given(
    limit=st.integers(1, 12),
    key=st.sampled_from(["id", "name", "mtu", "admin_state_up"]),
    asc=st.booleans(),
)
def test_paging_visits_every_item_exactly_once(limit: int, key: str, asc: bool) -> None:
    seen: list[str] = []
    marker: str | None = None
    while True:
        params = [("limit", str(limit)), ("sort_key", key), ("sort_dir", "asc" if asc else "desc")]
        if marker:
            params.append(("marker", marker))
        page, more = query.select(ITEMS, query.parse(params, ATTRS))
        seen += [i["id"] for i in page]
        if not more:
            break
        marker = page[-1]["id"]
    assert sorted(seen) == sorted(i["id"] for i in ITEMS)
