"""Decision curve analysis (Vickers & Elkin 2006) with the conventions of the `dcurves` packages.

At threshold probability pt, a patient is treated when risk >= pt, and
net benefit = TP / n - FP / n * pt / (1 - pt) - harm. "Treat all" treats everyone (NB = prevalence -
(1 - prevalence) * pt / (1 - pt)), "treat none" no one (NB = 0). As in dcurves, a risk of exactly 0 is never
treated (dcurves replaces it with -machine epsilon) and a risk of exactly 1 always is. Net interventions
avoided (per patient) = (NB_model - NB_all) / (pt / (1 - pt)). Thresholds must lie in [0, 1); the default
is 0.01, 0.02, ..., 0.99.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from cssci_platform.lib.evaluation._inputs import binary_outcome, probabilities

DEFAULT_THRESHOLDS = np.round(np.arange(1, 100) / 100, 2)


@dataclass(frozen=True)
class DecisionCurve:
    thresholds: np.ndarray
    model: np.ndarray
    treat_all: np.ndarray
    treat_none: np.ndarray

    @property
    def interventions_avoided(self) -> np.ndarray:
        """Net interventions avoided per patient versus treat-all; NaN at pt = 0."""
        odds = self.thresholds / (1 - self.thresholds)
        with np.errstate(divide="ignore", invalid="ignore"):
            return np.where(odds > 0, (self.model - self.treat_all) / odds, np.nan)


def net_benefit(
    y_true: np.ndarray, risk: np.ndarray, thresholds: np.ndarray = DEFAULT_THRESHOLDS, harm: float = 0.0
) -> DecisionCurve:
    """Net benefit of the model, treat-all and treat-none at each threshold (see module docstring)."""
    labels = binary_outcome(y_true)
    risk = probabilities(risk, len(labels))
    thresholds = np.asarray(thresholds, dtype=float)
    if thresholds.ndim != 1 or ((thresholds < 0) | (thresholds >= 1)).any():
        raise ValueError("thresholds must be a 1-D array of values in [0, 1)")
    treat_all = _net_benefit(labels, np.ones_like(risk, dtype=bool)[None, :], thresholds)
    treated = (risk[None, :] >= thresholds[:, None]) & (risk[None, :] > 0)
    return DecisionCurve(thresholds, _net_benefit(labels, treated, thresholds) - harm, treat_all,
                         np.zeros_like(thresholds))


def _net_benefit(labels: np.ndarray, treated: np.ndarray, thresholds: np.ndarray) -> np.ndarray:
    n = len(labels)
    true_positives = (treated & labels).sum(axis=1)
    false_positives = (treated & ~labels).sum(axis=1)
    return true_positives / n - false_positives / n * thresholds / (1 - thresholds)
