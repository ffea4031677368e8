"""The zoo's fit units packed into Dagster steps (issue 18): at most two steps per worker, longest units first onto
the least loaded step; every unit in exactly one step; a zoo without units says which setting left it empty."""

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


def test_units_are_packed_into_two_steps_per_worker_longest_first_with_balanced_work() -> None:
    """A step is a process (start-up, MLflow store, package maps: seconds each), so a zoo is cut into no more steps
    than the workers can use twice over; units go longest first to the least loaded step (LPT), so no step carries
    more than an even share plus one unit."""
    matrix = _matrix(rad=100, deep=200, clinical=5)
    folds = {"r0": pd.Series(dtype=str), "r1": pd.Series(dtype=str)}
    models = ModelsSettings(classifiers=["LR", "SVM", "RandomForest"])
    units = fit_units(matrix, folds, models, ["leakage_safe", "paper_faithful"])
    assert len(units) == 20
    steps = fit_steps(units, matrix, models, workers=2)

    assert len(steps) == 4
    assert sorted(i for step in steps for i in step.units) == list(range(len(units)))  # each unit exactly once
    assert all(list(step.units) == sorted(step.units) for step in steps)  # the serial order inside a step
    work = {i: _unit_work(units[i], models) for i in range(len(units))}
    assert [s.estimated_work for s in steps] == [sum(work[i] for i in s.units) for s in steps]
    assert [s.estimated_work for s in steps] == sorted((s.estimated_work for s in steps), reverse=True)
    assert steps[0].estimated_work <= sum(work.values()) / len(steps) + max(work.values())
    assert len({s.key for s in steps}) == len(steps)
    assert all(s.key.replace("_", "").isalnum() for s in steps)


def test_one_worker_gets_two_steps_and_a_zoo_smaller_than_that_a_step_per_unit() -> None:
    matrix = _matrix(rad=20, deep=0, clinical=0)
    models = ModelsSettings(classifiers=["LR"])
    units = fit_units(matrix, {"holdout": pd.Series(dtype=str)}, models, ["leakage_safe", "paper_faithful"])
    steps = fit_steps(units, matrix, models, workers=4)
    assert [s.units for s in steps] == [(0,), (1,)]
    assert [s.key for s in steps] == ["holdout__leakage_safe__Rad", "holdout__paper_faithful__Rad"]

    wide = _matrix(rad=100, deep=200, clinical=5)
    units = fit_units(wide, {"holdout": pd.Series(dtype=str)}, models, ["leakage_safe", "paper_faithful"])
    assert len(units) == 10 and len(fit_steps(units, wide, models, workers=1)) == 2


def _unit_work(unit, models: ModelsSettings) -> int:
    """models x feature columns, as the tests' matrix is built: rad 100, deep 200, clinical 5."""
    columns = {"Rad": 100, "DL_resnet18": 200, "Rad+DL_resnet18": 300, "Clinical": 5, "Combined": 105}
    models_of = 1 if unit.signature in ("Clinical", "Combined") else len(models.classifiers)
    return models_of * columns[unit.signature]


def test_an_empty_zoo_names_the_setting_that_left_it_empty() -> None:
    assert fit_units(_matrix(20, 0, 5), {"holdout": pd.Series(dtype=str)}, ModelsSettings(signatures=[]),
                     ["leakage_safe"]) == []
    assert no_units_reason([], ["leakage_safe"], ["holdout"]).startswith("no model to fit: models.signatures names")
    assert "modes" in no_units_reason(None, [], ["holdout"])
