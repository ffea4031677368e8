"""The multiclass sections of the HTML study report, in the layout of the spinal-metastasis primary-site study: an
expert-derived-features model (our Clinical signature) and the other signatures' champions against the fine-tuned
CNN classifiers, on each held-out cohort (test, validation) with known labels.

Sections: performance per model (top-1/2/3 accuracy and macro one-vs-rest AUC with bootstrap CIs), per-class
precision/recall/F1 (bootstrap CIs) and one-vs-rest AUC (DeLong CI) for the champions and CNNs, the confusion
matrix of the best of those, one-vs-rest ROC curves per class, per-class paired DeLong comparisons, the
leakage_safe vs paper_faithful delta and SHAP (per class) for the champions.

Every number comes from `lib/evaluation` (`multiclass_evaluation`: stratified percentile bootstrap; `auc_interval`,
`delong_roc_test`) or scikit-learn (`roc_curve`, `confusion_matrix`); this module only selects rows and lays out
tables and figures. Inputs are plain frames (no Dagster, no MLflow): prediction rows already carrying the label
they are evaluated against (see `study.labelled_predictions`).
"""

from __future__ import annotations

import html
import itertools
import math
import re
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
from matplotlib.figure import Figure
from sklearn.metrics import confusion_matrix, roc_curve

from cssci_platform.lib.evaluation import (
    DEFAULT_REPLICATES,
    DEFAULT_SEED,
    AucInterval,
    BootstrapCI,
    MulticlassEvaluation,
    auc_interval,
    delong_roc_test,
    multiclass_evaluation,
)
from cssci_platform.lib.evaluation.multiclass import class_codes
from cssci_platform.lib.report.artifacts import ReportFigure, ReportTable, inline_figure
from cssci_platform.lib.report.document import ReportDocument
from cssci_platform.lib.report.explain import explain_pipeline, explanation_caption, shap_waterfall_plot
from cssci_platform.lib.report.figures import (
    RocCurve,
    confusion_matrix_plot,
    roc_grid_plot,
    stacked_importance_plot,
)
from cssci_platform.lib.report.page import PAGE_HEAD
from cssci_platform.lib.report.tables import small_test_set_warning

HELD_OUT = ("test", "validation")
ROLE_TITLES = {"test": "Test", "validation": "Validation (prospective)"}
CNN = "CNN"
EXPERT = "Clinical"  # the signature of the expert-derived features (radiologist features + age + sex)


@dataclass
class MulticlassScores:
    """Wide held-out scores: `rows` has key, patient_key, role, label and one probability column per class;
    `models` one row per model (key, name, signature, mode, champion, network); `notes` what was left out."""

    classes: list[str]
    models: pd.DataFrame
    rows: pd.DataFrame
    notes: list[str] = field(default_factory=list)
    evaluations: dict[tuple[str, str], MulticlassEvaluation] = field(default_factory=dict)

    def of(self, key: str, role: str) -> pd.DataFrame:
        return self.rows[(self.rows["key"] == key) & (self.rows["role"] == role)]

    def name(self, key: str) -> str:
        return str(self.models.loc[self.models["key"] == key, "name"].iloc[0])

    def featured(self) -> list[str]:
        """The leakage-safe champions (the expert-features one first) and the CNNs: the models compared per class."""
        chosen = self.models[self.models["champion"] | self.models["network"]]
        order = chosen.assign(rank=np.select([chosen["signature"] == EXPERT, chosen["network"]], [0, 2], 1))
        return order.sort_values(["rank", "name"], kind="stable")["key"].tolist()

    def roles(self) -> list[str]:
        return [role for role in HELD_OUT if (self.rows["role"] == role).any()]


def cnn_display_name(classifier: str) -> str:
    """``ResNet50_original`` (what `fine_tuned_backbones` stores as classifier) -> ``ResNet50 CNN (original)``."""
    backbone, _, channel = str(classifier).partition("_")
    return f"{backbone} CNN ({channel})" if channel else f"{backbone} CNN"


def multiclass_scores(labelled: pd.DataFrame, models: pd.DataFrame, classes: Sequence[str],
                      n_bootstrap: int = DEFAULT_REPLICATES, seed: int | None = DEFAULT_SEED) -> MulticlassScores:
    """Held-out rows of the trained models (the champions' fold) and of the fine-tuned CNNs, pivoted to one
    probability column per class, with each model's bootstrap evaluation per role."""
    classes = [str(c) for c in classes]
    notes: list[str] = []
    trained = models
    if "fold" in models and models["champion"].any():
        trained = models[models["fold"] == models.loc[models["champion"], "fold"].iloc[0]]
    champion = trained["champion"].astype(bool) & (trained["mode"] == "leakage_safe")
    cv_auc = pd.to_numeric(trained["cv_auc_mean"], errors="coerce") if "cv_auc_mean" in trained else math.nan
    table = pd.DataFrame({"key": trained["run_id"], "name": trained["result_name"], "signature": trained["signature"],
                          "mode": trained["mode"], "champion": champion, "network": False, "cv_auc": cv_auc})
    networks = labelled[labelled["signature"] == CNN].drop_duplicates("model_name")
    table = pd.concat([table, pd.DataFrame({
        "key": networks["model_name"], "name": networks["classifier"].map(cnn_display_name), "signature": CNN,
        "mode": networks["mode"], "champion": False, "network": True, "cv_auc": math.nan})], ignore_index=True)
    rows = labelled[labelled["model_name"].isin(table["key"]) & labelled["role"].isin(HELD_OUT)].copy()
    rows["label"] = rows["label"].astype(str)
    rows["class_label"] = rows["class_label"].astype(str)
    for key, group in rows.groupby("model_name"):
        if set(group["class_label"]) != set(classes):
            scored = sorted(set(group["class_label"]))
            notes.append(f"{_name(table, key)}: scored classes {scored} are not the outcome's classes, left out")
            rows = rows[rows["model_name"] != key]
    unknown = sorted(set(rows["label"]) - set(classes))
    if unknown:
        notes.append(f"patients labelled {unknown} (not an outcome class) left out")
        rows = rows[rows["label"].isin(classes)]
    wide = (rows.pivot_table(index=["model_name", "patient_key", "role", "label"], columns="class_label",
                             values="probability", aggfunc="first")
            .reindex(columns=classes).dropna().reset_index().rename(columns={"model_name": "key"}))
    wide.columns.name = None
    table = table[table["key"].isin(wide["key"])].sort_values(["network", "name", "mode"], kind="stable")
    scores = MulticlassScores(classes, table.reset_index(drop=True), wide, notes)
    for key in scores.models["key"]:
        for role in HELD_OUT:
            group = scores.of(key, role)
            if len(group) >= 2 and group["label"].nunique() >= 2:
                scores.evaluations[key, role] = multiclass_evaluation(
                    group["label"].to_numpy(), group[classes].to_numpy(), classes, n=n_bootstrap, seed=seed)
    return scores


def _name(table: pd.DataFrame, key: str) -> str:
    match = table.loc[table["key"] == key, "name"]
    return str(match.iloc[0]) if len(match) else str(key)


# ------------------------------------------------------------------------------------------------ formatting


def _ci_text(ci: BootstrapCI | None) -> str:
    if ci is None or not math.isfinite(ci.estimate):
        return "-"
    interval = f" ({ci.low:.3f}-{ci.high:.3f})" if math.isfinite(ci.low) and math.isfinite(ci.high) else ""
    return f"{ci.estimate:.3f}{interval}"


def _delong_text(ci: AucInterval | None) -> str:
    """AUC (interval) with `auc_interval`'s notes (AUC 0/1, a class under 10 patients) after a dagger."""
    if ci is None:
        return "-"
    interval = f" ({ci.low:.3f}-{ci.high:.3f})" if math.isfinite(ci.low) else " (CI undefined: one patient in a group)"
    notes = f" † {'; '.join(ci.notes)}" if ci.notes else ""
    return f"{ci.auc:.3f}{interval}{notes}"


def _number(value: float, digits: int = 3) -> str:
    return f"{value:.{digits}f}" if math.isfinite(value) else "-"


def _table(rows: list[dict], css_class: str) -> str:
    return pd.DataFrame(rows).to_html(index=False, escape=True, classes=css_class, na_rep="-")


def _absent(scores: MulticlassScores, role: str) -> list[str]:
    present = set(scores.rows.loc[scores.rows["role"] == role, "label"])
    return [c for c in scores.classes if c not in present]


# -------------------------------------------------------------------------------------------------- sections


def _numbered_table(document: ReportDocument | None, key: str, title: str, caption: str, rows: list[dict],
                    body: str) -> str:
    """`body` as is without a document, else as the document's next numbered table (its rows go to CSV)."""
    if document is None:
        return body
    return document.table(ReportTable(key, title, caption, pd.DataFrame(rows), html=body))


def _numbered_figure(document: ReportDocument | None, key: str, title: str, caption: str, figure: Figure,
                     alt: str) -> str:
    """The document's next numbered figure (exported as PNG and SVG), or an unnumbered <img> without a document
    (the Figure freed afterwards)."""
    item = ReportFigure(key, title, caption, figure)
    if document is not None:
        return document.figure(item)
    return inline_figure(item, alt)


def performance_table(scores: MulticlassScores, role: str, document: ReportDocument | None = None) -> str:
    """Per model and mode: n, top-1/2/3 accuracy and macro one-vs-rest AUC, each with its bootstrap 95% CI."""
    rows = []
    for key, name, mode in scores.models[["key", "name", "mode"]].itertuples(index=False):
        evaluation = scores.evaluations.get((key, role))
        if evaluation is None:
            continue
        row = {"Model": name, "Mode": mode, "n": len(scores.of(key, role))}
        row |= {f"Top-{k} accuracy (95% CI)": _ci_text(ci) for k, ci in evaluation.top_k_accuracy.items()}
        rows.append(row | {"Macro OvR AUC (95% CI)": _ci_text(evaluation.auc_macro_ovr)})
    if not rows:
        return f"<p>No {role} patients with known labels of at least two classes.</p>"
    absent = _absent(scores, role)
    note = (f"<p>Classes without {role} patients: {html.escape(', '.join(absent))}; their one-vs-rest AUC, and so the "
            "macro AUC, is undefined.</p>" if absent else "")
    return _numbered_table(
        document, f"performance_{role}", f"Performance on the {ROLE_TITLES[role].lower()} cohort",
        "Every model and mode: top-1/2/3 accuracy and the macro one-vs-rest AUC, each with its stratified percentile "
        "bootstrap 95% CI.", rows, _table(rows, "performance") + note)


def per_class_table(scores: MulticlassScores, role: str, document: ReportDocument | None = None) -> str:
    """Champions and CNNs: per class precision, recall, F1 (bootstrap CIs) and one-vs-rest AUC (DeLong CI)."""
    rows = []
    for key in scores.featured():
        evaluation = scores.evaluations.get((key, role))
        if evaluation is None:
            continue
        group = scores.of(key, role)
        for label in scores.classes:
            y = (group["label"] == label).to_numpy().astype(int)
            auc = auc_interval(y, group[label].to_numpy()) if 0 < y.sum() < len(y) else None
            rows.append({"Model": scores.name(key), "Class": label, "n": int(y.sum()),
                         "Precision (95% CI)": _ci_text(evaluation.precision[label]),
                         "Recall (95% CI)": _ci_text(evaluation.recall[label]),
                         "F1 (95% CI)": _ci_text(evaluation.f1[label]),
                         "OvR AUC (DeLong 95% CI)": _delong_text(auc)})
    if not rows:
        return f"<p>No champion or CNN scored on {role} patients of at least two classes.</p>"
    return _numbered_table(
        document, f"per_class_{role}", f"Precision, recall, F1 and one-vs-rest AUC per class, {role} cohort",
        "Precision, recall and F1 per class with bootstrap 95% CIs; one-vs-rest AUC with DeLong's 95% CI (n: patients "
        "of the class).", rows, _table(rows, "per-class"))


def best_model(scores: MulticlassScores) -> str | None:
    """The key of the champion with the highest cross-validated macro one-vs-rest AUC on the training folds (as
    champions are chosen), never a held-out AUC, which would make the "best" model's test numbers optimistic (winner's
    curse). CNNs have no cross-validated AUC and are not candidates; None when no champion has one."""
    featured = scores.models[scores.models["key"].isin(scores.featured())]
    candidates = featured[np.isfinite(featured["cv_auc"].astype(float))]
    if candidates.empty:
        return None
    return str(candidates.sort_values(["cv_auc", "name"], ascending=[False, True], kind="stable")["key"].iloc[0])


def confusion_counts(labels: Sequence[str], probabilities: np.ndarray, classes: Sequence[str]) -> np.ndarray:
    """Counts of true class (rows) x predicted class (columns, the most probable; first listed on ties)."""
    codes = class_codes(np.asarray(labels), list(classes))
    predicted = np.asarray(probabilities, dtype=float).argmax(axis=1)
    return confusion_matrix(codes, predicted, labels=np.arange(len(classes)))


def confusion_section(scores: MulticlassScores, document: ReportDocument | None = None) -> str:
    key = best_model(scores)
    if key is None:
        return "<p>No champion with a cross-validated AUC was scored on held-out patients.</p>"
    name = scores.name(key)
    cv_auc = float(scores.models.loc[scores.models["key"] == key, "cv_auc"].iloc[0])
    parts = [f"<p>Best model: <b>{html.escape(name)}</b>, chosen by cross-validated macro one-vs-rest AUC on the "
             f"training folds ({cv_auc:.3f}; highest among the champions), not by its test AUC, so its held-out "
             "numbers below are not optimistic by selection. The fine-tuned CNNs have no cross-validated AUC and are "
             "not candidates. The predicted class is the most probable one.</p>"]
    for role in scores.roles():
        group = scores.of(key, role)
        if group.empty:
            continue
        counts = confusion_counts(group["label"].to_numpy(), group[scores.classes].to_numpy(), scores.classes)
        frame = pd.DataFrame(counts, index=pd.Index(scores.classes, name="true \\ predicted"), columns=scores.classes)
        caption = (f"Counts of true class (rows) against predicted class (columns, the most probable) of {name} on "
                   f"the {len(group)} {role} patients.")
        table = frame.to_html(escape=True, classes="confusion")
        if document is not None:
            table = document.table(ReportTable(f"confusion_{role}", f"Confusion matrix of {name}, {role} cohort",
                                               caption, frame.reset_index(), html=table))
        parts.append(f"<h4>{html.escape(ROLE_TITLES[role])}</h4>" + table
                     + _numbered_figure(document, f"confusion_{role}", f"Confusion matrix of {name}, {role} cohort",
                                        caption, confusion_matrix_plot(counts, scores.classes, f"{name}: {role}"),
                                        f"confusion matrix {role}"))
    return "".join(parts)


def roc_section(scores: MulticlassScores, role: str, document: ReportDocument | None = None) -> str:
    """One panel per class: the one-vs-rest ROC curves of the champions and CNNs, DeLong CI in the legend."""
    panels = {}
    for label in scores.classes:
        curves = []
        for key in scores.featured():
            group = scores.of(key, role)
            y = (group["label"] == label).to_numpy().astype(int)
            if not 0 < y.sum() < len(y):
                continue
            fpr, tpr, _ = roc_curve(y, group[label].to_numpy())
            ci = auc_interval(y, group[label].to_numpy())
            interval = (ci.low, ci.high) if math.isfinite(ci.low) else None
            curves.append(RocCurve(scores.name(key), fpr, tpr, ci.auc, interval))
        if curves:
            panels[f"{label} vs rest"] = curves
    if not panels:
        return f"<p>No {role} class with both members and non-members scored.</p>"
    n = scores.rows.loc[scores.rows["role"] == role, "patient_key"].nunique()
    return _numbered_figure(
        document, f"roc_ovr_{role}", f"One-vs-rest ROC curves per class, {role} cohort",
        f"One panel per class ({n} {role} patients): each champion's and CNN's ROC curve of that class against the "
        "others; the legend gives the AUC with DeLong's 95% CI; the dashed diagonal is chance.",
        roc_grid_plot(panels, title=f"One-vs-rest ROC curves ({role})"), f"one-vs-rest ROC curves {role}")


def delong_pairs(scores: MulticlassScores) -> list[tuple[str, str]]:
    """Expert-features champion vs each CNN first, then every other pair of champions and CNNs."""
    featured = scores.featured()
    expert = [k for k in featured if scores.models.loc[scores.models["key"] == k, "signature"].iloc[0] == EXPERT]
    networks = [k for k in featured if bool(scores.models.loc[scores.models["key"] == k, "network"].iloc[0])]
    first = [(a, b) for a in expert for b in networks]
    return first + [pair for pair in itertools.combinations(featured, 2) if pair not in first]


def delong_section(scores: MulticlassScores, role: str, document: ReportDocument | None = None) -> str:
    """Per class, paired DeLong tests of the one-vs-rest AUCs of two models on the patients both scored."""
    rows = []
    for a, b in delong_pairs(scores):
        paired = scores.of(a, role).merge(scores.of(b, role)[["patient_key", *scores.classes]], on="patient_key",
                                          suffixes=("_a", "_b"))
        for label in scores.classes:
            y = (paired["label"] == label).to_numpy().astype(int)
            if not 0 < y.sum() < len(y):
                continue
            test = delong_roc_test(y, paired[f"{label}_a"].to_numpy(), paired[f"{label}_b"].to_numpy())
            rows.append({"Model A": scores.name(a), "Model B": scores.name(b), "Class": label, "n": len(y),
                         "n class": int(y.sum()),
                         "AUC A": _number(test.auc_a), "AUC B": _number(test.auc_b),
                         "Difference (95% CI)":
                             f"{_number(test.difference)} ({_number(test.low)} to {_number(test.high)})",
                         "z": _number(test.z, 2), "p": _number(test.p_value, 4)})
    if not rows:
        return f"<p>Fewer than two champions or CNNs scored on the same {role} patients.</p>"
    return _numbered_table(
        document, f"delong_{role}", f"Pairwise DeLong tests of the one-vs-rest AUCs, {role} cohort",
        "One-vs-rest AUCs of two models on the patients both scored; difference with its 95% CI, z and two-sided p "
        "(not adjusted for multiple comparisons).", rows, _table(rows, "delong"))


def mode_delta(scores: MulticlassScores, document: ReportDocument | None = None) -> str:
    rows = []
    for name, group in scores.models[~scores.models["network"]].groupby("name"):
        auc = {mode: scores.evaluations[key, "test"].auc_macro_ovr.estimate
               for key, mode in group[["key", "mode"]].itertuples(index=False) if (key, "test") in scores.evaluations}
        if {"leakage_safe", "paper_faithful"} <= set(auc):
            rows.append({"Model": name, "leakage_safe macro AUC": _number(auc["leakage_safe"]),
                         "paper_faithful macro AUC": _number(auc["paper_faithful"]),
                         "optimism": f"{auc['paper_faithful'] - auc['leakage_safe']:+.3f}"})
    if not rows:
        return "<p>Only one mode was run.</p>"
    return _numbered_table(
        document, "mode_delta_test", "Test macro AUC in leakage_safe and paper_faithful mode",
        "The same model with every step inside the cross-validation (leakage_safe) and as published "
        "(paper_faithful); optimism = paper_faithful - leakage_safe.", rows, _table(rows, "modes"))


def shap_section(name: str, pipeline, rows: pd.DataFrame, top_n: int = 10,
                 background: pd.DataFrame | None = None, document: ReportDocument | None = None) -> str:
    """Mean |SHAP| per feature and class (stacked bars and a table with the mean over classes) and the waterfall
    of the first patient for the class the model predicts for them, relative to the training patients in
    `background` (see `explain_pipeline`)."""
    try:
        explanation = explain_pipeline(pipeline, rows, background, multiclass=True)
    except Exception as error:  # e.g. an estimator neither tree nor linear (SVM, KNN, MLP) or a combined model
        return (f"<p>{html.escape(name)}: no SHAP explanation ({html.escape(type(error).__name__)}: "
                f"{html.escape(str(error))[:200]})</p>")
    importance = explanation.mean_abs()
    table = importance.head(top_n).assign(**{"mean over classes": importance.head(top_n).mean(axis=1)})
    predicted = explanation.classes[int(explanation.predicted()[0])]
    caption = explanation_caption(explanation, background)
    key = re.sub(r"[^a-z0-9]+", "_", name.lower()).strip("_") or "model"
    summary = _numbered_figure(
        document, f"shap_summary_{key}", f"{name}: SHAP summary by class",
        f"Mean |SHAP| of each feature per class (stacked), over the {len(rows)} test patients. {caption}",
        stacked_importance_plot(list(importance.index), importance.to_numpy(), explanation.classes,
                                title=f"{name}: mean |SHAP| by class ({explanation.output})"),
        "SHAP summary by class")
    waterfall_html = _numbered_figure(
        document, f"shap_waterfall_{key}", f"{name}: SHAP waterfall of test patient {rows.index[0]}",
        f"How each feature moves this patient's output for the predicted class ({predicted}) from the background "
        "average.",
        shap_waterfall_plot(explanation.for_class(predicted), 0,
                            title=f"{name}: patient {rows.index[0]}, predicted {predicted}"),
        "SHAP waterfall")
    return (f"<h3>{html.escape(name)}</h3><p class=\"caption\">{html.escape(caption)}</p>" + summary
            + table.to_html(float_format=lambda v: f"{v:.4f}", classes="shap", escape=True)
            + f"<p>Patient {html.escape(str(rows.index[0]))}, explained for the predicted class "
              f"({html.escape(predicted)}):</p>" + waterfall_html)


def test_set_warning(scores: MulticlassScores) -> str | None:
    """The small-test-set warning (`tables.small_test_set_warning`) from the test patients with a known class."""
    test = scores.rows[scores.rows["role"] == "test"].drop_duplicates("patient_key")
    counts = test["label"].astype(str).value_counts()
    return small_test_set_warning({name: int(counts.get(name, 0)) for name in scores.classes})


def sections(scores: MulticlassScores, document: ReportDocument | None = None) -> dict:
    """The HTML snippets of the multiclass template that come before SHAP (performance, per class, confusion, ROC,
    DeLong), numbered in page order when a `document` is given; `mode_delta` comes after Grad-CAM."""
    roles = scores.roles()
    return {
        "roles": [(role, ROLE_TITLES[role]) for role in roles],
        "performance": {role: performance_table(scores, role, document) for role in roles},
        "per_class": {role: per_class_table(scores, role, document) for role in roles},
        "confusion": confusion_section(scores, document),
        "roc": {role: roc_section(scores, role, document) for role in roles},
        "delong": {role: delong_section(scores, role, document) for role in roles},
        "notes": "".join(f"<p>{html.escape(note)}</p>" for note in scores.notes),
    }


TEMPLATE = PAGE_HEAD + """{{ warning }}<p>Multiclass outcome: {{ classes }}.</p>
<h2>Methods</h2><p>{{ methods }}</p>
<h2>Table 1</h2>{{ table_one }}
{{ notes }}
<h2>Performance</h2>
{% for role, heading in roles %}<h3>{{ heading }}</h3>{{ performance[role] }}{% else -%}
<p>No held-out patients with known labels.</p>{% endfor %}
<h2>Per-class performance of the champions and CNNs</h2>
{% for role, heading in roles %}<h3>{{ heading }}</h3>{{ per_class[role] }}{% endfor %}
<h2>Confusion matrix of the best model</h2>{{ confusion }}
<h2>One-vs-rest ROC curves per class</h2>
{% for role, heading in roles %}<h3>{{ heading }}</h3>{{ roc[role] }}{% endfor %}
<h2>DeLong comparisons per class</h2>
<p>Paired DeLong tests of one-vs-rest AUCs: the expert-features champion (Clinical) against each CNN first, then every
other pair of champions and CNNs; p-values are not adjusted for multiple comparisons.</p>
{% for role, heading in roles %}<h3>{{ heading }}</h3>{{ delong[role] }}{% endfor %}
<h2>SHAP explanations (champions, test patients)</h2>{{ shap }}
<h2>Grad-CAM</h2>{{ gradcam }}
<h2>leakage_safe vs paper_faithful (test macro AUC)</h2>{{ modes }}
<h2>Reporting checklist</h2>{{ checklist }}
<h2>Appendix</h2><h3>Patient QC montages</h3>{{ appendix }}
</body></html>
"""
