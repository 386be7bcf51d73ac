"""The regression verdict on synthetic samples: no root, no network."""

from __future__ import annotations

import numpy as np
import pytest

from spanwire.qualify.verdict import Outcome, compare, sequential


def samples(rng: np.random.Generator, mean: float, sd: float, n: int) -> list[float]:
    return list(rng.normal(mean, sd, n).clip(min=1.0))


def test_ten_percent_drop_fails() -> None:
    rng = np.random.default_rng(1)
    base = samples(rng, 10_000, 150, 10)
    cand = samples(rng, 9_000, 150, 10)
    verdict = compare(cand, base)
    assert verdict.outcome is Outcome.FAIL, verdict.reason
    assert 0.87 < verdict.median_ratio < 0.93


def test_identical_distributions_pass() -> None:
    rng = np.random.default_rng(2)
    base = samples(rng, 10_000, 150, 10)
    cand = samples(rng, 10_000, 150, 10)
    verdict = compare(cand, base)
    assert verdict.outcome is Outcome.PASS, verdict.reason


def test_improvement_passes() -> None:
    rng = np.random.default_rng(3)
    verdict = compare(samples(rng, 12_000, 150, 10), samples(rng, 10_000, 150, 10))
    assert verdict.outcome is Outcome.PASS


@pytest.mark.parametrize("seed", range(200))
def test_pure_noise_never_fails(seed: int) -> None:
    """Same distribution, large noise: PASS or UNKNOWN, never a false FAIL."""
    rng = np.random.default_rng(1000 + seed)
    base = samples(rng, 10_000, 2_500, 6)
    cand = samples(rng, 10_000, 2_500, 6)
    assert compare(cand, base).outcome is not Outcome.FAIL


def test_sequential_reruns_until_decided() -> None:
    rng = np.random.default_rng(4)
    calls: list[int] = []

    def measure(n: int) -> tuple[list[float], list[float]]:
        calls.append(n)
        return samples(rng, 9_000, 600, n), samples(rng, 10_000, 600, n)

    verdict = sequential(measure, first=3, step=3, budget=30)
    assert verdict.outcome is Outcome.FAIL
    assert sum(calls) == verdict.n_candidate <= 30


def test_sequential_stops_at_budget() -> None:
    rng = np.random.default_rng(5)

    def measure(n: int) -> tuple[list[float], list[float]]:
        return samples(rng, 9_600, 3_000, n), samples(rng, 10_000, 3_000, n)

    verdict = sequential(measure, first=3, step=3, budget=9)
    assert verdict.n_candidate <= 9


def test_too_few_samples_is_a_clear_error() -> None:
    with pytest.raises(ValueError, match="at least 3"):
        compare([1.0, 2.0], [1.0, 2.0, 3.0])
