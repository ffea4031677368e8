"""What a registered model version says about itself: its model card (the version's description in the MLflow
registry) and its evaluation plots (ROC and calibration, artifacts of its run).

The card is built from the run (params, metrics, tags, selected features) and, when the caller has them, the
model's own predictions (`ModelEvidence`): patients per role and class, centers, and AUCs with their intervals
(`lib.evaluation.auc_interval`, the report's interval). Without evidence the card says which parts are missing.
"""

from __future__ import annotations

import json
import math
import tempfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
from mlflow import MlflowClient
from mlflow.entities import Run

PLOTS_FOLDER = "plots"
ROLE_ORDER = ("train", "train_oof", "test", "validation")
# roles whose predictions estimate performance: out-of-fold and held-out ones, never the fitted patients' own ("train")
SCORED_ROLES = ("train_oof", "test", "validation")
ROLE_NAMES = {"train": "training", "train_oof": "training (out-of-fold)", "test": "test", "validation": "validation"}
INTENDED_USE = (
    "Research use only: estimating the outcome's probability for adult patients like those of the development "
    "cohort, imaged with the same protocol, to support (never replace) a clinician's judgement. Not a medical device."
)
LIMITS = (
    "Validated only on the roles listed above; centers, scanners or protocols absent from training are out of scope "
    "until a prospective validation says otherwise. Small test sets give wide intervals (see n above)."
)


@dataclass(frozen=True)
class RoleScores:
    """One role's patients (`SCORED_ROLES`): their labels (1 = the positive class) and P(positive)."""

    role: str
    labels: np.ndarray
    risk: np.ndarray

    @property
    def counts(self) -> tuple[int, int]:
        """(negatives, positives)."""
        positives = int(np.sum(self.labels == 1))
        return len(self.labels) - positives, positives


@dataclass(frozen=True)
class ModelEvidence:
    """The data behind a model: the outcome, its positive class, the patients of each role per class, the centers,
    and for a binary outcome each role's scores (multiclass: counts only, no plots or intervals)."""

    outcome: str
    positive_class: str
    class_counts: dict[str, dict[str, int]]  # role -> class -> patients
    scores: list[RoleScores] = field(default_factory=list)
    centers: dict[str, int] = field(default_factory=dict)  # center -> patients with a known outcome


def model_evidence(
    predictions: pd.DataFrame,
    labels: pd.Series,
    classes: Sequence[str],
    outcome: str,
    centers: pd.Series | None = None,
) -> ModelEvidence:
    """Evidence from a model's predictions (long rows: patient_key, role, class_label, probability, as the zoo
    writes them) and the labels it was evaluated against (patient_key -> class; missing: outcome unknown). Roles
    outside `SCORED_ROLES` (the training patients' in-sample predictions) count patients but give no AUC or plot.
    `centers`: patient_key -> center. The positive class is the last of `classes` ('1' of a binary outcome)."""
    positive = str(classes[-1])
    known = labels.dropna().map(_class_text)
    patients = predictions[["patient_key", "role"]].drop_duplicates()
    patients = patients[patients["patient_key"].isin(known.index)]
    counts = {
        role: {str(c): int((known.reindex(group["patient_key"]) == str(c)).sum()) for c in classes}
        for role, group in patients.groupby("role", sort=False)
    }
    scores = []
    if len(classes) == 2:
        of_positive = predictions[predictions["class_label"].map(_class_text) == positive]
        for role in [r for r in SCORED_ROLES if r in counts]:
            rows = of_positive[(of_positive["role"] == role) & of_positive["patient_key"].isin(known.index)]
            truth = (known.reindex(rows["patient_key"]) == positive).to_numpy(dtype=int)
            scores.append(RoleScores(role, truth, rows["probability"].to_numpy(dtype=float)))
    center_counts = {}
    if centers is not None:
        in_model = centers.reindex(patients["patient_key"].unique()).dropna()
        center_counts = {str(name): int(n) for name, n in in_model.value_counts().sort_index().items()}
    return ModelEvidence(outcome, positive, counts, scores, center_counts)


def model_card(run: Run, selected_features: Sequence[str], evidence: ModelEvidence | None, model_name: str) -> str:
    """The version's description: a short markdown model card (data, split, features, metrics, threshold,
    intended use and limits)."""
    params, metrics, tags = run.data.params, run.data.metrics, run.data.tags
    lines = [
        f"**{model_name}**: {params.get('classifier', '?')} on signature {params.get('signature', '?')} "
        f"({params.get('mode', '?')} mode), MLflow run {run.info.run_id}.",
        "",
        f"- **Data**: {_data_line(evidence)}",
        f"- **Split**: {_split_line(params, tags)}",
        f"- **Features**: {_features_line(params, selected_features)}",
        f"- **Metrics**: {_metrics_line(metrics, evidence)}",
        f"- **Threshold**: {_threshold_line(params)}",
        f"- **Intended use**: {INTENDED_USE}",
        f"- **Limits**: {LIMITS}",
    ]
    return "\n".join(lines)


def _data_line(evidence: ModelEvidence | None) -> str:
    if evidence is None:
        return "patients per class not given to the registry (see the run's split/split.csv for the roles)."
    roles = [r for r in ROLE_ORDER if r in evidence.class_counts] + sorted(set(evidence.class_counts) - set(ROLE_ORDER))
    per_role = "; ".join(
        f"{ROLE_NAMES.get(role, role)} {sum(evidence.class_counts[role].values())} ("
        + ", ".join(f"{c}: {n}" for c, n in evidence.class_counts[role].items()) + ")"
        for role in roles
    )
    centers = ", ".join(f"{name} {n}" for name, n in evidence.centers.items()) or "not given"
    return (f"outcome {evidence.outcome}, positive class '{evidence.positive_class}'. Patients with a known outcome "
            f"per role (per class): {per_role}. Centers: {centers}.")


def _split_line(params: Mapping[str, str], tags: Mapping[str, str]) -> str:
    folds = params.get("cv_folds")
    cv = f"{folds}-fold stratified CV grid search ({params.get('grid', '?')} grid) on the training patients" if folds \
        else "no CV"
    return f"split {tags.get('split', '?')}, fold {tags.get('fold', '?')}; {cv}; seed {params.get('seed', '?')}."


def _features_line(params: Mapping[str, str], selected: Sequence[str]) -> str:
    shown = ", ".join(selected[:12]) + (f", ... ({len(selected) - 12} more)" if len(selected) > 12 else "")
    return (f"{len(selected)} selected of {params.get('input_features', '?')} inputs"
            + (f": {shown}" if selected else "") + " (full list: selection/selected_features.json).")


def _metrics_line(metrics: Mapping[str, float], evidence: ModelEvidence | None) -> str:
    parts = []
    if "cv_auc_mean" in metrics:
        parts.append(f"CV AUC {metrics['cv_auc_mean']:.3f} ± {metrics.get('cv_auc_sd', math.nan):.3f} (mean ± SD over "
                     "folds)")
    intervals = {s.role: s for s in evidence.scores} if evidence is not None else {}
    missing = "predictions not given to the registry" if evidence is None else "its predictions are not stored"
    for role in SCORED_ROLES:
        if role in intervals:
            parts.append(f"{ROLE_NAMES[role]} AUC {_auc_with_interval(intervals[role])}")
        elif f"{role}_auc" in metrics:
            parts.append(f"{ROLE_NAMES[role]} AUC {metrics[f'{role}_auc']:.3f} (n={metrics.get(f'{role}_n', 0):.0f}; "
                         f"no interval: {missing})")
        for name in ("sensitivity", "specificity"):
            if f"{role}_{name}" in metrics and role != "train_oof":
                parts.append(f"{ROLE_NAMES[role]} {name} {metrics[f'{role}_{name}']:.3f}")
    return "; ".join(parts) + "." if parts else "none logged."


def _auc_with_interval(scores: RoleScores) -> str:
    from cssci_platform.lib.evaluation import auc_interval

    negatives, positives = scores.counts
    if not negatives or not positives:
        return f"not defined (n={len(scores.labels)}: {positives} positive, {negatives} negative)"
    found = auc_interval(scores.labels, scores.risk)
    interval = (f"95% CI {found.low:.3f}-{found.high:.3f}, {found.method}" if math.isfinite(found.low)
                else "no CI: fewer than two patients in a class")
    return f"{found.auc:.3f} ({interval}; n={len(scores.labels)}: {positives} positive, {negatives} negative)"


def _short_auc(scores: RoleScores) -> str:
    from cssci_platform.lib.evaluation import auc_interval

    found = auc_interval(scores.labels, scores.risk)
    interval = f" ({found.low:.2f}-{found.high:.2f})" if math.isfinite(found.low) else ""
    return f"AUC {found.auc:.2f}{interval}, n={len(scores.labels)}"


def _threshold_line(params: Mapping[str, str]) -> str:
    threshold = params.get("threshold")
    if threshold is None:
        return "none logged."
    return (f"P(positive) >= {float(threshold):.3f} is called positive; chosen on the training patients' out-of-fold "
            "predictions and frozen for the test, validation and prospective patients.")


def selected_features(client: MlflowClient, run_id: str) -> list[str]:
    """The run's `selection/selected_features.json` (empty when it logged none)."""
    with tempfile.TemporaryDirectory() as folder:
        try:
            path = client.download_artifacts(run_id, "selection/selected_features.json", folder)
        except Exception:  # noqa: BLE001 - MLflow raises OSError or MlflowException for a missing artifact
            return []
        return [str(name) for name in json.loads(Path(path).read_text(encoding="utf-8"))]


def log_evaluation_plots(client: MlflowClient, run_id: str, evidence: ModelEvidence) -> list[str]:
    """ROC curves and calibration curves (one line per role) as PNGs under the run's `plots/`; the artifact paths
    logged (none for a multiclass outcome or a role without both classes)."""
    usable = [s for s in evidence.scores if min(s.counts) > 0]
    if not usable:
        return []
    import matplotlib

    matplotlib.use("Agg")  # no display; the report's figures use the same backend
    import matplotlib.pyplot as plt

    logged = []
    for name, draw in (("roc.png", _draw_roc), ("calibration.png", _draw_calibration)):
        figure, axes = plt.subplots(figsize=(4.2, 4.2), dpi=90)
        try:
            draw(axes, usable, evidence.positive_class)
            figure.tight_layout()
            client.log_figure(run_id, figure, f"{PLOTS_FOLDER}/{name}")
        finally:
            plt.close(figure)
        logged.append(f"{PLOTS_FOLDER}/{name}")
    return logged


def _draw_roc(axes, scores: list[RoleScores], positive: str) -> None:
    from sklearn.metrics import roc_curve

    for role in scores:
        false_positive, true_positive, _ = roc_curve(role.labels, role.risk)
        axes.plot(false_positive, true_positive, label=f"{ROLE_NAMES.get(role.role, role.role)}: {_short_auc(role)}")
    axes.plot([0, 1], [0, 1], color="grey", linestyle=":", linewidth=0.8)
    axes.set(xlabel="1 - specificity", ylabel="sensitivity", title=f"ROC, positive class '{positive}'",
             xlim=(0, 1), ylim=(0, 1.02))
    axes.legend(loc="lower right", fontsize=7)


def _draw_calibration(axes, scores: list[RoleScores], positive: str) -> None:
    from cssci_platform.lib.evaluation.calibration import calibration_curve

    for role in scores:
        curve = calibration_curve(role.labels, role.risk, n_bins=min(10, max(2, len(role.labels) // 5)))
        axes.plot(curve.mean_predicted, curve.observed, marker="o", markersize=3,
                  label=f"{ROLE_NAMES.get(role.role, role.role)} (n={len(role.labels)})")
    axes.plot([0, 1], [0, 1], color="grey", linestyle=":", linewidth=0.8)
    axes.set(xlabel=f"predicted P({positive})", ylabel="observed fraction", title="Calibration (quantile groups)",
             xlim=(0, 1), ylim=(0, 1))
    axes.legend(loc="upper left", fontsize=7)


def _class_text(value: object) -> str:
    """Labels as the class names the predictions use ('1', not '1.0')."""
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)
