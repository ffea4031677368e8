"""Trained models as warehouse rows and MLflow params/metrics."""

from __future__ import annotations

import json
import math
from datetime import datetime

import pandas as pd
import polars as pl

from cssci_platform.lib.modeling.training import TrainedModel


def run_params(model: TrainedModel, grid: str, cv_folds: int, seed: int) -> dict[str, object]:
    return {"signature": model.spec.signature.name, "classifier": model.spec.classifier, "mode": model.spec.mode,
            "grid": grid, "cv_folds": cv_folds, "seed": seed, "threshold": model.threshold,
            "input_features": len(model.input_columns), **{f"best.{k}": v for k, v in model.best_params.items()}}


def run_metrics(model: TrainedModel) -> dict[str, float]:
    """`<role>_<metric>` for cv, train_oof, test and validation; NaNs left out (MLflow cannot plot them)."""
    flat = {f"{role}_{name}": value for role, values in model.metrics.items() for name, value in values.items()}
    return {key: float(value) for key, value in flat.items() if value is not None and math.isfinite(value)}


def model_row(model: TrainedModel, run_id: str, model_uri: str, champion: dict | None, split: str, fold: str,
              created_at: datetime) -> dict:
    return {"result_name": model.spec.name, "signature": model.spec.signature.name, "classifier": model.spec.classifier,
            "mode": model.spec.mode, "run_id": run_id, "model_uri": model_uri,
            "registered_model": champion["registered_model"] if champion else None,
            "model_version": champion["version"] if champion else None, "champion": champion is not None,
            "best_params": json.dumps(model.best_params, default=str), "cv_auc_mean": model.cv_score_mean,
            "cv_auc_sd": model.cv_score_sd, "threshold": model.threshold,
            "n_features": len(model.selection[-1]["kept"]) if model.selection else len(model.input_columns),
            "split": split, "fold": fold, "created_at": created_at}


def metric_rows(model: TrainedModel, run_id: str, split: str, fold: str, created_at: datetime) -> list[dict]:
    return [{"result_name": model.spec.name, "signature": model.spec.signature.name, "classifier": model.spec.classifier,
             "mode": model.spec.mode, "role": role, "metric": name, "value": float(value), "run_id": run_id,
             "split": split, "fold": fold, "created_at": created_at}
            for role, values in model.metrics.items() for name, value in values.items()]


def prediction_rows(model: TrainedModel, cohorts: pd.Series, labels: pd.Series, run_id: str, split: str, fold: str,
                    created_at: datetime) -> pl.DataFrame:
    """Long rows; `label` is the outcome the model was evaluated against (None where unknown)."""
    keys = model.predictions["patient_key"]
    label = labels.reindex(keys).astype(object)
    frame = model.predictions.assign(
        cohort=cohorts.reindex(keys).to_numpy(), label=label.where(label.notna(), None).map(_label_text).to_numpy(), signature=model.spec.signature.name,
        classifier=model.spec.classifier, mode=model.spec.mode, split=split, fold=fold, model_name=run_id,
        model_version=None, created_at=created_at)
    return pl.from_pandas(frame).with_columns(pl.col("model_version").cast(pl.String))


def _label_text(value: object) -> str | None:
    """Labels as the class names the predictions use ('1', not '1.0')."""
    if value is None:
        return None
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)
