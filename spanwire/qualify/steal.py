"""CPU time the hypervisor takes from this machine: the noise under a bandwidth sample.

On a virtual machine on a shared host another guest can take a third of a
sample's CPU time, and that sample is slower for reasons that have nothing
to do with the path it measures. /proc/stat counts that time (`steal`), so a
report can say how much of a run was measured on a machine that was not all
there.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from typing import TypeVar

T = TypeVar("T")

# Above this share of a sample's CPU time taken by the hypervisor, a report says
# that its ratios and verdicts are noisier than usual.
NOISY_SHARE = 0.05


def parse_steal(first_line: str, ticks_per_second: int) -> float:
    """Stolen seconds from /proc/stat's first line (`cpu  user nice system idle iowait
    irq softirq steal ...`); 0 on kernels that do not count it."""
    fields = first_line.split()
    if not fields or fields[0] != "cpu" or len(fields) < 9:
        return 0.0
    return int(fields[8]) / ticks_per_second


def stolen_cpu_seconds() -> float:
    """CPU seconds the hypervisor has taken from this machine since boot, all CPUs."""
    with open("/proc/stat") as handle:
        return parse_steal(handle.readline(), os.sysconf("SC_CLK_TCK"))


def share(stolen: float, seconds: float, cpus: int | None = None) -> float:
    """The part of a sample's CPU time (`seconds` on every CPU) the hypervisor took."""
    return stolen / (max(seconds, 1e-9) * (cpus or os.cpu_count() or 1))


def during(call: Callable[[], T]) -> tuple[T, float, float]:
    """`call()`, the CPU seconds the hypervisor took while it ran, and its wall-clock seconds."""
    started, before = time.monotonic(), stolen_cpu_seconds()
    result = call()
    return result, stolen_cpu_seconds() - before, time.monotonic() - started
