"""validation_metrics: each champion on the prospective patients whose outcome has arrived; weekly schedule."""

import math
from datetime import datetime

import dagster as dg
import numpy as np
import polars as pl
from sklearn.metrics import brier_score_loss

from cssci_platform.defs.prospective.assets import ScoringConfig, followup_outcomes, prospective_predictions
from cssci_platform.lib.evaluation import auc_interval, threshold_metrics
from cssci_platform.lib.model_tracking import log_metrics_to_version
from cssci_platform.lib.warehouse import append_rows
from cssci_platform.resources.tracking import TrackingResource
from cssci_platform.resources.warehouse import WarehouseResource

ALL = dg.AllPartitionMapping()
STUDY_OUTCOME = "SELECT any_value(outcome) FROM splits"  # the outcome the champions were trained on


@dg.asset(group_name="prospective", kinds={"duckdb", "mlflow"},
          deps=[dg.AssetDep(prospective_predictions, partition_mapping=ALL), followup_outcomes])
def validation_metrics(config: ScoringConfig, warehouse: WarehouseResource, tracking: TrackingResource) -> dg.MaterializeResult:
    """AUC with its interval (`auc_interval`: logit-DeLong, Newcombe's score at AUC 0/1), Brier score and threshold
    metrics per champion version; appended, and logged to MLflow. Flagged when the validation AUC falls below the lower
    bound of the same interval on the test patients."""
    scored = warehouse.frame(
        "SELECT p.signature, p.registered_model, p.model_version, p.patient_key, p.class_label, p.probability, "
        "o.value AS outcome, t.threshold, t.run_id AS train_run FROM prospective_predictions p "
        f"JOIN outcomes o ON o.patient_key = p.patient_key AND o.value IS NOT NULL AND o.outcome = ({STUDY_OUTCOME}) "
        "JOIN trained_models t ON t.registered_model = p.registered_model AND t.model_version = p.model_version "
        "WHERE p.class_label = (SELECT max(class_label) FROM prospective_predictions)")
    rows, flags, now = [], [], datetime.now()
    for (signature, name, version), group in scored.group_by("signature", "registered_model", "model_version", maintain_order=True):
        metrics = _metrics(group)
        low = _test_auc_low(warehouse, group["train_run"][0])
        below = not math.isnan(metrics.get("auc", math.nan)) and not math.isnan(low) and metrics["auc"] < low
        flags += [f"{signature} v{version}: validation AUC {metrics['auc']:.3f} < test CI low {low:.3f}"] if below else []
        rows += [{"registered_model": name, "model_version": version, "signature": signature, "n_patients": group.height,
                  "metric": k, "value": v, "test_auc_low": low, "below_test_ci": below, "computed_at": now} for k, v in metrics.items()]
        finite = {k: v for k, v in metrics.items() if math.isfinite(v)}
        log_metrics_to_version(tracking.config(config.experiment), name, version, {f"validation_{k}": v for k, v in finite.items()},
                               step=group.height)
    with warehouse.connect() as con:
        append_rows(con, "validation_metrics", rows)
    return dg.MaterializeResult(metadata={"champions": len({r["registered_model"] for r in rows}),
                                          "rows": len(rows), "below_test_ci": dg.MetadataValue.md("\n".join(f"- {f}" for f in flags) or "none")})


def _metrics(group: pl.DataFrame) -> dict[str, float]:
    y = (group["outcome"] == group["class_label"]).to_numpy().astype(int)
    p = group["probability"].to_numpy()
    metrics = {"n": float(len(y)), "prevalence": float(y.mean()), "brier": float(brier_score_loss(y, p))}
    if len(np.unique(y)) == 2:
        ci = auc_interval(y, p)
        metrics |= {"auc": ci.auc, "auc_low": ci.low, "auc_high": ci.high}
    threshold = group["threshold"][0]
    if threshold is not None and math.isfinite(threshold):
        metrics |= threshold_metrics(y, p, threshold)
    return metrics


def _test_auc_low(warehouse: WarehouseResource, run_id: str) -> float:
    """Lower 95% bound of the champion's AUC on its held-out test patients (`lower_test_bound`)."""
    test = warehouse.frame("SELECT p.probability, p.class_label, coalesce(p.label, o.value) AS value FROM predictions p "
                           f"JOIN outcomes o ON o.patient_key = p.patient_key AND o.outcome = ({STUDY_OUTCOME}) "
                           "WHERE p.model_name = ? AND p.role = 'test' AND o.value IS NOT NULL AND "
                           "p.class_label = (SELECT max(class_label) FROM predictions WHERE model_name = ?)", [run_id, run_id])
    y = (test["value"] == test["class_label"]).to_numpy().astype(int)
    return lower_test_bound(y, test["probability"].to_numpy())


def lower_test_bound(y: np.ndarray, probability: np.ndarray) -> float:
    """The drift flag's bar: the lower bound of `auc_interval` on the test patients (never the degenerate DeLong
    bound of 1 at a test AUC of 1); NaN without both classes."""
    return auc_interval(y, probability).low if len(np.unique(y)) == 2 else math.nan
