"""mRMR (FCQ variant): F-test relevance over mean |Pearson| redundancy to the features already selected.

Reproduces ``mrmr.mrmr_classif(X, y, K)`` of the maintained mrmr-selection package (defaults
``relevance="f"``, ``redundancy="c"``, ``denominator="mean"``), vectorized and without its side effects
(it silences all Python warnings on import and spawns worker processes):

* relevance = ANOVA F of the feature against the classes; features with F <= 0 are never selected;
* step 1 picks the most relevant feature; step i picks argmax relevance / mean(|r| to the selected ones),
  with |r| floored at 0.001 and a mean of exactly 1 treated as infinite redundancy (score 0);
* ties go to the earlier column.
"""

from __future__ import annotations

from typing import Any, Self

import numpy as np
from sklearn.feature_selection import f_classif

from ._base import OnConstant, ReportingSelector, class_codes

REDUNDANCY_FLOOR = 0.001  # mrmr-selection's FLOOR


def mrmr_order(X: np.ndarray, codes: np.ndarray, k: int) -> tuple[list[int], np.ndarray, list[float]]:
    """(selected column indices in selection order, F relevance of every column, mRMR score at each pick)."""
    relevance = np.nan_to_num(f_classif(X, codes)[0], nan=0.0)
    candidates = relevance > 0
    standardized = (X - X.mean(axis=0)) / X.std(axis=0)
    redundancy_sum = np.zeros(X.shape[1])
    selected: list[int] = []
    scores: list[float] = []
    for step in range(min(k, int(candidates.sum()))):
        if step == 0:
            score = relevance.copy()
        else:
            last = standardized[:, selected[-1]]
            abs_r = np.abs(np.nan_to_num(standardized.T @ last / X.shape[0], nan=REDUNDANCY_FLOOR))
            redundancy_sum += np.maximum(abs_r, REDUNDANCY_FLOOR)
            mean_redundancy = redundancy_sum / len(selected)
            score = relevance / np.where(mean_redundancy == 1.0, np.inf, mean_redundancy)
        score = np.where(candidates, score, -np.inf)
        best = int(np.argmax(score))
        selected.append(best)
        scores.append(float(score[best]))
        candidates[best] = False
    return selected, relevance, scores


class MRMRSelector(ReportingSelector):
    """Keep the ``k`` features mRMR picks first (fewer, with a note, when fewer have positive relevance)."""

    step_name = "mrmr"
    supervised = True

    def __init__(self, k: int = 20, on_constant: OnConstant = "error") -> None:
        self.k = k
        self.on_constant = on_constant

    def fit(self, X: Any, y: Any = None) -> Self:
        if not isinstance(self.k, int | np.integer) or self.k < 1:
            raise ValueError(f"{self.step_name}: k must be a positive integer, got {self.k!r}")
        X_arr, names = self._validated(X)
        codes, _ = class_codes(y, X_arr.shape[0], self.step_name)
        usable, notes = self._usable_columns(X_arr, names, self.on_constant)
        usable_index = np.flatnonzero(usable)
        picked, relevance, scores = mrmr_order(X_arr[:, usable], codes, self.k)
        selected = usable_index[picked]
        if len(selected) < self.k:
            notes.append(f"kept {len(selected)} < k={self.k}: only {len(selected)} feature(s) available with F > 0")
        support = np.zeros(len(names), dtype=bool)
        support[selected] = True
        order = [str(names[i]) for i in selected]
        details = {"k": self.k, "selection_order": order, "mrmr_score_at_pick": scores}
        statistic = dict(zip(names[usable], relevance, strict=True))
        return self._finish(names, support, "f_relevance", statistic, notes, details)
