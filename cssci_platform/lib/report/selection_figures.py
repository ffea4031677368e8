"""The radiomics signature as the seed papers show it: the LASSO coefficient path and CV curve, the selected features
with their coefficients, and the Rad-score formula.

The LASSO path is recomputed from a fitted champion pipeline and its training rows with the pipeline's own fitted
`LassoSelector` (same penalty grid, CV folds, seed, rule and scoring), on exactly the input that step saw: the
training rows passed through the pipeline's steps before it (ComBat, ICC, z-score, filters, mRMR). The chosen penalty
is therefore the one the pipeline chose. The Rad-score is the linear predictor (logit) of the logistic regression
that ends the radiomics pipeline (the Rad champion's own, or the Combined model's `rad_model_`), over the selected
features as that model sees them: harmonized and z-scored on the training patients.
"""

from __future__ import annotations

import html
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import Pipeline

from cssci_platform.lib.modeling.chains import RadScoreCombinedClassifier
from cssci_platform.lib.modeling.matrix import RAD
from cssci_platform.lib.report.artifacts import ReportFigure, ReportTable
from cssci_platform.lib.report.figures import NEGATIVE_COLOUR, POSITIVE_COLOUR, new_figure
from cssci_platform.lib.report.nomogram import model_equation
from cssci_platform.lib.selection import LassoSelector, choose_penalty
from cssci_platform.lib.selection._base import class_codes, constant_mask

LASSO_STEP = "lasso"
PATH_LINES_LABELLED = 8  # the path figure names this many features (the selected ones with the largest |b|)


# ----------------------------------------------------------------------------------------------- the LASSO path


@dataclass(frozen=True)
class LassoPath:
    """A LASSO selection recomputed on its training rows.

    `penalties` run from the strongest to the weakest (the selector's grid); `fold_scores` is CV folds x penalties,
    higher is better (negative log-loss for the logistic model, negative MSE for ``linear_on_labels``);
    `coefficients` is penalties x features, the coefficient of each feature refitted on all training rows at each
    penalty (for more than two classes the largest |coefficient| over the classes); `chosen` indexes the penalty the
    selector's rule picked and `best` the one with the best mean CV score.
    """

    penalty_name: str  # "C" (inverse penalty, logistic) or "alpha" (penalty, linear_on_labels)
    penalties: np.ndarray
    fold_scores: np.ndarray
    coefficients: np.ndarray
    features: tuple[str, ...]
    chosen: int
    best: int
    rule: str
    model: str
    n_rows: int
    class_counts: dict[str, int]

    @property
    def log_lambda(self) -> np.ndarray:
        """log10 of the penalty strength lambda: 1/C for the logistic model, alpha for the linear one."""
        strength = 1.0 / self.penalties if self.penalty_name == "C" else self.penalties
        return np.log10(strength)

    @property
    def chosen_penalty(self) -> float:
        return float(self.penalties[self.chosen])

    @property
    def selected(self) -> tuple[str, ...]:
        """Features with a non-zero coefficient at the chosen penalty."""
        return tuple(str(name) for name in np.asarray(self.features)[self.coefficients[self.chosen] != 0])

    def cv_error(self) -> tuple[np.ndarray, np.ndarray]:
        """(mean, standard error) over the folds of the CV error at each penalty: binomial/multinomial deviance
        (2 x mean log-loss) for the logistic model, mean squared error for the linear one."""
        factor = 2.0 if self.model == "logistic" else 1.0
        errors = -factor * self.fold_scores
        return errors.mean(axis=0), errors.std(axis=0, ddof=1) / np.sqrt(errors.shape[0])

    def error_name(self) -> str:
        return "CV deviance (2 × mean log-loss)" if self.model == "logistic" else "CV mean squared error"


def lasso_pipeline(pipeline: Any) -> Pipeline:
    """The pipeline that holds the LASSO step: `pipeline` itself, or the radiomics pipeline inside a Combined model
    (its `rad_model_`). ValueError when there is none (LASSO off in the study's selection settings)."""
    if isinstance(pipeline, Pipeline) and LASSO_STEP in pipeline.named_steps:
        return pipeline
    final = pipeline.steps[-1][1] if isinstance(pipeline, Pipeline) else pipeline
    if isinstance(final, RadScoreCombinedClassifier) and LASSO_STEP in final.rad_model_.named_steps:
        return final.rad_model_
    raise ValueError("this model has no LASSO step (selection.lasso is off in the study config), so no LASSO path")


def lasso_path(pipeline: Any, train_rows: pd.DataFrame, labels: Sequence[Any] | pd.Series) -> LassoPath:
    """The LASSO path of a fitted pipeline (or Combined model) recomputed on the training rows it was fitted on.

    `train_rows`: the feature-matrix rows of the training patients (the columns the pipeline reads; extra columns
    are ignored), `labels`: their outcome labels as the model was fitted on them (`label` as text). The rows must be
    the fit's own: other rows give another path, and the chosen penalty then need not be the pipeline's.
    """
    holder = lasso_pipeline(pipeline)
    position = list(holder.named_steps).index(LASSO_STEP)
    selector_input = holder[:position].transform(train_rows)
    return selector_path(holder.named_steps[LASSO_STEP], selector_input, labels)


def selector_path(selector: LassoSelector, X: pd.DataFrame, labels: Sequence[Any] | pd.Series) -> LassoPath:
    """Recompute a fitted `LassoSelector`'s penalty path on its own input `X` (the same settings and CV folds)."""
    names = np.asarray(getattr(selector, "feature_names_in_", X.columns), dtype=object)
    values = np.asarray(X.loc[:, list(names)] if isinstance(X, pd.DataFrame) else X, dtype=np.float64)
    codes, classes = class_codes(np.asarray(labels), values.shape[0], selector.step_name)
    usable = ~constant_mask(values)
    path = selector._path(values[:, usable], codes)  # the selector's own grid, folds (n_folds_) and scoring
    coefficients = np.zeros((len(path.penalties), len(names)))
    for index in range(len(path.penalties)):
        fitted = path.coefficients_at(index)
        coefficients[index, usable] = fitted[0] if fitted.shape[0] == 1 else np.abs(fitted).max(axis=0)
    counts = np.bincount(codes, minlength=len(classes))
    return LassoPath(
        penalty_name=path.penalty_name,
        penalties=np.asarray(path.penalties, dtype=float),
        fold_scores=np.asarray(path.fold_scores, dtype=float),
        coefficients=coefficients,
        features=tuple(str(n) for n in names),
        chosen=choose_penalty(path.fold_scores, selector.rule),
        best=choose_penalty(path.fold_scores, "min"),
        rule=selector.rule,
        model=selector.model,
        n_rows=values.shape[0],
        class_counts={str(c): int(n) for c, n in zip(classes, counts, strict=True)},
    )


def _cohort_text(path: LassoPath, cohort: str) -> str:
    """'training patients (n = 32: 19 with outcome 0, 13 with outcome 1)', to follow 'the'; a leading 'the' or 'the
    <n>' in `cohort` is dropped (the count comes from the path)."""
    words = cohort.split()
    while words and (words[0].lower() == "the" or words[0].isdigit()):
        words = words[1:]
    counts = ", ".join(f"{n} with outcome {c}" for c, n in path.class_counts.items())
    return f"{' '.join(words) or 'patients'} (n = {path.n_rows}: {counts})"


def _rule_text(path: LassoPath) -> str:
    return "the largest penalty within one standard error of the best (1-SE rule)" if path.rule == "1se" else (
        "the penalty with the best mean CV score (lambda.min)"
    )


def lasso_path_figure(path: LassoPath, cohort: str = "training patients", key: str = "lasso_path",
                      signature: str = "radiomics") -> ReportFigure:
    """Coefficient of every feature entering the LASSO against log10(lambda), the chosen penalty marked; `signature`
    names the signature in the caption (e.g. 'radiomics', 'Rad + ResNet18')."""
    figure = new_figure((7.0, 4.6))
    axes = figure.add_subplot()
    x = path.log_lambda
    chosen = set(path.selected)
    final = path.coefficients[path.chosen]
    labelled = sorted(chosen, key=lambda name: -abs(final[path.features.index(name)]))[:PATH_LINES_LABELLED]
    for column, name in enumerate(path.features):
        values = path.coefficients[:, column]
        if not np.any(values):
            continue
        if name in labelled:
            axes.plot(x, values, linewidth=1.5, label=_short(name))
        else:
            axes.plot(x, values, linewidth=0.8, color="#b0b0b0" if name not in chosen else "#555555")
    axes.axvline(x[path.chosen], color="black", linestyle="--", linewidth=1.0,
                 label=f"chosen: log10 λ = {x[path.chosen]:.2f}")
    axes.axhline(0, color="grey", linewidth=0.6)
    axes.set(xlabel="log10 λ (penalty strength; λ = 1/C)" if path.penalty_name == "C" else "log10 α (penalty)",
             ylabel="Coefficient (z-scored feature)")
    axes.legend(loc="upper right", fontsize="xx-small")
    caption = (
        f"LASSO coefficient path of the {signature} signature on the {_cohort_text(path, cohort)}: each line is one "
        f"of the {len(path.features)} features that reached the LASSO step, its coefficient refitted on all these "
        "patients at each penalty; coefficients shrink to zero as the penalty grows (to the right). The dashed line "
        f"marks the penalty chosen by {path.coefficients.shape[0]}-value grid search with CV, {_rule_text(path)}: "
        f"{len(chosen)} feature(s) keep a non-zero coefficient there (coloured and named: the "
        f"{min(len(chosen), PATH_LINES_LABELLED)} largest; grey: features dropped at that penalty)."
    )
    return ReportFigure(key, "LASSO coefficient path", caption, figure)


def lasso_cv_figure(path: LassoPath, cohort: str = "training patients", key: str = "lasso_cv",
                    signature: str = "radiomics") -> ReportFigure:
    """Mean CV error +- one standard error at each penalty, with the best and the chosen penalty marked."""
    figure = new_figure((7.0, 4.2))
    axes = figure.add_subplot()
    x = path.log_lambda
    mean, standard_error = path.cv_error()
    axes.errorbar(x, mean, yerr=standard_error, fmt="o", color=POSITIVE_COLOUR, ecolor="#999999", markersize=4,
                  capsize=2, linewidth=0.8)
    axes.axvline(x[path.best], color="grey", linestyle=":", linewidth=1.0, label=f"best mean CV: {x[path.best]:.2f}")
    axes.axvline(x[path.chosen], color="black", linestyle="--", linewidth=1.0,
                 label=f"chosen ({path.rule}): {x[path.chosen]:.2f}")
    if path.rule == "1se":
        axes.axhline(mean[path.best] + standard_error[path.best], color="grey", linewidth=0.6,
                     label="best + 1 SE")
    twin = axes.secondary_xaxis("top")
    nonzero = (path.coefficients != 0).sum(axis=1)
    shown = np.unique(np.r_[np.arange(0, len(x), max(1, len(x) // 12)), path.chosen])  # always the chosen one
    twin.set_xticks(x[shown], [str(n) for n in nonzero[shown]], fontsize="xx-small")
    twin.set_xlabel("Features with non-zero coefficient", fontsize="small")
    axes.set(xlabel="log10 λ (penalty strength; λ = 1/C)" if path.penalty_name == "C" else "log10 α (penalty)",
             ylabel=path.error_name())
    axes.legend(loc="best", fontsize="x-small")
    folds = path.fold_scores.shape[0]
    caption = (
        f"Choice of the LASSO penalty of the {signature} signature by seeded stratified {folds}-fold cross-validation "
        "on the "
        f"{_cohort_text(path, cohort)}: mean CV error (points) with ±1 standard error over the folds (bars) at each "
        "penalty of the grid; lower is better. Dotted: the best mean; dashed: the penalty used, "
        f"{_rule_text(path)}. The top axis gives the number of features left at that penalty."
    )
    return ReportFigure(key, "LASSO penalty chosen by cross-validation", caption, figure)


# -------------------------------------------------------------------------------------- Rad-score coefficients


@dataclass(frozen=True)
class RadScoreTerms:
    """The Rad-score ``b0 + sum b_i x_i``: the logistic model's linear predictor over the selected features (as the
    model sees them: harmonized and z-scored), largest |b| first."""

    intercept: float
    coefficients: dict[str, float]
    positive_class: str
    source: str  # which model it comes from, for the caption

    def formula(self, digits: int = 4) -> str:
        return model_equation(self.intercept, self.coefficients, digits, response="Rad-score")

    def score(self, selected: pd.DataFrame) -> np.ndarray:
        """The Rad-score of rows holding the selected features (transformed as the model sees them)."""
        values = selected.loc[:, list(self.coefficients)].to_numpy(dtype=float)
        return self.intercept + values @ np.asarray(list(self.coefficients.values()))


def rad_score_pipeline(pipeline: Any) -> Pipeline:
    """The radiomics pipeline whose logistic regression defines the Rad-score: a Combined model's `rad_model_`, or
    `pipeline` itself when it ends in a binary logistic regression. ValueError otherwise (say which classifier)."""
    final = pipeline.steps[-1][1] if isinstance(pipeline, Pipeline) else pipeline
    if isinstance(final, RadScoreCombinedClassifier):
        return final.rad_model_
    if isinstance(final, LogisticRegression) and len(final.classes_) == 2:
        others = [str(n) for n in getattr(final, "feature_names_in_", []) if not str(n).startswith(RAD)]
        if others:
            raise ValueError(f"the logistic regression reads {len(others)} non-radiomics input(s) (e.g. {others[0]}), "
                             "so its score is not a Rad-score")
        return pipeline
    raise ValueError(f"the model ends in {type(final).__name__}, not a binary logistic regression on the radiomics "
                     "features, so its score has no Rad-score formula (the Combined model's radiomics part has one)")


def rad_score_terms(pipeline: Any) -> RadScoreTerms:
    """The Rad-score's intercept and coefficients from a fitted pipeline (see `rad_score_pipeline`)."""
    radiomics = rad_score_pipeline(pipeline)
    model = radiomics.steps[-1][1]
    names = [str(n) for n in getattr(model, "feature_names_in_", radiomics[:-1].get_feature_names_out())]
    coefficients = dict(zip(names, np.asarray(model.coef_, dtype=float).ravel(), strict=True))
    ordered = dict(sorted(((n, b) for n, b in coefficients.items() if b != 0), key=lambda item: -abs(item[1])))
    final = pipeline.steps[-1][1] if isinstance(pipeline, Pipeline) else pipeline
    source = ("the radiomics part of the Combined model" if isinstance(final, RadScoreCombinedClassifier)
              else "the radiomics logistic regression")
    return RadScoreTerms(float(np.ravel(model.intercept_)[0]), ordered, str(model.classes_[1]), source)


def selected_coefficients_figure(terms: RadScoreTerms, n_training: int | None = None,
                                 key: str = "radscore_coefficients") -> ReportFigure:
    """Horizontal bars of the Rad-score's coefficients, sorted by size (largest on top), negative ones in blue."""
    if not terms.coefficients:
        raise ValueError("the Rad-score has no non-zero coefficient: nothing to draw")
    names = list(terms.coefficients)[::-1]
    values = np.asarray([terms.coefficients[n] for n in names])
    figure = new_figure((8.0, 0.32 * len(names) + 1.3))
    axes = figure.add_subplot()
    axes.barh(np.arange(len(names)), values, color=[NEGATIVE_COLOUR if v < 0 else POSITIVE_COLOUR for v in values])
    axes.set_yticks(np.arange(len(names)), [_short(n) for n in names], fontsize="x-small")
    axes.axvline(0, color="black", linewidth=0.6)
    axes.set_xlabel(f"Coefficient (log-odds of outcome {terms.positive_class} per SD)", fontsize="small")
    cohort = f"the {n_training} training patients" if n_training else "the training patients"
    caption = (
        f"The {len(names)} radiomics features of the signature with their coefficients in the Rad-score ("
        f"{terms.source}, fitted on {cohort}); features are ComBat-harmonized where the study harmonizes and "
        "z-scored, so a bar is the change in log-odds of outcome "
        f"{terms.positive_class} per standard deviation of the feature. Red: higher values raise the odds; blue: "
        "lower them. Full names in the Rad-score table."
    )
    return ReportFigure(key, "Radiomics features selected and their coefficients", caption, figure)


def rad_score_table(terms: RadScoreTerms, n_training: int | None = None, key: str = "radscore_formula") -> ReportTable:
    """The Rad-score formula written out, and one row per term (feature, coefficient, odds ratio per SD)."""
    frame = pd.DataFrame(
        {
            "Term": ["(intercept)", *terms.coefficients],
            "Coefficient": [terms.intercept, *terms.coefficients.values()],
            "Odds ratio per SD": [np.nan, *np.exp(list(terms.coefficients.values()))],
        }
    )
    cohort = f"the {n_training} training patients" if n_training else "the training patients"
    body = (
        f'<p class="formula"><code>{html.escape(terms.formula())}</code></p>'
        + frame.to_html(index=False, border=0, na_rep="", float_format=lambda v: f"{v:.4f}")
    )
    caption = (
        f"The Rad-score is the linear predictor (log-odds of outcome {terms.positive_class}) of {terms.source}, "
        f"fitted on {cohort}; each feature enters harmonized and z-scored with the training patients' mean and SD. "
        "A patient's Rad-score is the intercept plus the sum of coefficient × feature value; 0 is even odds."
    )
    return ReportTable(key, "Rad-score formula", caption, frame, html=body)


def _short(name: str, limit: int = 60) -> str:
    """A feature name without the ``rad__`` prefix, cut in the middle when longer than `limit` characters."""
    text = name.removeprefix(RAD)
    return text if len(text) <= limit else text[: limit // 2 - 1] + "…" + text[-(limit // 2) :]
