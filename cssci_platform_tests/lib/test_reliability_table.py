"""The ICC table of repeat segmentations (`reliability_table`), on small long tables."""

import numpy as np
import pandas as pd
import pytest

from cssci_platform.lib.selection import icc, ratings_from_long, reliability_table


def _rows(n_patients: int, noise: dict[str, float], seed: int = 0) -> pd.DataFrame:
    """patient_key, segmentation, feature, value: features f0..f2 of `n_patients`, a primary segmentation plus one
    repeat per `noise` entry (rater -> noise SD)."""
    rng = np.random.default_rng(seed)
    rows = []
    for patient in range(n_patients):
        truth = rng.normal(size=3) * 3
        for segmentation, sd in {"primary": 0.0, **noise}.items():
            rows += [
                {"patient_key": f"p{patient}", "segmentation": segmentation, "feature": f"f{i}",
                 "value": float(v + rng.normal(0, sd) if sd else v)}
                for i, v in enumerate(truth)
            ]
    return pd.DataFrame(rows)


def test_both_kinds_per_feature_match_icc_and_the_summary_counts_icc3():
    rows = _rows(12, {"rater2": 0.2})
    table, summary = reliability_table(rows)
    assert list(table.columns) == ["kind", "feature", "icc", "ci_low", "ci_high"]
    assert sorted(zip(table["kind"], table["feature"], strict=True)) == sorted(
        (kind, f"f{i}") for kind in ("ICC2", "ICC3") for i in range(3)
    )
    expected = icc(ratings_from_long(rows, "patient_key", "segmentation", "feature", "value"), kind="ICC3")
    icc3 = table[table["kind"] == "ICC3"].set_index("feature")["icc"]
    assert icc3.to_dict() == pytest.approx(expected["icc"].to_dict())
    assert summary == {
        "patients_with_repeats": 12,
        "features": 3,
        "icc3_at_least_0_75": int((expected["icc"] >= 0.75).sum()),
        "icc3_median": pytest.approx(float(expected["icc"].median())),
    }
    assert summary["icc3_at_least_0_75"] == 3  # noise far below the between-patient spread


def test_only_features_with_a_repeat_and_patients_with_every_segmentation_enter():
    rows = _rows(6, {"rater2": 0.1})
    rows = pd.concat([
        rows[~((rows["feature"] == "f2") & (rows["segmentation"] == "rater2"))],  # f2: never re-segmented
        pd.DataFrame([{"patient_key": "p_lone", "segmentation": "primary", "feature": "f0", "value": 1.0}]),
    ])
    table, summary = reliability_table(rows)
    assert set(table["feature"]) == {"f0", "f1"}
    assert summary["features"] == 2
    # counted over the rows of re-segmented features (as the asset always did): p_lone has no repeat yet counts
    assert summary["patients_with_repeats"] == 7


def test_fewer_than_two_patients_give_an_empty_typed_table_and_a_note():
    table, summary = reliability_table(_rows(1, {"rater2": 0.1}))
    assert table.empty and list(table.columns) == ["kind", "feature", "icc", "ci_low", "ci_high"]
    assert table["icc"].dtype == float and table["kind"].dtype == object
    assert summary["patients_with_repeats"] == 1 and summary["features"] == 0
    assert "at least 2 patients" in str(summary["note"])
    assert reliability_table(_rows(0, {}).reindex(columns=["patient_key", "segmentation", "feature", "value"]))[1][
        "patients_with_repeats"
    ] == 0
