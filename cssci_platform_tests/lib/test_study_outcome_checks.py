"""The study outcome against the manifest: names and types checked, labels derived with a named error, summarized."""

import math

import pandas as pd
import pytest

from cssci_platform.lib.cohort import CohortSpec
from cssci_platform.lib.outcome_rules import (
    OutcomeRuleError,
    OutcomeSettings,
    check_baseline,
    check_outcome_names,
    class_counts_table,
    label_summary,
    study_labels,
)

SPEC = CohortSpec(
    manifest_version=1, name="c", table="t.csv", centers=["A"], sequences=["sag_T2"], rois=["lesion"],
    clinical={"uems_admission": {"type": "continuous"}, "sex": {"type": "binary"}},
    outcomes={"uems_1y": {"type": "continuous"}, "ais_grade": {"type": "multiclass", "levels": ["A", "B", "C"]}},
)
IMPROVED = OutcomeSettings(name="improved", source="uems_1y", rule="change_above_mean", baseline="uems_admission")


def test_valid_outcomes_pass():
    check_outcome_names(IMPROVED, SPEC)
    check_outcome_names(OutcomeSettings(name="ais_grade"), SPEC)
    check_baseline("uems_admission", SPEC)


@pytest.mark.parametrize(
    ("settings", "message"),
    [
        (OutcomeSettings(name="x", source="uems_2y", rule="at_least", threshold=3), "not declared in the manifest"),
        (OutcomeSettings(name="x", source="ais_grade", rule="at_least", threshold=3), "needs a continuous outcome"),
        (OutcomeSettings(name="ais_grade", source="uems_1y", rule="at_least", threshold=3), "already a manifest"),
    ],
)
def test_names_and_types_that_cannot_work_are_refused(settings: OutcomeSettings, message: str):
    with pytest.raises(OutcomeRuleError, match=message):
        check_outcome_names(settings, SPEC)


@pytest.mark.parametrize("variable", ["sex", "weight", None])
def test_the_baseline_must_be_a_continuous_clinical_variable(variable):
    with pytest.raises(OutcomeRuleError, match=r"continuous: \['uems_admission'\]"):
        check_baseline(variable, SPEC)


def test_study_labels_use_the_development_mean_change_and_summarize():
    raw = pd.DataFrame(
        {"value": ["30", "40", "20", "50", None], "cohort": ["development"] * 3 + ["prospective", "development"]},
        index=list("abcde"),
    )
    baseline = pd.Series([20.0, 20.0, 20.0, 0.0, 10.0], index=list("abcde"))
    derived = study_labels(IMPROVED, raw, baseline)
    assert derived["label"].tolist() == ["0", "1", "0", "1", None]  # development changes 10, 20, 0: mean 10
    assert label_summary(IMPROVED, derived) == {
        "outcome": "improved", "source": "uems_1y", "rule": "change_above_mean", "threshold": 10.0,
        "labelled": 4, "unknown": 1,
    }
    assert class_counts_table(derived).splitlines() == ["| label | patients |", "|---|---|", "| 0 | 2 |", "| 1 | 2 |"]


def test_a_rule_that_cannot_be_applied_names_the_outcome_source_and_rule():
    raw = pd.DataFrame({"value": ["30", "x"], "cohort": ["development"] * 2}, index=["a", "b"])
    named = r"^outcome 'improved' from 'uems_1y' \(change_above_mean\): patient 'b'"
    with pytest.raises(OutcomeRuleError, match=named):
        study_labels(IMPROVED, raw, pd.Series([1.0, 2.0], index=["a", "b"]))


def test_a_summary_without_patients_has_no_threshold():
    empty = study_labels(OutcomeSettings(name="x", source="uems_1y", rule="at_least", threshold=3.0),
                         pd.DataFrame({"value": [], "cohort": []}), None)
    summary = label_summary(OutcomeSettings(name="x", source="uems_1y", rule="at_least", threshold=3.0), empty)
    assert math.isnan(summary["threshold"]) and summary["labelled"] == 0
