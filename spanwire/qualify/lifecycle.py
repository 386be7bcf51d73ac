"""The snapshot state machine, pure: candidate -> experimental -> known-good | rejected.

A snapshot earns "known-good" only by time and repetition: it must have kept
passing for a soak window (a week by default) and for at least `min_runs`
runs. One failed run rejects it, whatever state it reached, because a
combination that failed once under the same suites is not one an operator may
roll out; the previous known-good stays recorded for rollback.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum

from spanwire.errors import Conflict


class State(StrEnum):
    CANDIDATE = "candidate"
    EXPERIMENTAL = "experimental"
    KNOWN_GOOD = "known-good"
    REJECTED = "rejected"


@dataclass(frozen=True)
class SoakPolicy:
    window: timedelta = timedelta(days=7)
    min_runs: int = 3


@dataclass(frozen=True)
class Standing:
    """What the state machine needs to know about one snapshot."""

    state: State
    runs_passed: int = 0
    runs_failed: int = 0
    first_pass_at: datetime | None = None
    reason: str = ""


def after_run(standing: Standing, passed: bool, now: datetime, policy: SoakPolicy) -> Standing:
    """The standing after one more complete qualification run."""
    if not passed:
        return Standing(
            State.REJECTED,
            standing.runs_passed,
            standing.runs_failed + 1,
            standing.first_pass_at,
            f"failed a run while {standing.state.value}",
        )
    runs = standing.runs_passed + 1
    if standing.state is State.REJECTED:
        return Standing(
            State.REJECTED, runs, standing.runs_failed, standing.first_pass_at, standing.reason
        )
    first = standing.first_pass_at or now
    moved = Standing(State.EXPERIMENTAL, runs, standing.runs_failed, first, "passed")
    return soak_check(moved, now, policy)


def soak_check(standing: Standing, now: datetime, policy: SoakPolicy) -> Standing:
    """Promote an experimental snapshot whose soak window and run count are both met."""
    if standing.state is State.KNOWN_GOOD:
        return standing
    if standing.state is not State.EXPERIMENTAL or standing.first_pass_at is None:
        return standing
    soaked = now - standing.first_pass_at >= policy.window
    if soaked and standing.runs_passed >= policy.min_runs:
        return Standing(
            State.KNOWN_GOOD,
            standing.runs_passed,
            standing.runs_failed,
            standing.first_pass_at,
            f"passed {standing.runs_passed} runs over {now - standing.first_pass_at}",
        )
    return standing


def promote(standing: Standing, reason: str) -> Standing:
    """Operator override: declare known-good now (recorded with its reason)."""
    if standing.state is State.KNOWN_GOOD:
        raise Conflict("snapshot is already known-good")
    return Standing(
        State.KNOWN_GOOD,
        standing.runs_passed,
        standing.runs_failed,
        standing.first_pass_at,
        f"promoted by operator: {reason}",
    )


def reject(standing: Standing, reason: str) -> Standing:
    if standing.state is State.REJECTED:
        raise Conflict("snapshot is already rejected")
    return Standing(
        State.REJECTED,
        standing.runs_passed,
        standing.runs_failed,
        standing.first_pass_at,
        f"rejected by operator: {reason}",
    )
