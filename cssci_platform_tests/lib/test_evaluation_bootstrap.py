"""Percentile bootstrap (`cssci_platform.lib.evaluation.bootstrap`): stratification, seeding, the vectorised
AUC / threshold-metric shortcuts equal to the generic loop, and the interval against the normal-theory CI of
a mean. The DeLong agreement on real data is in test_evaluation_delong.py."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy.stats import t

from cssci_platform.lib.evaluation import (
    THRESHOLD_METRICS,
    binary_auc,
    bootstrap_auc_ci,
    bootstrap_ci,
    bootstrap_threshold_metrics,
    percentile_interval,
    replicate_indices,
    threshold_metrics,
)


def scored_patients(seed: int = 0, n: int = 150) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    y = (rng.random(n) < 0.3).astype(int)
    return y, np.round(rng.normal(y, 1.0), 1)


def test_stratified_replicates_keep_class_counts() -> None:
    y, _ = scored_patients()
    for chunk in replicate_indices(y, 50, seed=1, stratified=True):
        assert chunk.shape == (50, len(y))
        assert (y[chunk].sum(axis=1) == y.sum()).all()
    unstratified = next(replicate_indices(y, 50, seed=1, stratified=False))
    assert len(np.unique(y[unstratified].sum(axis=1))) > 1


def test_replicates_are_chunked_without_changing_count() -> None:
    y = np.zeros(3_000_000, dtype=int)
    y[::3] = 1
    chunks = list(replicate_indices(y, 3, seed=0))
    assert len(chunks) == 3 and sum(len(c) for c in chunks) == 3


def test_seed_makes_results_reproducible() -> None:
    y, score = scored_patients()
    assert bootstrap_auc_ci(y, score, n=200, seed=7) == bootstrap_auc_ci(y, score, n=200, seed=7)
    assert bootstrap_auc_ci(y, score, n=200, seed=7) != bootstrap_auc_ci(y, score, n=200, seed=8)


@pytest.mark.parametrize("stratified", [True, False])
def test_vectorised_auc_equals_generic_loop(stratified: bool) -> None:
    y, score = scored_patients(1)
    fast = bootstrap_auc_ci(y, score, n=300, seed=3, stratified=stratified)
    slow = bootstrap_ci(y, score, binary_auc, n=300, seed=3, stratified=stratified)
    assert fast.n_replicates == slow.n_replicates == 300
    assert (fast.estimate, fast.low, fast.high) == pytest.approx((slow.estimate, slow.low, slow.high), abs=1e-12)


def test_vectorised_threshold_metrics_equal_generic_loop() -> None:
    y, score = scored_patients(2)
    fast = bootstrap_threshold_metrics(y, score, threshold=0.5, n=300, seed=4)
    assert set(fast) == set(THRESHOLD_METRICS)
    for name in THRESHOLD_METRICS:
        slow = bootstrap_ci(y, score, lambda yy, ss, name=name: threshold_metrics(yy, ss, 0.5)[name], n=300, seed=4)
        assert (fast[name].estimate, fast[name].low, fast[name].high, fast[name].n_replicates) == pytest.approx(
            (slow.estimate, slow.low, slow.high, slow.n_replicates), abs=1e-12)
        assert fast[name].low <= fast[name].estimate <= fast[name].high


def test_undefined_replicates_are_left_out() -> None:
    y = np.array([0] * 9 + [1])
    score = np.linspace(0, 1, 10)
    ci = bootstrap_auc_ci(y, score, n=400, seed=0, stratified=False)
    assert 0 < ci.n_replicates < 400  # about (9/10)^10 = 35 % of replicates hold no positive
    assert ci.n_replicates == pytest.approx(400 * (1 - 0.9**10), abs=40)


def test_percentiles_interpolate_linearly() -> None:
    assert percentile_interval(np.arange(101.0)) == (2.5, 97.5)
    assert percentile_interval(np.array([np.nan, 1.0, np.nan, 3.0]), alpha=0.5) == (1.5, 2.5)
    assert all(math.isnan(v) for v in percentile_interval(np.array([np.nan])))


def test_percentile_ci_of_a_mean_matches_normal_theory() -> None:
    rng = np.random.default_rng(11)
    values = rng.normal(10.0, 2.0, 400)
    ci = bootstrap_ci(np.zeros(400), values, lambda _, v: float(v.mean()), n=2000, seed=0, stratified=False)
    half_width = t.isf(0.025, 399) * values.std(ddof=1) / math.sqrt(400)
    assert ci.estimate == pytest.approx(values.mean())
    assert ci.low == pytest.approx(values.mean() - half_width, abs=0.1 * half_width)
    assert ci.high == pytest.approx(values.mean() + half_width, abs=0.1 * half_width)
    narrower = bootstrap_ci(np.zeros(400), values, lambda _, v: float(v.mean()), n=2000, seed=0, stratified=False,
                            alpha=0.1)
    assert ci.low < narrower.low < narrower.high < ci.high
