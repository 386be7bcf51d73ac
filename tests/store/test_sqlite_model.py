"""Property test: any sequence of writes on the SQLite store matches a plain dict model.

The model is etcd's documented semantics written in ten lines; hypothesis
searches for a sequence of puts, deletes and transactions where the engine's
values, revisions, versions or event log disagree with it.
"""

from __future__ import annotations

import tempfile
from dataclasses import dataclass, field

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from spanwire.store import Compare, Delete, EventType, Put
from spanwire.store.sqlite import SqliteStore

pytestmark = pytest.mark.filterwarnings("error::pytest.PytestUnhandledThreadExceptionWarning")

KEYS = ["/m/a", "/m/b", "/m/c", "/m/d"]


@dataclass
class Model:
    revision: int = 1
    # key -> (value, create_revision, mod_revision, version)
    kvs: dict[str, tuple[bytes, int, int, int]] = field(default_factory=dict)
    events: list[tuple[EventType, str, bytes, int]] = field(default_factory=list)

    def mod(self, key: str) -> int:
        return self.kvs[key][2] if key in self.kvs else 0

    def apply(self, ops: list[Put | Delete]) -> int:
        rev, changed = self.revision + 1, False
        for op in ops:
            if isinstance(op, Put):
                _, create, _, version = self.kvs.get(op.key, (b"", rev, 0, 0))
                self.kvs[op.key] = (op.value, create, rev, version + 1)
                self.events.append((EventType.PUT, op.key, op.value, rev))
                changed = True
            elif self.kvs.pop(op.key, None) is not None:
                self.events.append((EventType.DELETE, op.key, b"", rev))
                changed = True
        if changed:
            self.revision = rev
        return self.revision


values = st.binary(max_size=8)
put = st.builds(Put, st.sampled_from(KEYS), values)
delete = st.builds(Delete, st.sampled_from(KEYS))


def _unique(ops: list[Put | Delete]) -> list[Put | Delete]:
    seen: dict[str, Put | Delete] = {}
    for op in ops:
        seen.setdefault(op.key, op)
    return list(seen.values())


# A step: (compares as (key, "current" | "absent" | "stale"), success ops, failure ops)
step = st.tuples(
    st.lists(
        st.tuples(st.sampled_from(KEYS), st.sampled_from(["current", "absent", "stale"])),
        max_size=2,
    ),
    st.lists(st.one_of(put, delete), max_size=4).map(_unique),
    st.lists(st.one_of(put, delete), max_size=3).map(_unique),
)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(step, min_size=1, max_size=15))
def test_sqlite_matches_dict_model(steps: list[tuple[list[tuple[str, str]], list, list]]) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        store = SqliteStore(f"{tmp}/state.db", sweep_interval=60)
        try:
            model = Model()
            for compare_specs, success, failure in steps:
                compares = []
                for key, how in compare_specs:
                    rev = {"current": model.mod(key), "absent": 0, "stale": model.mod(key) + 7}[how]
                    compares.append(Compare(key, rev))
                holds = all(model.mod(c.key) == c.mod_revision for c in compares)
                expected_rev = model.apply(success if holds else failure)
                result = store.txn(compares, success, failure)
                assert (result.succeeded, result.revision) == (holds, expected_rev)
            assert store.revision() == model.revision
            listing = store.range("/m/")
            assert listing.revision == model.revision
            assert {
                kv.key: (kv.value, kv.create_revision, kv.mod_revision, kv.version)
                for kv in listing.items
            } == model.kvs
            with store.watch("/m/", 1) as watch:
                got = []
                for _ in model.events:
                    event = watch.get(timeout=5)
                    assert event is not None
                    got.append((event.type, event.key, event.value, event.revision))
                assert got == model.events
        finally:
            store.close()
