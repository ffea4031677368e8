"""What the study report is built from: plain frames read from the warehouse, and the study settings it states."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import duckdb
import pandas as pd

from cssci_platform.lib.cohort import CohortSpec
from cssci_platform.lib.evaluation import DEFAULT_REPLICATES, DEFAULT_SEED
from cssci_platform.lib.harmonization.settings import HarmonizationSettings
from cssci_platform.lib.queries import modeling as queries
from cssci_platform.lib.queries import prospective as prospective_queries
from cssci_platform.lib.queries import report as figure_queries
from cssci_platform.lib.queries import report_inputs as report_queries
from cssci_platform.lib.selection.settings import SelectionSettings
from cssci_platform.lib.study_config import StudyConfig

NO_TRAINED_MODELS = "no trained models: materialize trained_models (modeling_job) first"


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
    outcome: str = "outcome"  # the modelled outcome's name (tables name its levels after it)
    study: StudyConfig | None = None  # the study config the run used (the reporting checklist states it)
    cohort_spec: CohortSpec | None = None  # the cohort manifest's spec (centers, sequences, ROIs, variables)
    centers: pd.DataFrame | None = None  # patient_key, center, cohort of every patient
    qc_montages: list[Path] = field(default_factory=list)  # <patient_key>.png QC montages of the patient stage
    # feature-matrix rows (index patient_key) of the training patients of the champions' fold: the LASSO path
    training_rows: pd.DataFrame | None = None
    # (raw, ComBat-harmonized) training rows (index patient_key, with `center`) of the fold harmonized_features used
    combat_rows: tuple[pd.DataFrame, pd.DataFrame] | None = None
    # every model's scores of the validation cohort (`queries.prospective.validation_cohort_scores`): the one
    # definition validation_metrics uses too; None: the validation rows of `predictions` are used
    validation_scores: pd.DataFrame | None = None

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


class NoTrainedModels(LookupError):
    """The warehouse holds no trained model (or no modelled outcome) to report on."""


def read_report_inputs(
    con: duckdb.DuckDBPyConnection,
    spec: CohortSpec,
    config: StudyConfig,
    gradcams: Sequence[Path] = (),
    qc_montages: Sequence[Path] = (),
) -> tuple[ReportInputs, pd.DataFrame]:
    """The report's inputs read from the warehouse, and the feature rows of the test patients of the champions' fold
    (what the champions are explained on; their training rows are `background`). The outcome's manifest levels give
    the classes (more than two: the multiclass report, which includes the fine-tuned CNNs' predictions); the
    clinical table describes the variables the models may use (`models.clinical_predictors`, all by default).
    Raises NoTrainedModels when nothing was trained yet."""
    models, outcome = queries.trained_models(con).to_pandas(), queries.modelled_outcome(con)
    if models.empty or outcome is None:
        raise NoTrainedModels(NO_TRAINED_MODELS)
    levels = spec.outcomes[outcome].levels if outcome in spec.outcomes else None
    classes = [str(level) for level in levels] if levels else None
    types: dict[str, str] = {name: variable.type for name, variable in spec.clinical.items()}
    predictors = config.models.clinical_predictors
    test_rows, background = explanation_rows(
        queries.stored_feature_matrix(con).to_pandas().set_index("patient_key"),
        queries.roles_of_predicted_patients(con, champions_fold(models)).to_pandas(),
    )
    inputs = ReportInputs(
        experiment=config.name,
        classes=classes,
        models=models,
        predictions=queries.model_predictions(con, with_networks=classes is not None and len(classes) > 2).to_pandas(),
        outcomes=queries.outcome_values(con, outcome).rename({"value": "label"}).to_pandas(),
        clinical=clinical_wide(queries.clinical_values(con).to_pandas(), types),
        clinical_types={name: kind for name, kind in types.items() if predictors is None or name in predictors},
        method=MethodSettings(config.harmonization, config.selection, config.models.cv_folds),
        gradcams=list(gradcams),
        fit_problems=queries.fit_problems(con).to_pandas(),
        background=background,
        outcome=outcome,
        study=config,
        cohort_spec=spec,
        centers=report_queries.patient_centers(con).to_pandas(),
        qc_montages=list(qc_montages),
        training_rows=_training_rows(con, queries.trained_split(con), champions_fold(models)),
        combat_rows=_combat_rows(con, config),
        validation_scores=(
            prospective_queries.validation_cohort_scores(con, outcome).to_pandas()
            if classes is None or len(classes) <= 2 else None
        ),
    )
    return inputs, test_rows


def _training_rows(con: duckdb.DuckDBPyConnection, split: str | None, fold: str) -> pd.DataFrame | None:
    if split is None:
        return None
    rows = figure_queries.training_feature_rows(con, split, fold).to_pandas().set_index("patient_key")
    return rows if len(rows) else None


def _combat_rows(con: duckdb.DuckDBPyConnection, config: StudyConfig) -> tuple[pd.DataFrame, pd.DataFrame] | None:
    """The training rows before and after ComBat, of the split and fold `harmonized_features` was computed on."""
    split, fold = config.split.stored_name, config.split.first_fold
    harmonized = figure_queries.harmonized_training_rows(con, split, fold)
    if harmonized is None or harmonized.is_empty():
        return None
    raw = figure_queries.training_feature_rows(con, split, fold).to_pandas().set_index("patient_key")
    return raw, harmonized.to_pandas().set_index("patient_key")


def champions_fold(models: pd.DataFrame) -> str:
    """The fold the champions come from (leave-one-center-out: the first held-out center); `models`: trained_models
    rows."""
    champions = models[models["champion"]]
    return str(champions["fold"].iloc[0]) if len(champions) else "holdout"
