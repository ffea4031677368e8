"""Metrics measured after training (prospective validation) logged against a registered version, in one
validation run per version whose metric history is the validation trajectory."""

from __future__ import annotations

import time
from collections.abc import Mapping
from typing import Any

from mlflow import MlflowClient
from mlflow.entities import Metric

from cssci_platform.lib.model_tracking.conventions import (
    in_batches,
    metric_values,
    tag_values,
)
from cssci_platform.lib.model_tracking.registry import ModelVersionInfo, version_info
from cssci_platform.lib.model_tracking.store import (
    TrackingConfig,
    get_or_create_experiment,
)


def log_metrics_to_version(
    config: TrackingConfig,
    model_name: str,
    version: str | int,
    metrics: Mapping[str, float],
    *,
    step: int,
    timestamp_ms: int | None = None,
    tags: Mapping[str, Any] | None = None,
) -> str:
    """Log later (e.g. prospective validation) metrics for a registered version; returns the run id used.

    Each version gets one validation run (`validate <name> v<version>`, tagged `registered_model_name`,
    `registered_model_version`, `source_run_id`), created on first use; every call adds points at `step`
    (e.g. the number of patients with a known outcome), so the run's metric history is the validation
    trajectory. The training run is never touched. Points are also linked to the version's LoggedModel, so
    MLflow 3 shows them on the model's page, and the version gets a `validation_run_id` tag.
    """
    client = config.client()
    info = version_info(client.get_model_version(model_name, str(version)))
    run_id = _validation_run(config, client, info, tags or {})
    timestamp = timestamp_ms if timestamp_ms is not None else int(time.time() * 1000)
    entries = [
        Metric(key, value, timestamp, step, model_id=info.model_id) for key, value in metric_values(metrics).items()
    ]
    for chunk in in_batches(entries):
        client.log_batch(run_id, metrics=chunk)
    client.set_model_version_tag(model_name, info.version, "validation_run_id", run_id)
    return run_id


def _validation_run(
    config: TrackingConfig, client: MlflowClient, info: ModelVersionInfo, extra_tags: Mapping[str, Any]
) -> str:
    experiment_id = get_or_create_experiment(config)
    filter_string = (
        f"tags.registered_model_name = '{info.name}' and tags.registered_model_version = '{info.version}' "
        "and tags.run_kind = 'validation'"
    )
    existing = client.search_runs([experiment_id], filter_string, order_by=["attributes.start_time ASC"], max_results=1)
    if existing:
        return existing[0].info.run_id
    tags = {
        "run_kind": "validation",
        "registered_model_name": info.name,
        "registered_model_version": info.version,
        "source_run_id": info.run_id or "",
        **tag_values(extra_tags),
    }
    run = client.create_run(experiment_id, run_name=f"validate {info.name} v{info.version}", tags=tags)
    client.set_terminated(run.info.run_id, "FINISHED")  # a finished run still accepts new metric points
    return run.info.run_id
