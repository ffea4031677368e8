"""The report's validation-cohort table: every model on the validation cohort, from the same scores and the same
function as `validation_metrics` (`queries.prospective.validation_cohort_scores`,
`evaluation.prospective_validation.validation_performance`), so a champion's validation n, AUC, interval, Brier score
and threshold metrics in the report are the numbers `validation_metrics` stores, by construction."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd

from cssci_platform.lib.evaluation.prospective_validation import validation_performance
from cssci_platform.lib.report.artifacts import ReportTable
from cssci_platform.lib.report.tables import interval_text, missing_interval_reason

PERFORMANCE_COLUMNS = (
    "n",
    "prevalence",
    "auc",
    "auc_low",
    "auc_high",
    "brier",
    "threshold",
    "accuracy",
    "sensitivity",
    "specificity",
    "ppv",
    "npv",
    "f1",
)
DISPLAY = {
    "accuracy": "Acc",
    "brier": "Brier",
    "threshold": "Threshold",
    "sensitivity": "Sen",
    "specificity": "Spe",
    "ppv": "PPV",
    "npv": "NPV",
}


def validation_performance_frame(scores: pd.DataFrame) -> pd.DataFrame:
    """One row per trained model (training run) with validation-cohort patients: result_name, mode, fold, signature,
    champion, registered_model, model_version, train_run, scored_by (where the scores come from), positives,
    negatives and `validation_performance`'s numbers (NaN where not computable). `scores`:
    `validation_cohort_scores(con, outcome).to_pandas()`. Champions first (by signature), then the other models."""
    rows = []
    for run, group in scores.groupby("train_run", sort=False):
        y = (group["outcome"].astype(str) == group["class_label"].astype(str)).to_numpy().astype(int)
        first = group.iloc[0]
        threshold = float(first["threshold"]) if pd.notna(first["threshold"]) else math.nan
        metrics = validation_performance(y, group["probability"].to_numpy(dtype=float), threshold, str(first["mode"]))
        rows.append(
            {
                "result_name": first["result_name"],
                "mode": first["mode"],
                "fold": first["fold"],
                "signature": first["signature"],
                "champion": bool(first["champion"]),
                "registered_model": first["registered_model"],
                "model_version": first["model_version"],
                "train_run": run,
                "scored_by": ", ".join(sorted(set(group["scored_by"]))),
                "positives": int(y.sum()),
                "negatives": int(len(y) - y.sum()),
                **{name: float(metrics.get(name, np.nan)) for name in PERFORMANCE_COLUMNS},
            }
        )
    frame = pd.DataFrame(rows, columns=[*_IDENTITY, *PERFORMANCE_COLUMNS])
    order = frame.assign(_other=~frame["champion"].astype(bool)).sort_values(
        ["_other", "signature", "result_name", "mode", "fold"], kind="stable"
    )
    return order.drop(columns="_other").reset_index(drop=True)


_IDENTITY = (
    "result_name",
    "mode",
    "fold",
    "signature",
    "champion",
    "registered_model",
    "model_version",
    "train_run",
    "scored_by",
    "positives",
    "negatives",
)


def validation_table(scores: pd.DataFrame, champions_only: bool = False) -> ReportTable:
    """The report's validation-cohort table (`validation_performance_frame`): Model, Mode, n, 'AUC (95% CI)' as
    '0.82 (0.71-0.93)', Brier, threshold and threshold metrics (a Fold column when the split has several folds:
    each fold's model is its own row, a patient is never counted twice); the caption says what the cohort and the
    scores are and why an interval is missing. `champions_only`: the champions' rows alone."""
    performance = validation_performance_frame(scores)
    if champions_only:
        performance = performance[performance["champion"]]
    folds = {"Fold": performance["fold"]} if performance["fold"].nunique() > 1 else {}
    shown = pd.DataFrame(
        {
            "Model": performance["result_name"] + np.where(performance["champion"], " (champion)", ""),
            "Mode": performance["mode"],
            **folds,
            "n": performance["n"].astype(int),
            "AUC (95% CI)": [
                interval_text(auc, low, high)
                for auc, low, high in performance[["auc", "auc_low", "auc_high"]].itertuples(index=False)
            ],
            **{label: performance[name] for name, label in DISPLAY.items()},
        }
    )
    return ReportTable(
        key="performance_validation",
        title="Performance on the validation cohort",
        caption=validation_caption(performance),
        frame=shown,
    )


def validation_caption(performance: pd.DataFrame) -> str:
    """What the validation table shows, where its scores come from, and why any interval is missing."""
    if performance.empty:
        return (
            "No validation-cohort patient (cohort 'prospective') with a known outcome was scored by a trained model: "
            "the table fills in as follow-up outcomes arrive."
        )
    notes = []
    for row in performance.itertuples(index=False):
        reason = missing_interval_reason(int(row.positives), int(row.negatives))
        if reason:
            notes.append(f"{row.result_name} ({row.mode}): {reason}")
    return (
        "Validation cohort: the patients of cohort 'prospective' whose outcome is known. A champion's scores are those "
        "of its registered version in prospective_predictions (the patient's own scoring, also for patients who "
        "arrived after training), else its training run's; the other models are scored by their training run. The "
        "numbers are computed by the function validation_metrics uses, so a champion's row equals its latest "
        "validation_metrics rows. Threshold metrics at the frozen training threshold (paper_faithful: re-picked on "
        "the cohort)." + (" Intervals missing: " + "; ".join(notes) + "." if notes else "")
    )
