"""Input checks shared by the evaluation functions: binary outcomes and finite 1-D scores."""

from __future__ import annotations

import numpy as np


def binary_outcome(y_true: np.ndarray) -> np.ndarray:
    """A 1-D boolean array from 0/1 (or boolean) labels; anything else is a ValueError."""
    y = np.asarray(y_true)
    if y.ndim != 1:
        raise ValueError(f"y_true must be 1-D, got shape {y.shape}")
    if y.dtype != bool and not np.isin(y, (0, 1)).all():
        raise ValueError("y_true must hold 0/1 (1 = the positive class)")
    return y.astype(bool)


def finite_scores(score: np.ndarray, n: int, name: str = "score") -> np.ndarray:
    """A 1-D float array of length `n` without NaN or infinity."""
    values = np.asarray(score, dtype=float)
    if values.shape != (n,):
        raise ValueError(f"{name} must have shape ({n},), got {values.shape}")
    if not np.isfinite(values).all():
        raise ValueError(f"{name} holds NaN or infinite values")
    return values


def probabilities(risk: np.ndarray, n: int, name: str = "risk") -> np.ndarray:
    """Finite scores that are also probabilities in [0, 1]."""
    values = finite_scores(risk, n, name)
    if ((values < 0) | (values > 1)).any():
        raise ValueError(f"{name} must lie in [0, 1]")
    return values
