"""Study runs in MLflow: one parent record per `cssci run` (config, report), and side-by-side comparison.

A study run is an MLflow run tagged `run_kind=study` in the experiment named by the config; it holds the
resolved config (`config/experiment.yaml`, flattened as params) and the report. Every model run the
modelling step logs carries the tag `cssci.study_run=<its id>`, which is how `compare` finds them, and MLflow's
`mlflow.parentRunId`, which nests it under the study run in the UI (`model_tracking.in_study_run`).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from cssci_platform.lib.model_tracking import TAG_STUDY_RUN, TrackingConfig, get_or_create_experiment

if TYPE_CHECKING:
    import pandas as pd
    from mlflow.entities import Run

STUDY_TAG = TAG_STUDY_RUN
# (column, metric key) in display order; the first present per family is shown
# threshold metrics are the ones training logged (`cohort_threshold`: frozen, or re-picked per cohort in
# paper_faithful), the same numbers as model_results and the report
COMPARED_METRICS = (("CV AUC", "cv_auc_mean"), ("test n", "test_n"), ("test AUC", "test_auc"),
                    ("test sens", "test_sensitivity"), ("test spec", "test_specificity"),
                    ("test macro AUC", "test_auc_macro_ovr"), ("test top-1", "test_top1_accuracy"),
                    ("validation n", "validation_n"), ("validation AUC", "validation_auc"),
                    ("validation sens", "validation_sensitivity"), ("validation spec", "validation_specificity"))


class StudyRunNotFound(LookupError):
    """The run reference matches no study run; the message lists what exists."""


def start_study_run(tracking: TrackingConfig, config_yaml: str, params: dict[str, object], tags: dict[str, str]) -> str:
    from cssci_platform.lib.model_tracking import log_params  # MLflow's helpers: loaded when a run is written

    client = tracking.client()
    run = client.create_run(get_or_create_experiment(tracking), run_name=f"study {tracking.experiment_name}",
                            tags={"run_kind": "study", **tags})
    client.log_text(run.info.run_id, config_yaml, "config/experiment.yaml")
    log_params(client, run.info.run_id, params)
    return run.info.run_id


def finish_study_run(tracking: TrackingConfig, run_id: str, success: bool, report: Path | None = None) -> None:
    client = tracking.client()
    if report is not None and report.exists():
        client.log_artifact(run_id, str(report), "report")
    client.set_terminated(run_id, "FINISHED" if success else "FAILED")


@dataclass(frozen=True)
class RunReference:
    """`<study run id>` or `<experiment>` (its latest finished study run), optionally `:<mode>`."""

    run: str
    mode: str | None = None

    @classmethod
    def parse(cls, text: str) -> RunReference:
        run, _, mode = text.partition(":")
        return cls(run, mode or None)


def _store_client(tracking_uri: str):
    """A client of the whole store: study runs are looked up across experiments, so no experiment is named."""
    return TrackingConfig(tracking_uri, experiment_name="").client()


def resolve_study_run(tracking_uri: str, reference: RunReference) -> Run:
    client = _store_client(tracking_uri)
    try:
        run = client.get_run(reference.run)
        if run.data.tags.get("run_kind") == "study":
            return run
    except Exception:  # noqa: BLE001 - MLflow raises its own exception type for an unknown id; fall through to names
        pass
    experiment = client.get_experiment_by_name(reference.run)
    runs = client.search_runs([experiment.experiment_id], "tags.run_kind = 'study' and attributes.status = 'FINISHED'",
                              order_by=["attributes.start_time DESC"], max_results=1) if experiment else []
    if not runs:
        known = sorted({e.name for e in client.search_experiments()})
        raise StudyRunNotFound(
            f"'{reference.run}' is neither a study run id nor an experiment with a finished study run "
            f"(experiments: {', '.join(known) or 'none'}); run `cssci run --config ...` first"
        )
    return runs[0]


def model_metrics(tracking_uri: str, study: Run, mode: str | None) -> pd.DataFrame:
    """One row per model run of the study (optionally one mode): model name, mode, and the compared metrics."""
    import pandas as pd

    client = _store_client(tracking_uri)
    query = f"tags.`{STUDY_TAG}` = '{study.info.run_id}'" + (f" and tags.mode = '{mode}'" if mode else "")
    runs = client.search_runs([study.info.experiment_id], query, max_results=5000)
    rows = []
    for run in runs:
        tags = run.data.tags
        rows.append({"model": tags.get("mlflow.runName", run.info.run_id).split(" [")[0], "mode": tags.get("mode"),
                     "fold": tags.get("fold"), **{key: run.data.metrics.get(key) for _, key in COMPARED_METRICS}})
    frame = pd.DataFrame(rows)
    if frame.empty:
        in_mode = f" in mode '{mode}'" if mode else ""
        raise StudyRunNotFound(f"study run {study.info.run_id} has no model runs{in_mode}")
    return frame


def compare_runs(left: pd.DataFrame, right: pd.DataFrame, left_name: str, right_name: str) -> pd.DataFrame:
    """Models of both runs side by side, matched on model name and, when either run holds several, mode and fold
    (two single-mode selections such as `demo:leakage_safe` vs `demo:paper_faithful` match on the model alone)."""
    import pandas as pd

    keys = ["model"] + [k for k in ("mode", "fold") if left[k].nunique() > 1 or right[k].nunique() > 1]
    metrics = [key for _, key in COMPARED_METRICS if left[key].notna().any() or right[key].notna().any()]
    merged = left[[*keys, *metrics]].merge(right[[*keys, *metrics]], on=keys, how="outer", suffixes=(" A", " B"))
    labels = {key: label for label, key in COMPARED_METRICS}
    columns = {}
    for key in metrics:
        columns[f"{labels[key]} {left_name}"] = merged[f"{key} A"]
        columns[f"{labels[key]} {right_name}"] = merged[f"{key} B"]
        if key in ("test_auc", "test_auc_macro_ovr", "test_top1_accuracy", "validation_auc"):
            columns[f"{labels[key]} {right_name}-{left_name}"] = merged[f"{key} B"] - merged[f"{key} A"]
    return pd.concat([merged[keys], pd.DataFrame(columns)], axis=1).sort_values(keys).reset_index(drop=True)
