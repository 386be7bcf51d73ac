"""The snapshot state machine and the ledger on a real (SQLite) store, without root."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from spanwire.errors import Conflict, NotFound
from spanwire.qualify import lifecycle
from spanwire.qualify.ledger import Ledger, RunRecord
from spanwire.qualify.lifecycle import SoakPolicy, Standing, State
from spanwire.qualify.manifest import Manifest, diff
from spanwire.store import connect

T0 = datetime(2026, 11, 1, tzinfo=UTC)
POLICY = SoakPolicy(window=timedelta(days=7), min_runs=3)


def test_first_pass_makes_experimental() -> None:
    s = lifecycle.after_run(Standing(State.CANDIDATE), True, T0, POLICY)
    assert s.state is State.EXPERIMENTAL and s.first_pass_at == T0 and s.runs_passed == 1


def test_failure_rejects_from_any_state() -> None:
    for state in (State.CANDIDATE, State.EXPERIMENTAL, State.KNOWN_GOOD):
        assert lifecycle.after_run(Standing(state), False, T0, POLICY).state is State.REJECTED


def test_known_good_needs_both_window_and_runs() -> None:
    s = Standing(State.CANDIDATE)
    for day in range(3):  # three passes within two days: not soaked yet
        s = lifecycle.after_run(s, True, T0 + timedelta(days=day), POLICY)
    assert s.state is State.EXPERIMENTAL
    s = lifecycle.after_run(s, True, T0 + timedelta(days=7), POLICY)
    assert s.state is State.KNOWN_GOOD

    few = lifecycle.after_run(Standing(State.CANDIDATE), True, T0, POLICY)
    assert lifecycle.soak_check(few, T0 + timedelta(days=30), POLICY).state is State.EXPERIMENTAL


def test_rejected_stays_rejected_until_operator_acts() -> None:
    s = lifecycle.after_run(Standing(State.CANDIDATE), False, T0, POLICY)
    s = lifecycle.after_run(s, True, T0, POLICY)
    assert s.state is State.REJECTED
    assert lifecycle.promote(s, "vendor fix verified").state is State.KNOWN_GOOD
    with pytest.raises(Conflict):
        lifecycle.reject(s, "again")


@pytest.fixture
def ledger(tmp_path: Path) -> Iterator[Ledger]:
    store = connect(f"sqlite:///{tmp_path}/ledger.db")
    try:
        yield Ledger(store, POLICY)
    finally:
        store.close()


def manifest(kernel: str) -> Manifest:
    return Manifest({"spanwire": "0.1.0", "kernel": kernel}, {"mtu": 1450})


def run(snapshot_id: str, passed: bool, n: int, samples: list[float] | None = None) -> RunRecord:
    return RunRecord(
        id=f"run-{snapshot_id[:6]}-{n}",
        snapshot_id=snapshot_id,
        started_at=T0.isoformat(),
        passed=passed,
        bandwidth={"cross-node": samples or []},
    )


def test_ledger_promotes_and_keeps_previous_known_good(ledger: Ledger) -> None:
    old, new = manifest("6.1"), manifest("6.18")
    assert ledger.register(old).state is State.CANDIDATE
    assert ledger.register(old).id == old.id  # idempotent
    for day in (0, 3, 8):
        rec = ledger.record_run(run(old.id, True, day, [9.0, 9.1]), T0 + timedelta(days=day))
    assert rec.state is State.KNOWN_GOOD and ledger.known_good() == old.id
    assert ledger.baseline("cross-node") == [9.0, 9.1] * 3

    ledger.register(new)
    ledger.promote(new.id[:8], "emergency kernel fix")
    assert ledger.known_good() == new.id
    assert ledger.previous_known_good() == old.id
    assert ledger.get(new.id).previous_known_good == old.id
    assert len(ledger.runs(old.id)) == 3


def test_ledger_refresh_promotes_after_soak(ledger: Ledger) -> None:
    m = manifest("6.1")
    ledger.register(m)
    for n in range(3):
        ledger.record_run(run(m.id, True, n), T0 + timedelta(hours=n))
    assert ledger.get(m.id).state is State.EXPERIMENTAL
    assert ledger.refresh(T0 + timedelta(days=1)) == []
    [promoted] = ledger.refresh(T0 + timedelta(days=8))
    assert promoted.state is State.KNOWN_GOOD


def test_ledger_errors_are_clear(ledger: Ledger) -> None:
    with pytest.raises(NotFound, match="snapshot list"):
        ledger.get("feedface")
    with pytest.raises(NotFound):
        ledger.record_run(run("0" * 16, True, 0))


def test_manifest_identity_and_diff() -> None:
    a, b = manifest("6.1"), manifest("6.18")
    assert a.id == manifest("6.1").id != b.id
    assert diff(a, b) == [("kernel", "6.1", "6.18")]
    assert Manifest.from_json(a.to_json()) == a
