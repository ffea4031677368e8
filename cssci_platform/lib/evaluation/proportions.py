"""Wilson score intervals for the proportions among the threshold metrics.

Wilson (1927), without continuity correction: with p = k / n and z = z_(1 - alpha/2),
centre = (p + z^2 / 2n) / (1 + z^2 / n), half-width = z / (1 + z^2 / n) * sqrt(p (1 - p) / n + z^2 / 4n^2),
clipped to [0, 1] (as statsmodels' `proportion_confint(method="wilson")`). An empty denominator gives NaN.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from scipy.stats import norm

from cssci_platform.lib.evaluation._inputs import binary_outcome, finite_scores
from cssci_platform.lib.evaluation.performance import confusion_counts


@dataclass(frozen=True)
class ProportionCI:
    estimate: float
    low: float
    high: float
    successes: int
    total: int
    alpha: float = 0.05


def wilson_interval(successes: int, total: int, alpha: float = 0.05) -> tuple[float, float]:
    if total == 0:
        return math.nan, math.nan
    if not 0 <= successes <= total:
        raise ValueError(f"successes must lie in [0, {total}], got {successes}")
    z2 = float(norm.isf(alpha / 2)) ** 2
    p = successes / total
    denominator = 1 + z2 / total
    centre = (p + z2 / (2 * total)) / denominator
    half_width = math.sqrt(z2) / denominator * math.sqrt(p * (1 - p) / total + z2 / (4 * total**2))
    return max(centre - half_width, 0.0), min(centre + half_width, 1.0)


def proportion_ci(successes: int, total: int, alpha: float = 0.05) -> ProportionCI:
    low, high = wilson_interval(successes, total, alpha)
    return ProportionCI(successes / total if total else math.nan, low, high, int(successes), int(total), alpha)


def threshold_metrics_with_ci(
    y: np.ndarray, score: np.ndarray, threshold: float, alpha: float = 0.05
) -> dict[str, ProportionCI]:
    """Accuracy, sensitivity, specificity, PPV (= precision), NPV with Wilson CIs; `score >= threshold` is
    positive. F1 is not a proportion: use `bootstrap_threshold_metrics` for its CI."""
    labels = binary_outcome(y)
    counts = confusion_counts(labels, finite_scores(score, len(labels)), threshold)
    tp, tn, fp, fn = (int(c) for c in (counts.tp, counts.tn, counts.fp, counts.fn))
    fractions = {
        "accuracy": (tp + tn, len(labels)), "sensitivity": (tp, tp + fn), "specificity": (tn, tn + fp),
        "ppv": (tp, tp + fp), "npv": (tn, tn + fn),
    }
    return {name: proportion_ci(k, total, alpha) for name, (k, total) in fractions.items()}
