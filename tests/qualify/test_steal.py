"""Stolen CPU time: read from /proc/stat, shown per bandwidth class, warned about when high."""

from __future__ import annotations

from typing import Any

from pytest import approx

from spanwire.qualify import report, steal


def test_steal_is_the_eighth_counter_of_the_cpu_line() -> None:
    line = "cpu  4705 150 1120 16250 520 0 30 2500 0 0"
    assert steal.parse_steal(line, 100) == approx(25.0)
    assert steal.parse_steal("cpu0 1 2 3 4 5 6 7 8", 100) == 0.0  # a per-CPU line
    assert steal.parse_steal("cpu  1 2 3 4", 100) == 0.0  # a kernel that does not count it
    assert steal.stolen_cpu_seconds() >= 0.0


def test_share_is_of_the_sample_cpu_time_on_every_cpu() -> None:
    assert steal.share(0.6, 3.0, cpus=2) == approx(0.1)
    assert steal.share(0.0, 3.0, cpus=2) == 0.0


def _doc(shares: list[float] | None, median: float | None) -> dict[str, Any]:
    row: dict[str, Any] = {"samples_gbps": [5.0, 6.0, 7.0], "median_gbps": 6.0, "ratio": 0.8,
                           "ci_low": 0.7, "ci_high": 0.9, "verdict": None}
    bandwidth: dict[str, Any] = {"underlay_gbps": [7.0, 7.5, 8.0], "classes": {"cross-node": row}}
    if shares is not None:
        row["steal_shares"] = shares
    if median is not None:
        bandwidth["steal_share_median"] = median
    return {"passed": True, "bandwidth": bandwidth, "snapshot": {"id": "s", "state": "x"}}


def test_report_shows_stolen_cpu_and_warns_only_when_it_is_high() -> None:
    noisy = report.render_html(_doc([0.02, 0.2, 0.3], 0.2))
    assert "<th>CPU stolen</th>" in noisy and "<td>20%</td>" in noisy
    assert "took 20% of the CPU time of a typical bandwidth sample" in noisy
    quiet = report.render_html(_doc([0.0, 0.01, 0.02], 0.01))
    assert "<td>1%</td>" in quiet and "noisier than usual" not in quiet
    older = report.render_html(_doc(None, None))  # a report from before steal was recorded
    assert "<td>—</td>" in older and "noisier than usual" not in older


def test_during_returns_the_calls_result_and_what_was_stolen_meanwhile() -> None:
    result, stolen, took = steal.during(lambda: 42)
    assert result == 42
    assert stolen >= 0.0 and took >= 0.0
