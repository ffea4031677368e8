"""Splits: stratification, determinism, and that prospective / unlabelled patients never reach training."""

from __future__ import annotations

import polars as pl
import pytest

from cssci_platform.lib.splits import PRESETS, SplitError, SplitSpec, assign_splits, training_patients


def cohort(n_per_center: int = 30, centers: tuple[str, ...] = ("A", "B", "C")) -> pl.DataFrame:
    rows = []
    for center in centers:
        for i in range(n_per_center):
            rows.append(
                {
                    "patient_key": f"{center}{i:03d}",
                    "center": center,
                    "cohort": "development",
                    "label": "1" if i % 3 == 0 else "0",
                }
            )
    rows += [
        {"patient_key": "P001", "center": "A", "cohort": "prospective", "label": "1"},
        {"patient_key": "P002", "center": "B", "cohort": "prospective", "label": None},
        {"patient_key": "U001", "center": "C", "cohort": "development", "label": None},
    ]
    return pl.DataFrame(rows)


@pytest.mark.parametrize(("preset", "fraction"), [("holdout_8_2", 0.2), ("holdout_7_3", 0.3)])
def test_holdout_presets_are_stratified_with_the_declared_fraction(preset: str, fraction: float) -> None:
    patients = cohort()
    splits = assign_splits(patients, PRESETS[preset])
    joined = splits.join(patients, on="patient_key")
    test = joined.filter(pl.col("role") == "test")
    assert test.height == round(90 * fraction)
    positive_share = (test["label"] == "1").mean()
    assert abs(positive_share - 1 / 3) < 0.05
    assert set(splits["fold"]) == {"holdout"} and splits["split"][0] == PRESETS[preset].name


def test_prospective_and_unlabelled_patients_are_never_training_in_any_strategy() -> None:
    patients = cohort()
    for spec in (
        PRESETS["holdout_8_2"],
        PRESETS["leave_one_center_out"],
        SplitSpec("repeated_kfold", n_splits=5, n_repeats=2),
    ):
        splits = assign_splits(patients, spec)
        roles = dict(
            splits.filter(pl.col("patient_key").is_in(["P001", "P002", "U001"]))
            .select("patient_key", "role")
            .unique()
            .iter_rows()
        )
        assert roles == {"P001": "validation", "P002": "validation", "U001": "excluded"}
        for fold in set(splits["fold"]):
            assert not {"P001", "P002", "U001"} & set(training_patients(splits, fold))


def test_same_seed_same_split_whatever_the_row_order_and_another_seed_differs() -> None:
    patients = cohort()
    first = assign_splits(patients, SplitSpec(seed=3)).sort("patient_key")
    again = assign_splits(patients.reverse(), SplitSpec(seed=3)).sort("patient_key")
    other = assign_splits(patients, SplitSpec(seed=4)).sort("patient_key")
    assert first.equals(again)
    assert not first["role"].equals(other["role"])


def test_leave_one_center_out_holds_out_exactly_one_center_per_fold() -> None:
    patients = cohort()
    splits = assign_splits(patients, PRESETS["leave_one_center_out"]).join(patients, on="patient_key")
    assert sorted(set(splits["fold"])) == ["A", "B", "C"]
    for center in "ABC":
        fold = splits.filter(
            (pl.col("fold") == center) & (pl.col("cohort") == "development") & pl.col("label").is_not_null()
        )
        assert set(fold.filter(pl.col("role") == "test")["center"]) == {center}
        assert center not in set(fold.filter(pl.col("role") == "train")["center"])


def test_repeated_kfold_puts_every_labelled_patient_in_test_once_per_repeat() -> None:
    patients = cohort()
    splits = assign_splits(patients, SplitSpec("repeated_kfold", n_splits=5, n_repeats=3, seed=1))
    tests = splits.filter(pl.col("role") == "test").with_columns(repeat=pl.col("fold").str.slice(0, 2))
    per_patient = tests.group_by("patient_key", "repeat").len()
    assert per_patient["len"].to_list() == [1] * (90 * 3)
    assert len(set(splits["fold"])) == 15


def test_too_few_patients_per_class_is_a_precise_error() -> None:
    patients = cohort(n_per_center=4)
    with pytest.raises(SplitError, match="at least 10 labelled patients per class"):
        assign_splits(patients, SplitSpec("repeated_kfold", n_splits=10))
    with pytest.raises(SplitError, match="at least 2 outcome classes"):
        assign_splits(patients.with_columns(label=pl.lit("1")), SplitSpec())
    with pytest.raises(SplitError, match="at least 2 centers"):
        assign_splits(cohort(centers=("A",)), PRESETS["leave_one_center_out"])
    with pytest.raises(SplitError, match="duplicate patients"):
        assign_splits(pl.concat([patients, patients.head(1)]), SplitSpec())
