"""The periodic full pass waits for a quiet spell, within bounds (`agent.resync`)."""

from __future__ import annotations

from pytest import approx

from spanwire.agent.resync import full_pass_wait, overdue

INTERVAL, QUIET = 30.0, 1.0


def wait(now: float, last_event: float, last_full: float = 0.0) -> float:
    return full_pass_wait(now, last_full, last_event, INTERVAL, QUIET)


def test_not_due_before_the_interval() -> None:
    assert wait(now=10.0, last_event=0.0) == approx(20.0)
    assert wait(now=29.5, last_event=20.0) == approx(0.5)
    # An event just before it falls due pushes the start past the due time.
    assert wait(now=29.5, last_event=29.4) == approx(0.9)


def test_due_and_quiet_starts_now() -> None:
    assert wait(now=30.0, last_event=5.0) == approx(0.0)
    assert wait(now=45.0, last_event=43.9) == approx(0.0)


def test_due_during_a_burst_waits_for_a_second_without_events() -> None:
    assert wait(now=30.0, last_event=29.8) == approx(0.8)
    assert wait(now=40.0, last_event=39.75) == approx(0.75)
    # Every new event pushes the start back by the quiet spell.
    assert wait(now=50.2, last_event=50.2) == approx(1.0)


def test_never_put_off_beyond_a_second_interval() -> None:
    assert wait(now=59.5, last_event=59.5) == approx(0.5)
    assert wait(now=60.0, last_event=60.0) == approx(0.0)
    assert wait(now=75.0, last_event=74.99) == approx(0.0)


def test_measured_from_the_last_full_pass() -> None:
    assert wait(now=100.0, last_event=10.0, last_full=90.0) == approx(20.0)
    assert wait(now=120.5, last_event=120.2, last_full=90.0) == approx(0.7)


def test_overdue_after_a_second_interval_whatever_the_events() -> None:
    assert not overdue(now=59.9, last_full=0.0, interval=INTERVAL)
    assert overdue(now=60.0, last_full=0.0, interval=INTERVAL)
    assert overdue(now=200.0, last_full=100.0, interval=INTERVAL)
