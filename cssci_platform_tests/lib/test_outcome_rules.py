"""Derived study labels: thresholds, mean-change labels, and the leakage-safe training-mean variant."""

import numpy as np
import pandas as pd
import pytest

from cssci_platform.lib.outcome_rules import OutcomeRuleError, derive_labels, labels_above_training_mean


def test_at_least_includes_the_threshold_and_keeps_unknowns_unknown():
    scores = pd.Series(["36", "37", "50", None, "0"], index=list("abcde"))
    derived = derive_labels(scores, "at_least", threshold=37)
    assert derived["label"].tolist() == ["0", "1", "1", None, "0"]
    assert derived.loc["c", "score"] == 50.0 and np.isnan(derived.loc["d", "score"])


def test_change_above_mean_uses_development_patients_only():
    followup = pd.Series([30, 40, 20, 50, 45], index=list("abcde"), dtype=object)
    baseline = pd.Series([20, 20, 20, 20, 0], index=list("abcde"))
    development = pd.Series([True, True, True, True, False], index=list("abcde"))
    derived = derive_labels(followup, "change_above_mean", baseline=baseline, development=development)
    # changes 10, 20, 0, 30 (mean 15; e's change of 45 does not move it)
    assert derived["threshold"].iloc[0] == 15.0
    assert derived["label"].tolist() == ["0", "1", "0", "1", "1"]


def test_training_mean_ignores_test_and_validation_scores():
    scores = pd.Series([1.0, 2.0, 3.0, 100.0, 2.5], index=list("abcde"))
    roles = pd.Series(["train", "train", "train", "test", "validation"], index=list("abcde"))
    labels, threshold = labels_above_training_mean(scores, roles)
    assert threshold == 2.0
    assert labels.tolist() == ["0", "0", "1", "1", "1"]
    moved = scores.copy()
    moved["d"] = -100.0  # a test patient's score never changes the threshold
    assert labels_above_training_mean(moved, roles)[1] == threshold


def test_as_is_passes_labels_through():
    derived = derive_labels(pd.Series(["lung", None], index=["a", "b"]), "as_is")
    assert derived["label"].tolist() == ["lung", None]


def test_non_numeric_values_name_the_patient():
    with pytest.raises(OutcomeRuleError, match="patient 'b': outcome value 'good' is not a number"):
        derive_labels(pd.Series(["40", "good"], index=["a", "b"]), "at_least", threshold=37)
    with pytest.raises(OutcomeRuleError, match="no training patient has a score"):
        labels_above_training_mean(pd.Series([1.0], index=["a"]), pd.Series(["test"], index=["a"]))
