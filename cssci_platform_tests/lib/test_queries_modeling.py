"""The named reads of the modelling tables, on a real DuckDB warehouse."""

from pathlib import Path

from cssci_platform.lib import warehouse
from cssci_platform.lib.queries.modeling import modelled_outcome, split_folds, split_roles, stored_splits


def _splits(con, split: str, outcome: str, folds: list[str]) -> None:
    rows = [
        {"split": split, "fold": fold, "patient_key": key, "role": role, "outcome": outcome, "seed": 1}
        for fold in folds
        for key, role in (("p1", "train"), ("p2", "test"))
    ]
    warehouse.replace_rows(con, "splits", {"split": split}, rows)


def test_modelled_outcome_is_the_one_recorded_with_the_trained_models_split(tmp_path: Path):
    with warehouse.connect(tmp_path / "w.duckdb") as con:
        assert modelled_outcome(con) is None  # nothing split yet
        _splits(con, "holdout_8_2_seed42", "ianr_improved", ["holdout"])
        assert modelled_outcome(con) == "ianr_improved"  # the only split
        _splits(con, "leave_one_center_out", "ais_grade", ["A", "B"])
        assert modelled_outcome(con) is None  # two splits, no models: ambiguous
        assert modelled_outcome(con, "leave_one_center_out") == "ais_grade"
        warehouse.append_rows(con, "trained_models", [{"result_name": "Rad_LR", "split": "holdout_8_2_seed42"}])
        assert modelled_outcome(con) == "ianr_improved"


def test_split_reads(tmp_path: Path):
    with warehouse.connect(tmp_path / "w.duckdb") as con:
        _splits(con, "leave_one_center_out", "y", ["B", "A"])
        assert stored_splits(con) == ["leave_one_center_out"]
        assert split_folds(con, "leave_one_center_out") == ["A", "B"]
        assert split_roles(con, "leave_one_center_out", "A") == {"p1": "train", "p2": "test"}
        assert split_roles(con, "leave_one_center_out", "C") == {}
