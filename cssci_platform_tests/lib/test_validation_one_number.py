"""One number per question (issue 16 bug 5): the report's validation table and `validation_metrics` give a champion
the same n, AUC, interval, Brier score and threshold metrics on the validation cohort, on a real DuckDB warehouse.

They disagreed: the report counted the training run's 'validation' predictions (patients present at training time),
`validation_metrics` the champion's `prospective_predictions` of any patient with an outcome. A patient who arrived
after training (V6) counted only in validation_metrics, one whose prospective scoring is missing (V5) only in the
report, and a development patient whose partition was scored prospectively (D09) was counted as validation."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from cssci_platform.lib import warehouse
from cssci_platform.lib.evaluation import auc_interval
from cssci_platform.lib.evaluation.prospective_validation import champion_validations
from cssci_platform.lib.queries.prospective import validation_cohort_scores
from cssci_platform.lib.report.tables import interval_text
from cssci_platform.lib.report.validation import validation_performance_frame, validation_table

OUTCOME = "good"
CHAMPION, OTHER = "run-champion", "run-other"
DEVELOPMENT = {f"D{i:02d}": str(i % 2) for i in range(1, 17)}  # D01-D08 train, D09-D16 test
VALIDATION = {"V1": "1", "V2": "0", "V3": "0", "V4": "1", "V5": "1", "V6": "0", "V7": None}  # V7: not yet known
TRAINING_TIME = {"V1": 0.8, "V2": 0.3, "V3": 0.6, "V4": 0.4, "V5": 0.7, "V7": 0.5}  # V6 arrived after training
PROSPECTIVE = {"V1": 0.8, "V2": 0.3, "V3": 0.6, "V4": 0.4, "V6": 0.65, "V7": 0.5, "D09": 0.2}  # V5 not scored
OTHER_MODEL = {"V1": 0.55, "V2": 0.45, "V3": 0.5, "V4": 0.52, "V5": 0.6, "V7": 0.5}


def build_warehouse(path: Path) -> None:
    """A trained study: a champion (registered version 3, frozen threshold 0.5) and another model, their training,
    test and validation predictions, the champion's prospective scores and the outcomes known today."""
    with warehouse.connect(path) as con:
        warehouse.append_rows(
            con,
            "patients",
            [{"patient_key": k, "center": "A", "cohort": "development"} for k in DEVELOPMENT]
            + [{"patient_key": k, "center": "A", "cohort": "prospective"} for k in VALIDATION],
        )
        warehouse.append_rows(
            con,
            "outcomes",
            [{"patient_key": k, "outcome": OUTCOME, "value": v} for k, v in {**DEVELOPMENT, **VALIDATION}.items()]
            + [{"patient_key": "V6", "outcome": "other", "value": "1"}],
        )
        model = {"signature": "Rad", "mode": "leakage_safe", "split": "holdout", "fold": "holdout"}
        warehouse.append_rows(
            con,
            "trained_models",
            [
                model
                | {
                    "result_name": "Rad_LR",
                    "run_id": CHAMPION,
                    "champion": True,
                    "registered_model": "s.Rad",
                    "model_version": "3",
                    "threshold": 0.5,
                },
                model | {"result_name": "Rad_SVM", "run_id": OTHER, "champion": False, "threshold": 0.5},
            ],
        )
        rng = np.random.default_rng(0)
        rows = []
        for run, validation in ((CHAMPION, TRAINING_TIME), (OTHER, OTHER_MODEL)):
            noise = rng.normal(0, 0.2, len(DEVELOPMENT))
            development = {
                k: float(np.clip(0.3 + 0.4 * int(v) + e, 0, 1)) for (k, v), e in zip(DEVELOPMENT.items(), noise)
            }
            for key, p in {**development, **validation}.items():
                role = "validation" if key in VALIDATION else ("train" if key <= "D08" else "test")
                label = DEVELOPMENT.get(key)  # validation outcomes were unknown when the models were trained
                row = {"patient_key": key, "role": role, "model_name": run, "label": label, "mode": "leakage_safe"}
                rows += [row | {"class_label": c, "probability": q} for c, q in (("0", 1 - p), ("1", p))]
        warehouse.append_rows(con, "predictions", rows)
        warehouse.append_rows(
            con,
            "prospective_predictions",
            [
                {
                    "patient_key": key,
                    "signature": "Rad",
                    "class_label": c,
                    "probability": q,
                    "registered_model": "s.Rad",
                    "model_version": "3",
                }
                for key, p in PROSPECTIVE.items()
                for c, q in (("0", 1 - p), ("1", p))
            ],
        )


@pytest.fixture
def study(tmp_path: Path) -> Path:
    path = tmp_path / "warehouse.duckdb"
    build_warehouse(path)
    return path


def test_the_validation_cohort_is_its_prospective_patients_with_a_known_outcome_each_scored_once(study: Path) -> None:
    with warehouse.connect(study, read_only=True) as con:
        scores = validation_cohort_scores(con, OUTCOME)
    champion = scores.filter(scores["train_run"] == CHAMPION)
    assert champion["patient_key"].to_list() == ["V1", "V2", "V3", "V4", "V5", "V6"]  # no D09, no V7, no duplicate
    assert dict(zip(champion["patient_key"], champion["scored_by"], strict=True)) == {
        **{k: "prospective_predictions" for k in ("V1", "V2", "V3", "V4", "V6")},
        "V5": "predictions",
    }
    other = scores.filter(scores["train_run"] == OTHER)
    assert other["patient_key"].to_list() == ["V1", "V2", "V3", "V4", "V5"] and set(other["scored_by"]) == {
        "predictions"
    }


def test_report_validation_table_and_validation_metrics_give_the_champion_one_number(study: Path) -> None:
    with warehouse.connect(study, read_only=True) as con:
        [stored] = champion_validations(con, OUTCOME)  # what the validation_metrics asset appends
        scores = validation_cohort_scores(con, OUTCOME).to_pandas()  # what the report reads (inputs.py)
    report = validation_performance_frame(scores)
    row = report[report["champion"]].iloc[0]
    assert (stored.registered_model, stored.model_version, stored.n_patients) == ("s.Rad", "3", 6)
    for metric, value in stored.metrics.items():
        assert row[metric] == pytest.approx(value, nan_ok=True), metric
    y = np.array([1, 0, 0, 1, 1, 0])
    p = np.array([0.8, 0.3, 0.6, 0.4, 0.7, 0.65])
    expected = auc_interval(y, p)
    assert (stored.metrics["auc"], stored.metrics["auc_low"]) == pytest.approx((expected.auc, expected.low))
    table = validation_table(scores)
    shown = table.frame.set_index("Model").loc["Rad_LR (champion)"]
    assert shown["n"] == 6 and shown["AUC (95% CI)"] == interval_text(expected.auc, expected.low, expected.high)
    assert shown["Sen"] == pytest.approx(stored.metrics["sensitivity"])
    other = table.frame.set_index("Model").loc["Rad_SVM"]
    assert other["n"] == 5 and list(table.frame["Model"]) == ["Rad_LR (champion)", "Rad_SVM"]
    assert "validation_metrics" in table.caption


def test_an_empty_validation_cohort_says_so(tmp_path: Path) -> None:
    path = tmp_path / "empty.duckdb"
    with warehouse.connect(path) as con:
        scores = validation_cohort_scores(con, OUTCOME).to_pandas()
        assert champion_validations(con, OUTCOME) == []
    table = validation_table(scores)
    assert table.frame.empty and "No validation-cohort patient" in table.caption


def test_each_folds_model_is_its_own_row_so_no_patient_counts_twice(study: Path) -> None:
    """A split with several folds trains one model per fold, each scoring the validation cohort: the table keeps
    them apart (a Fold column) instead of pooling a patient's scores from every fold into one AUC."""
    with warehouse.connect(study) as con:
        warehouse.append_rows(
            con,
            "trained_models",
            [
                {
                    "result_name": "Rad_SVM",
                    "signature": "Rad",
                    "mode": "leakage_safe",
                    "fold": "center_B",
                    "run_id": "run-other-B",
                    "champion": False,
                    "threshold": 0.5,
                }
            ],
        )
        warehouse.append_rows(
            con,
            "predictions",
            [
                {"patient_key": k, "role": "validation", "model_name": "run-other-B", "mode": "leakage_safe"}
                | {"class_label": c, "probability": q}
                for k, p in OTHER_MODEL.items()
                for c, q in (("0", 1 - p), ("1", p))
            ],
        )
        scores = validation_cohort_scores(con, OUTCOME).to_pandas()
    table = validation_table(scores).frame
    assert list(table.columns[:3]) == ["Model", "Mode", "Fold"]
    other = table[table["Model"] == "Rad_SVM"]
    assert sorted(other["Fold"]) == ["center_B", "holdout"] and list(other["n"]) == [5, 5]
