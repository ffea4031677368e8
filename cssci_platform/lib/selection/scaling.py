"""z-score: scikit-learn's StandardScaler plus the step report the modeling code logs."""

from __future__ import annotations

from typing import Any, Self

import numpy as np
from sklearn.preprocessing import StandardScaler

from cssci_platform.lib.compact_state import CompactNames

from ._base import SelectionReport, listed

NOISE_SD_RATIO = 1e-12


class ZScoreScaler(CompactNames, StandardScaler):
    """StandardScaler (mean 0, population SD 1 on the training rows) that also sets ``report_``.

    Constant training features keep scale 1 (sklearn's rule), so they become ~0, and are named in the notes. So do
    near-constant ones, whose SD is numerical noise: below `NOISE_SD_RATIO` of their |mean| or of the largest SD
    among the features (e.g. a null PCA component: dividing by its 1e-16 SD would send new patients to 1e13).
    """

    scale_: np.ndarray | None  # set by StandardScaler.fit; None when with_std=False

    def fit(self, X: Any, y: Any = None, sample_weight: Any = None) -> Self:
        super().fit(X, y, sample_weight)
        names = np.asarray(self.get_feature_names_out(), dtype=object)
        constant = np.asarray(self.var_) == 0 if self.var_ is not None else np.zeros(len(names), bool)
        if self.scale_ is not None and len(names):
            sd = np.sqrt(np.asarray(self.var_))
            noise = (sd <= NOISE_SD_RATIO * np.abs(np.asarray(self.mean_))) | (sd <= NOISE_SD_RATIO * sd.max())
            self.scale_ = np.where(noise, 1.0, self.scale_)
            constant = constant | noise
        notes = []
        if constant.any():
            notes.append(f"{int(constant.sum())} constant or near-constant (SD ~ 0) feature(s) map to ~0, not scaled: "
                         f"{listed(names[constant])}")
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
