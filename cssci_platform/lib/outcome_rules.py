"""Labels derived from the manifest's outcome columns, as the published protocols define them.

`derive_labels` computes a study label for every patient whose inputs are known:
- ``as_is``: the outcome value itself;
- ``at_least``: 1 if the numeric outcome >= threshold, else 0 (e.g. IANR-SCIFRS >= 37 at 6 months);
- ``change_above_mean``: change = outcome - baseline; 1 if the change is above the mean change of the
  development patients (the published definition). `labels_above_training_mean` redefines it per fold
  with the training patients' mean, which is what leakage-safe modelling uses.
"""

from __future__ import annotations

from typing import Literal

import numpy as np
import pandas as pd

Rule = Literal["as_is", "at_least", "change_above_mean"]
SCORE_SUFFIX = "__score"  # `outcomes` rows `<label name>__score` hold the quantity a rule thresholds


class OutcomeRuleError(ValueError):
    """An outcome rule cannot be applied; the message names the patient or column and the fix."""


def derive_labels(outcome: pd.Series, rule: Rule, threshold: float | None = None, baseline: pd.Series | None = None,
                  development: pd.Series | None = None) -> pd.DataFrame:
    """Per patient (index): `label` (string, None when unknown) and `score` (the numeric quantity thresholded,
    NaN for `as_is`). `outcome`/`baseline` are raw values by patient; `development` marks whose scores define
    the cohort mean (default: everyone with a score)."""
    if rule == "as_is":
        labels = outcome.where(outcome.notna(), None).astype(object)
        return pd.DataFrame({"label": labels, "score": np.nan}, index=outcome.index)
    score = _numeric(outcome, "outcome")
    if rule == "at_least":
        if threshold is None:
            raise OutcomeRuleError("rule 'at_least' needs a threshold")
        return _thresholded(score, threshold, strictly_above=False)
    if baseline is None:
        raise OutcomeRuleError("rule 'change_above_mean' needs the baseline variable")
    change = score - _numeric(baseline.reindex(score.index), "baseline")
    known = change.notna() if development is None else change.notna() & development.reindex(change.index).fillna(False).astype(bool)
    if not known.any():
        raise OutcomeRuleError("no development patient has both the outcome and the baseline value, so the mean change is undefined")
    return _thresholded(change, float(change[known].mean()), strictly_above=True)


def labels_above_training_mean(scores: pd.Series, roles: pd.Series) -> tuple[pd.Series, float]:
    """Labels from `scores` thresholded at the mean score of the patients whose role is `train` (never the test
    or validation patients): the leakage-safe version of ``change_above_mean``."""
    train = scores[roles.reindex(scores.index).eq("train") & scores.notna()]
    if train.empty:
        raise OutcomeRuleError("no training patient has a score, so the training mean is undefined")
    threshold = float(train.mean())
    return _thresholded(scores, threshold, strictly_above=True)["label"], threshold


def _thresholded(score: pd.Series, threshold: float, strictly_above: bool) -> pd.DataFrame:
    positive = score > threshold if strictly_above else score >= threshold
    labels = pd.Series(np.where(positive, "1", "0"), index=score.index, dtype=object).where(score.notna(), None)
    return pd.DataFrame({"label": labels, "score": score, "threshold": threshold}, index=score.index)


def _numeric(values: pd.Series, what: str) -> pd.Series:
    numbers = pd.to_numeric(values, errors="coerce")
    bad = values[numbers.isna() & values.notna()]
    if not bad.empty:
        patient, value = next(iter(bad.items()))
        raise OutcomeRuleError(f"patient '{patient}': {what} value {value!r} is not a number; the rule needs numeric values "
                               f"({len(bad)} patient(s) affected) - correct the manifest or follow-up file")
    return numbers.astype(float)
