"""What the study report is built from: plain frames read from the warehouse, and the study settings it states."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from cssci_platform.lib.evaluation import DEFAULT_REPLICATES, DEFAULT_SEED
from cssci_platform.lib.harmonization.settings import HarmonizationSettings
from cssci_platform.lib.selection.settings import SelectionSettings


@dataclass(frozen=True)
class MethodSettings:
    """The study settings the methods paragraph states: those the models were trained with (the study config)."""

    harmonization: HarmonizationSettings = field(default_factory=HarmonizationSettings)
    selection: SelectionSettings = field(default_factory=SelectionSettings)
    cv_folds: int = 10  # models.cv_folds: tuning CV and LASSO's CV


@dataclass
class ReportInputs:
    experiment: str
    predictions: pd.DataFrame  # patient_key, role, signature, classifier, mode, class_label, probability, model_name
    # (+ optional nullable label: the outcome the row was evaluated against, preferred over `outcomes`)
    outcomes: pd.DataFrame  # patient_key, label
    models: pd.DataFrame  # trained_models rows
    clinical: pd.DataFrame  # patient_key + one column per clinical variable (raw values)
    clinical_types: dict[str, str]  # variable -> continuous | binary | categorical
    method: MethodSettings = field(default_factory=MethodSettings)  # the study settings the methods state
    gradcams: list[Path] = field(default_factory=list)
    positive_class: str = "1"
    explained: list[tuple[str, object, pd.DataFrame]] = field(default_factory=list)  # (model name, pipeline, rows)
    classes: list[str] | None = None  # the outcome's levels; more than two: the multiclass report
    n_bootstrap: int = DEFAULT_REPLICATES  # bootstrap replicates of the multiclass CIs
    seed: int | None = DEFAULT_SEED
    # out-of-fold Rad-scores of the training patients (patient_key, rad_score): `out_of_fold_rad_scores(Combined)`
    rad_scores: pd.DataFrame | None = None
    background: pd.DataFrame | None = None  # feature rows of the training patients: the SHAP background
    # model_results rows with a reason: fits that failed (metric 'failed') and small-sample warnings ('small_sample')
    fit_problems: pd.DataFrame | None = None

    @property
    def multiclass(self) -> bool:
        return self.classes is not None and len(self.classes) > 2


def clinical_wide(rows: pd.DataFrame, types: dict[str, str]) -> pd.DataFrame:
    """Long clinical rows (patient_key, variable, value_number, value_text) -> patient_key + one column per variable,
    numeric unless the variable is categorical (`types`: variable -> continuous | binary | categorical)."""
    rows = rows.assign(value=rows["value_number"].where(rows["value_text"].isna(), rows["value_text"]))
    wide = rows.pivot_table(index="patient_key", columns="variable", values="value", aggfunc="first").reset_index()
    for name, kind in types.items():
        if name in wide and kind != "categorical":
            wide[name] = pd.to_numeric(wide[name])
    return wide


def explanation_rows(matrix: pd.DataFrame, roles: pd.DataFrame) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(feature rows of the test patients, feature rows of the training patients: the SHAP background) of the
    champions' fold; `roles`: patient_key, role of that fold's predictions."""
    features = matrix.drop(columns=["cohort", "label"])
    test = features.loc[features.index.isin(roles.loc[roles["role"] == "test", "patient_key"])]
    train = features.loc[features.index.isin(roles.loc[roles["role"] == "train", "patient_key"])]
    return test, train
