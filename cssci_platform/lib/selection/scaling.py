"""z-score: scikit-learn's StandardScaler plus the step report the modeling code logs."""

from __future__ import annotations

from typing import Any, Self

import numpy as np
from sklearn.preprocessing import StandardScaler

from ._base import SelectionReport, listed


class ZScoreScaler(StandardScaler):
    """StandardScaler (mean 0, population SD 1 on the training rows) that also sets ``report_``.

    Constant training features keep scale 1 (sklearn's rule), so they become 0, and are named in the notes.
    """

    def fit(self, X: Any, y: Any = None, sample_weight: Any = None) -> Self:
        super().fit(X, y, sample_weight)
        names = np.asarray(self.get_feature_names_out(), dtype=object)
        constant = np.asarray(self.var_) == 0 if self.var_ is not None else np.zeros(len(names), bool)
        notes = []
        if constant.any():
            notes.append(f"{int(constant.sum())} constant feature(s) map to 0: {listed(names[constant])}")
        scale = self.scale_ if self.scale_ is not None else np.ones(len(names))
        self.report_ = SelectionReport(
            step="zscore",
            n_in=len(names),
            n_out=len(names),
            kept=tuple(map(str, names)),
            statistic_name="training_sd",
            statistic={str(n): float(s) for n, s in zip(names, scale, strict=True)},
            notes=tuple(notes),
        )
        return self
