"""The self-contained HTML study report, publication grade: a small-test-set warning at the top, the generated
methods, Table 1 by cohort and outcome, performance tables (champions and the best model per signature; the whole
zoo in the appendix), ROC per cohort, DeLong, calibration and decision curves, the LASSO path and Rad-score, the
nomogram with its equation, ComBat before/after per center, SHAP, Grad-CAM, the mode delta, the TRIPOD+AI / CLEAR
checklist and the patients' QC montages. Every figure and table is numbered and captioned in page order
(`ReportDocument`) and returned with the page (`build_study_report`) for the export (`export.export_report`).
Outcomes with more than two classes (`ReportInputs.classes`) get the multiclass layout of `study_multiclass`.

Inputs are plain frames read from the warehouse (no Dagster, no MLflow here); every figure is embedded as a
data URI so the file opens offline.
"""

from __future__ import annotations

import html
import math
import re
from dataclasses import replace

import numpy as np
import pandas as pd
from jinja2 import Environment
from sklearn.metrics import roc_curve
from sklearn.pipeline import Pipeline

from cssci_platform.lib.clinical import independent_risk_factors, multivariable_logistic, table_one, table_one_html
from cssci_platform.lib.clinical.group_tests import format_p
from cssci_platform.lib.clinical.table_one import table_one_display
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
from cssci_platform.lib.report.artifacts import ReportFigure, ReportTable, inline_figure
from cssci_platform.lib.report.checklist import checklist_frame, checklist_html, fill_checklist, run_facts
from cssci_platform.lib.report.combat_figures import (
    center_comparison,
    center_effect_table,
    combat_feature_boxes_figure,
    combat_pca_figure,
)
from cssci_platform.lib.report.document import ReportDocument, StudyReport, section
from cssci_platform.lib.report.explain import (
    explain_pipeline,
    explanation_caption,
    shap_summary_plot,
    shap_waterfall_plot,
)
from cssci_platform.lib.report.figures import (
    CalibrationCurve,
    DecisionCurve,
    RocCurve,
    calibration_report,
    decision_curve_report,
    gradcam_report,
    png_img_tag,
    roc_report,
)
from cssci_platform.lib.report.inputs import ReportInputs
from cssci_platform.lib.report.methods import binary_methods, multiclass_methods
from cssci_platform.lib.report.nomogram import nomogram_equation_table, nomogram_from_fit, nomogram_report
from cssci_platform.lib.report.page import PAGE_HEAD
from cssci_platform.lib.report.selection_figures import (
    lasso_cv_figure,
    lasso_path,
    lasso_path_figure,
    rad_score_table,
    rad_score_terms,
    selected_coefficients_figure,
)
from cssci_platform.lib.report.tables import (
    html_table,
    interval_text,
    missing_interval_reason,
    number_cells,
    outcome_level_names,
    small_test_set_warning,
)
from cssci_platform.lib.report.validation import validation_caption, validation_performance_frame, validation_table

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
    """The report page (HTML); `build_study_report` also gives its numbered figures and tables for the export."""
    return build_study_report(inputs).html


def build_study_report(inputs: ReportInputs) -> StudyReport:
    """The report page and the figures and tables it shows, numbered in page order."""
    if inputs.multiclass:
        return _build_multiclass(inputs)
    document = ReportDocument()
    scored = with_validation_scores(_scored(inputs), inputs.validation_scores, inputs.positive_class)
    champions = inputs.models[inputs.models["champion"]]
    names = outcome_level_names(inputs.outcome, inputs.classes)
    warning = test_set_warning(scored, champions, names)
    positive = f"{inputs.outcome} = {inputs.positive_class}"
    body = [
        f'<p class="warning"><b>Warning.</b> {html.escape(warning)}</p>' if warning else "",
        section("Methods", f"<p>{binary_methods(inputs)}</p>", "methods"),
        section("Table 1", _table_one_by_cohort(inputs, scored, champions, names, document), "table-one"),
        section("Performance", _performance(scored, inputs.models, inputs.validation_scores, document), "performance"),
        section("ROC curves of the champions", _roc(scored, champions, positive, document), "roc"),
        section("DeLong comparisons (test)", _delong_table(scored, champions, document), "delong"),
        section("Calibration and decision curves", _calibration(scored, champions, positive, document), "calibration"),
        section("Radiomics signature: LASSO selection and Rad-score", _radiomics_signature(inputs, document),
                "radiomics"),
        section("Nomogram", _nomogram(inputs, scored, positive, document), "nomogram"),
        section("ComBat harmonization per center", _combat(inputs, document), "combat"),
        section(
            "SHAP explanations (champions, test patients)",
            "".join(
                shap_section(name, pipeline, rows, inputs.background, document)
                for name, pipeline, rows in inputs.explained
            )
            or "<p>No champion pipeline was given to explain.</p>",
            "shap",
        ),
        section("Grad-CAM", _gradcam(inputs, document), "gradcam"),
        section("leakage_safe vs paper_faithful", _mode_delta(scored, inputs.models, document), "modes"),
        section("Reporting checklist", checklist_section(inputs, document, _performance_fact(scored, champions)),
                "checklist"),
        section("Appendix", _appendix(inputs, scored, document), "appendix"),
    ]
    page = Environment(autoescape=False).from_string(PAGE_HEAD).render(title=html.escape(inputs.experiment))
    return document.finish(page + "\n".join(body) + "\n</body></html>\n", inputs.experiment)


def test_set_warning(scored: pd.DataFrame, champions: pd.DataFrame, names: dict[str, str]) -> str | None:
    """The small-test-set warning (`small_test_set_warning`) from the test patients the champions were scored on
    (all models' test patients when there is no champion)."""
    rows = scored[scored["role"] == "test"]
    if len(champions):
        rows = rows[rows["run_id"].isin(champions["run_id"])]
    patients = rows.drop_duplicates("patient_key")
    counts = patients["y"].map({0: names.get("0", "0"), 1: names.get("1", "1")}).value_counts()
    ordered = {names.get(level, level): int(counts.get(names.get(level, level), 0)) for level in ("1", "0")}
    return small_test_set_warning(ordered)


def _build_multiclass(inputs: ReportInputs) -> StudyReport:
    document = ReportDocument()
    classes = [str(c) for c in inputs.classes or []]
    labelled = labelled_predictions(inputs.predictions, inputs.outcomes)
    scores = study_multiclass.multiclass_scores(labelled, inputs.models, classes, inputs.n_bootstrap, inputs.seed)
    warning = study_multiclass.test_set_warning(scores)
    sections = {
        "warning": f'<p class="warning"><b>Warning.</b> {html.escape(warning)}</p>' if warning else "",
        "methods": multiclass_methods(inputs, sorted(scores.models.loc[scores.models["network"], "name"])),
        "table_one": _multiclass_table_one(inputs, classes, document),
    }
    sections |= study_multiclass.sections(scores, document)  # numbered in page order: these come before SHAP
    sections["shap"] = "".join(
        study_multiclass.shap_section(name, pipeline, rows, background=inputs.background, document=document)
        for name, pipeline, rows in inputs.explained
    ) or "<p>No champion pipeline was given to explain.</p>"
    sections["gradcam"] = _gradcam(inputs, document)
    sections["modes"] = study_multiclass.mode_delta(scores, document)
    sections["checklist"] = checklist_section(inputs, document)
    sections["appendix"] = _qc_montage_gallery(inputs)
    page = (
        Environment(autoescape=False)
        .from_string(study_multiclass.TEMPLATE)
        .render(title=html.escape(inputs.experiment), classes=html.escape(", ".join(classes)), **sections)
    )
    return document.finish(page, inputs.experiment)


def _scored(inputs: ReportInputs) -> pd.DataFrame:
    """Positive-class probability per model and patient with the known outcome (binary studies)."""
    positive = inputs.predictions[inputs.predictions["class_label"] == inputs.positive_class]
    frame = labelled_predictions(positive, inputs.outcomes)
    frame["y"] = (frame["label"].astype(str) == inputs.positive_class).astype(int)
    columns = [c for c in ("run_id", "result_name", "threshold", "champion", "signature") if c in inputs.models]
    return frame.merge(inputs.models[columns], left_on="model_name", right_on="run_id", suffixes=("", "_model"))


def with_validation_scores(scored: pd.DataFrame, validation: pd.DataFrame | None, positive_class: str) -> pd.DataFrame:
    """`scored` with its validation rows replaced by the validation cohort's scores (`validation_cohort_scores`: the
    definition validation_metrics uses), so the report's validation numbers, ROC and Table 1 are those of
    validation_metrics; unchanged when `validation` is None."""
    if validation is None:
        return scored
    rows = pd.DataFrame(
        {
            "patient_key": validation["patient_key"],
            "role": "validation",
            "mode": validation["mode"],
            "class_label": validation["class_label"].astype(str),
            "probability": validation["probability"].astype(float),
            "model_name": validation["train_run"],
            "label": validation["outcome"].astype(str),
            "y": (validation["outcome"].astype(str) == validation["class_label"].astype(str)).astype(int),
            "run_id": validation["train_run"],
            "result_name": validation["result_name"],
            "threshold": validation["threshold"],
            "champion": validation["champion"].astype(bool),
            "signature": validation["signature"],
        }
    )
    return pd.concat([scored[scored["role"] != "validation"], rows], ignore_index=True)


def _gradcam(inputs: ReportInputs, document: ReportDocument) -> str:
    if not inputs.gradcams:
        return "<p>No fine-tuned network in this study, so no Grad-CAM (run fine_tuning_job).</p>"
    shown = inputs.gradcams[:12]
    what = f"the fine-tuned networks, {len(shown)} of {len(inputs.gradcams)} overlays"
    return document.figure(gradcam_report(shown, what=what, key="gradcam_gallery"))


def _multiclass_table_one(inputs: ReportInputs, classes: list[str], document: ReportDocument) -> str:
    """Table 1 by outcome class, numbered (its rows go to CSV)."""
    frame = inputs.clinical.merge(inputs.outcomes, on="patient_key").dropna(subset=["label"])
    body = _table_one(inputs, classes)
    if frame.empty or frame["label"].nunique() < 2 or not inputs.clinical_types:
        return body
    frame["label"] = frame["label"].astype(str)
    order = [c for c in classes if c in set(frame["label"])]
    continuous = [v for v, t in inputs.clinical_types.items() if t == "continuous"]
    categorical = [v for v, t in inputs.clinical_types.items() if t != "continuous"]
    table = table_one_display(table_one(frame, "label", continuous, categorical, group_order=order))
    return document.table(ReportTable(
        "table1_by_class", f"Patient characteristics by {inputs.outcome} class",
        "Continuous variables as mean ± SD or median [IQR] as named in each row, categorical as n (%); p compares the "
        "classes (test named in the Test column).", table, html=body))


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


COHORT_TITLES = {"train": "Training", "test": "Test", "validation": "Validation"}


def patient_cohorts(scored: pd.DataFrame, champions: pd.DataFrame) -> pd.DataFrame:
    """patient_key, role (train / test / validation) and y of the patients the champions were scored on (every
    model's when there is no champion): the cohorts of the champions' fold."""
    rows = scored[scored["run_id"].isin(champions["run_id"])] if len(champions) else scored
    return rows.drop_duplicates(["patient_key", "role"])[["patient_key", "role", "y"]]


def table_one_by_cohort(
    clinical: pd.DataFrame, cohorts: pd.DataFrame, types: dict[str, str], names: dict[str, str]
) -> tuple[pd.DataFrame, list[str]]:
    """Table 1 with one block of columns per cohort (training, test, validation), each split by outcome group (the
    level names of `names`) with the p-value of the comparison within that cohort; and the cohorts left out (fewer
    than two outcome groups). Rows: the Characteristic, as Table 1 prints it."""
    continuous = [v for v, t in types.items() if t == "continuous"]
    categorical = [v for v, t in types.items() if t != "continuous"]
    clinical = clinical.copy()
    for name in (v for v, t in types.items() if t == "binary" and v in clinical):
        clinical[name] = pd.to_numeric(clinical[name]).map({0: "no", 1: "yes"})
    blocks, skipped, keys = [], [], ["variable", "level"]
    for role in COHORTS:
        frame = clinical.merge(cohorts[cohorts["role"] == role], on="patient_key")
        frame["group"] = frame["y"].astype(int).astype(str).map(names)
        order = [names[level] for level in ("1", "0") if names[level] in set(frame["group"])]
        if len(order) < 2:
            if len(frame):
                skipped.append(f"{COHORT_TITLES[role]} ({len(frame)} patients, one outcome group)")
            continue
        table = table_one(frame, "group", continuous, categorical, group_order=order, overall=False)
        title = COHORT_TITLES[role]
        renamed = {group: f"{title}: {group}" for group in order} | {"p": f"{title}: p"}
        block = table[[*keys, *order, "p", "summary", "statistical_test"]].rename(columns=renamed)
        blocks.append(block.rename(columns={"statistical_test": f"{title}: test", "summary": f"{title}: summary"}))
    if not blocks:
        return pd.DataFrame(), skipped
    merged = blocks[0]
    for block in blocks[1:]:
        merged = merged.merge(block, on=keys, how="outer", sort=False)
    first_seen = pd.concat([block[keys] for block in blocks]).drop_duplicates().reset_index(drop=True)
    rank = first_seen.reset_index().rename(columns={"index": "_rank"})
    merged = merged.merge(rank, on=keys).sort_values("_rank").drop(columns="_rank").reset_index(drop=True)
    merged = merged.fillna("")
    summaries = [c for c in merged.columns if c.endswith(": summary")]

    def joined(row: pd.Series, columns: list[str]) -> str:
        return " / ".join(dict.fromkeys(str(row[c]) for c in columns if row[c]))

    summary = merged.apply(joined, axis=1, args=(summaries,))
    label = merged["variable"].astype(str) + np.where(summary != "", ", " + summary, "")
    is_level = merged["level"] != ""
    merged.insert(0, "Characteristic", np.where(is_level, "    " + merged["level"].astype(str), label))
    return merged.drop(columns=[*keys, *summaries]), skipped


TEST_MARKS = "ᵃᵇᶜᵈᵉᶠᵍʰ"


def table_one_marked(table: pd.DataFrame) -> tuple[pd.DataFrame, str]:
    """Table 1 as a journal prints it: each p followed by a letter naming its test, the per-cohort test columns
    ('<Cohort>: test', kept in the CSV) dropped; and the footnote that names the letters ('ᵃ Chi-square; ...')."""
    tests = [c for c in table.columns if c.endswith(": test")]
    names = list(dict.fromkeys(str(value) for column in tests for value in table[column] if value))
    marks = {name: TEST_MARKS[i] if i < len(TEST_MARKS) else f"[{i + 1}]" for i, name in enumerate(names)}
    shown = table.copy()
    for column in tests:
        p = column.removesuffix(": test") + ": p"
        shown[p] = [f"{value} {marks[str(test)]}" if test and value != "" else value
                    for value, test in zip(shown[p], shown[column], strict=True)]
    return shown.drop(columns=tests), "; ".join(f"{mark} {name}" for name, mark in marks.items())


def indented_levels(table: pd.DataFrame) -> pd.DataFrame:
    """Table 1's cells HTML-escaped, level rows ('    level') indented with em spaces (to_html strips spaces)."""
    shown = table.map(lambda cell: html.escape(str(cell)))
    first = shown.columns[0]
    levels = table[first].astype(str).str.startswith("    ")
    shown.loc[levels, first] = "&emsp;&emsp;" + shown.loc[levels, first].str.strip()
    return shown


def _table_one_by_cohort(
    inputs: ReportInputs,
    scored: pd.DataFrame,
    champions: pd.DataFrame,
    names: dict[str, str],
    document: ReportDocument,
) -> str:
    if inputs.clinical.empty or not inputs.clinical_types:
        return "<p>No clinical variables were declared, so no Table 1.</p>"
    table, skipped = table_one_by_cohort(
        inputs.clinical, patient_cohorts(scored, champions), inputs.clinical_types, names
    )
    if table.empty:
        return "<p>Table 1 needs a cohort with patients of both outcome groups.</p>"
    left_out = f" Not shown: {'; '.join(skipped)}." if skipped else ""
    shown, tests_used = table_one_marked(table)
    return document.table(
        ReportTable(
            "table1_by_cohort",
            f"Patient characteristics by cohort and outcome ({inputs.outcome})",
            "Continuous variables as mean ± SD or median [IQR] as named in each row (chosen per cohort by the "
            "normality of the variable), categorical as n (%). p compares the outcome groups within each cohort; the "
            f"letter after each p names its test (below the table).{left_out}",
            table,
            html=html_table(indented_levels(shown), "table-one", footnotes=[tests_used], escape=False),
        )
    )


def performance_rows(scored: pd.DataFrame, role: str) -> tuple[pd.DataFrame, list[str]]:
    """One row per model and mode of one cohort (the studies' columns), and the notes on its AUC intervals. Threshold
    metrics use `cohort_threshold`, as training does for MLflow and model_results. A cohort with one outcome class
    or too few patients for an interval keeps its row, with the reason in the notes ('95% CI' says 'not
    estimable')."""
    rows, notes = [], []
    for (name, mode), group in scored[scored["role"] == role].groupby(["result_name", "mode"], sort=True):
        y, p = group["y"].to_numpy(), group["probability"].to_numpy()
        missing = missing_interval_reason(int(y.sum()), int(len(y) - y.sum()))
        if group["y"].nunique() < 2:
            notes.append(f"{name} ({mode}): {missing}")
            rows.append({"Model": name, "Mode": mode, "n": len(group), "AUC": math.nan, "95% CI": "not estimable ‡",
                         "CI low": math.nan, "CI high": math.nan})
            continue
        ci = auc_interval(y, p)
        cut = cohort_threshold(str(mode), y, p, float(group["threshold"].iloc[0]))
        metrics = threshold_metrics(y, p, cut)
        flag = " †" if ci.notes else ""
        notes += [f"{name} ({mode}): {note}" for note in ci.notes]
        bounds = math.isfinite(ci.low) and math.isfinite(ci.high)
        if not bounds:
            notes.append(f"{name} ({mode}): {missing or 'interval not estimable'}")
        rows.append(
            {
                "Model": name,
                "Mode": mode,
                "n": len(group),
                "Acc": metrics["accuracy"],
                "AUC": ci.auc,
                "95% CI": f"{ci.low:.3f}-{ci.high:.3f}{flag}" if bounds else "not estimable ‡",
                "CI low": ci.low,
                "CI high": ci.high,
                "Threshold": cut,
                "Sen": metrics["sensitivity"],
                "Spe": metrics["specificity"],
                "PPV": metrics["ppv"],
                "NPV": metrics["npv"],
            }
        )
    return pd.DataFrame(rows), notes


PERFORMANCE_COLUMNS = ["Model", "Mode", "n", "AUC (95% CI)", "Threshold", "Acc", "Sen", "Spe", "PPV", "NPV",
                       "Shown as"]


def performance_display(rows: pd.DataFrame) -> pd.DataFrame:
    """The printed performance table: the AUC with its interval in one cell ('0.823 (0.712-0.934)'), the
    threshold metrics with three decimals, the footnote mark of the row's interval kept."""
    shown = number_cells(rows)
    marks = rows["95% CI"].str.extract(r"( [†‡])$")[0].fillna("")
    shown["AUC (95% CI)"] = [
        (interval_text(auc, low, high) or "not estimable") + mark
        for auc, low, high, mark in zip(rows["AUC"], rows["CI low"], rows["CI high"], marks, strict=True)
    ]
    return shown[[c for c in PERFORMANCE_COLUMNS if c in shown]]


def featured_models(models: pd.DataFrame) -> pd.DataFrame:
    """The models a performance table shows first: the champions, then the best of each signature and mode by
    cross-validated AUC (result_name, mode, why), champions first."""
    if models.empty:
        return pd.DataFrame(columns=["result_name", "mode", "why"])
    champions = models[models["champion"]].assign(why="champion")
    ranked = (
        models.sort_values("cv_auc_mean", ascending=False, na_position="last") if "cv_auc_mean" in models else models
    )
    best = ranked.drop_duplicates(["signature", "mode"]).assign(why="best CV AUC of its signature")
    both = pd.concat([champions, best]).drop_duplicates(["result_name", "mode"])
    return both[["result_name", "mode", "why"]].reset_index(drop=True)


def _footnotes(notes: list[str]) -> list[str]:
    """The interval notes ('<model> (<mode>): <reason>') once per reason, naming the rows it applies to; † for the
    notes on an interval shown, ‡ for a missing one."""
    rows_by_reason: dict[str, list[str]] = {}
    for note in notes:
        row, _, reason = note.partition("): ")
        rows_by_reason.setdefault(reason, []).append(row + ")")
    lines = []
    for reason, rows in rows_by_reason.items():
        mark = "‡" if any(word in reason for word in ("only one outcome class", "too few", "not estimable")) else "†"
        lines.append(f"{mark} {', '.join(rows)}: {reason}")
    return sorted(lines, key=lambda line: line[0])


def _performance_table(scored: pd.DataFrame, models: pd.DataFrame, role: str,
                       document: ReportDocument | None = None) -> str:
    """The cohort's performance table: the champions and the best model of each signature (all models when
    `models` names none), footnotes for the intervals."""
    rows, notes = performance_rows(scored, role)
    if rows.empty:
        return f"<p>No {role} patients with known outcomes.</p>"
    featured = featured_models(models) if len(models) and "signature" in models else pd.DataFrame()
    if len(featured):
        keep = featured.merge(rows, left_on=["result_name", "mode"], right_on=["Model", "Mode"])
        rows = keep.drop(columns=["result_name", "mode"]).rename(columns={"why": "Shown as"}) if len(keep) else rows
    labels = [f"{model} ({mode})" for model, mode in zip(rows["Model"], rows["Mode"], strict=True)]
    shown_notes = [n for n in notes if any(n.startswith(label) for label in labels)]
    body = html_table(performance_display(rows), "performance", _footnotes(shown_notes))
    if document is None:
        return body
    title = COHORT_TITLES[role]
    return document.table(
        ReportTable(
            f"performance_{role}",
            f"Performance on the {title.lower()} cohort: champions and the best model of each signature",
            PERFORMANCE_CAPTIONS[role] + " The full model zoo is in the appendix.",
            rows,
            html=body,
        )
    )


PERFORMANCE_CAPTIONS = {
    "train": "Apparent performance: each model refit on all training patients and scored on them (optimistic by "
    "construction). AUC with its 95% CI; threshold metrics at the operating threshold.",
    "test": "Held-out test patients never seen in training or tuning. AUC with its 95% CI; threshold metrics at the "
    "threshold frozen on the training patients (leakage_safe) or re-picked on this cohort (paper_faithful).",
    "validation": "Prospective validation patients with a known outcome, scored by the models of the champions' "
    "fold. AUC with its 95% CI; threshold metrics as for the test cohort.",
}


def _performance(scored: pd.DataFrame, models: pd.DataFrame, validation: pd.DataFrame | None,
                 document: ReportDocument) -> str:
    titles = {"train": "Training (apparent)", "test": "Test", "validation": "Validation (prospective)"}
    parts = []
    for role in COHORTS:
        if role == "validation" and validation is not None:
            body = _validation_table(validation, True, document)
        else:
            body = _performance_table(scored, models, role, document)
        parts.append(f"<h3>{titles[role]}</h3>" + body)
    return "".join(parts)


def _validation_table(validation: pd.DataFrame, champions_only: bool, document: ReportDocument) -> str:
    """The validation cohort's table of `lib/report/validation` (the numbers validation_metrics stores)."""
    if validation.empty:
        return f"<p>{html.escape(validation_caption(validation_performance_frame(validation)))}</p>"
    table = validation_table(validation, champions_only=champions_only)
    if not champions_only:
        table = replace(table, key="performance_validation_all_models",
                        title="Performance of every model on the validation cohort")
    return document.table(replace(table, html=html_table(number_cells(table.frame), "performance")))


def _zoo(scored: pd.DataFrame, validation: pd.DataFrame | None, document: ReportDocument) -> str:
    parts = []
    for role in COHORTS:
        if role == "validation" and validation is not None:
            if len(validation):
                n_models = validation["train_run"].nunique()
                parts.append(f"<details><summary>All models, validation cohort ({n_models} rows)</summary>"
                             f"{_validation_table(validation, False, document)}</details>")
            continue
        rows, notes = performance_rows(scored, role)
        if rows.empty:
            continue
        table = document.table(
            ReportTable(
                f"performance_{role}_all_models",
                f"Performance of every model on the {COHORT_TITLES[role].lower()} cohort",
                "Every classifier of every signature and mode (the model zoo), in the layout of the main performance "
                "tables.",
                rows,
                html=html_table(performance_display(rows), "performance zoo", _footnotes(notes)),
            )
        )
        parts.append(f"<details><summary>All models, {COHORT_TITLES[role].lower()} cohort ({len(rows)} rows)"
                     f"</summary>{table}</details>")
    return "".join(parts) or "<p>No model was scored.</p>"


def _champion_groups(scored: pd.DataFrame, champions: pd.DataFrame, role: str):
    for run_id, name in champions[["run_id", "result_name"]].itertuples(index=False):
        group = scored[(scored["run_id"] == run_id) & (scored["role"] == role)]
        if group["y"].nunique() == 2:
            yield name, group


ROC_COHORTS = {"train": "training (apparent)", "test": "test", "validation": "validation"}


def _roc(scored: pd.DataFrame, champions: pd.DataFrame, positive: str, document: ReportDocument) -> str:
    parts = []
    for role in COHORTS:
        curves = []
        for name, group in _champion_groups(scored, champions, role):
            fpr, tpr, _ = roc_curve(group["y"], group["probability"])
            ci = auc_interval(group["y"].to_numpy(), group["probability"].to_numpy())
            curves.append(RocCurve(name, fpr, tpr, ci.auc, (ci.low, ci.high), n=len(group),
                                   n_positive=int(group["y"].sum())))
        if curves:
            parts.append(document.figure(roc_report(ROC_COHORTS[role], curves, positive=positive, key=f"roc_{role}")))
    return "".join(parts) or "<p>No cohort with both outcome classes.</p>"


def _delong_table(scored: pd.DataFrame, champions: pd.DataFrame, document: ReportDocument) -> str:
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
                    "n": len(paired),
                    "AUC A": result.auc_a,
                    "AUC B": result.auc_b,
                    "z": result.z,
                    "p": result.p_value,
                }
            )
    if not rows:
        return "<p>Fewer than two champions scored on the test cohort.</p>"
    frame = pd.DataFrame(rows)
    return document.table(
        ReportTable(
            "delong_test",
            "Paired DeLong comparisons of the champions' AUCs, test cohort",
            "Each pair of champions scored on the same test patients; z and two-sided p of DeLong's test for the "
            "difference in AUC (not adjusted for multiple comparisons).",
            frame,
            html=html_table(number_cells(frame).assign(p=frame["p"].map(format_p)), "delong"),
        )
    )


CALIBRATION_HEADERS = {
    "Brier": "Brier score",
    "O - E": "Observed - expected",
    "Calibration intercept": "Intercept (ideal 0)",
    "Calibration slope": "Slope (ideal 1)",
    "Hosmer-Lemeshow": "Hosmer-Lemeshow",
}


def calibration_display(summaries: list[dict[str, str]]) -> tuple[pd.DataFrame, list[str]]:
    """The calibration table with short headers and short cells: a long reason (separation, the Hosmer-Lemeshow
    convention) becomes a footnote, once."""
    notes: list[str] = []
    rows = []
    for summary in summaries:
        row = {}
        for key, value in summary.items():
            text = str(value)
            if text.startswith("not estimable: "):
                reason = text.removeprefix("not estimable: ")
                if reason not in notes:
                    notes.append(reason)
                text = "not estimable " + "*" * (notes.index(reason) + 1)
            elif key == "Hosmer-Lemeshow" and "; " in text:
                text, convention = text.split("; ", 1)
                if convention not in notes:
                    notes.append(convention)
                text = f"{text} " + "*" * (notes.index(convention) + 1)
            row[CALIBRATION_HEADERS.get(key, key)] = text
        rows.append(row)
    return pd.DataFrame(rows), ["*" * (i + 1) + " " + html.unescape(note) for i, note in enumerate(notes)]


def _calibration(scored: pd.DataFrame, champions: pd.DataFrame, positive: str, document: ReportDocument) -> str:
    curves, decisions, net_benefits, summaries, sizes = [], [], [], [], []
    for name, group in _champion_groups(scored, champions, "test"):
        y, p = group["y"].to_numpy(), group["probability"].to_numpy()
        binned = calibration_curve(y, p, n_bins=min(5, max(2, len(y) // 5)))
        curves.append(CalibrationCurve(name, binned.mean_predicted, binned.observed))
        dca = net_benefit(y, p)
        decisions.append(DecisionCurve(name, dca.model))
        net_benefits.append(dca)
        summaries.append({"Model": name, "n": str(len(y)), **calibration_cells(y, p)})
        sizes.append((len(y), int(y.sum())))
    if not curves:
        return "<p>No champion scored on a test cohort with both outcome classes.</p>"
    last = net_benefits[-1]  # thresholds and treat-all: those of the last champion's test patients
    frame, notes = calibration_display(summaries)
    n, n_positive = max(sizes)
    return (
        document.figure(calibration_report(curves, "test", n, n_positive, positive, key="calibration_test"))
        + document.figure(decision_curve_report(last.thresholds, decisions, last.treat_all, "test", n, n_positive,
                                                positive, key="decision_curves_test"))
        + document.table(ReportTable(
            "calibration_test",
            "Calibration of the champions, test cohort",
            "Brier score (lower is better), calibration-in-the-large (observed minus expected event rate), "
            "logistic recalibration intercept and slope, and the Hosmer-Lemeshow test.",
            frame,
            html=html_table(frame, "calibration", notes),
        ))
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


def _nomogram(inputs: ReportInputs, scored: pd.DataFrame, positive: str, document: ReportDocument) -> str:
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
        figure = nomogram_report(nomogram, len(frame), outcome=f"P({positive})",
                                 note="The Rad-score of each training patient is out-of-fold (cross-fitted).")
    except Exception as error:  # a small cohort can make the logistic fit inestimable (separation)
        return f"<p>Nomogram not estimable on this cohort: {html.escape(str(error))}</p>"
    return (
        f"<p>Combined logistic model refit on the {len(frame)} training patients ({note}). The Rad-score of each "
        "training patient is out-of-fold: the logit of the radiomics model fitted without that patient (the "
        "cross-fitted scores the Combined model's head was fitted on), so the nomogram does not reward the "
        "radiomics model for memorising its own training patients. New patients are scored with the radiomics "
        "model refitted on all training patients.</p>"
        + document.figure(figure)
        + _equation_table(nomogram_equation_table(nomogram, len(frame)), document)
    )


def _equation_table(table: ReportTable, document: ReportDocument) -> str:
    shown = number_cells(table.frame)
    return document.table(replace(table, html=html_table(shown, "equation")))


def shap_section(name: str, pipeline, rows: pd.DataFrame, background: pd.DataFrame | None = None,
                 document: ReportDocument | None = None) -> str:
    """SHAP summary over `rows` and the waterfall of the first row, for the champion's final estimator, relative to
    the training patients in `background` (see `explain_pipeline`)."""
    try:
        explanation = explain_pipeline(pipeline, rows, background)
    except Exception as error:  # e.g. an estimator neither tree nor linear (SVM, KNN, MLP) or a combined model
        why = f"{html.escape(type(error).__name__)}: {html.escape(str(error))[:200]}"
        return f"<p>{html.escape(name)}: no SHAP explanation ({why})</p>"
    caption = explanation_caption(explanation, background)
    patient = str(rows.index[0])
    key = re.sub(r"[^a-z0-9]+", "_", name.lower()).strip("_") or "model"
    figures = (
        ReportFigure(
            f"shap_summary_{key}",
            f"SHAP summary of {name}, test patients",
            f"One dot per test patient and feature ({len(rows)} patients): its SHAP value (effect on the model's "
            "output) on the x axis, coloured by the feature's value; features ordered by mean |SHAP|. " + caption,
            shap_summary_plot(explanation, title=f"{name}: SHAP summary"),
        ),
        ReportFigure(
            f"shap_waterfall_{key}",
            f"SHAP waterfall of {name} for test patient {patient}",
            "How each feature moves this patient's prediction from the average output of the background patients "
            "to the model's output for them.",
            shap_waterfall_plot(explanation, 0, title=f"{name}: patient {patient}"),
        ),
    )
    if document is None:
        return f'<h3>{html.escape(name)}</h3><p class="caption">{html.escape(caption)}</p>' + "".join(
            inline_figure(figure, alt) for figure, alt in zip(figures, ("SHAP summary", "SHAP waterfall"), strict=True)
        )
    return f"<h3>{html.escape(name)}</h3>" + "".join(document.figure(figure) for figure in figures)


def _mode_delta(scored: pd.DataFrame, models: pd.DataFrame, document: ReportDocument) -> str:
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
    frame = pd.DataFrame(rows)
    shown = number_cells(frame)
    shown["optimism"] = [f"{v:+.3f}" for v in frame["optimism"]]
    return document.table(
        ReportTable(
            "mode_delta_test",
            "Test AUC in leakage_safe and paper_faithful mode",
            "The same model fitted with every step inside the cross-validation (leakage_safe) and as published "
            "(paper_faithful: feature selection and harmonization on all development patients); optimism = "
            "paper_faithful - leakage_safe.",
            frame,
            html=html_table(shown, "modes"),
        )
    )


def _preferred_pipelines(inputs: ReportInputs, first: tuple[str, ...]) -> list[tuple[str, object]]:
    """The explained champions' (name, pipeline), those whose name starts with one of `first` first."""
    ranked = sorted(inputs.explained, key=lambda item: next(
        (i for i, prefix in enumerate(first) if item[0].startswith(prefix)), len(first)))
    return [(name, pipeline) for name, pipeline, _ in ranked]


def _radiomics_signature(inputs: ReportInputs, document: ReportDocument) -> str:
    """The LASSO path and CV curve of the radiomics champion (else the first champion with a LASSO step), and the
    Rad-score: its features' coefficients and formula (the Combined model's radiomics part, or a radiomics LR)."""
    if not inputs.explained:
        return "<p>No champion pipeline was given, so no LASSO path or Rad-score.</p>"
    parts, reasons = [], []
    rows = inputs.training_rows
    if rows is None:
        reasons.append("no training rows of the champions' fold were found, so no LASSO path")
    else:
        for name, pipeline in _preferred_pipelines(inputs, ("Rad_", "Combined")):
            try:
                path = lasso_path(pipeline, rows, rows["label"].astype(str))
            except ValueError as error:
                reasons.append(f"{name}: {error}")
                continue
            signature = name.rsplit("_", 1)[0]
            cohort = f"the {len(rows)} training patients"
            parts += [document.figure(lasso_path_figure(path, cohort, signature=signature)),
                      document.figure(lasso_cv_figure(path, cohort, signature=signature))]
            break
    for name, pipeline in _preferred_pipelines(inputs, ("Combined", "Rad_")):
        try:
            terms = rad_score_terms(pipeline)
        except ValueError as error:
            reasons.append(f"{name}: {error}")
            continue
        n = len(rows) if rows is not None else None
        table = rad_score_table(terms, n_training=n)
        try:
            parts.append(document.figure(selected_coefficients_figure(terms, n_training=n)))
        except ValueError as error:
            reasons.append(f"{name}: {error}")
        parts.append(document.table(replace(table, html=table.html or html_table(number_cells(table.frame), "rad"))))
        break
    if not parts:
        return "<p>No LASSO path or Rad-score for this study's champions:</p><ul>" + "".join(
            f"<li>{html.escape(reason)}</li>" for reason in reasons) + "</ul>"
    return "".join(parts)


def _combat(inputs: ReportInputs, document: ReportDocument) -> str:
    """Training patients' features per center before and after ComBat."""
    if inputs.combat_rows is None:
        return "<p>No harmonized features were stored (harmonization is off or harmonized_features was not run).</p>"
    try:
        comparison = center_comparison(*inputs.combat_rows)
    except ValueError as error:
        return f"<p>No ComBat comparison: {html.escape(str(error))}</p>"
    table = center_effect_table(comparison)
    return (
        document.figure(combat_pca_figure(comparison))
        + document.figure(combat_feature_boxes_figure(comparison))
        + document.table(replace(table, html=table.html or html_table(number_cells(table.frame), "combat")))
    )


def _performance_fact(scored: pd.DataFrame, champions: pd.DataFrame) -> dict[str, str]:
    """The checklist's performance item: each champion's AUC (95% CI) per cohort, as the tables print it."""
    cells = []
    for role in COHORTS:
        for name, group in _champion_groups(scored, champions, role):
            ci = auc_interval(group["y"].to_numpy(), group["probability"].to_numpy())
            cells.append(f"{name} {COHORT_TITLES[role].lower()} AUC {interval_text(ci.auc, ci.low, ci.high)} "
                         f"(n = {len(group)})")
    return {"performance_results": "; ".join(cells) + "; see the performance tables"} if cells else {}


def checklist_section(inputs: ReportInputs, document: ReportDocument, extra: dict[str, str] | None = None) -> str:
    """The TRIPOD+AI (and CLEAR, for radiomics) checklist filled from this run (`extra`: facts the report computed)."""
    items = fill_checklist(run_facts(inputs) | (extra or {}))
    frame = checklist_frame(items)
    known = sum(item.filled for item in items)
    return document.table(
        ReportTable(
            "reporting_checklist",
            "Reporting checklist (TRIPOD+AI, CLEAR) filled from this run",
            f"{known} of {len(items)} items filled from what the platform recorded for this run; the others are "
            "marked 'to be written by the authors'. Check every filled item against the manuscript.",
            frame,
            html=checklist_html(items),
        )
    )


def _appendix(inputs: ReportInputs, scored: pd.DataFrame, document: ReportDocument) -> str:
    return (
        "<h3>Performance of every model</h3>" + _zoo(scored, inputs.validation_scores, document)
        + "<h3>Patient QC montages</h3>" + _qc_montage_gallery(inputs)
    )


def _qc_montage_gallery(inputs: ReportInputs) -> str:
    """Each patient's QC montage (the max-ROI slice with its contours, per sequence), captioned with patient and
    center, in a collapsible gallery."""
    if not inputs.qc_montages:
        return "<p>No QC montages were found (the patient stage writes them to image_store/qc_montages).</p>"
    centers = dict(zip(inputs.centers["patient_key"], inputs.centers["center"], strict=True)) if (
        inputs.centers is not None) else {}
    tiles = []
    for path in inputs.qc_montages:
        patient = path.stem
        caption = f"{patient} ({centers[patient]})" if patient in centers else patient
        tiles.append(
            '<figure class="montage">'
            + png_img_tag(path.read_bytes(), f"QC montage of {caption}")
            + f"<figcaption>{html.escape(caption)}</figcaption></figure>"
        )
    return (
        f"<details><summary>QC montages of {len(tiles)} patients: for each sequence the slice with the largest ROI, "
        "with the lesion, cord and DL-rectangle contours, and the preprocessed channels</summary>"
        + "".join(tiles) + "</details>"
    )


