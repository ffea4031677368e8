"""The report's inputs gathered from a real (tiny) DuckDB warehouse: `read_report_inputs`."""

import re
from pathlib import Path

import pandas as pd
import pytest

from cssci_platform.lib import warehouse
from cssci_platform.lib.cohort import CohortSpec
from cssci_platform.lib.report.inputs import NO_TRAINED_MODELS, NoTrainedModels, champions_fold, read_report_inputs
from cssci_platform.lib.study_config.model import StudyConfig

PATIENTS = ["p1", "p2", "p3", "p4"]


def _spec(outcome_levels: list[str] | None) -> CohortSpec:
    outcome = {"type": "multiclass", "levels": outcome_levels} if outcome_levels else {"type": "binary"}
    return CohortSpec(
        manifest_version=1, name="c", table="t.csv", centers=["A"], sequences=["sag_T2"], rois=["lesion"],
        clinical={"age": {"type": "continuous"}, "sex": {"type": "categorical", "levels": ["F", "M"]}},
        outcomes={"y": outcome},
    )


def _config(**models) -> StudyConfig:
    return StudyConfig.model_validate(
        {"name": "tiny", "cohort": {"synthetic": {"protocol": "demo"}}, "outcome": {"name": "y"},
         "models": {"cv_folds": 4, **models}, "selection": {"mrmr_k": 7}}
    )


def _warehouse(con) -> None:
    roles = {"p1": "train", "p2": "train", "p3": "test", "p4": "validation"}
    warehouse.replace_rows(
        con, "splits", {"split": "s"},
        [{"split": "s", "fold": "holdout", "patient_key": k, "role": r, "outcome": "y", "seed": 1}
         for k, r in roles.items()],
    )
    warehouse.append_rows(con, "trained_models", [
        {"result_name": "Rad_LR", "signature": "Rad", "mode": "leakage_safe", "champion": True, "split": "s",
         "fold": "holdout", "registered_model": "tiny_Rad"},
        {"result_name": "Rad_SVM", "signature": "Rad", "mode": "leakage_safe", "champion": False, "split": "s",
         "fold": "holdout", "registered_model": None},
    ])
    warehouse.append_rows(con, "predictions", [
        {"patient_key": k, "role": r, "signature": signature, "fold": "holdout", "class_label": "1",
         "probability": 0.5}
        for k, r in roles.items() for signature in ("Rad", "CNN")
    ])
    warehouse.append_rows(con, "outcomes", [{"patient_key": k, "outcome": "y", "value": v}
                                            for k, v in zip(PATIENTS, "0101", strict=True)])
    warehouse.append_rows(con, "clinical", [
        *({"patient_key": k, "variable": "age", "value_number": 50.0 + i} for i, k in enumerate(PATIENTS)),
        *({"patient_key": k, "variable": "sex", "value_text": s} for k, s in zip(PATIENTS, "FMFM", strict=True)),
    ])
    matrix = pd.DataFrame({"patient_key": PATIENTS, "center": "A", "cohort": "development", "label": list("0101"),
                           "rad__a": [1.0, 2.0, 3.0, 4.0]})
    warehouse.write_wide_table(con, "feature_matrix", matrix)


def test_a_binary_outcome_reads_everything_but_the_networks_and_splits_the_champions_fold(tmp_path: Path):
    with warehouse.connect(tmp_path / "w.duckdb") as con:
        _warehouse(con)
        inputs, test_rows = read_report_inputs(con, _spec(None), _config(clinical_predictors=["age"]), [Path("g.png")])
    assert inputs.experiment == "tiny" and inputs.classes is None and not inputs.multiclass
    assert sorted(inputs.models["result_name"]) == ["Rad_LR", "Rad_SVM"]
    assert set(inputs.predictions["signature"]) == {"Rad"}  # the fine-tuned CNNs belong to the multiclass report
    assert inputs.outcomes.columns.tolist() == ["patient_key", "label"] and inputs.outcomes["label"].tolist() == list(
        "0101"
    )
    assert inputs.clinical.set_index("patient_key").loc["p2"].to_dict() == {"age": 51.0, "sex": "M"}
    assert inputs.clinical_types == {"age": "continuous"}  # only the variables the models may use
    assert (inputs.method.cv_folds, inputs.method.selection.mrmr_k) == (4, 7)
    assert inputs.gradcams == [Path("g.png")] and inputs.fit_problems is not None and inputs.fit_problems.empty
    assert test_rows.index.tolist() == ["p3"] and test_rows.columns.tolist() == ["center", "rad__a"]
    assert inputs.background is not None and inputs.background.index.tolist() == ["p1", "p2"]


def test_a_multiclass_outcome_takes_its_levels_and_the_networks(tmp_path: Path):
    with warehouse.connect(tmp_path / "w.duckdb") as con:
        _warehouse(con)
        inputs, _ = read_report_inputs(con, _spec(["0", "1", "2"]), _config())
    assert inputs.multiclass and inputs.classes == ["0", "1", "2"]
    assert set(inputs.predictions["signature"]) == {"Rad", "CNN"}
    assert inputs.clinical_types == {"age": "continuous", "sex": "categorical"}


def test_nothing_trained_is_named(tmp_path: Path):
    nothing = pytest.raises(NoTrainedModels, match=re.escape(NO_TRAINED_MODELS))
    with warehouse.connect(tmp_path / "w.duckdb") as con, nothing:
        read_report_inputs(con, _spec(None), _config())


def test_the_champions_fold_is_the_champions_or_holdout():
    models = pd.DataFrame({"champion": [False, True], "fold": ["center_B", "center_A"]})
    assert champions_fold(models) == "center_A"
    assert champions_fold(models.assign(champion=False)) == "holdout"
