"""Train one signature x classifier x mode on the training split and score every patient.

Leakage rules (DESIGN.md section 2): hyper-parameters come from stratified CV on training rows only; the
operating threshold is Youden's on the training rows' out-of-fold scores and frozen for test, validation and
prospective patients (`leakage_safe`). `paper_faithful` reproduces the published order of operations:
z-score, rank test and correlation filter on the whole development cohort before the split, and a Youden
threshold re-picked on each cohort; its results are tagged and never the default.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd
from sklearn.pipeline import Pipeline

from cssci_platform.lib.classifiers import make_estimator
from cssci_platform.lib.evaluation import binary_auc, multiclass_metrics, threshold_metrics, youden_threshold
from cssci_platform.lib.modeling.chains import (
    ChainSettings,
    after_paper_faithful_prefilter,
    build_pipeline,
    paper_faithful_columns,
)
from cssci_platform.lib.modeling.settings import Mode
from cssci_platform.lib.modeling.signatures import Signature, result_name
from cssci_platform.lib.modeling.tuning import (
    ChainFolds,
    TunedClassifier,
    fit_chain_folds,
    small_sample_warnings,
    tune_on_folds,
)
from cssci_platform.lib.selection import pipeline_reports

SCORED_ROLES = ("train", "test", "validation")
FIXED_CLASSIFIER = "LR"  # Clinical and Combined are logistic regressions, as in the studies
SINGLE_MODEL_KINDS = ("clinical", "combined")  # the signatures fitted once, with FIXED_CLASSIFIER
REASON_CHARS = 500  # a failed fit's reason as stored (MLflow tag, model_results.reason)
_LOG = logging.getLogger(__name__)


@dataclass(frozen=True)
class ModelSpec:
    signature: Signature
    classifier: str
    mode: Mode = "leakage_safe"

    @property
    def name(self) -> str:
        return result_name(self.signature, self.classifier)


@dataclass
class TrainedModel:
    spec: ModelSpec
    pipeline: Any
    classes: list[str]
    best_params: dict
    cv_score_mean: float
    cv_score_sd: float
    threshold: float
    predictions: pd.DataFrame  # patient_key, role, class_label, probability
    metrics: dict[str, dict[str, float]]  # role -> metric -> value
    selection: list[dict] = field(default_factory=list)
    input_columns: list[str] = field(default_factory=list)
    small_sample: list[str] = field(default_factory=list)  # why its CV results cannot mean much (empty: no concern)
    decisions: list[str] = field(default_factory=list)  # decisions taken on degenerate input (chain steps, grid)

    @property
    def degenerate_cv(self) -> bool:
        """CV AUC without spread on tiny folds: never a champion while another model is."""
        return any(note.startswith("degenerate CV") for note in self.small_sample)


@dataclass(frozen=True)
class FailedFit:
    """A signature x classifier x mode whose fit raised: recorded (MLflow, model_results, report), never fatal."""

    spec: ModelSpec
    stage: str  # "selection chain" (every classifier of the signature) or "classifier"
    reason: str
    error: Exception | None = None


def champion_candidates(models: list[TrainedModel]) -> list[TrainedModel]:
    """The models a signature's champion is chosen from: its leakage_safe fits, without those whose CV AUC has no
    spread on tiny folds (`degenerate_cv`) unless nothing else is left."""
    safe = [m for m in models if m.spec.mode == "leakage_safe"]
    sound = [m for m in safe if not m.degenerate_cv]
    return sound or safe


def failure_reason(error: Exception) -> str:
    return f"{type(error).__name__}: {error}"[:REASON_CHARS]


def train_signature(
    matrix: pd.DataFrame,
    roles: pd.Series,
    signature: Signature,
    classifiers: list[str],
    mode: Mode,
    classes: list[str],
    settings: ChainSettings,
    preset: str = "fast",
    cv_folds: int = 10,
) -> list[TrainedModel]:
    """Every classifier of one signature and mode. `matrix`: `assemble` output; `roles`: patient_key ->
    train/test/validation/excluded for one fold. Clinical and Combined are fitted once, as logistic regression.
    Raises the first fit's error; `fit_signature` records failures instead."""
    fits = fit_signature(matrix, roles, signature, classifiers, mode, classes, settings, preset, cv_folds)
    failed = next((fit for fit in fits if isinstance(fit, FailedFit)), None)
    if failed is not None and failed.error is not None:
        raise failed.error
    return [fit for fit in fits if isinstance(fit, TrainedModel)]


def fit_signature(
    matrix: pd.DataFrame,
    roles: pd.Series,
    signature: Signature,
    classifiers: list[str],
    mode: Mode,
    classes: list[str],
    settings: ChainSettings,
    preset: str = "fast",
    cv_folds: int = 10,
) -> list[TrainedModel | FailedFit]:
    """As `train_signature`, but a fit that raises becomes a `FailedFit` (signature, classifier, mode, reason): a
    failing selection chain fails every classifier of the signature, a failing classifier only itself."""
    roles = roles.reindex(matrix.index)
    train = matrix[roles == "train"]
    if train.empty:
        raise ValueError("no training patients in this split")
    if signature.kind in SINGLE_MODEL_KINDS:
        classifiers = [FIXED_CLASSIFIER]
    try:
        columns, template, folds = _chain_on_folds(
            matrix, roles, train, signature, classifiers, mode, settings, cv_folds
        )
    except Exception as error:  # noqa: BLE001 - any fit error is recorded, the study goes on
        return [_failed(ModelSpec(signature, name, mode), "selection chain", error) for name in classifiers]
    scored = _ScoredRows(matrix[roles.isin(SCORED_ROLES)], folds.full_chain)
    fits: list[TrainedModel | FailedFit] = []
    for name in classifiers:
        spec = ModelSpec(signature, name, mode)
        try:
            estimator = (
                template.steps[-1][1] if signature.kind == "combined" else make_estimator(name, seed=settings.seed)
            )
            tuned = tune_on_folds(folds, estimator, name, preset)
            fits.append(_trained(matrix, roles, spec, classes, folds, columns, tuned, scored))
        except Exception as error:  # noqa: BLE001
            fits.append(_failed(spec, "classifier", error))
    return fits


class _ScoredRows:
    """The patients every model of a signature scores, passed through the signature's fitted chain once (every
    classifier's model is that chain + its own last step): a failing transform fails each classifier, as it would
    have inside each model's own `predict_proba`."""

    def __init__(self, rows: pd.DataFrame, chain: Pipeline) -> None:
        self.rows = rows
        self._chain = chain
        self._features: pd.DataFrame | None = None
        self._error: Exception | None = None

    def features(self) -> pd.DataFrame:
        if self._features is None and self._error is None:
            try:
                self._features = self._chain.transform(self.rows)
            except Exception as error:  # noqa: BLE001 - raised again for every classifier that scores these rows
                self._error = error
        if self._error is not None:
            raise self._error
        assert self._features is not None
        return self._features


def _chain_on_folds(
    matrix: pd.DataFrame,
    roles: pd.Series,
    train: pd.DataFrame,
    signature: Signature,
    classifiers: list[str],
    mode: Mode,
    settings: ChainSettings,
    cv_folds: int,
) -> tuple[list[str], Pipeline, ChainFolds]:
    columns, chain_settings = signature.columns(matrix), settings
    if mode == "paper_faithful":
        labelled = matrix[roles.isin(["train", "test"])]
        columns = paper_faithful_columns(labelled, labelled["label"], columns, settings)
        chain_settings = after_paper_faithful_prefilter(settings)
    first = None if signature.kind == "combined" else make_estimator(classifiers[0], seed=settings.seed)
    template = build_pipeline(signature, columns, first, chain_settings)
    folds = fit_chain_folds(Pipeline(template.steps[:-1]), train, train["label"].astype(str), cv_folds, settings.seed)
    return columns, template, folds


def _failed(spec: ModelSpec, stage: str, error: Exception) -> FailedFit:
    reason = failure_reason(error)
    _LOG.warning("fit failed: %s [%s] at the %s: %s", spec.name, spec.mode, stage, reason)
    return FailedFit(spec, stage, reason, error)


def _trained(
    matrix: pd.DataFrame,
    roles: pd.Series,
    spec: ModelSpec,
    classes: list[str],
    folds: ChainFolds,
    columns: list[str],
    tuned: TunedClassifier,
    scored_rows: _ScoredRows,
) -> TrainedModel:
    scored = scored_rows.rows
    model_classes = [str(c) for c in tuned.model.classes_]
    classifier = tuned.model.steps[-1][1]  # `tuned.model` is the signature's fitted chain + this classifier
    raw = classifier.predict_proba(scored_rows.features())
    probabilities = pd.DataFrame(raw, index=scored.index, columns=model_classes)[classes]
    oof = pd.DataFrame(tuned.oof_probabilities, index=folds.y.index, columns=model_classes)[classes]
    threshold = youden_threshold(_binary(folds.y, classes), oof[classes[-1]]) if len(classes) == 2 else math.nan
    metrics = _metrics(scored, roles, probabilities, oof, classes, threshold, spec.mode)
    metrics["cv"] = {"auc_mean": tuned.cv_score_mean, "auc_sd": tuned.cv_score_sd}
    reports = [r.to_dict() for r in pipeline_reports(tuned.model)]
    small_sample = small_sample_warnings(folds, tuned.cv_fold_scores)
    for note in small_sample:
        _LOG.warning("%s [%s]: %s", spec.name, spec.mode, note)
    decisions = (
        [f"{r['step']}: {note}" for r in reports for note in r["notes"]] + folds.fold_decisions + tuned.grid_decisions
    )
    return TrainedModel(
        spec,
        tuned.model,
        classes,
        tuned.best_params,
        tuned.cv_score_mean,
        tuned.cv_score_sd,
        threshold,
        _long_predictions(probabilities, roles),
        metrics,
        reports,
        columns,
        small_sample,
        decisions,
    )


def _binary(labels: pd.Series, classes: list[str]) -> np.ndarray:
    return (labels.astype(str) == classes[-1]).to_numpy().astype(int)


def _metrics(
    scored: pd.DataFrame,
    roles: pd.Series,
    probabilities: pd.DataFrame,
    oof: pd.DataFrame,
    classes: list[str],
    threshold: float,
    mode: Mode,
) -> dict[str, dict[str, float]]:
    by_role = {"train_oof": (scored.loc[oof.index, "label"], oof)}
    for role in ("test", "validation"):
        rows = scored[(roles.reindex(scored.index) == role) & scored["label"].notna()]
        if len(rows):
            by_role[role] = (rows["label"], probabilities.loc[rows.index])
    return {role: _role_metrics(labels, probs, classes, threshold, mode) for role, (labels, probs) in by_role.items()}


def _role_metrics(
    labels: pd.Series, probabilities: pd.DataFrame, classes: list[str], threshold: float, mode: Mode
) -> dict[str, float]:
    if len(classes) > 2:
        return {
            "n": float(len(labels)),
            **multiclass_metrics(labels.astype(str).to_numpy(), probabilities.to_numpy(), classes),
        }
    y, score = _binary(labels, classes), probabilities[classes[-1]].to_numpy()
    cut = cohort_threshold(mode, y, score, threshold)
    return {"n": float(len(y)), "auc": binary_auc(y, score), "threshold": cut, **threshold_metrics(y, score, cut)}


def cohort_threshold(mode: str, y: np.ndarray, score: np.ndarray, frozen: float) -> float:
    """The operating threshold of one cohort: the frozen training threshold, or in `paper_faithful` the Youden
    threshold re-picked on the cohort itself (as published) when it has both classes. Training (MLflow,
    `model_results`) and the report both call this, so each threshold metric has one value everywhere."""
    if mode == "paper_faithful" and len(np.unique(y)) == 2:
        return youden_threshold(y, score)
    return frozen


def _long_predictions(probabilities: pd.DataFrame, roles: pd.Series) -> pd.DataFrame:
    frame = (
        probabilities.rename_axis("patient_key")
        .reset_index()
        .melt(id_vars="patient_key", var_name="class_label", value_name="probability")
    )
    frame["role"] = roles.reindex(frame["patient_key"]).to_numpy()
    return frame.sort_values(["patient_key", "class_label"]).reset_index(drop=True)
