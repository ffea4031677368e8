"""The study's harmonized feature table (`harmonized_table`): ComBat fitted on the training rows, applied to all."""

import numpy as np
import pandas as pd
import pytest

from cssci_platform.lib.harmonization import HARMONIZATION_OFF
from cssci_platform.lib.harmonization.frame import center_mean_spread
from cssci_platform.lib.harmonization.settings import HarmonizationSettings
from cssci_platform.lib.harmonization.study_table import NOTHING_VARIES, harmonized_table, varying_feature_columns

SHAPE = "rad__sag_T2__lesion__original__original_shape_VoxelVolume"
GLCM = "rad__sag_T2__lesion__original__original_glcm_Contrast"


def _matrix(n_per_center: int = 8, seed: int = 0) -> tuple[pd.DataFrame, pd.Series]:
    """Three centers shifted apart, a glcm and a shape feature, a deep feature, a clinical column, and one feature
    constant among the training rows; the last row of each center is a test row."""
    rng = np.random.default_rng(seed)
    centers = np.repeat(["A", "B", "C"], n_per_center)
    shift = pd.Series(centers).map({"A": 0.0, "B": 3.0, "C": -2.0}).to_numpy()
    index = pd.Index([f"p{i:02d}" for i in range(len(centers))], name="patient_key")
    matrix = pd.DataFrame(
        {
            "center": centers,
            "cohort": "development",
            "label": rng.choice(["0", "1"], len(centers)),
            GLCM: rng.normal(size=len(centers)) + shift,
            SHAPE: rng.normal(10, 1, size=len(centers)) + shift,
            "dl__resnet18__original__c0": rng.normal(size=len(centers)) * 2 + shift,
            "rad__sag_T2__lesion__original__original_glcm_Flat": 1.0,
            "clin__age": rng.normal(60, 5, size=len(centers)),
        },
        index=index,
    )
    last_of_center = np.arange(len(centers)) % n_per_center == n_per_center - 1
    roles = pd.Series(np.where(last_of_center, "test", "train"), index=index)
    matrix.loc[roles == "test", "rad__sag_T2__lesion__original__original_glcm_Flat"] = 5.0  # varies only in test rows
    return matrix, roles


def test_only_radiomics_and_deep_columns_that_vary_among_training_rows_are_kept():
    matrix, roles = _matrix()
    assert varying_feature_columns(matrix, roles == "train") == [GLCM, SHAPE, "dl__resnet18__original__c0"]


def test_combat_fitted_on_training_rows_removes_the_center_shift_and_leaves_shape_alone():
    matrix, roles = _matrix()
    table, summary = harmonized_table(matrix, roles, HarmonizationSettings())
    columns = [GLCM, SHAPE, "dl__resnet18__original__c0"]
    assert list(table.columns) == ["center", "cohort", "label", *columns] and table.index.equals(matrix.index)
    assert summary.skipped_because is None and summary.features == 3 and summary.centers == ("A", "B", "C")
    assert summary.harmonized_features == 2 and summary.passed_through_unharmonized == 1  # shape passed through
    assert table[SHAPE].equals(matrix[SHAPE])
    assert summary.center_mean_spread_before == pytest.approx(center_mean_spread(matrix, columns))
    assert summary.center_mean_spread_after == pytest.approx(center_mean_spread(table, columns))
    harmonized = [GLCM, "dl__resnet18__original__c0"]
    assert center_mean_spread(table, harmonized) < 0.2 * center_mean_spread(matrix, harmonized)
    # the fit saw only training rows: moving a test row's value does not change any other row's result
    moved = matrix.copy()
    moved.loc[roles == "test", GLCM] += 100.0
    again, _ = harmonized_table(moved, roles, HarmonizationSettings())
    assert again.loc[roles == "train", GLCM].to_numpy() == pytest.approx(table.loc[roles == "train", GLCM].to_numpy())


def test_nothing_is_harmonized_when_off_or_when_no_feature_varies():
    matrix, roles = _matrix()
    table, summary = harmonized_table(matrix, roles, HarmonizationSettings(enabled=False))
    assert summary.skipped_because == "off (config harmonization.enabled: false)" and summary.features == 3
    assert table.equals(matrix[["center", "cohort", "label", GLCM, SHAPE, "dl__resnet18__original__c0"]])
    flat = matrix[["center", "cohort", "label", "clin__age"]]
    table, summary = harmonized_table(flat, roles, HarmonizationSettings())
    assert summary == type(summary)(features=0, skipped_because=NOTHING_VARIES)
    assert list(table.columns) == ["center", "cohort", "label"]


def test_a_combat_that_cannot_be_fitted_names_the_key_that_turns_harmonization_off():
    matrix, roles = _matrix()
    roles[(matrix["center"] == "C") & (roles == "train")] = "test"
    roles[roles.index[-1]] = "train"  # center C: one training patient
    with pytest.raises(ValueError, match="C") as error:
        harmonized_table(matrix, roles, HarmonizationSettings(small_center="error"))
    assert str(error.value).endswith(f"(or turn harmonization off: {HARMONIZATION_OFF})")
