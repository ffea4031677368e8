"""One MLflow run per fitted pipeline: params, metrics, tags, the selection and split artifacts, and the model.

No MLflow "active run" is ever started: the model is created with `create_logged_model` and attached to its run
by id, so a caller's own active run or `mlflow.set_experiment` cannot redirect it. Artifacts of a run:
`selection/selected_features.json`, `selection/reports.json`, `splits/split.csv`, and the caller's extra files.
In MLflow 3 the model itself is a LoggedModel (`models:/<model_id>`) stored under
`<experiment artifact location>/models/<model_id>/`, linked to the run, not inside the run's artifacts.
"""

from __future__ import annotations

import json
import shutil
import tempfile
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd
from mlflow import MlflowClient
from mlflow.entities import Metric, Param

from cssci_platform.lib.model_tracking.conventions import (
    TAG_PARENT_RUN,
    in_batches,
    in_study_run,
    jsonable,
    metric_values,
    param_values,
    tag_values,
)
from cssci_platform.lib.model_tracking.model_format import (
    SerializationFormat,
    log_pipeline,
    require_fitted_classifier,
    skops_trusted_types,
)
from cssci_platform.lib.model_tracking.store import (
    TrackingConfig,
    get_or_create_experiment,
)


@dataclass(frozen=True)
class LoggedRun:
    run_id: str
    experiment_id: str
    model_id: str
    model_uri: str  # models:/<model_id>, what register_model_version takes
    artifact_uri: str  # the run's own artifacts (features, split, extras)


def log_model_run(
    config: TrackingConfig,
    *,
    run_name: str,
    model: Any,
    input_example: pd.DataFrame,
    params: Mapping[str, Any] | None = None,
    metrics: Mapping[str, float] | None = None,
    tags: Mapping[str, Any] | None = None,
    selected_features: Sequence[str] = (),
    selection_reports: Sequence[Any] = (),
    split_table: Any = None,
    extra_artifacts: Mapping[str, str | Path] | None = None,
    serialization_format: SerializationFormat = "skops",
) -> LoggedRun:
    """One finished MLflow run for one fitted classifier pipeline, with the pipeline logged as its model.

    Metric and param names are made MLflow-safe with `mlflow_key`. `selection_reports` are `SelectionReport`s
    or dicts. `split_table` is a pandas or polars frame with at least patient_key and role. `extra_artifacts`
    maps a run-relative file name to its text (str) or to a file to copy (Path). The model's signature is
    inferred from `input_example` and `model.predict_proba`, and its pyfunc flavor predicts probabilities.
    Metrics are logged before the model, so MLflow 3 also shows them on the model's page. A run tagged with its
    study run (`cssci.study_run`) is nested under it (`in_study_run`).
    """
    require_fitted_classifier(model, input_example)
    run_tags, run_params = tag_values(in_study_run(tags or {})), param_values(params or {}, len(selected_features))
    run_metrics = metric_values(metrics or {})
    _check_artifact_names(extra_artifacts or {})
    trusted_types = skops_trusted_types(model) if serialization_format == "skops" else None
    client = config.client()
    experiment_id = get_or_create_experiment(config)
    run = client.create_run(experiment_id, run_name=run_name, tags=run_tags)
    run_id = run.info.run_id
    try:
        _log_values(client, run_id, run_params, run_metrics)
        _log_selection(client, run_id, selected_features, selection_reports)
        if split_table is not None:
            client.log_text(run_id, _split_csv(split_table), "splits/split.csv")
        _log_extra_artifacts(client, run_id, extra_artifacts or {})
        logged_model = client.create_logged_model(
            experiment_id, name="model", source_run_id=run_id, params=run_params,
            tags={key: value for key, value in run_tags.items() if key != TAG_PARENT_RUN},
            model_type="sklearn",
        )
        model_info = log_pipeline(config, logged_model.model_id, run_id, model, input_example, trusted_types)
    except BaseException:
        client.set_terminated(run_id, "FAILED")
        raise
    client.set_terminated(run_id, "FINISHED")
    return LoggedRun(run_id, experiment_id, model_info.model_id, model_info.model_uri, run.info.artifact_uri)


def log_params(client: MlflowClient, run_id: str, params: Mapping[str, Any]) -> None:
    """Params of any platform run, as model runs log theirs: MLflow-safe keys, lists and dicts as JSON, in batches."""
    _log_values(client, run_id, param_values(params), {})


def _log_values(client: MlflowClient, run_id: str, params: Mapping[str, str], metrics: Mapping[str, float]) -> None:
    timestamp = int(time.time() * 1000)
    for chunk in in_batches([Param(key, value) for key, value in params.items()]):
        client.log_batch(run_id, params=chunk)
    for chunk in in_batches([Metric(key, value, timestamp, 0) for key, value in metrics.items()]):
        client.log_batch(run_id, metrics=chunk)


def _log_selection(client: MlflowClient, run_id: str, features: Sequence[str], reports: Sequence[Any]) -> None:
    if features:
        names = [str(name) for name in features]
        client.log_text(run_id, json.dumps(names, indent=1), "selection/selected_features.json")
    if reports:
        dicts = [report.to_dict() if hasattr(report, "to_dict") else dict(report) for report in reports]
        client.log_text(run_id, json.dumps(jsonable(dicts), indent=1), "selection/reports.json")


def _split_csv(split_table: Any) -> str:
    missing = {"patient_key", "role"} - set(split_table.columns)
    if missing:
        raise ValueError(f"split_table lacks column(s) {sorted(missing)}; it has {list(split_table.columns)}")
    if isinstance(split_table, pd.DataFrame):
        return split_table.to_csv(index=False)
    if hasattr(split_table, "write_csv"):  # polars
        return split_table.write_csv()
    raise TypeError(f"split_table must be a pandas or polars DataFrame, got {type(split_table).__name__}")


def _check_artifact_names(artifacts: Mapping[str, str | Path]) -> None:
    for name in artifacts:
        relative = Path(name)
        if relative.is_absolute() or ".." in relative.parts or not relative.name:
            raise ValueError(f"extra artifact name {name!r} must be a relative file path inside the run")


def _log_extra_artifacts(client: MlflowClient, run_id: str, artifacts: Mapping[str, str | Path]) -> None:
    for name, content in artifacts.items():
        relative = Path(name)
        if isinstance(content, Path):
            with tempfile.TemporaryDirectory() as folder:
                copy = Path(folder) / relative.name
                shutil.copyfile(content, copy)
                client.log_artifact(run_id, str(copy), relative.parent.as_posix() if relative.parent.parts else None)
        else:
            client.log_text(run_id, str(content), relative.as_posix())
