"""Facts about the machine a benchmark ran on, shared by every script in bench/.

Benchmark numbers mean little without the machine and how busy it was; the
component versions are the same manifest qualification records.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import platform
import statistics
from pathlib import Path
from typing import Any

from spanwire.dataplane.versions import probe_tool_versions
from spanwire.qualify import steal


def _first(path: str, prefix: str) -> str:
    for line in Path(path).read_text().splitlines():
        if line.startswith(prefix):
            return line.split(":", 1)[1].strip()
    return ""


def facts(load_at_start: float | None = None) -> dict[str, Any]:
    """CPU, memory, kernel, tool versions, and the load average around the run."""
    mem_kb = int(_first("/proc/meminfo", "MemTotal").split()[0] or 0)
    return {
        "date": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "cpus": os.cpu_count(),
        "cpu_model": _first("/proc/cpuinfo", "model name") or platform.processor(),
        "mem_gb": round(mem_kb / 2**20, 1),
        "versions": probe_tool_versions(),
        # Other work on the machine skews every number; record how busy it was.
        "load_avg_1m_at_start": load_at_start,
        "load_avg_1m_at_end": round(os.getloadavg()[0], 2),
    }


def write(path: str, results: dict[str, Any]) -> None:
    os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
    Path(path).write_text(json.dumps(results, indent=2) + "\n")


def quiet_ratio(path: list[float], ref: list[float], path_stolen: list[float],
                ref_stolen: list[float], seconds: float) -> dict[str, Any]:
    """Median of `path` over median of `ref`, from quiet samples only: those from which
    the hypervisor took less than `steal.NOISY_SHARE` of their CPU time.

    The same rounds' samples, filtered the same way, so drift still hits both;
    None when either side has fewer than three quiet samples.
    """
    limit = steal.NOISY_SHARE * seconds * (os.cpu_count() or 1)
    p = [g for g, s in zip(path, path_stolen, strict=True) if s < limit]
    r = [g for g, s in zip(ref, ref_stolen, strict=True) if s < limit]
    ratio = statistics.median(p) / statistics.median(r) if len(p) >= 3 and len(r) >= 3 else None
    return {"quiet_ratio_of_medians": ratio, "quiet_samples": [len(p), len(r)],
            "quiet_steal_limit_cpu_s": round(limit, 2)}
