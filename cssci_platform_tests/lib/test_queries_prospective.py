"""The prospective loop's named reads on a real DuckDB warehouse file."""

from pathlib import Path

from cssci_platform.lib import warehouse
from cssci_platform.lib.queries import prospective


def _scored_warehouse(path: Path) -> None:
    with warehouse.connect(path) as con:
        warehouse.append_rows(
            con,
            "patients",
            [{"patient_key": k, "cohort": "prospective"} for k in ("N1", "N2", "N3")]
            + [{"patient_key": k, "cohort": "development"} for k in ("T1", "T2")],
        )
        warehouse.append_rows(
            con,
            "trained_models",
            [
                {
                    "signature": "Rad",
                    "registered_model": "s_Rad",
                    "model_version": "2",
                    "champion": True,
                    "threshold": 0.4,
                    "run_id": "run-2",
                },
                {
                    "signature": "Rad",
                    "registered_model": "s_Rad",
                    "model_version": "1",
                    "champion": False,
                    "threshold": 0.6,
                    "run_id": "run-1",
                },
            ],
        )
        warehouse.append_rows(
            con,
            "prospective_predictions",
            [
                {
                    "patient_key": key,
                    "signature": "Rad",
                    "class_label": label,
                    "probability": p,
                    "registered_model": "s_Rad",
                    "model_version": "2",
                }
                for key, p1 in (("N1", 0.8), ("N2", 0.3), ("N3", 0.5), ("T1", 0.9))
                for label, p in (("0", 1 - p1), ("1", p1))
            ],
        )
        warehouse.append_rows(
            con,
            "outcomes",
            [
                {"patient_key": "N1", "outcome": "good", "value": "1"},
                {"patient_key": "N2", "outcome": "good", "value": "0"},
                {"patient_key": "N3", "outcome": "good", "value": None},
                {"patient_key": "N1", "outcome": "other", "value": "0"},
                {"patient_key": "T1", "outcome": "good", "value": "1"},
                {"patient_key": "T2", "outcome": "good", "value": "0"},
            ],
        )
        warehouse.append_rows(
            con,
            "predictions",
            [
                {"patient_key": key, "role": role, "class_label": label, "probability": p, "model_name": "run-2"}
                for key, role in (("T1", "test"), ("T2", "test"), ("N1", "train"))
                for label, p in (("0", 0.5), ("1", 0.5))
            ],
        )


def test_validation_cohort_scores_join_the_modelled_outcome_and_the_champion_version(tmp_path: Path) -> None:
    path = tmp_path / "w.duckdb"
    _scored_warehouse(path)
    with warehouse.connect(path, read_only=True) as con:
        scored = prospective.validation_cohort_scores(con, "good")
        champions = prospective.champions(con)
        tests = prospective.champion_test_predictions(con, "run-2", "good")
    # N3's outcome has not arrived; the `other` outcome is not the modelled one; only the positive class is scored;
    # T1 is a development patient (scored prospectively, yet not the validation cohort)
    assert scored.select("patient_key", "outcome", "probability", "threshold", "train_run").rows() == [
        ("N1", "1", 0.8, 0.4, "run-2"),
        ("N2", "0", 0.3, 0.4, "run-2"),
    ]
    assert champions.rows() == [("Rad", "s_Rad", 0.4)]
    assert sorted(tests.select("class_label", "value").rows()) == [("1", "0"), ("1", "1")]  # test role only
