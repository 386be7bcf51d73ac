"""The snapshot ledger, kept in a spanwire store (a SQLite file when standalone).

Every run is recorded; each snapshot's standing is recomputed by the pure
state machine in `lifecycle`. The ledger also tracks which snapshot is the
current known-good and which one was before it, for rollback, and keeps the
bandwidth samples of known-good runs as the baseline for regression verdicts.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from pydantic import Field

from spanwire.errors import Conflict, NotFound
from spanwire.model.base import Resource, utcnow
from spanwire.qualify import lifecycle
from spanwire.qualify.lifecycle import SoakPolicy, Standing, State
from spanwire.qualify.manifest import Manifest
from spanwire.store import keys
from spanwire.store.base import Compare, Put, Store


class SnapshotRecord(Resource):
    """`id` is the manifest hash."""

    KIND = "snapshots"

    manifest: dict[str, Any]
    state: State = State.CANDIDATE
    runs_passed: int = 0
    runs_failed: int = 0
    first_seen: str = Field(default_factory=utcnow)
    first_pass_at: str | None = None
    reason: str = ""
    previous_known_good: str | None = None

    def standing(self) -> Standing:
        first = datetime.fromisoformat(self.first_pass_at) if self.first_pass_at else None
        return Standing(self.state, self.runs_passed, self.runs_failed, first, self.reason)

    def with_standing(self, standing: Standing) -> SnapshotRecord:
        return self.evolve(
            state=standing.state,
            runs_passed=standing.runs_passed,
            runs_failed=standing.runs_failed,
            first_pass_at=standing.first_pass_at.isoformat() if standing.first_pass_at else None,
            reason=standing.reason,
        )


class RunRecord(Resource):
    KIND = "qualify_runs"

    snapshot_id: str
    started_at: str
    finished_at: str = Field(default_factory=utcnow)
    passed: bool
    summary: dict[str, Any] = Field(default_factory=dict)
    # {path_class: [Gbit/s samples]} and the raw underlay's samples, for baselines.
    bandwidth: dict[str, list[float]] = Field(default_factory=dict)


KNOWN_GOOD_KEY = keys.key("ledger", "known-good")
PREVIOUS_KEY = keys.key("ledger", "previous-known-good")


class Ledger:
    def __init__(self, store: Store, policy: SoakPolicy | None = None) -> None:
        self.store = store
        self.policy = policy or SoakPolicy()

    # Reads.

    def get(self, snapshot_id: str) -> SnapshotRecord:
        matches = [s for s in self.snapshots() if s.id.startswith(snapshot_id)]
        if not matches:
            raise NotFound(f"no snapshot {snapshot_id!r}; `spanwire snapshot list` shows them")
        if len(matches) > 1:
            raise Conflict(f"{snapshot_id!r} is ambiguous: {', '.join(m.id for m in matches)}")
        return matches[0]

    def snapshots(self) -> list[SnapshotRecord]:
        listing = self.store.range(SnapshotRecord.prefix())
        return [SnapshotRecord.from_bytes(kv.value) for kv in listing.items]

    def runs(self, snapshot_id: str | None = None) -> list[RunRecord]:
        listing = self.store.range(RunRecord.prefix())
        runs = [RunRecord.from_bytes(kv.value) for kv in listing.items]
        runs = [r for r in runs if snapshot_id is None or r.snapshot_id == snapshot_id]
        return sorted(runs, key=lambda r: r.finished_at)

    def known_good(self) -> str | None:
        kv = self.store.get(KNOWN_GOOD_KEY)
        return kv.value.decode() if kv else None

    def previous_known_good(self) -> str | None:
        kv = self.store.get(PREVIOUS_KEY)
        return kv.value.decode() if kv else None

    def baseline(self, path_class: str) -> list[float]:
        """Bandwidth samples of the current known-good snapshot for one path class."""
        good = self.known_good()
        if good is None:
            return []
        return [
            x for run in self.runs(good) if run.passed for x in run.bandwidth.get(path_class, [])
        ]

    # Writes: each one a single CAS transaction, retried on a concurrent change.

    def register(self, manifest: Manifest) -> SnapshotRecord:
        key = SnapshotRecord.key_of(manifest.id)
        kv = self.store.get(key)
        if kv is not None:
            return SnapshotRecord.from_bytes(kv.value)
        record = SnapshotRecord(id=manifest.id, manifest=manifest.to_json())
        result = self.store.txn([Compare.absent(key)], [Put(key, record.to_bytes())])
        return record if result.succeeded else self.get(manifest.id)

    def record_run(self, run: RunRecord, now: datetime | None = None) -> SnapshotRecord:
        now = now or datetime.now(UTC)
        return self._transition(
            run.snapshot_id,
            lambda s: lifecycle.after_run(s, run.passed, now, self.policy),
            extra=[Put(RunRecord.key_of(run.id), run.to_bytes())],
        )

    def refresh(self, now: datetime | None = None) -> list[SnapshotRecord]:
        """Promote experimental snapshots whose soak ended (a periodic check)."""
        now = now or datetime.now(UTC)
        changed = []
        for record in self.snapshots():
            if lifecycle.soak_check(record.standing(), now, self.policy) != record.standing():
                changed.append(
                    self._transition(record.id, lambda s: lifecycle.soak_check(s, now, self.policy))
                )
        return changed

    def promote(self, snapshot_id: str, reason: str) -> SnapshotRecord:
        return self._transition(self.get(snapshot_id).id, lambda s: lifecycle.promote(s, reason))

    def reject(self, snapshot_id: str, reason: str) -> SnapshotRecord:
        return self._transition(self.get(snapshot_id).id, lambda s: lifecycle.reject(s, reason))

    def _transition(
        self, snapshot_id: str, step: Any, extra: list[Put] | None = None
    ) -> SnapshotRecord:
        key = SnapshotRecord.key_of(snapshot_id)
        for _ in range(50):
            kv = self.store.get(key)
            if kv is None:
                raise NotFound(f"snapshot {snapshot_id} is not registered")
            record = SnapshotRecord.from_bytes(kv.value)
            new = record.with_standing(step(record.standing()))
            ops: list[Put] = list(extra or [])
            compares = [Compare.unchanged(kv)]
            good_kv = self.store.get(KNOWN_GOOD_KEY)
            current_good = good_kv.value.decode() if good_kv else None
            if new.state is State.KNOWN_GOOD and current_good != new.id:
                new = new.evolve(previous_known_good=current_good)
                ops.append(Put(KNOWN_GOOD_KEY, new.id.encode()))
                if current_good:
                    ops.append(Put(PREVIOUS_KEY, current_good.encode()))
                compares.append(
                    Compare.unchanged(good_kv) if good_kv else Compare.absent(KNOWN_GOOD_KEY)
                )
            ops.append(Put(key, new.to_bytes()))
            if self.store.txn(compares, ops).succeeded:
                return new
        raise Conflict(f"snapshot {snapshot_id} kept changing; try again")
