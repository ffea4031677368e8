"""Model explanations: SHAP values for every champion, their summary and waterfall plots, Random Forest impurity
importance, and the Rad-score formula.

SHAP values come from the `shap` package, one explainer per model kind (`ShapExplanation.method` names it):
- `shap.TreeExplainer` (forests, gradient boosting, XGBoost, LightGBM; path-dependent perturbation unless background
  data are given): the raw output in the positive class, a probability for scikit-learn forests and trees (their
  raw output is the averaged leaf probability), log-odds for boosting;
- `shap.LinearExplainer` for logistic regression (interventional: value_j = b_j (x_j - mean of the background's
  x_j)), log-odds;
- the Combined model (`RadScoreCombinedClassifier`) on its head's inputs, the clinical factors and the Rad-score (the
  radiomics model's logit, ComBat by `center` inside it): the head is a logistic regression, so LinearExplainer,
  log-odds;
- models whose log-odds are a sum of one-feature terms (binary naive Bayes; AdaBoost whose every tree splits at
  most once, the zoo's default stumps): their interventional SHAP values exactly, value_j = the feature's term at the
  patient's value minus its mean over the background (`explain_additive`), log-odds;
- every other model (SVM, KNN, MLP, AdaBoost on deeper trees, any final step taking a frame with string columns):
  `shap.PermutationExplainer`, model-agnostic, over predict_proba of the final step on the rows it accepts (string
  columns are coded for the masker and decoded before each call), with at most `BACKGROUND_ROWS` background rows and
  `PERMUTATIONS` antithetic permutations per patient; the output is the probability.
Additivity holds for each of them: ``base_value + values.sum(axis=1)`` is that output for every patient (the
permutation explainer's contributions telescope from E[f(background)] to f(x) along each permutation). For multiclass
models `explain_classes` keeps every class's output (`MulticlassShap`: mean |SHAP| per class, one class as a
`ShapExplanation`, the predicted class per patient).

The plots are drawn here, on matplotlib `Figure`s (not with shap's pyplot-based plot functions, which draw
on pyplot's current figure and consume NumPy's global random state): a beeswarm summary in shap's layout
(features by mean |SHAP|, points stacked per SHAP-value bin, coloured by the feature value's 5-95th
percentile rank) and a per-patient waterfall from E[f(X)] to f(x).
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Literal, cast, overload

import numpy as np
import pandas as pd
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from sklearn.ensemble import AdaBoostClassifier
from sklearn.linear_model import LogisticRegression, LogisticRegressionCV
from sklearn.naive_bayes import GaussianNB
from sklearn.pipeline import Pipeline
from sklearn.tree import DecisionTreeClassifier

from cssci_platform.lib.classifiers import LabelEncodedClassifier
from cssci_platform.lib.modeling.chains import RadScoreCombinedClassifier
from cssci_platform.lib.report.figures import NEGATIVE_COLOUR, POSITIVE_COLOUR, figure_png, new_figure
from cssci_platform.lib.report.nomogram import model_equation

with warnings.catch_warnings():  # shap 0.51 sets colormap extremes through a pending-deprecated matplotlib API
    warnings.simplefilter("ignore", PendingDeprecationWarning)
    import shap
    from shap.plots.colors import red_blue
    from shap.utils._exceptions import InvalidModelError

PROBABILITY_TREES = ("RandomForestClassifier", "ExtraTreesClassifier", "DecisionTreeClassifier", "ExtraTreeClassifier")
BACKGROUND_ROWS = 50  # the permutation explainer's background: at most this many training rows (seeded sample)
PERMUTATIONS = 10  # antithetic permutations per explained patient (2 M + 1 model calls each, M features)
SEED = 0
ADDITIVE_CELLS_PER_CALL = 4_000_000  # matrix cells (rows x features) per model call of `explain_additive`
AXES_INCHES = 5.0  # width of the SHAP plots' axes, whatever the length of the feature names beside them
MARGIN_INCHES = 0.6  # room for the y axis's tick marks and the figure's padding
RAD_SCORE = "Rad-score"
METHOD_SENTENCES = {
    "tree": "shap.TreeExplainer (exact for tree ensembles)",
    "linear": "shap.LinearExplainer (exact for the logistic regression, log-odds)",
    "linear (Combined head)": (
        "shap.LinearExplainer on the Combined model's logistic head (exact, log-odds): its inputs are the clinical "
        f"factors and the {RAD_SCORE} (the radiomics model's logit, center harmonization inside it), so the "
        f"radiomics features contribute through the {RAD_SCORE} as one term"
    ),
    "additive": (
        "exact for a model additive in its features (naive Bayes, or AdaBoost on one-split trees: its log-odds are "
        "a sum of one-feature terms), log-odds: each feature's value is its term at the patient's value minus the "
        "term's mean over the background (interventional SHAP)"
    ),
    "permutation": (
        "shap.PermutationExplainer (model-agnostic: neither a tree nor a linear explainer applies to this model), "
        f"over its predicted probability, {PERMUTATIONS} antithetic feature permutations per patient against at most "
        f"{BACKGROUND_ROWS} background rows (additive by construction; the values are estimates)"
    ),
}


@dataclass(frozen=True)
class ShapExplanation:
    """SHAP values (patients x features) of one output, its base value, and the feature values explained."""

    values: np.ndarray
    base_value: float
    data: np.ndarray
    feature_names: list[str]
    output: str  # "probability" or "log-odds"
    method: str = "tree"  # a key of METHOD_SENTENCES: the explainer that gave the values

    def model_output(self) -> np.ndarray:
        """base value + sum of SHAP values: the explained model output per patient (additivity)."""
        return self.base_value + self.values.sum(axis=1)

    def mean_abs(self) -> pd.Series:
        """Global importance: mean |SHAP value| per feature, largest first."""
        return pd.Series(np.abs(self.values).mean(axis=0), index=self.feature_names).sort_values(ascending=False)


def final_step_inputs(pipeline: Pipeline, X: pd.DataFrame) -> tuple[Any, pd.DataFrame | np.ndarray]:
    """The pipeline's final estimator and `X` transformed by all the steps before it (`X` itself when none)."""
    return pipeline.steps[-1][1], (pipeline[:-1].transform(X) if len(pipeline.steps) > 1 else X)


@overload
def explain_pipeline(
    pipeline: Pipeline, rows: pd.DataFrame, background: pd.DataFrame | None, multiclass: Literal[False] = False
) -> ShapExplanation: ...


@overload
def explain_pipeline(
    pipeline: Pipeline, rows: pd.DataFrame, background: pd.DataFrame | None, multiclass: Literal[True]
) -> MulticlassShap: ...


@overload
def explain_pipeline(
    pipeline: Pipeline, rows: pd.DataFrame, background: pd.DataFrame | None, multiclass: bool = False
) -> ShapExplanation | MulticlassShap: ...


def explain_pipeline(
    pipeline: Pipeline, rows: pd.DataFrame, background: pd.DataFrame | None, multiclass: bool = False
) -> ShapExplanation | MulticlassShap:
    """SHAP values of `rows` for a fitted pipeline's final estimator, relative to `background`: the training
    patients, transformed by the same fitted chain (the explained patients themselves when None). The base value
    E[f(X)] is then the mean output over the training patients, so a held-out patient's SHAP values say how they
    differ from the patients the model learned from, not from the other held-out patients."""
    model, transformed = final_step_inputs(pipeline, rows)
    reference = None if background is None else final_step_inputs(pipeline, background)[1]
    if multiclass:
        return explain_classes(model, transformed, background=reference)
    if isinstance(model, RadScoreCombinedClassifier):
        return explain_combined(model, transformed, background=reference)
    return explain(model, transformed, background=reference)


def explanation_caption(explanation: ShapExplanation | MulticlassShap, background: pd.DataFrame | None) -> str:
    """The report's caption of one champion's SHAP values: the explainer that gave them and their reference."""
    method = METHOD_SENTENCES.get(explanation.method, explanation.method)
    return f"Explainer: {method}. {background_caption(background)}"


def background_caption(background: pd.DataFrame | None) -> str:
    """One sentence for the report: what the SHAP values are relative to."""
    if background is None:
        return "SHAP values are relative to the mean output over the explained patients (no training rows were given)."
    return (
        f"SHAP values are relative to a background of the {len(background)} training patients, passed through the "
        "fitted chain (E[f(X)] is the mean model output over them); the explained patients are the test patients."
    )


def _unwrap(model: Any) -> Any:
    return model.estimator_ if isinstance(model, LabelEncodedClassifier) else model


def _names_and_matrix(X: Any, feature_names: Sequence[str] | None) -> tuple[list[str], np.ndarray]:
    matrix = np.asarray(X, dtype=float)
    if feature_names is not None:
        names = list(feature_names)
    elif isinstance(X, pd.DataFrame):
        names = [str(c) for c in X.columns]
    else:
        names = [f"x{j}" for j in range(matrix.shape[1])]
    if len(names) != matrix.shape[1]:
        raise ValueError(f"{len(names)} feature names for {matrix.shape[1]} features")
    return names, matrix


def _class_index(model: Any, positive_class: Any) -> int:
    classes = list(getattr(model, "classes_", [0, 1]))
    if positive_class is None:
        return len(classes) - 1
    if positive_class not in classes:
        raise ValueError(f"positive class {positive_class!r} not among the model's classes {classes}")
    return classes.index(positive_class)


def _one_output(values: Any, base: Any, class_index: int) -> tuple[np.ndarray, float]:
    values = np.asarray(values, dtype=float)
    base = np.atleast_1d(np.asarray(base, dtype=float))
    if values.ndim == 3:
        return values[:, :, class_index], float(base[class_index])
    return values, float(base[0] if base.size == 1 else base[class_index])


def explain_tree(
    model: Any, X: Any, feature_names: Sequence[str] | None = None, background: Any = None, positive_class: Any = None
) -> ShapExplanation:
    """TreeExplainer SHAP values of a fitted tree ensemble (path-dependent, or interventional on `background`); shap's
    InvalidModelError for a model it does not support."""
    estimator = _unwrap(model)
    names, matrix = _names_and_matrix(X, feature_names)
    data = None if background is None else np.asarray(background, dtype=float)
    explainer = shap.TreeExplainer(estimator, data=data)
    values, base = _one_output(
        explainer.shap_values(matrix), explainer.expected_value, _class_index(model, positive_class)
    )
    output = "probability" if type(estimator).__name__ in PROBABILITY_TREES else "log-odds"
    return ShapExplanation(values, base, matrix, names, output, "tree")


def explain_linear(
    model: Any, X: Any, feature_names: Sequence[str] | None = None, background: Any = None, positive_class: Any = None
) -> ShapExplanation:
    """LinearExplainer SHAP values (log-odds) of a fitted logistic model; `background` defaults to `X`."""
    names, matrix = _names_and_matrix(X, feature_names)
    data = matrix if background is None else np.asarray(background, dtype=float)
    # all background rows: shap's default masker would subsample 100 of them for the means
    explainer = shap.LinearExplainer(model, shap.maskers.Independent(data, max_samples=data.shape[0]))
    values, base = _one_output(
        explainer.shap_values(matrix), explainer.expected_value, _class_index(model, positive_class)
    )
    return ShapExplanation(values, base, matrix, names, "log-odds", "linear")


def explain_combined(model: RadScoreCombinedClassifier, X: pd.DataFrame, background: Any = None) -> ShapExplanation:
    """The Combined model explained on its logistic head's inputs: one SHAP value per clinical factor and one for the
    Rad-score (log-odds of the positive class, exact). `X` and `background`: the rows the model takes (clinical and
    radiomics columns, `center`). The values shown are the clinical factors after median imputation (the head
    standardises them; SHAP values do not change under that affine map) and the Rad-score."""
    design, shown = _combined_design(model, X)
    reference = design if background is None else _combined_design(model, background)[0]
    explainer = shap.LinearExplainer(model.head_, shap.maskers.Independent(reference, max_samples=reference.shape[0]))
    values, base = _one_output(explainer.shap_values(design), explainer.expected_value, 1)
    names = [*map(str, model.clinical_columns or []), RAD_SCORE]
    return ShapExplanation(values, base, shown, names, "log-odds", "linear (Combined head)")


def _combined_design(model: RadScoreCombinedClassifier, X: pd.DataFrame) -> tuple[np.ndarray, np.ndarray]:
    """(the head's design matrix: standardised clinical factors + Rad-score, the same with imputed unscaled factors)."""
    clinical = X.loc[:, list(model.clinical_columns or [])]
    rad_score = np.reshape(model.rad_score(X), (len(X), -1))[:, -1:]
    imputed = model.clinical_.named_steps["impute"].transform(clinical)
    return (
        np.column_stack([model.clinical_.transform(clinical), rad_score]).astype(float),
        np.column_stack([imputed, rad_score]).astype(float),
    )


@dataclass(frozen=True)
class _CodedFrame:
    """A frame as the numeric matrix shap's masker needs: string (non-numeric) columns as codes into `categories`;
    `frame` turns any such matrix back into the frame the model takes."""

    columns: list[str]
    categories: dict[str, list[Any]]
    index_name: Any = None

    @classmethod
    def of(cls, *frames: pd.DataFrame) -> _CodedFrame:
        first = frames[0]
        categories = {
            str(c): sorted({v for f in frames for v in f[c].dropna().unique()}, key=str)
            for c in first.columns
            if not pd.api.types.is_numeric_dtype(first[c])
        }
        return cls([str(c) for c in first.columns], categories)

    def matrix(self, frame: pd.DataFrame) -> np.ndarray:
        coded = frame.copy()
        for column, levels in self.categories.items():
            coded[column] = coded[column].map({level: float(i) for i, level in enumerate(levels)})
        return coded.to_numpy(dtype=float)

    def frame(self, matrix: np.ndarray) -> pd.DataFrame:
        frame = pd.DataFrame(matrix, columns=self.columns)
        for column, levels in self.categories.items():
            codes = frame[column].to_numpy()
            frame[column] = [levels[int(code)] if np.isfinite(code) else None for code in codes]
        return frame


def _as_frame(X: Any, feature_names: Sequence[str] | None) -> pd.DataFrame:
    if isinstance(X, pd.DataFrame):
        return X if feature_names is None else X.set_axis(list(feature_names), axis=1)
    matrix = np.asarray(X)
    names = list(feature_names) if feature_names is not None else [f"x{j}" for j in range(matrix.shape[1])]
    return pd.DataFrame(matrix, columns=names)


def _permutation_values(model: Any, X: Any, feature_names: Sequence[str] | None, background: Any) -> tuple:
    """(values: patients x features x classes, base values per class, coded data, names): PermutationExplainer over
    `model.predict_proba` on the rows it accepts, against at most BACKGROUND_ROWS background rows (seeded)."""
    rows = _as_frame(X, feature_names)
    reference = rows if background is None else _as_frame(background, list(rows.columns))
    if len(reference) > BACKGROUND_ROWS:
        reference = reference.sample(BACKGROUND_ROWS, random_state=SEED)
    coding = _CodedFrame.of(rows, reference)
    as_passed = isinstance(X, pd.DataFrame) or coding.categories

    def probabilities(matrix: np.ndarray) -> np.ndarray:
        frame = coding.frame(matrix)
        return np.asarray(model.predict_proba(frame if as_passed else frame.to_numpy()), dtype=float)

    reference_matrix, matrix = coding.matrix(reference), coding.matrix(rows)
    masker = shap.maskers.Independent(reference_matrix, max_samples=reference_matrix.shape[0])
    explainer = shap.PermutationExplainer(probabilities, masker, seed=SEED)
    evaluations = PERMUTATIONS * (2 * matrix.shape[1] + 1)
    # one batch per patient: shap's automatic batch size is several times slower on small models
    result = explainer(matrix, max_evals=evaluations, batch_size=evaluations, silent=True)
    values = np.asarray(result.values, dtype=float)
    base = np.asarray(result.base_values, dtype=float)
    return values, base[0], matrix, coding.columns


def explain_permutation(
    model: Any, X: Any, feature_names: Sequence[str] | None = None, background: Any = None, positive_class: Any = None
) -> ShapExplanation:
    """Model-agnostic SHAP values of the positive class's probability (`_permutation_values`)."""
    values, base, matrix, names = _permutation_values(model, X, feature_names, background)
    k = _class_index(model, positive_class)
    return ShapExplanation(values[:, :, k], float(base[k]), matrix, names, "probability", "permutation")


def additive_log_odds(model: Any) -> Callable[[Any], np.ndarray] | None:
    """The log-odds of `classes_[1]` as a function of the model's input, for binary models whose log-odds are a sum
    of one-feature terms; None for any other model. Naive Bayes: log P(class) + the sum of each feature's
    log-likelihood, per class. AdaBoost (SAMME) whose every tree splits at most once: its decision function sums one
    vote per tree, each a function of one feature, and for two classes `predict_proba` is its logistic sigmoid."""
    estimator = _unwrap(model)
    if len(getattr(estimator, "classes_", ())) != 2:
        return None
    if isinstance(estimator, GaussianNB):

        def naive_bayes_log_odds(rows: Any) -> np.ndarray:
            log_probability = estimator.predict_log_proba(rows)
            return np.asarray(log_probability[:, 1] - log_probability[:, 0], dtype=float)

        return naive_bayes_log_odds
    if isinstance(estimator, AdaBoostClassifier) and all(
        isinstance(tree, DecisionTreeClassifier) and tree.get_depth() <= 1 for tree in estimator.estimators_
    ):
        return lambda rows: np.asarray(estimator.decision_function(rows), dtype=float)
    return None


def explain_additive(
    log_odds: Callable[[Any], np.ndarray],
    model: Any,
    X: Any,
    feature_names: Sequence[str] | None = None,
    background: Any = None,
    positive_class: Any = None,
) -> ShapExplanation:
    """Exact interventional SHAP values of a model whose log-odds f are a sum of one-feature terms g_j (see
    `additive_log_odds`): value_ij = mean over background rows b of f(b with feature j set to x_ij) - f(b)
    = g_j(x_ij) - mean_b g_j(b_j); base value = mean_b f(b). One model call per feature on patients x background rows,
    where the permutation explainer needs 2 M + 1 per permutation and patient."""
    names, matrix = _names_and_matrix(X, feature_names)
    reference = matrix if background is None else np.asarray(background, dtype=float)
    sign = 1.0 if _class_index(model, positive_class) == 1 else -1.0  # the other class's log-odds are -f
    columns = getattr(_unwrap(model), "feature_names_in_", None)  # a model fitted on a frame is given frames

    def outputs(rows: np.ndarray) -> np.ndarray:
        return log_odds(rows if columns is None else pd.DataFrame(rows, columns=columns))

    reference_outputs = outputs(reference)
    values = np.empty_like(matrix)
    patients_per_call = max(1, ADDITIVE_CELLS_PER_CALL // max(1, reference.size))
    for start in range(0, len(matrix), patients_per_call):
        chunk = matrix[start : start + patients_per_call]
        rows = np.repeat(reference[np.newaxis], len(chunk), axis=0)  # patients x background x features
        for j in range(matrix.shape[1]):
            rows[:, :, j] = chunk[:, j, np.newaxis]
            swapped = outputs(rows.reshape(-1, matrix.shape[1])).reshape(len(chunk), len(reference))
            values[start : start + len(chunk), j] = (swapped - reference_outputs).mean(axis=1)
            rows[:, :, j] = reference[:, j]  # the background's own values again for the next feature
    return ShapExplanation(sign * values, sign * float(reference_outputs.mean()), matrix, names, "log-odds", "additive")


def _is_logistic(model: Any) -> bool:
    return isinstance(_unwrap(model), LogisticRegression | LogisticRegressionCV)


def explain(
    model: Any, X: Any, feature_names: Sequence[str] | None = None, background: Any = None, positive_class: Any = None
) -> ShapExplanation:
    """Linear explainer for logistic models, exact values for models additive in their features, tree explainer for
    the tree ensembles shap supports, the permutation explainer for every other model."""
    if _is_logistic(model):
        return explain_linear(model, X, feature_names, background, positive_class)
    log_odds = additive_log_odds(model)
    if log_odds is not None:
        return explain_additive(log_odds, model, X, feature_names, background, positive_class)
    try:
        return explain_tree(model, X, feature_names, background, positive_class)
    except (InvalidModelError, ValueError, TypeError):  # not a supported tree model, or inputs it cannot take
        return explain_permutation(model, X, feature_names, background, positive_class)


@dataclass(frozen=True)
class MulticlassShap:
    """SHAP values of every class output of a multiclass model: `values` (patients x features x classes) and one
    base value per class; additivity holds per class (``base_values[k] + values[:, :, k].sum(axis=1)`` is the
    model's output for class k: a probability for forests and the permutation explainer, the class logit (softmax
    input) otherwise)."""

    values: np.ndarray
    base_values: np.ndarray
    data: np.ndarray
    feature_names: list[str]
    classes: list[str]
    output: str
    method: str = "tree"

    def model_output(self) -> np.ndarray:
        """(patients x classes) explained outputs."""
        return self.base_values[None, :] + self.values.sum(axis=1)

    def predicted(self) -> np.ndarray:
        """Index of each patient's predicted class (the largest output; softmax and averaging keep the order)."""
        return self.model_output().argmax(axis=1)

    def for_class(self, label: Any) -> ShapExplanation:
        """The explanation of one class's output, usable with the summary and waterfall plots."""
        k = self.classes.index(str(label))
        return ShapExplanation(
            self.values[:, :, k],
            float(self.base_values[k]),
            self.data,
            self.feature_names,
            f"{self.output} of class {label}",
            self.method,
        )

    def mean_abs(self) -> pd.DataFrame:
        """Mean |SHAP| per feature (rows) and class (columns), features by their sum over classes, largest first."""
        table = pd.DataFrame(np.abs(self.values).mean(axis=0), index=self.feature_names, columns=self.classes)
        return table.loc[table.sum(axis=1).sort_values(ascending=False, kind="stable").index]


def explain_classes(
    model: Any, X: Any, feature_names: Sequence[str] | None = None, background: Any = None
) -> MulticlassShap:
    """SHAP values of every class of a multiclass model (linear explainer for logistic models, tree explainer for the
    tree ensembles shap supports, the permutation explainer otherwise); a ValueError when the explainer does not give
    one output per class."""
    estimator = _unwrap(model)
    classes = [str(c) for c in getattr(model, "classes_", [])]
    if _is_logistic(estimator) or _tree_supported(estimator):
        names, matrix = _names_and_matrix(X, feature_names)
        data = None if background is None else np.asarray(background, dtype=float)
        if _is_logistic(estimator):
            reference = matrix if data is None else data
            explainer: Any = shap.LinearExplainer(
                estimator, shap.maskers.Independent(reference, max_samples=reference.shape[0])
            )
            output, method = "logit", "linear"
        else:
            explainer = shap.TreeExplainer(estimator, data=data)
            output = "probability" if type(estimator).__name__ in PROBABILITY_TREES else "logit"
            method = "tree"
        values = np.asarray(explainer.shap_values(matrix), dtype=float)
        base = np.atleast_1d(np.asarray(explainer.expected_value, dtype=float))
    else:
        values, base, matrix, names = _permutation_values(model, X, feature_names, background)
        output, method = "probability", "permutation"
    classes = classes or [str(c) for c in range(base.size)]
    if values.ndim != 3 or values.shape[2] != len(classes) or base.size != len(classes):
        raise ValueError(f"the explainer gave SHAP values of shape {values.shape} for {len(classes)} classes")
    return MulticlassShap(values, base, matrix, names, classes, output, method)


def _tree_supported(estimator: Any) -> bool:
    try:
        shap.TreeExplainer(estimator)
    except (InvalidModelError, ValueError, TypeError):
        return False
    return True


# ---------------------------------------------------------------------------------------------- the plots


def _beeswarm_offsets(shap_values: np.ndarray, bins: int = 100, height: float = 0.4) -> np.ndarray:
    """Vertical offsets stacking points of similar SHAP value (shap's beeswarm layout, deterministic)."""
    span = shap_values.max() - shap_values.min()
    quantised = np.round(bins * (shap_values - shap_values.min()) / (span + 1e-8))
    offsets = np.zeros(shap_values.size)
    layer, last_bin = 0, None
    for index in np.argsort(quantised, kind="stable"):
        layer = 0 if quantised[index] != last_bin else layer
        offsets[index] = np.ceil(layer / 2) * ((layer % 2) * 2 - 1)
        layer, last_bin = layer + 1, quantised[index]
    return offsets * (0.9 * height / np.max(offsets + 1))


def _feature_colours(values: np.ndarray) -> np.ndarray:
    """Feature values scaled to [0, 1] between their 5th and 95th percentiles (min / max if those tie); NaN
    values sit at 0.5."""
    finite = values[np.isfinite(values)]
    if finite.size == 0:
        return np.full(values.size, 0.5)
    low, high = np.percentile(finite, [5, 95])
    if high <= low:
        low, high = finite.min(), finite.max()
    scaled = np.clip((values - low) / (high - low), 0, 1) if high > low else np.full(values.size, 0.5)
    return np.where(np.isfinite(scaled), scaled, 0.5)


def shap_summary_png(explanation: ShapExplanation, max_display: int = 15, title: str = "") -> bytes:
    """`shap_summary_plot` as PNG bytes."""
    return figure_png(shap_summary_plot(explanation, max_display, title))


def shap_summary_plot(explanation: ShapExplanation, max_display: int = 15, title: str = "") -> Figure:
    """Beeswarm summary: the `max_display` features with the largest mean |SHAP|, most important on top."""
    order = list(explanation.mean_abs().index[:max_display])
    figure = new_figure((8.0, 0.4 * len(order) + 1.5))
    axes = figure.add_subplot()
    for row, name in enumerate(reversed(order)):
        column = explanation.feature_names.index(name)
        values = explanation.values[:, column]
        axes.scatter(
            values,
            row + _beeswarm_offsets(values),
            c=_feature_colours(explanation.data[:, column]),
            cmap=red_blue,
            vmin=0,
            vmax=1,
            s=12,
            linewidths=0,
            rasterized=True,
        )
    axes.axvline(0, color="#999999", linewidth=0.8)
    axes.set_yticks(range(len(order)), list(reversed(order)), fontsize="small")
    axes.set(ylim=(-1, len(order)), xlabel=f"SHAP value (impact on {explanation.output})", title=title)
    colourbar = figure.colorbar(axes.collections[0], ax=axes, ticks=[0, 1], aspect=40)
    colourbar.ax.set_yticklabels(["Low", "High"])
    colourbar.set_label("Feature value")
    _widen_for_labels(figure, axes, extra_inches=1.0)
    return figure


def shap_waterfall_png(explanation: ShapExplanation, patient: int, max_display: int = 10, title: str = "") -> bytes:
    """`shap_waterfall_plot` as PNG bytes."""
    return figure_png(shap_waterfall_plot(explanation, patient, max_display, title))


def shap_waterfall_plot(explanation: ShapExplanation, patient: int, max_display: int = 10, title: str = "") -> Figure:
    """One patient's path from E[f(X)] (bottom) to f(x) (top); beyond `max_display - 1` features the rest are
    summed into one bar. Bars: positive contributions red, negative blue."""
    values, data = explanation.values[patient], explanation.data[patient]
    order = np.argsort(-np.abs(values), kind="stable")
    shown = order[: max_display - 1] if values.size > max_display else order
    labels = [f"{explanation.feature_names[j]} = {data[j]:.3g}" for j in shown]
    contributions = list(values[shown])
    if shown.size < values.size:
        labels.append(f"{values.size - shown.size} other features")
        contributions.append(float(values[order[shown.size :]].sum()))
    figure = new_figure((8.0, 0.4 * len(labels) + 1.5))
    axes = figure.add_subplot()
    start = explanation.base_value
    path = [start]
    for index in reversed(range(len(labels))):
        y, contribution = len(labels) - 1 - index, contributions[index]
        axes.barh(
            y, contribution, left=start, height=0.6, color=POSITIVE_COLOUR if contribution >= 0 else NEGATIVE_COLOUR
        )
        axes.text(
            start + contribution,
            y,
            f" {contribution:+.3f} ",
            va="center",
            ha="left" if contribution >= 0 else "right",
            fontsize="x-small",
        )
        start += contribution
        path.append(start)
    axes.set_yticks(range(len(labels) - 1, -1, -1), labels, fontsize="small")
    axes.axvline(explanation.base_value, color="#999999", linestyle="--", linewidth=0.8)
    axes.axvline(start, color="#555555", linewidth=0.8)
    axes.set(xlabel=f"{explanation.output}\nE[f(X)] = {explanation.base_value:.3f}, f(x) = {start:.3f}", title=title)
    padding = 0.15 * (max(path) - min(path) or 1.0)
    axes.set_xlim(min(path) - padding, max(path) + padding)
    _widen_for_labels(figure, axes)
    return figure


def _widen_for_labels(figure: Figure, axes: Any, axes_inches: float = AXES_INCHES, extra_inches: float = 0.0) -> None:
    """Make the figure as wide as its widest y tick label (long radiomics names), or its title, plus an axes of
    `axes_inches` and `extra_inches` (a colour bar), so constrained layout never squeezes the axes and nothing is cut
    off on the right."""
    renderer = cast(FigureCanvasAgg, figure.canvas).get_renderer()  # new_figure's canvas
    label_inches = max((t.get_window_extent(renderer).width for t in axes.get_yticklabels()), default=0.0) / figure.dpi
    title_inches = axes.title.get_window_extent(renderer).width / figure.dpi
    width = max(label_inches + MARGIN_INCHES + axes_inches, title_inches + MARGIN_INCHES) + extra_inches
    figure.set_size_inches(max(width, figure.get_figwidth()), figure.get_figheight())


# ------------------------------------------------------------------------------ importance and Rad-score


def impurity_importance(model: Any, feature_names: Sequence[str]) -> pd.DataFrame:
    """Mean decrease in impurity per feature (``feature_importances_``), largest first; ``std`` across the
    ensemble's trees where it has them (forests), else NaN."""
    estimator = _unwrap(model)
    importance = np.asarray(estimator.feature_importances_, dtype=float)
    if importance.size != len(feature_names):
        raise ValueError(f"{len(feature_names)} feature names for {importance.size} importances")
    trees = getattr(estimator, "estimators_", None)
    spread = (
        np.std([tree.feature_importances_ for tree in trees], axis=0)
        if isinstance(trees, list) and trees and hasattr(trees[0], "feature_importances_")
        else np.full(importance.size, np.nan)
    )
    table = pd.DataFrame({"feature": list(feature_names), "importance": importance, "std": spread})
    return table.sort_values("importance", ascending=False, kind="stable").reset_index(drop=True)


def radscore_formula(
    coef: Any, intercept: float | Sequence[float], names: Sequence[str], digits: int = 4, drop_zero: bool = True
) -> str:
    """``Rad-score = b0 + b1 × feature1 - ...`` from LASSO / logistic coefficients (zero terms left out)."""
    coefficients = np.asarray(coef, dtype=float).ravel()
    if coefficients.size != len(names):
        raise ValueError(f"{len(names)} feature names for {coefficients.size} coefficients")
    b0 = float(np.asarray(intercept, dtype=float).ravel()[0])
    terms = {str(n): float(b) for n, b in zip(names, coefficients, strict=True) if not (drop_zero and b == 0)}
    return model_equation(b0, terms, digits, response="Rad-score")
