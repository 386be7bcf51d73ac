"""When the agent's periodic full pass runs: not in the middle of a burst of events.

A full pass reads every namespace of the node and plans all of them; with a
thousand ports that blocks the reconcile loop for a quarter of a second or
more, and a port whose event arrives meanwhile waits for it (the bench saw
port-up outliers of 200 to 1,100 ms, one per few runs, each a collision with
the 30-second resync). The full pass only catches changes made behind the
agent's back, so it can wait: once due, it waits for a quiet spell with no
events, and it is never put off beyond a second interval.
"""

from __future__ import annotations

# Seconds without an event before a due full pass may start.
QUIET = 1.0


def full_pass_wait(now: float, last_full: float, last_event: float, interval: float,
                   quiet: float = QUIET) -> float:
    """Seconds from `now` until the periodic full pass may start (0: it may start now).

    Due `interval` after the last full pass; from then on it waits until
    `quiet` seconds have passed since the last event, but never beyond
    `2 * interval` after the last full pass.
    """
    due = last_full + interval
    latest = last_full + 2 * interval
    start = min(max(due, last_event + quiet), latest)
    return max(0.0, start - now)


def overdue(now: float, last_full: float, interval: float) -> bool:
    """Put off for as long as it may be: the full pass runs now, events or not (a steady
    stream of them would otherwise put it off for ever)."""
    return now - last_full >= 2 * interval
