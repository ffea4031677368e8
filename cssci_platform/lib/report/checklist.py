"""The reporting checklist of a study, generated from the run: TRIPOD+AI (Collins et al., BMJ 2024) items and, for
radiomics, CLEAR (Kocak et al., Insights Imaging 2023) items. Each item names the fact of the run that answers it
(`RunFacts` key); `fill_checklist` fills it with this run's value, or marks it "to be written by the authors"
when the platform does not know it (ethics, funding, dates of recruitment, ...).

`CHECKLIST` is the one list of items; `run_facts` is the one place that reads the run.
"""

from __future__ import annotations

import html
from dataclasses import dataclass
from importlib import metadata

import pandas as pd

from cssci_platform.lib.report.inputs import ReportInputs

TO_BE_WRITTEN = "to be written by the authors"


@dataclass(frozen=True)
class ChecklistItem:
    """One item of a reporting guideline: `fact` is the `RunFacts` key that answers it (None: only the authors
    can)."""

    guideline: str  # "TRIPOD+AI" or "CLEAR"
    number: str  # the guideline's item number, e.g. "8a"
    topic: str
    fact: str | None


TRIPOD = "TRIPOD+AI"
CLEAR = "CLEAR"

CHECKLIST: tuple[ChecklistItem, ...] = (
    ChecklistItem(TRIPOD, "1", "Title: development/evaluation of a prediction model, population, outcome", "title"),
    ChecklistItem(TRIPOD, "2", "Abstract (TRIPOD+AI for Abstracts)", None),
    ChecklistItem(TRIPOD, "3a", "Background: healthcare context and rationale", None),
    ChecklistItem(TRIPOD, "4", "Objectives: development and/or validation", "objectives"),
    ChecklistItem(TRIPOD, "5a", "Source of data: cohorts, centers", "data_source"),
    ChecklistItem(TRIPOD, "5b", "Dates of data collection and follow-up", None),
    ChecklistItem(TRIPOD, "6a", "Setting: number and location of centers", "centers"),
    ChecklistItem(TRIPOD, "6b", "Eligibility criteria of participants", "eligibility"),
    ChecklistItem(TRIPOD, "7", "Data preparation: pre-processing and quality checking", "preprocessing"),
    ChecklistItem(TRIPOD, "8a", "Outcome: definition and how it was assessed", "outcome"),
    ChecklistItem(TRIPOD, "8c", "Outcome assessment blinded to predictors", None),
    ChecklistItem(TRIPOD, "9a", "Predictors: choice and definition", "predictors"),
    ChecklistItem(TRIPOD, "10", "Sample size: participants and events per cohort", "sample_size"),
    ChecklistItem(TRIPOD, "11", "Missing data: how it was handled", "missing_data"),
    ChecklistItem(TRIPOD, "12a", "Analytical methods: how data were used (development, evaluation)", "split"),
    ChecklistItem(TRIPOD, "12b", "Predictor handling (transformations, selection, harmonization)", "selection"),
    ChecklistItem(TRIPOD, "12c", "Model type, building, hyper-parameter tuning, internal validation", "models"),
    ChecklistItem(TRIPOD, "12d", "Heterogeneity across centers", "harmonization"),
    ChecklistItem(TRIPOD, "12e", "Performance measures and their intervals; model comparison", "performance_measures"),
    ChecklistItem(TRIPOD, "12f", "Model updating or recalibration", "calibration"),
    ChecklistItem(TRIPOD, "12g", "Model output and thresholds for risk groups", "thresholds"),
    ChecklistItem(TRIPOD, "13", "Class imbalance: handling", None),
    ChecklistItem(TRIPOD, "14", "Fairness: approaches used", None),
    ChecklistItem(TRIPOD, "15", "Model output: predicted risk or classification", "model_output"),
    ChecklistItem(TRIPOD, "16", "Training versus evaluation: setting, eligibility, outcome", "validation"),
    ChecklistItem(TRIPOD, "17", "Ethical approval and consent", None),
    ChecklistItem(TRIPOD, "18a", "Open science: funding", None),
    ChecklistItem(TRIPOD, "18c", "Protocol", "protocol"),
    ChecklistItem(TRIPOD, "18e", "Data sharing", None),
    ChecklistItem(TRIPOD, "18f", "Code sharing and software", "software"),
    ChecklistItem(TRIPOD, "19", "Patient and public involvement", None),
    ChecklistItem(TRIPOD, "20a", "Participants: flow and characteristics (Table 1)", "participants"),
    ChecklistItem(TRIPOD, "22", "Model specification: the final models", "model_specification"),
    ChecklistItem(TRIPOD, "23a", "Model performance with confidence intervals", "performance_results"),
    ChecklistItem(TRIPOD, "25", "Interpretation, limitations and usability", None),
    ChecklistItem(CLEAR, "8", "Imaging: sequences used", "sequences"),
    ChecklistItem(CLEAR, "13", "Segmentation: regions of interest", "segmentation"),
    ChecklistItem(CLEAR, "16", "Image pre-processing: resampling, intensity, filters", "preprocessing"),
    ChecklistItem(CLEAR, "19", "Feature extraction: software and settings", "feature_extraction"),
    ChecklistItem(CLEAR, "22", "Harmonization of multi-center data", "harmonization"),
    ChecklistItem(CLEAR, "24", "Feature reliability / robustness (ICC)", "reliability"),
    ChecklistItem(CLEAR, "25", "Feature selection / dimensionality reduction", "selection"),
    ChecklistItem(CLEAR, "27", "Data partitioning and leakage prevention", "split"),
    ChecklistItem(CLEAR, "30", "Modelling algorithms and tuning", "models"),
    ChecklistItem(CLEAR, "36", "Performance metrics and uncertainty", "performance_measures"),
    ChecklistItem(CLEAR, "39", "Comparison with a non-radiomic (clinical) baseline", "clinical_baseline"),
    ChecklistItem(CLEAR, "43", "External / prospective validation", "validation"),
    ChecklistItem(CLEAR, "45", "Explainability", "explainability"),
    ChecklistItem(CLEAR, "55", "Sharing of images, segmentations, code and model", None),
)


@dataclass(frozen=True)
class FilledItem:
    item: ChecklistItem
    text: str
    filled: bool


RunFacts = dict[str, str]


def fill_checklist(facts: RunFacts, items: tuple[ChecklistItem, ...] = CHECKLIST) -> list[FilledItem]:
    """Each item with its fact from the run, or `TO_BE_WRITTEN` when the run does not state it."""
    filled = []
    for item in items:
        text = facts.get(item.fact, "") if item.fact else ""
        filled.append(FilledItem(item, text or TO_BE_WRITTEN, bool(text)))
    return filled


def checklist_frame(items: list[FilledItem]) -> pd.DataFrame:
    """The checklist as a table (the CSV export)."""
    return pd.DataFrame(
        {
            "Guideline": [i.item.guideline for i in items],
            "Item": [i.item.number for i in items],
            "Topic": [i.item.topic for i in items],
            "From this run": [i.text for i in items],
        }
    )


def checklist_html(items: list[FilledItem]) -> str:
    rows = "".join(
        f'<tr class="{"filled" if i.filled else "authors"}"><td>{html.escape(i.item.guideline)}</td>'
        f"<td>{html.escape(i.item.number)}</td><td>{html.escape(i.item.topic)}</td>"
        f"<td>{html.escape(i.text) if i.filled else '<i>' + TO_BE_WRITTEN + '</i>'}</td></tr>"
        for i in items
    )
    return (
        '<table class="checklist"><thead><tr><th>Guideline</th><th>Item</th><th>Topic</th><th>From this run</th>'
        f"</tr></thead><tbody>{rows}</tbody></table>"
    )


# --------------------------------------------------------------------------------------------- the run's facts


def run_facts(inputs: ReportInputs) -> RunFacts:
    """What this run states for the checklist, from the report's inputs (study config, cohort spec, warehouse
    frames). A fact the run does not know is left out (its items then say `TO_BE_WRITTEN`)."""
    facts: RunFacts = {}
    facts.update(_cohort_facts(inputs))
    facts.update(_outcome_facts(inputs))
    facts.update(_model_facts(inputs))
    if inputs.study is not None:
        facts.update(_study_facts(inputs))
    facts["performance_measures"] = (
        "AUC with 95% CI (DeLong on the logit scale; Newcombe's score interval at AUC 0 or 1); accuracy, "
        "sensitivity, specificity, PPV and NPV at the operating threshold; paired DeLong tests between champions; "
        "calibration (Brier score, calibration-in-the-large, logistic recalibration intercept and slope, "
        "Hosmer-Lemeshow) and decision curves on the test cohort"
    )
    facts["model_output"] = (
        f"predicted probability of {inputs.outcome} = {inputs.positive_class}" if not inputs.multiclass
        else f"predicted probability of each class of {inputs.outcome}"
    )
    facts["software"] = _software()
    return facts


def _cohort_facts(inputs: ReportInputs) -> RunFacts:
    facts: RunFacts = {}
    spec = inputs.cohort_spec
    if spec is not None:
        facts["sequences"] = ", ".join(spec.sequences)
        facts["segmentation"] = (
            f"ROIs: {', '.join(spec.rois)} (masks from the cohort manifest, label {spec.mask_label})"
        )
    centers = inputs.centers
    if centers is not None and len(centers):
        counts = centers.groupby(["center", "cohort"]).size().unstack(fill_value=0)
        per_center = "; ".join(
            f"{center}: " + ", ".join(f"{int(n)} {cohort}" for cohort, n in row.items() if n)
            for center, row in counts.iterrows()
        )
        name = spec.name if spec is not None else "the cohort manifest"
        facts["data_source"] = f"cohort manifest '{name}': {len(centers)} patients ({per_center})"
        facts["centers"] = f"{counts.shape[0]} centers: {', '.join(map(str, counts.index))}"
    return facts


def _outcome_facts(inputs: ReportInputs) -> RunFacts:
    facts: RunFacts = {}
    known = inputs.outcomes.dropna(subset=["label"])
    counts = known["label"].astype(str).value_counts().sort_index()
    per_level = ", ".join(f"{n} with {inputs.outcome} = {level}" for level, n in counts.items())
    facts["participants"] = (
        f"{len(known)} patients with a known outcome ({per_level}); Table 1 gives their characteristics by cohort "
        "and outcome"
    )
    labelled = inputs.predictions[["patient_key", "role"]].drop_duplicates().merge(
        known[["patient_key", "label"]], on="patient_key")
    if len(labelled):
        cohorts = []
        for role, group in labelled.groupby("role"):
            levels = group["label"].astype(str).value_counts().sort_index()
            per_level = ", ".join(f"{n} with {inputs.outcome} = {level}" for level, n in levels.items())
            cohorts.append(f"{role} {group['patient_key'].nunique()} ({per_level})")
        facts["sample_size"] = (
            "no formal sample-size calculation by the platform; patients with a known outcome per cohort: "
            + "; ".join(cohorts)
        )
    return facts


def _model_facts(inputs: ReportInputs) -> RunFacts:
    facts: RunFacts = {}
    models = inputs.models
    if len(models):
        champions = models[models["champion"]]
        facts["model_specification"] = "; ".join(
            f"{row['result_name']} ({row['mode']})"
            + (f": registered model {row['registered_model']} version {row.get('model_version')}"
               if row.get("registered_model") else "")
            for row in champions.to_dict("records")
        ) or "no champion registered"
        signatures = sorted(models["signature"].astype(str).unique()) if "signature" in models else []
        if "Clinical" in signatures:
            facts["clinical_baseline"] = "the Clinical signature (clinical variables only) is trained and reported " \
                "beside the imaging signatures, with paired DeLong tests on the test cohort"
        facts["thresholds"] = (
            "operating threshold: Youden's J on the out-of-fold training scores, frozen for the test and validation "
            "cohorts (leakage_safe); paper_faithful re-picks it on each cohort as published"
        )
    facts["explainability"] = (
        "SHAP summary and waterfall for each champion (test patients, training patients as background)"
        + ("; Grad-CAM overlays of the fine-tuned networks" if inputs.gradcams else "")
    )
    known = set(inputs.outcomes.dropna(subset=["label"])["patient_key"])
    scored = set(inputs.predictions.loc[inputs.predictions["role"] == "validation", "patient_key"])
    validation = len(scored & known)
    facts["validation"] = (
        "internal validation on a held-out test cohort"
        + (f"; prospective validation on {validation} patients of the prospective cohort with a known outcome"
           if validation else f"; no prospective validation yet ({len(scored)} prospective patients scored, none "
           "with a known outcome)")
    )
    return facts


def _study_facts(inputs: ReportInputs) -> RunFacts:
    study = inputs.study
    assert study is not None
    outcome, prep, models, split = study.outcome, study.preprocessing, study.models, study.split
    rule = {
        "as_is": f"the manifest outcome '{outcome.source_outcome}' as recorded",
        "at_least": f"1 when '{outcome.source_outcome}' >= {outcome.threshold}",
        "change_above_mean": f"1 when '{outcome.source_outcome}' - '{outcome.baseline}' is above the mean change "
        "(training patients' mean in leakage_safe mode)",
    }[outcome.rule]
    harmonization = study.harmonization
    selection = study.selection
    steps = [
        f"ICC >= {selection.icc_threshold}" if selection.icc_threshold is not None else None,
        f"rank test p < {selection.rank_alpha}" if selection.rank_test else None,
        f"Spearman |rho| > {selection.spearman_threshold} redundancy filter",
        f"mRMR top {selection.mrmr_k}",
        f"LASSO ({selection.lasso_rule} lambda, {models.cv_folds}-fold CV)" if selection.lasso else None,
        f"PCA to {selection.pca_components} components for deep features",
    ]
    return {
        "title": f"{study.name}: development and validation of models predicting {outcome.name}"
        + (f" ({study.description})" if study.description else ""),
        "objectives": "development of radiomics, deep, clinical and combined models, internal validation on a "
        "held-out test cohort and prospective validation on newly arriving patients",
        "protocol": study.reference or "",
        "eligibility": "patients of the cohort manifest whose images and masks pass the platform's QC checks "
        "(patients failing QC are listed in qc_issues and left out)",
        "outcome": f"{outcome.name}: {rule}",
        "predictors": _predictors(inputs),
        "missing_data": "clinical predictors: median imputation fitted on the training patients inside each pipeline; "
        "imaging: patients without the required images or masks fail QC and are left out",
        "preprocessing": f"resampling to {' x '.join(map(str, prep.spacing_mm))} mm ({prep.interpolator} "
        f"interpolation), intensity clipped to the {prep.lower_percentile}-{prep.upper_percentile} percentiles; "
        f"channels: {', '.join(prep.channels)}",
        "feature_extraction": f"PyRadiomics profile '{study.radiomics.params}' on the ROIs "
        f"{', '.join(study.imaging.radiomics_rois)}; deep features from {', '.join(study.deep.backbones)} "
        f"(weights: {study.deep.weights})",
        "harmonization": (
            "ComBat per center, fitted on training patients only; unseen centers: "
            f"'{harmonization.unseen_center_policy}'; centers below {harmonization.min_center_size} patients: "
            f"'{harmonization.small_center}'"
            if harmonization.enabled else "no harmonization (ComBat disabled)"
        ),
        "reliability": f"ICC filter at {selection.icc_threshold}" if selection.icc_threshold is not None else
        "no ICC filter (no repeated segmentations in this run)",
        "selection": "inside each training fold: " + "; ".join(step for step in steps if step),
        "models": f"classifiers {', '.join(models.classifiers)}; hyper-parameters tuned on the '{models.grid}' grid "
        f"by {models.cv_folds}-fold stratified CV (seed {models.seed}); champion per signature by CV AUC",
        "split": f"split preset {split.preset} (seed {split.seed}), folds {', '.join(split.folds)}; every selection "
        f"and harmonization step fitted on training patients only in leakage_safe mode; modes run: "
        f"{', '.join(study.modes)}",
        "calibration": "no recalibration of the models; calibration reported on the test cohort",
    }


def _predictors(inputs: ReportInputs) -> str:
    clinical = ", ".join(f"{name} ({kind})" for name, kind in inputs.clinical_types.items()) or "none"
    signatures = sorted(inputs.models["signature"].astype(str).unique()) if "signature" in inputs.models else []
    return f"clinical: {clinical}; signatures: {', '.join(signatures) or 'none'}"


def _software() -> str:
    versions = []
    for package in ("cssci_platform", "scikit-learn", "pyradiomics", "torch", "mlflow", "dagster"):
        try:
            versions.append(f"{package} {metadata.version(package)}")
        except metadata.PackageNotFoundError:
            continue
    return "Python; " + ", ".join(versions)
