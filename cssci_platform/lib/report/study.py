"""The self-contained HTML study report: Table 1, performance tables in the studies' layout, ROC, DeLong,
calibration, decision curves, nomogram, Grad-CAM gallery, the mode delta and a generated methods paragraph.
Outcomes with more than two classes (`ReportInputs.classes`) get the multiclass layout of `study_multiclass`.

Inputs are plain frames read from the warehouse (no Dagster, no MLflow here); every figure is embedded as a
data URI so the file opens offline.
"""

from __future__ import annotations

import html
import math

import numpy as np
import pandas as pd
from jinja2 import Environment
from sklearn.metrics import roc_curve
from sklearn.pipeline import Pipeline

from cssci_platform.lib.clinical import independent_risk_factors, multivariable_logistic, table_one, table_one_html
from cssci_platform.lib.evaluation import (
    auc_interval,
    calibration_curve,
    delong_roc_test,
    hosmer_lemeshow,
    net_benefit,
    threshold_metrics,
)
from cssci_platform.lib.evaluation.calibration import brier_score, calibration_in_the_large, logistic_recalibration
from cssci_platform.lib.modeling.chains import RadScoreCombinedClassifier
from cssci_platform.lib.modeling.training import cohort_threshold
from cssci_platform.lib.report import study_multiclass
from cssci_platform.lib.report.explain import background_caption, explain_pipeline, shap_summary_png, shap_waterfall_png
from cssci_platform.lib.report.figures import (
    CalibrationCurve,
    DecisionCurve,
    RocCurve,
    calibration_figure,
    decision_curve_figure,
    gradcam_gallery,
    png_img_tag,
    roc_panels,
)
from cssci_platform.lib.report.inputs import ReportInputs
from cssci_platform.lib.report.methods import binary_methods, multiclass_methods
from cssci_platform.lib.report.nomogram import nomogram_figure, nomogram_from_fit
from cssci_platform.lib.report.page import PAGE_HEAD

COHORTS = ("train", "test", "validation")


def labelled_predictions(predictions: pd.DataFrame, outcomes: pd.DataFrame) -> pd.DataFrame:
    """Prediction rows with the label each is evaluated against: the row's own `label` where the frame has that
    column and it is not null, else the patient's label in `outcomes`; rows with neither are left out."""
    known = outcomes.dropna(subset=["label"])[["patient_key", "label"]].rename(columns={"label": "_outcome_label"})
    frame = predictions.merge(known, on="patient_key", how="left")
    own = frame["label"] if "label" in frame else pd.Series(None, index=frame.index, dtype=object)
    frame["label"] = own.where(own.notna(), frame["_outcome_label"])
    return frame.drop(columns="_outcome_label").dropna(subset=["label"])


def build_report(inputs: ReportInputs) -> str:
    if inputs.multiclass:
        return _build_multiclass(inputs)
    scored = _scored(inputs)
    champions = inputs.models[inputs.models["champion"]]
    sections = {
        "methods": binary_methods(inputs),
        "table_one": _table_one(inputs),
        "performance": {role: _performance_table(scored, inputs.models, role) for role in COHORTS},
        "roc": _roc(scored, champions),
        "delong": _delong_table(scored, champions),
        "calibration": _calibration(scored, champions),
        "nomogram": _nomogram(inputs, scored),
        "gradcam": _gradcam(inputs),
        "modes": _mode_delta(scored, inputs.models),
        "shap": "".join(
            shap_section(name, pipeline, rows, inputs.background) for name, pipeline, rows in inputs.explained
        )
        or "<p>No champion pipeline was given to explain.</p>",
    }
    return Environment(autoescape=False).from_string(TEMPLATE).render(title=html.escape(inputs.experiment), **sections)


def _build_multiclass(inputs: ReportInputs) -> str:
    classes = [str(c) for c in inputs.classes or []]
    scores = study_multiclass.multiclass_scores(
        labelled_predictions(inputs.predictions, inputs.outcomes),
        inputs.models,
        classes,
        inputs.n_bootstrap,
        inputs.seed,
    )
    sections = {
        "methods": multiclass_methods(inputs, sorted(scores.models.loc[scores.models["network"], "name"])),
        "table_one": _table_one(inputs, classes),
        "shap": "".join(
            study_multiclass.shap_section(name, pipeline, rows, background=inputs.background)
            for name, pipeline, rows in inputs.explained
        )
        or "<p>No champion pipeline was given to explain.</p>",
        "gradcam": _gradcam(inputs),
        **study_multiclass.sections(scores),
    }
    return (
        Environment(autoescape=False)
        .from_string(study_multiclass.TEMPLATE)
        .render(title=html.escape(inputs.experiment), classes=html.escape(", ".join(classes)), **sections)
    )


def _scored(inputs: ReportInputs) -> pd.DataFrame:
    """Positive-class probability per model and patient with the known outcome (binary studies)."""
    positive = inputs.predictions[inputs.predictions["class_label"] == inputs.positive_class]
    frame = labelled_predictions(positive, inputs.outcomes)
    frame["y"] = (frame["label"].astype(str) == inputs.positive_class).astype(int)
    return frame.merge(
        inputs.models[["run_id", "result_name", "threshold", "champion"]], left_on="model_name", right_on="run_id"
    )


def _gradcam(inputs: ReportInputs) -> str:
    return (
        png_img_tag(gradcam_gallery(inputs.gradcams[:12]), "Grad-CAM gallery")
        if inputs.gradcams
        else "<p>No fine-tuned network in this study, so no Grad-CAM (run fine_tuning_job).</p>"
    )


def _table_one(inputs: ReportInputs, classes: list[str] | None = None) -> str:
    """By outcome group; with `classes` (multiclass) by outcome class, in their declared order."""
    frame = inputs.clinical.merge(inputs.outcomes, on="patient_key").dropna(subset=["label"])
    continuous = [v for v, t in inputs.clinical_types.items() if t == "continuous"]
    categorical = [v for v, t in inputs.clinical_types.items() if t != "continuous"]
    if frame.empty or frame["label"].nunique() < 2:
        return (
            "<p>Table 1 needs patients of both outcome groups.</p>"
            if classes is None
            else "<p>Table 1 needs patients of at least two outcome classes.</p>"
        )
    if classes is None:
        return table_one_html(table_one(frame, "label", continuous, categorical), "Table 1: by outcome group")
    frame["label"] = frame["label"].astype(str)
    order = [c for c in classes if c in set(frame["label"])]
    return table_one_html(
        table_one(frame, "label", continuous, categorical, group_order=order), "Table 1: by outcome class"
    )


def performance_rows(scored: pd.DataFrame, role: str) -> tuple[pd.DataFrame, list[str]]:
    """One row per model and mode of one cohort (the studies' columns), and the notes on its AUC intervals. Threshold
    metrics use `cohort_threshold`, as training does for MLflow and model_results."""
    rows, notes = [], []
    for (name, mode), group in scored[scored["role"] == role].groupby(["result_name", "mode"], sort=True):
        if group["y"].nunique() < 2:
            continue
        y, p = group["y"].to_numpy(), group["probability"].to_numpy()
        ci = auc_interval(y, p)
        cut = cohort_threshold(str(mode), y, p, float(group["threshold"].iloc[0]))
        metrics = threshold_metrics(y, p, cut)
        flag = " †" if ci.notes else ""
        notes += [f"{name} ({mode}): {note}" for note in ci.notes]
        rows.append(
            {
                "Model": name,
                "Mode": mode,
                "n": len(group),
                "Acc": metrics["accuracy"],
                "AUC": ci.auc,
                "95% CI": f"{ci.low:.3f}-{ci.high:.3f}{flag}",
                "Threshold": cut,
                "Sen": metrics["sensitivity"],
                "Spe": metrics["specificity"],
                "PPV": metrics["ppv"],
                "NPV": metrics["npv"],
            }
        )
    return pd.DataFrame(rows), notes


def _performance_table(scored: pd.DataFrame, models: pd.DataFrame, role: str) -> str:
    rows, notes = performance_rows(scored, role)
    if rows.empty:
        return f"<p>No {role} patients with known outcomes of both classes.</p>"
    return rows.to_html(index=False, float_format=lambda v: f"{v:.3f}", classes="performance", na_rep="-") + "".join(
        f'<p class="note">† {html.escape(note)}</p>' for note in notes
    )


def _champion_groups(scored: pd.DataFrame, champions: pd.DataFrame, role: str):
    for run_id, name in champions[["run_id", "result_name"]].itertuples(index=False):
        group = scored[(scored["run_id"] == run_id) & (scored["role"] == role)]
        if group["y"].nunique() == 2:
            yield name, group


def _roc(scored: pd.DataFrame, champions: pd.DataFrame) -> str:
    panels = {}
    for role in COHORTS:
        curves = []
        for name, group in _champion_groups(scored, champions, role):
            fpr, tpr, _ = roc_curve(group["y"], group["probability"])
            ci = auc_interval(group["y"].to_numpy(), group["probability"].to_numpy())
            curves.append(RocCurve(name, fpr, tpr, ci.auc, (ci.low, ci.high)))
        if curves:
            panels[role] = curves
    return (
        png_img_tag(roc_panels(panels), "ROC curves per cohort")
        if panels
        else "<p>No cohort with both outcome classes.</p>"
    )


def _delong_table(scored: pd.DataFrame, champions: pd.DataFrame) -> str:
    test = dict(_champion_groups(scored, champions, "test"))
    names, rows = sorted(test), []
    for i, a in enumerate(names):
        for b in names[i + 1 :]:
            paired = test[a][["patient_key", "y", "probability"]].merge(
                test[b][["patient_key", "probability"]], on="patient_key"
            )
            result = delong_roc_test(
                paired["y"].to_numpy(), paired["probability_x"].to_numpy(), paired["probability_y"].to_numpy()
            )
            rows.append(
                {
                    "Model A": a,
                    "Model B": b,
                    "AUC A": result.auc_a,
                    "AUC B": result.auc_b,
                    "z": result.z,
                    "p": result.p_value,
                }
            )
    if not rows:
        return "<p>Fewer than two champions scored on the test cohort.</p>"
    return pd.DataFrame(rows).to_html(index=False, float_format=lambda v: f"{v:.3f}", classes="delong")


def _calibration(scored: pd.DataFrame, champions: pd.DataFrame) -> str:
    curves, decisions, net_benefits, summaries = [], [], [], []
    for name, group in _champion_groups(scored, champions, "test"):
        y, p = group["y"].to_numpy(), group["probability"].to_numpy()
        binned = calibration_curve(y, p, n_bins=min(5, max(2, len(y) // 5)))
        curves.append(CalibrationCurve(name, binned.mean_predicted, binned.observed))
        dca = net_benefit(y, p)
        decisions.append(DecisionCurve(name, dca.model))
        net_benefits.append(dca)
        summaries.append({"Model": name, **calibration_cells(y, p)})
    if not curves:
        return "<p>No champion scored on a test cohort with both outcome classes.</p>"
    last = net_benefits[-1]  # thresholds and treat-all: those of the last champion's test patients
    table = pd.DataFrame(summaries).to_html(index=False, classes="calibration", escape=False)
    return (
        png_img_tag(calibration_figure(curves, "Calibration (test)"), "calibration")
        + png_img_tag(
            decision_curve_figure(last.thresholds, decisions, last.treat_all, title="Decision curves (test)"),
            "decision curves",
        )
        + table
    )


def out_of_fold_rad_scores(pipeline: object) -> pd.DataFrame | None:
    """The out-of-fold Rad-scores (patient_key, rad_score) a fitted Combined pipeline's head was fitted on, or None
    for any other model."""
    final = pipeline.steps[-1][1] if isinstance(pipeline, Pipeline) else pipeline
    if not isinstance(final, RadScoreCombinedClassifier) or not hasattr(final, "head_scores_"):
        return None
    return pd.DataFrame(
        {"patient_key": list(final.head_score_rows_), "rad_score": np.asarray(final.head_scores_, dtype=float)}
    )


def champions_rad_scores(explained: list[tuple[str, object, pd.DataFrame]]) -> pd.DataFrame | None:
    """The out-of-fold Rad-scores of the first explained champion that has them (the Combined model's), else None."""
    return next(
        (scores for _, pipeline, _ in explained if (scores := out_of_fold_rad_scores(pipeline)) is not None), None
    )


def calibration_cells(y: np.ndarray, risk: np.ndarray) -> dict[str, str]:
    """A held-out cohort's calibration numbers as table cells; a recalibration that does not converge (the risks
    separate the outcomes, so the maximum-likelihood slope is infinite) says so instead of printing nan."""
    recalibration = logistic_recalibration(y, risk)
    hl = hosmer_lemeshow(y, risk)
    separated = (
        "not estimable: the predicted risks (quasi-)completely separate the outcomes, so the logistic "
        "recalibration has no finite maximum-likelihood estimate"
    )
    return {
        "Brier": f"{brier_score(y, risk):.3f}",
        "O - E": f"{calibration_in_the_large(y, risk):+.3f}",
        "Calibration intercept": f"{recalibration.intercept:.3f}" if recalibration.converged else separated,
        "Calibration slope": f"{recalibration.slope:.3f}" if recalibration.converged else separated,
        "Hosmer-Lemeshow": (
            f"chi2 {hl.statistic:.2f}, p {hl.p_value:.3f}; {html.escape(hl.convention)}"
            if math.isfinite(hl.p_value)
            else f"not computed ({html.escape(hl.convention)})"
        ),
    }


def _nomogram(inputs: ReportInputs, scored: pd.DataFrame) -> str:
    """Combined model as published: clinical factors that stay independent + the Rad-score, refit on training
    patients (logistic regression), drawn as a nomogram with its equation. The Rad-score of each training patient is
    the out-of-fold one the Combined model's head was fitted on (cross-fitting), never its in-sample score."""
    if inputs.rad_scores is None or inputs.rad_scores.empty:
        return (
            "<p>No Combined model with out-of-fold Rad-scores was given, so no nomogram (an in-sample Rad-score "
            "would earn the radiomics model a weight it has not earned).</p>"
        )
    labels = scored[scored["role"] == "train"].drop_duplicates("patient_key")[["patient_key", "y"]]
    frame = inputs.clinical.merge(labels.merge(inputs.rad_scores, on="patient_key"), on="patient_key")
    categorical = [v for v, t in inputs.clinical_types.items() if t == "categorical"]
    try:
        analysis = independent_risk_factors(
            frame, "y", [*inputs.clinical_types, "rad_score"], positive=1, categorical=categorical
        )
        fit, note = analysis.multivariable, f"predictors independent at p &lt; 0.05: {', '.join(analysis.independent)}"
        if fit is None or not analysis.independent:
            fit = multivariable_logistic(frame, "y", ["rad_score"], positive=1)
            note = "no predictor stayed independent at p &lt; 0.05 on the training patients: Rad-score only"
        nomogram = nomogram_from_fit(fit)
        figure = nomogram_figure(nomogram, "Nomogram (training patients, out-of-fold Rad-score)")
    except Exception as error:  # a small cohort can make the logistic fit inestimable (separation)
        return f"<p>Nomogram not estimable on this cohort: {html.escape(str(error))}</p>"
    return (
        f"<p>Combined logistic model refit on the {len(frame)} training patients ({note}). The Rad-score of each "
        "training patient is out-of-fold: the logit of the radiomics model fitted without that patient (the "
        "cross-fitted scores the Combined model's head was fitted on), so the nomogram does not reward the "
        "radiomics model for memorising its own training patients. New patients are scored with the radiomics "
        "model refitted on all training patients.</p>"
        + png_img_tag(figure, "nomogram")
        + f"<pre>{html.escape(nomogram.equation())}</pre>"
    )


def shap_section(name: str, pipeline, rows: pd.DataFrame, background: pd.DataFrame | None = None) -> str:
    """SHAP summary over `rows` and the waterfall of the first row, for the champion's final estimator, relative to
    the training patients in `background` (see `explain_pipeline`)."""
    try:
        explanation = explain_pipeline(pipeline, rows, background)
    except Exception as error:  # e.g. an estimator neither tree nor linear (SVM, KNN, MLP) or a combined model
        why = f"{html.escape(type(error).__name__)}: {html.escape(str(error))[:200]}"
        return f"<p>{html.escape(name)}: no SHAP explanation ({why})</p>"
    return (
        f'<h3>{html.escape(name)}</h3><p class="caption">{background_caption(background)}</p>'
        + png_img_tag(shap_summary_png(explanation, title=f"{name}: SHAP summary"), "SHAP summary")
        + png_img_tag(
            shap_waterfall_png(explanation, 0, title=f"{name}: patient {html.escape(str(rows.index[0]))}"),
            "SHAP waterfall",
        )
    )


def _mode_delta(scored: pd.DataFrame, models: pd.DataFrame) -> str:
    test = scored[scored["role"] == "test"]
    rows = []
    for name, group in test.groupby("result_name"):
        auc = {
            mode: auc_interval(g["y"].to_numpy(), g["probability"].to_numpy()).auc
            for mode, g in group.groupby("mode")
            if g["y"].nunique() == 2
        }
        if len(auc) == 2:
            rows.append(
                {
                    "Model": name,
                    "leakage_safe AUC": auc["leakage_safe"],
                    "paper_faithful AUC": auc["paper_faithful"],
                    "optimism": auc["paper_faithful"] - auc["leakage_safe"],
                }
            )
    if not rows:
        return "<p>Only one mode was run.</p>"
    return pd.DataFrame(rows).to_html(
        index=False, float_format=lambda v: f"{v:+.3f}" if abs(v) < 1 and v < 0 else f"{v:.3f}"
    )


TEMPLATE = (
    PAGE_HEAD
    + """<h2>Methods</h2><p>{{ methods }}</p>
<h2>Table 1</h2>{{ table_one }}
<h2>Performance</h2>
<h3>Training (apparent)</h3>{{ performance['train'] }}
<h3>Test</h3>{{ performance['test'] }}
<h3>Validation (prospective)</h3>{{ performance['validation'] }}
<h2>ROC curves of the champions</h2>{{ roc }}
<h2>DeLong comparisons (test)</h2>{{ delong }}
<h2>Calibration and decision curves</h2>{{ calibration }}
<h2>Nomogram</h2>{{ nomogram }}
<h2>SHAP explanations (champions, test patients)</h2>{{ shap }}
<h2>Grad-CAM</h2>{{ gradcam }}
<h2>leakage_safe vs paper_faithful</h2>{{ modes }}
</body></html>
"""
)
