"""Labels derived from the manifest's outcome columns, as the published protocols define them.

`derive_labels` computes a study label for every patient whose inputs are known:
- ``as_is``: the outcome value itself;
- ``at_least``: 1 if the numeric outcome >= threshold, else 0 (e.g. IANR-SCIFRS >= 37 at 6 months);
- ``change_above_mean``: change = outcome - baseline; 1 if the change is above the mean change of the
  development patients (the published definition). `labels_above_training_mean` redefines it per fold
  with the training patients' mean, which is what leakage-safe modelling uses.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Literal

import numpy as np
from pydantic import Field, model_validator

from cssci_platform.lib.messages import markdown_table
from cssci_platform.lib.settings import Section

if TYPE_CHECKING:
    import pandas as pd

    from cssci_platform.lib.cohort import CohortSpec

Rule = Literal["as_is", "at_least", "change_above_mean"]
SCORE_SUFFIX = "__score"  # `outcomes` rows `<label name>__score` hold the quantity a rule thresholds
NAME = r"^[A-Za-z][A-Za-z0-9_\-]*$"


class OutcomeSettings(Section):
    """How the modelled label is derived from the manifest's outcome columns (study config section `outcome`).

    - `as_is`: the manifest outcome `source` is the label (binary or multiclass).
    - `at_least`: label 1 when the numeric outcome `source` >= `threshold` (e.g. IANR score >= 37).
    - `change_above_mean`: change = `source` - `baseline` (a clinical variable at admission); label 1 when the
      change is above the mean change. In leakage_safe mode the mean is taken over the training patients of
      each fold; in paper_faithful mode over the whole development cohort, as published. The split is
      stratified on the cohort-mean label (stratification only balances the split; no model sees it).
    """

    name: str = Field(pattern=NAME)
    source: str | None = None
    rule: Rule = "as_is"
    threshold: float | None = None
    baseline: str | None = None

    @model_validator(mode="after")
    def _rule_fields(self) -> OutcomeSettings:
        if self.rule == "at_least" and self.threshold is None:
            raise ValueError("rule 'at_least' needs 'threshold' (the lowest score counted as the positive class)")
        if self.rule == "change_above_mean" and self.baseline is None:
            raise ValueError("rule 'change_above_mean' needs 'baseline' (the clinical variable measured at admission)")
        if self.rule != "at_least" and self.threshold is not None:
            raise ValueError(f"'threshold' only applies to rule 'at_least', not '{self.rule}'")
        if self.rule != "change_above_mean" and self.baseline is not None:
            raise ValueError(f"'baseline' only applies to rule 'change_above_mean', not '{self.rule}'")
        if self.rule != "as_is" and self.source is None:
            raise ValueError(f"rule '{self.rule}' needs 'source' (the manifest outcome column it is computed from)")
        return self

    @property
    def source_outcome(self) -> str:
        return self.source or self.name

    @property
    def relabelled_per_fold(self) -> bool:
        """Whether leakage_safe models re-threshold the scores at each fold's training mean
        (`labels_above_training_mean`) instead of using the stored cohort-mean labels: rule change_above_mean."""
        return self.rule == "change_above_mean"


class OutcomeRuleError(ValueError):
    """An outcome rule cannot be applied; the message names the patient or column and the fix."""


def derive_labels(
    outcome: pd.Series,
    rule: Rule,
    threshold: float | None = None,
    baseline: pd.Series | None = None,
    development: pd.Series | None = None,
) -> pd.DataFrame:
    """Per patient (index): `label` (string, None when unknown) and `score` (the numeric quantity thresholded,
    NaN for `as_is`). `outcome`/`baseline` are raw values by patient; `development` marks whose scores define
    the cohort mean (default: everyone with a score)."""
    import pandas as pd

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
    known = (
        change.notna()
        if development is None
        else change.notna() & development.reindex(change.index).fillna(False).astype(bool)
    )
    if not known.any():
        raise OutcomeRuleError(
            "no development patient has both the outcome and the baseline value, so the mean change is undefined"
        )
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
    import pandas as pd

    positive = score > threshold if strictly_above else score >= threshold
    labels = pd.Series(np.where(positive, "1", "0"), index=score.index, dtype=object).where(score.notna(), None)
    return pd.DataFrame({"label": labels, "score": score, "threshold": threshold}, index=score.index)


def _numeric(values: pd.Series, what: str) -> pd.Series:
    import pandas as pd

    numbers = pd.to_numeric(values, errors="coerce")
    bad = values[numbers.isna() & values.notna()]
    if not bad.empty:
        patient, value = next(iter(bad.items()))
        raise OutcomeRuleError(
            f"patient '{patient}': {what} value {value!r} is not a number; the rule needs numeric values "
            f"({len(bad)} patient(s) affected) - correct the manifest or follow-up file"
        )
    return numbers.astype(float)


def derived_outcome_names(label: str, source_outcome: str) -> tuple[str, ...]:
    """The `outcomes` rows study_outcome writes: the study's label and the quantity its rule thresholds (what
    `label_rows` makes), when the label is derived from another outcome; none when the manifest column is the label."""
    return () if label == source_outcome else (label, label + SCORE_SUFFIX)


def label_rows(derived: pd.DataFrame, dates: pd.Series, name: str) -> list[dict]:
    """`outcomes` rows of a derived label: `<name>` (the label) and `<name>__score` (the thresholded quantity) per
    patient with a known label, dated as the source outcome."""
    import pandas as pd

    rows = []
    for key, label, score in derived[["label", "score"]].itertuples():
        if label is None:
            continue
        date = dates.get(key)
        date = None if date is None or pd.isna(date) else date
        rows.append({"patient_key": key, "outcome": name, "value": label, "outcome_date": date})
        if pd.notna(score):
            rows.append(
                {"patient_key": key, "outcome": name + SCORE_SUFFIX, "value": repr(float(score)), "outcome_date": date}
            )
    return rows


def check_outcome_names(settings: OutcomeSettings, spec: CohortSpec) -> None:
    """OutcomeRuleError unless the manifest declares the source outcome, the rule fits its type and a derived label's
    name is not already a manifest outcome."""
    declared, name, source = list(spec.outcomes), settings.name, settings.source_outcome
    if source not in spec.outcomes:
        raise OutcomeRuleError(
            f"outcome source '{source}' is not declared in the manifest (outcomes: {declared}); "
            "set outcome.source in the experiment config or declare it under outcomes: in cohort.yaml"
        )
    if settings.rule != "as_is" and spec.outcomes[source].type != "continuous":
        raise OutcomeRuleError(
            f"rule '{settings.rule}' needs a continuous outcome, but '{source}' is {spec.outcomes[source].type}"
        )
    if name in spec.outcomes and name != source:
        raise OutcomeRuleError(
            f"outcome name '{name}' is already a manifest outcome; choose another name for the derived label"
        )


def check_baseline(variable: str | None, spec: CohortSpec) -> None:
    """OutcomeRuleError unless `variable` (rule change_above_mean's baseline) is a continuous clinical variable."""
    if variable not in spec.clinical or spec.clinical[variable].type != "continuous":
        raise OutcomeRuleError(
            f"baseline '{variable}' must be a continuous clinical variable of the manifest "
            f"(continuous: {[n for n, v in spec.clinical.items() if v.type == 'continuous']})"
        )


def study_labels(settings: OutcomeSettings, raw: pd.DataFrame, baseline: pd.Series | None) -> pd.DataFrame:
    """`derive_labels` of the study's rule on the source outcome rows (`raw`: value, cohort by patient); the mean
    change of change_above_mean over the development cohort. Errors name the outcome, its source and the rule."""
    try:
        return derive_labels(
            raw["value"], settings.rule, settings.threshold, baseline, development=raw["cohort"] == "development"
        )
    except OutcomeRuleError as error:
        raise OutcomeRuleError(
            f"outcome '{settings.name}' from '{settings.source_outcome}' ({settings.rule}): {error}"
        ) from None


def label_summary(settings: OutcomeSettings, derived: pd.DataFrame) -> dict[str, str | float | int]:
    """outcome, source, rule, threshold (NaN when the rule has none), labelled and unknown patient counts."""
    return {
        "outcome": settings.name,
        "source": settings.source_outcome,
        "rule": settings.rule,
        "threshold": float(derived["threshold"].iloc[0]) if "threshold" in derived and len(derived) else float("nan"),
        "labelled": int(derived["label"].notna().sum()),
        "unknown": int(derived["label"].isna().sum()),
    }


def class_counts_table(derived: pd.DataFrame) -> str:
    """A markdown table of patients per label."""
    return markdown_table(["label", "patients"], derived["label"].value_counts().sort_index().items())
