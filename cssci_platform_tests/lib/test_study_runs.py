"""`compare_runs`: which rows are matched, and the B-A columns (the MLflow side is covered by test_cli's compare)."""

import math

import pandas as pd

from cssci_platform.lib.study_runs import COMPARED_METRICS, RunReference, compare_runs


def metrics(model: str, mode: str, test_auc: float) -> dict[str, object]:
    row = {key: None for _, key in COMPARED_METRICS}
    return row | {
        "model": model,
        "mode": mode,
        "fold": "holdout",
        "cv_auc_mean": 0.7,
        "test_n": 12,
        "test_auc": test_auc,
    }


def test_two_single_mode_selections_match_on_the_model_alone():
    left = pd.DataFrame([metrics("Rad_LR", "leakage_safe", 0.70), metrics("Clinical_LR", "leakage_safe", 0.60)])
    right = pd.DataFrame([metrics("Rad_LR", "paper_faithful", 0.80), metrics("Clinical_LR", "paper_faithful", 0.65)])
    table = compare_runs(left, right, "A", "B").set_index("model")
    assert "mode" not in table.columns and len(table) == 2
    assert math.isclose(table.loc["Rad_LR", "test AUC B-A"], 0.10)
    assert math.isclose(table.loc["Clinical_LR", "test AUC B-A"], 0.05)
    assert not any(c.startswith(("test macro AUC", "validation AUC")) for c in table.columns)  # metrics neither run has


def test_a_run_with_both_modes_is_matched_mode_by_mode():
    left = pd.DataFrame([metrics("Clinical_LR", "leakage_safe", 0.70), metrics("Clinical_LR", "paper_faithful", 0.90)])
    right = pd.DataFrame([metrics("Clinical_LR", "leakage_safe", 0.75)])
    table = compare_runs(left, right, "A", "B").set_index("mode")
    assert len(table) == 2
    assert math.isclose(table.loc["leakage_safe", "test AUC B-A"], 0.05)
    assert math.isnan(table.loc["paper_faithful", "test AUC B"])  # not paired with the other mode's row


def test_run_reference_mode_suffix():
    assert RunReference.parse("demo:paper_faithful") == RunReference("demo", "paper_faithful")
    assert RunReference.parse("0123abcd") == RunReference("0123abcd", None)
