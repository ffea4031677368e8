"""The zoo's fit units grouped into Dagster steps (issue 18): long units alone and first, short ones (Clinical and
Combined: one logistic regression each) merged per fold; every unit in exactly one step; a zoo without units says
which setting left it empty."""

from __future__ import annotations

import numpy as np
import pandas as pd

from cssci_platform.lib.modeling.settings import ModelsSettings
from cssci_platform.lib.modeling.zoo import fit_steps, fit_units, no_units_reason


def _matrix(rad: int, deep: int, clinical: int) -> pd.DataFrame:
    columns = ([f"rad__sag_T2__lesion__original__f{i}" for i in range(rad)]
               + [f"dl__resnet18__original__{i}" for i in range(deep)] + [f"clin__c{i}" for i in range(clinical)])
    matrix = pd.DataFrame(np.zeros((4, len(columns))), columns=columns)
    return matrix.assign(cohort="development", label="0")


def test_long_units_are_steps_of_their_own_longest_first_and_short_ones_share_a_step_per_fold() -> None:
    matrix = _matrix(rad=100, deep=200, clinical=5)
    folds = {"r0": pd.Series(dtype=str), "r1": pd.Series(dtype=str)}
    models = ModelsSettings(classifiers=["LR", "SVM", "RandomForest"])
    units = fit_units(matrix, folds, models, ["leakage_safe", "paper_faithful"])
    steps = fit_steps(units, matrix, models)

    named = [[(units[i].fold, units[i].mode, units[i].signature) for i in step.units] for step in steps]
    long_ones = [n for n in named if len(n) == 1]
    assert [n[0][2] for n in long_ones] == ["Rad+DL_resnet18"] * 4 + ["DL_resnet18"] * 4 + ["Rad"] * 4
    merged = [n for n in named if len(n) > 1]
    assert merged == [[(fold, mode, signature) for mode in ("leakage_safe", "paper_faithful")
                       for signature in ("Clinical", "Combined")] for fold in ("r0", "r1")]
    assert named[-2:] == merged  # the short ones fill the end
    assert sorted(i for step in steps for i in step.units) == list(range(len(units)))  # each unit exactly once
    assert [s.estimated_work for s in steps] == sorted((s.estimated_work for s in steps), reverse=True)
    assert steps[0].estimated_work == 3 * 300 and steps[-1].estimated_work == 2 * 5 + 2 * 105
    assert len({s.key for s in steps}) == len(steps)


def test_without_short_units_every_unit_is_its_own_step() -> None:
    matrix = _matrix(rad=20, deep=0, clinical=0)
    models = ModelsSettings(classifiers=["LR"])
    units = fit_units(matrix, {"holdout": pd.Series(dtype=str)}, models, ["leakage_safe", "paper_faithful"])
    steps = fit_steps(units, matrix, models)
    assert [s.units for s in steps] == [(0,), (1,)]
    assert [s.key for s in steps] == ["holdout__leakage_safe__Rad", "holdout__paper_faithful__Rad"]


def test_an_empty_zoo_names_the_setting_that_left_it_empty() -> None:
    assert fit_units(_matrix(20, 0, 5), {"holdout": pd.Series(dtype=str)}, ModelsSettings(signatures=[]),
                     ["leakage_safe"]) == []
    assert no_units_reason([], ["leakage_safe"], ["holdout"]).startswith("no model to fit: models.signatures names")
    assert "modes" in no_units_reason(None, [], ["holdout"])
