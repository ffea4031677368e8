"""The report's generated methods paragraph: the chain, the thresholds, the statistics and what ComBat did, stated
from the study settings the models were trained with (`MethodSettings`)."""

from __future__ import annotations

import html

import pandas as pd

from cssci_platform.lib.harmonization.settings import HarmonizationSettings
from cssci_platform.lib.report.inputs import MethodSettings, ReportInputs


def binary_methods(inputs: ReportInputs) -> str:
    return _chain_methods(inputs) + (
        ", and the operating threshold (Youden on out-of-fold training scores) was frozen for the test and "
        "validation cohorts (leakage_safe); paper_faithful rows re-pick the Youden threshold on each cohort, as "
        "published, "
        "and show the same threshold metrics as MLflow and model_results. "
        + AUC_METHODS
        + " "
        + HL_METHODS
        + " The Combined model's clinical head was fitted on out-of-fold Rad-scores of the training patients "
        "(cross-fitting); new patients get the Rad-score of the radiomics model refitted on all training patients. "
        "The champion of each signature (best cross-validated AUC) is registered in MLflow."
        + _loco_methods(inputs)
        + harmonization_scope_statement(inputs.method.harmonization)
        + fit_problems_statement(inputs.fit_problems)
    )


AUC_METHODS = (
    "AUC 95% CIs are DeLong's on the logit scale (Pepe 2003; Qin &amp; Hotilovac 2008), which stays inside (0, 1) and "
    "keeps its coverage in small samples; at an AUC of exactly 0 or 1, where DeLong's variance is 0, they are "
    "Newcombe's "
    "(2006) score interval. Paired AUC comparisons use DeLong's test."
)
HL_METHODS = (
    "Hosmer-Lemeshow tests on held-out cohorts are referred to chi-square with G degrees of freedom (no parameter was "
    "estimated on them; G - 2 applies only to the fitting cohort), with G = floor(min(expected events, expected "
    "non-events) / 5) quantile groups, between 2 and 10."
)


def _loco_methods(inputs: ReportInputs) -> str:
    """Per held-out center of a leave-one-center-out split: which unseen-center ComBat policy its features got."""
    models = inputs.models
    if "fold" not in models or str(models["split"].iloc[0]) != "leave_one_center_out":
        return ""
    policy, harmonized = inputs.method.harmonization.unseen_center_policy, inputs.method.harmonization.enabled
    centers = sorted(str(f) for f in models["fold"].unique())
    return " " + unseen_center_statement(centers, policy, harmonized)


def unseen_center_statement(centers: list[str], policy: str, harmonize: bool) -> str:
    """One sentence per held-out center: what ComBat did with its features, which it never saw in training."""
    if not harmonize:
        what = "no ComBat (harmonization disabled): features entered the models unharmonized"
    elif policy == "none":
        what = (
            "ComBat policy 'none': its features passed ComBat unharmonized (the center was not among the training "
            "batches), so this center was tested on unharmonized features"
        )
    elif policy == "refit_site":
        what = (
            "ComBat policy 'refit_site': its own location and scale were estimated from its patients' features (no "
            "labels) against the training fit's frozen pooled estimates"
        )
    else:
        what = f"ComBat unseen-center policy '{html.escape(policy)}' (the estimates of a known center)"
    return " ".join(f"Held-out center {html.escape(center)}: {what}." for center in centers)


def harmonization_scope_statement(settings: HarmonizationSettings) -> str:
    """What ComBat harmonized and what it did with small centers (nothing when harmonization is off)."""
    if not settings.enabled:
        return ""
    size, policy = html.escape(str(settings.min_center_size)), str(settings.small_center)
    what = {
        "pool": "pooled into one ComBat batch (left out of the fit, as unseen centers, where together they still had "
        "fewer than 2)",
        "unseen": "left out of the ComBat fit, their patients following the unseen-center policy "
        f"'{html.escape(str(settings.unseen_center_policy))}'",
        "error": "not allowed (the fit stops)",
    }.get(policy, html.escape(policy))
    classes = ", ".join(settings.unharmonized_feature_classes)
    kept = (
        f" Radiomics feature classes {html.escape(classes)} were not harmonized (passed through unchanged)."
        if classes.strip()
        else " Every feature class was harmonized."
    )
    return (
        f" Small centers (harmonization.small_center '{html.escape(policy)}', chosen before the run): centers with "
        "fewer "
        f"than {size} training patients in a fit (CV training folds included) were {what}." + kept
    )


def fit_problems_statement(problems: pd.DataFrame | None) -> str:
    """The fits that failed (the study went on without them) and the small-sample warnings, one short list each."""
    if problems is None or problems.empty:
        return ""

    def listed(rows: pd.DataFrame) -> str:
        return "; ".join(
            f"{html.escape(str(r.result_name))} ({html.escape(str(r.mode))}, {html.escape(str(r.fold))}): "
            f"{html.escape(str(r.reason)[:300])}"
            for r in rows.itertuples()
        )

    failed, small = problems[problems["metric"] == "failed"], problems[problems["metric"] == "small_sample"]
    text = f" Fits that failed (left out; every other fit finished): {listed(failed)}." if len(failed) else ""
    if len(small):
        text += (
            f" Small-sample warnings ({small['result_name'].nunique()} models; their CV results cannot mean much, "
            f"and a CV AUC with SD 0 on such folds is never champion while another model is): "
            f"{listed(small.drop_duplicates(['result_name', 'mode', 'fold']))}."
        )
    return text


def multiclass_methods(inputs: ReportInputs, networks: list[str]) -> str:
    """`networks`: the fine-tuned CNN classifiers scored beside the zoo."""
    expert = ", ".join(html.escape(str(v)) for v in inputs.clinical_types) or "none declared"
    return _chain_methods(inputs) + (
        " (macro one-vs-rest AUC); the champion of each signature (best cross-validated macro AUC) is registered in "
        f"MLflow. The Clinical signature models the expert-derived features ({expert}). "
        + (
            f"The fine-tuned CNN classifiers ({html.escape(', '.join(networks))}) were trained on the training "
            "patients "
            "only and score the held-out patients directly. "
            if networks
            else "No fine-tuned CNN classifier was scored. "
        )
        + "The predicted class is the most probable one; top-k accuracy counts the true class among the k most "
          "probable. "
        "Precision, recall and F1 are per class, one-vs-rest AUC per class and their unweighted (macro) mean. 95% CIs "
        f"are percentile intervals of {inputs.n_bootstrap} bootstrap replicates stratified by class (seed "
        f"{inputs.seed}), "
        "except the per-class AUC CIs, which are DeLong's on the logit scale (Newcombe's score interval at an AUC "
        "of 0 or 1; "
        "a dagger marks those and classes under 10 patients); per-class paired AUC comparisons use DeLong's test. The "
        "best model is the champion with the highest cross-validated macro AUC on the training folds."
        + harmonization_scope_statement(inputs.method.harmonization)
        + fit_problems_statement(inputs.fit_problems)
    )


def _chain_methods(inputs: ReportInputs) -> str:
    models = inputs.models
    signatures = ", ".join(sorted(models["signature"].unique()))
    classifiers = ", ".join(sorted(models["classifier"].unique()))
    split = (
        f"Patients were split by the stored split {html.escape(str(models['split'].iloc[0]))} (prospective patients "
        "form "
        "the validation cohort). "
    )
    tuning = (
        f"Signatures {signatures} were modelled with {classifiers}; hyper-parameters came from stratified "
        f"{inputs.method.cv_folds}-fold cross-validation on training patients only"
    )
    if set(models["signature"]) <= {"Clinical"}:
        return split + "Within each training set, clinical factors were median-imputed and standardised. " + tuning
    return split + f"Within each training set, features were {', '.join(chain_steps(inputs.method))}. " + tuning


def chain_steps(method: MethodSettings) -> list[str]:
    """The harmonization and selection chain the models were built with, in its order, as the methods state it."""
    s = method.selection
    steps = [
        "harmonized across centers with ComBat" + ("" if method.harmonization.enabled else " (disabled)"),
        f"deep features reduced by per-channel PCA ({s.pca_components} components)",
    ]
    if s.icc_threshold is not None:
        steps.append(f"kept when ICC(3,1) between repeat segmentations was &gt;= {s.icc_threshold}")
    steps.append("z-scored")
    filters = [f"Mann-Whitney U / Kruskal-Wallis (p &lt; {s.rank_alpha})"] if s.rank_test else []
    filters += [f"Spearman redundancy (|rho| &gt; {s.spearman_threshold})"] if s.spearman_threshold is not None else []
    filters += [f"mRMR (k = {s.mrmr_k})"] if s.mrmr_k else []
    filters += [f"LASSO ({method.cv_folds}-fold CV)"] if s.lasso else []
    if filters:
        steps.append(
            "filtered by " + (", ".join(filters[:-1]) + " and " + filters[-1] if len(filters) > 1 else filters[0])
        )
    return steps
