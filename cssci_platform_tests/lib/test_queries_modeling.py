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


def test_wide_tables_are_read_in_patient_order_whatever_order_they_were_written_in(tmp_path: Path):
    """The wide reads are sorted after DuckDB returns them (its ORDER BY sorts whole rows: seconds for a matrix of
    thousands of columns), so their order must not depend on how the rows were written."""
    from cssci_platform.lib.queries.modeling import stored_feature_matrix
    from cssci_platform.lib.queries.report import harmonized_training_rows, training_feature_rows

    keys = ["p3", "p10", "p1", "p2"]  # written out of order; 'p10' < 'p2' as text
    with warehouse.connect(tmp_path / "w.duckdb") as con:
        for table in ("feature_matrix", "harmonized_features"):
            con.execute(f"CREATE TABLE {table} (patient_key VARCHAR, label VARCHAR, \"rad__a b\" DOUBLE)")
            for number, key in enumerate(keys):
                con.execute(f"INSERT INTO {table} VALUES (?, ?, ?)", [key, "1", float(number)])
        warehouse.replace_rows(con, "splits", {"split": "s"}, [
            {"split": "s", "fold": "holdout", "patient_key": key, "role": "train", "outcome": "y", "seed": 1}
            for key in keys])
        matrix = stored_feature_matrix(con)
        assert matrix["patient_key"].to_list() == ["p1", "p10", "p2", "p3"]
        assert matrix["rad__a b"].to_list() == [2.0, 1.0, 3.0, 0.0]  # each row kept whole
        for rows in (training_feature_rows(con, "s", "holdout"), harmonized_training_rows(con, "s", "holdout")):
            assert rows is not None and rows["patient_key"].to_list() == ["p1", "p10", "p2", "p3"]
            assert rows["rad__a b"].to_list() == [2.0, 1.0, 3.0, 0.0]
