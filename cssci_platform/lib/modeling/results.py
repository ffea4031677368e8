"""Trained models as warehouse rows and MLflow params/metrics."""

from __future__ import annotations

import json
import math
from datetime import datetime

import duckdb
import pandas as pd
import polars as pl

from cssci_platform.lib.modeling.chains import ChainSettings
from cssci_platform.lib.modeling.training import FailedFit, TrainedModel
from cssci_platform.lib.modeling.zoo import ZooFit
from cssci_platform.lib.outcome_rules import OutcomeSettings
from cssci_platform.lib.warehouse import append_rows, replace_rows


def run_params(model: TrainedModel, grid: str, cv_folds: int, seed: int) -> dict[str, object]:
    return {
        "signature": model.spec.signature.name,
        "classifier": model.spec.classifier,
        "mode": model.spec.mode,
        "grid": grid,
        "cv_folds": cv_folds,
        "seed": seed,
        "threshold": model.threshold,
        "input_features": len(model.input_columns),
        **{f"best.{k}": v for k, v in model.best_params.items()},
    }


def settings_params(
    chain: ChainSettings, outcome: OutcomeSettings, outcome_threshold: float | None
) -> dict[str, object]:
    """The study settings a fit used, as MLflow params named by their config keys (`selection.mrmr_k`)."""
    params: dict[str, object] = {f"harmonization.{k}": v for k, v in chain.harmonization.model_dump().items()}
    params |= {f"selection.{k}": v for k, v in chain.selection.model_dump().items()}
    params |= {f"outcome.{k}": v for k, v in outcome.model_dump().items() if v is not None}
    return params | ({"outcome_threshold": outcome_threshold} if outcome_threshold is not None else {})


def final_features(model: TrainedModel) -> list[str]:
    """The features the classifier saw: the last selection step's kept columns, else the input columns."""
    return list(model.selection[-1]["kept"]) if model.selection else list(model.input_columns)


def warning_tags(model: TrainedModel) -> dict[str, str]:
    """MLflow tags of a model's small-sample notes and degenerate-input decisions (MLflow's 4000-character limit)."""
    tags = {"cssci.small_sample": " | ".join(model.small_sample)[:4000]} if model.small_sample else {}
    if model.decisions:
        tags["cssci.decisions"] = " | ".join(model.decisions)[:4000]
    return tags


def run_metrics(model: TrainedModel) -> dict[str, float]:
    """`<role>_<metric>` for cv, train_oof, test and validation; NaNs left out (MLflow cannot plot them)."""
    flat = {f"{role}_{name}": value for role, values in model.metrics.items() for name, value in values.items()}
    return {key: float(value) for key, value in flat.items() if value is not None and math.isfinite(value)}


def model_row(
    model: TrainedModel, run_id: str, model_uri: str, champion: dict | None, split: str, fold: str, created_at: datetime
) -> dict:
    return {
        "result_name": model.spec.name,
        "signature": model.spec.signature.name,
        "classifier": model.spec.classifier,
        "mode": model.spec.mode,
        "run_id": run_id,
        "model_uri": model_uri,
        "registered_model": champion["registered_model"] if champion else None,
        "model_version": champion["version"] if champion else None,
        "champion": champion is not None,
        "best_params": json.dumps(model.best_params, default=str),
        "cv_auc_mean": model.cv_score_mean,
        "cv_auc_sd": model.cv_score_sd,
        "threshold": model.threshold,
        "n_features": len(model.selection[-1]["kept"]) if model.selection else len(model.input_columns),
        "split": split,
        "fold": fold,
        "created_at": created_at,
    }


def metric_rows(model: TrainedModel, run_id: str, split: str, fold: str, created_at: datetime) -> list[dict]:
    return [
        {
            "result_name": model.spec.name,
            "signature": model.spec.signature.name,
            "classifier": model.spec.classifier,
            "mode": model.spec.mode,
            "role": role,
            "metric": name,
            "value": float(value),
            "run_id": run_id,
            "split": split,
            "fold": fold,
            "created_at": created_at,
        }
        for role, values in model.metrics.items()
        for name, value in values.items()
    ]


def prediction_rows(
    model: TrainedModel, cohorts: pd.Series, labels: pd.Series, run_id: str, split: str, fold: str, created_at: datetime
) -> pl.DataFrame:
    """Long rows; `label` is the outcome the model was evaluated against (None where unknown)."""
    keys = model.predictions["patient_key"]
    label = labels.reindex(keys).astype(object)
    frame = model.predictions.assign(
        cohort=cohorts.reindex(keys).to_numpy(),
        label=label.where(label.notna(), None).map(_label_text).to_numpy(),
        signature=model.spec.signature.name,
        classifier=model.spec.classifier,
        mode=model.spec.mode,
        split=split,
        fold=fold,
        model_name=run_id,
        model_version=None,
        created_at=created_at,
    )
    return pl.from_pandas(frame).with_columns(pl.col("model_version").cast(pl.String))


def _label_text(value: object) -> str | None:
    """Labels as the class names the predictions use ('1', not '1.0')."""
    if value is None:
        return None
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)


def failure_row(failed: FailedFit, run_id: str, split: str, fold: str, created_at: datetime) -> dict:
    """A fit that raised, in model_results: role 'fit', metric 'failed', the reason in `reason`."""
    return {
        "result_name": failed.spec.name,
        "signature": failed.spec.signature.name,
        "classifier": failed.spec.classifier,
        "mode": failed.spec.mode,
        "role": "fit",
        "metric": "failed",
        "value": 1.0,
        "run_id": run_id,
        "split": split,
        "fold": fold,
        "created_at": created_at,
        "reason": f"{failed.stage}: {failed.reason}",
    }


def warning_rows(model: TrainedModel, run_id: str, split: str, fold: str, created_at: datetime) -> list[dict]:
    """Small-sample warnings of a model, in model_results: role 'cv', metric 'small_sample' (1 = degenerate CV)."""
    return [
        {
            "result_name": model.spec.name,
            "signature": model.spec.signature.name,
            "classifier": model.spec.classifier,
            "mode": model.spec.mode,
            "role": "cv",
            "metric": "small_sample",
            "value": float(model.degenerate_cv),
            "run_id": run_id,
            "split": split,
            "fold": fold,
            "created_at": created_at,
            "reason": note,
        }
        for note in model.small_sample
    ]


def write_zoo_results(
    con: duckdb.DuckDBPyConnection,
    fits: list[tuple[ZooFit, str, str]],
    champions: dict[str, dict],
    split: str,
    cohorts: pd.Series,
) -> None:
    """Replace trained_models, model_results and the zoo's predictions (the fine-tuned CNNs' rows stay) with
    `fits`: (fit, MLflow run id, model URI; '' for a failed fit). `champions`: signature -> registry entry."""
    now = datetime.now()
    by_run = {c["run_id"]: c for c in champions.values()}
    trained = [(f, f.model, run_id, uri) for f, run_id, uri in fits if isinstance(f.model, TrainedModel)]
    failed = [(f, f.model, run_id) for f, run_id, _ in fits if isinstance(f.model, FailedFit)]
    models = [model_row(m, run_id, uri, by_run.get(run_id), split, f.fold, now) for f, m, run_id, uri in trained]
    metrics = [row for f, m, run_id, _ in trained for row in metric_rows(m, run_id, split, f.fold, now)]
    metrics += [row for f, m, run_id, _ in trained for row in warning_rows(m, run_id, split, f.fold, now)]
    metrics += [failure_row(m, run_id, split, f.fold, now) for f, m, run_id in failed]
    predictions = [prediction_rows(m, cohorts, f.labels, run_id, split, f.fold, now) for f, m, run_id, _ in trained]
    replace_rows(con, "trained_models", {}, models)
    replace_rows(con, "model_results", {}, metrics)
    con.execute(DELETE_ZOO_PREDICTIONS)
    if predictions:
        append_rows(con, "predictions", pl.concat(predictions))


DELETE_ZOO_PREDICTIONS = "DELETE FROM predictions WHERE signature <> 'CNN'"
