"""Bandwidth regression verdicts: statistics, not one number.

A candidate's throughput samples are compared with the known-good baseline's,
measured interleaved in the same run. Two things must both hold for FAIL: the
distributions differ significantly (the smaller of the Mann-Whitney U and
Kolmogorov-Smirnov p-values is below alpha) *and* the bootstrap 95 % interval
of the median ratio lies wholly below the practical band (1 - band). PASS needs
the interval's lower end inside the band: any drop that is possible at all is
small enough not to matter. Everything else is UNKNOWN and is measured again,
up to a budget, because a noisy machine should produce "don't know", never a
false FAIL.
"""

from __future__ import annotations

import statistics
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from enum import StrEnum
from typing import Any

import numpy as np
from scipy import stats


class Outcome(StrEnum):
    PASS = "PASS"
    FAIL = "FAIL"
    UNKNOWN = "UNKNOWN"


@dataclass(frozen=True)
class Verdict:
    outcome: Outcome
    median_ratio: float
    ci_low: float
    ci_high: float
    p_mannwhitney: float
    p_ks: float
    n_candidate: int
    n_baseline: int
    reason: str

    @property
    def p_value(self) -> float:
        return min(self.p_mannwhitney, self.p_ks)

    def to_json(self) -> dict[str, Any]:
        data = asdict(self)
        data["outcome"] = self.outcome.value
        data["p_value"] = self.p_value
        return data


def bootstrap_median_ratio(
    candidate: Sequence[float],
    baseline: Sequence[float],
    *,
    n_boot: int = 4000,
    confidence: float = 0.95,
    seed: int = 0,
) -> tuple[float, float]:
    """Percentile bootstrap interval of median(candidate) / median(baseline)."""
    rng = np.random.default_rng(seed)
    cand = np.asarray(candidate, dtype=float)
    base = np.asarray(baseline, dtype=float)
    c_idx = rng.integers(0, len(cand), size=(n_boot, len(cand)))
    b_idx = rng.integers(0, len(base), size=(n_boot, len(base)))
    ratios = np.median(cand[c_idx], axis=1) / np.median(base[b_idx], axis=1)
    tail = (1.0 - confidence) / 2.0
    low, high = np.quantile(ratios, [tail, 1.0 - tail])
    return float(low), float(high)


def compare(
    candidate: Sequence[float],
    baseline: Sequence[float],
    *,
    alpha: float = 0.05,
    band: float = 0.05,
    seed: int = 0,
) -> Verdict:
    """Decide whether `candidate` throughput regressed against `baseline`."""
    if len(candidate) < 3 or len(baseline) < 3:
        raise ValueError("a verdict needs at least 3 samples on each side")
    if min(baseline) <= 0 or min(candidate) < 0:
        raise ValueError("throughput samples must be positive")
    ratio = statistics.median(candidate) / statistics.median(baseline)
    low, high = bootstrap_median_ratio(candidate, baseline, seed=seed)
    p_mw = float(stats.mannwhitneyu(candidate, baseline, alternative="two-sided").pvalue)
    p_ks = float(stats.ks_2samp(candidate, baseline).pvalue)
    p = min(p_mw, p_ks)
    floor = 1.0 - band
    if p < alpha and high < floor:
        outcome, reason = (
            Outcome.FAIL,
            (
                f"significant drop (p={p:.3g}); whole 95% interval [{low:.3f}, {high:.3f}] "
                f"below {floor:.2f}"
            ),
        )
    elif low >= floor:
        outcome, reason = (
            Outcome.PASS,
            (f"95% interval [{low:.3f}, {high:.3f}] within the ±{band:.0%} band or above"),
        )
    else:
        outcome, reason = (
            Outcome.UNKNOWN,
            (
                f"interval [{low:.3f}, {high:.3f}] straddles {floor:.2f} (p={p:.3g}); "
            "more samples needed"
            ),
        )
    return Verdict(outcome, ratio, low, high, p_mw, p_ks, len(candidate), len(baseline), reason)


def sequential(
    measure: Callable[[int], tuple[list[float], list[float]]],
    *,
    first: int = 5,
    step: int = 5,
    budget: int = 20,
    alpha: float = 0.05,
    band: float = 0.05,
) -> Verdict:
    """Measure, decide, and measure more while UNKNOWN, until `budget` samples per side.

    `measure(n)` returns n new interleaved (candidate, baseline) samples.
    """
    candidate: list[float] = []
    baseline: list[float] = []
    want = first
    while True:
        new_c, new_b = measure(want)
        candidate.extend(new_c)
        baseline.extend(new_b)
        verdict = compare(candidate, baseline, alpha=alpha, band=band)
        if verdict.outcome is not Outcome.UNKNOWN or len(candidate) >= budget:
            return verdict
        want = min(step, budget - len(candidate))
