"""Logistic regression (statsmodels Logit, Newton-Raphson maximum likelihood, complete cases per model):
odds ratios exp(b), Wald 95% CIs exp(b ± z·SE) (for a single binary predictor these are exactly Woolf's CI
of the 2x2 table; R's confint.glm would give profile-likelihood intervals instead) and Wald p-values.
Categorical predictors are one-hot coded against a reference level (the first level: categories' order, else
sorted; override with ``reference``); terms are named ``predictor[level]``. ``predictor_p`` is the joint Wald
test of all a predictor's terms (equal to the term's p for a one-term predictor); variable selection uses it.
A model that does not converge (usually complete or quasi-complete separation) gives NaN estimates in the
univariable table and raises `LogisticFitError` in a multivariable fit.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd
import statsmodels.api as sm
from scipy import stats

from cssci_platform.lib.clinical.group_tests import format_p, ordered_levels


class LogisticFitError(ValueError):
    """A logistic model could not be estimated (separation, collinearity, too few events)."""


@dataclass(frozen=True)
class Design:
    """A model matrix (no constant) and how its columns map back to predictors."""

    matrix: pd.DataFrame
    terms: dict[str, list[str]]
    levels: dict[str, list[Any]]  # categorical predictor -> levels, reference first


def binary_outcome(values: pd.Series, positive: Any = None) -> pd.Series:
    """0/1 floats; `positive` names the event level (needed unless the values already are 0/1 or bool)."""
    present = ordered_levels(values)
    if positive is None:
        if not set(present) <= {0, 1}:
            raise ValueError(f"outcome '{values.name}' has levels {present}: name the positive (event) level")
        coded = values.astype(float)
    else:
        if positive not in present:
            raise ValueError(f"positive level {positive!r} not in outcome '{values.name}' levels {present}")
        coded = (values == positive).astype(float).where(values.notna())
    if len(present) != 2:
        raise ValueError(f"outcome '{values.name}' must have exactly two levels, found {present}")
    return coded


def design_matrix(
    frame: pd.DataFrame,
    predictors: Sequence[str],
    categorical: Sequence[str] = (),
    reference: Mapping[str, Any] | None = None,
    levels: Mapping[str, Sequence[Any]] | None = None,
) -> Design:
    """Numeric predictors as they are (bool as 0/1); categorical ones (listed, or non-numeric dtype) one-hot
    against their reference level. `levels` (reference first) fixes the coding, e.g. for new patients."""
    reference = dict(reference or {})
    fixed = dict(levels or {})
    columns: dict[str, pd.Series] = {}
    terms: dict[str, list[str]] = {}
    coded_levels: dict[str, list[Any]] = {}
    for predictor in predictors:
        values = frame[predictor]
        if predictor not in fixed and not _is_categorical(values, categorical, predictor):
            terms[predictor] = [predictor]
            columns[predictor] = pd.to_numeric(values, errors="raise").astype(float)
            continue
        known = list(fixed[predictor]) if predictor in fixed else \
            _reference_first(ordered_levels(values), reference.get(predictor), predictor)
        unknown = set(values.dropna()) - set(known)
        if unknown:
            raise ValueError(f"'{predictor}' has levels {sorted(unknown, key=str)} the model was not fitted on")
        if len(known) < 2:
            raise LogisticFitError(f"'{predictor}' has a single level {known} among the complete cases")
        coded_levels[predictor] = known
        terms[predictor] = [f"{predictor}[{level}]" for level in known[1:]]
        for level, term in zip(known[1:], terms[predictor], strict=True):
            columns[term] = (values == level).astype(float).where(values.notna())
    return Design(pd.DataFrame(columns, index=frame.index), terms, coded_levels)


def _is_categorical(values: pd.Series, categorical: Sequence[str], name: str) -> bool:
    if name in categorical:
        return True
    return not (pd.api.types.is_numeric_dtype(values) or pd.api.types.is_bool_dtype(values))


def _reference_first(levels: list[Any], reference: Any, predictor: str) -> list[Any]:
    if reference is None:
        return levels
    if reference not in levels:
        raise ValueError(f"reference level {reference!r} not among '{predictor}' levels {levels}")
    return [reference, *[level for level in levels if level != reference]]


@dataclass(frozen=True)
class LogisticFit:
    """A fitted multivariable logistic model: per-term table, coefficients and the coding of its predictors."""

    table: pd.DataFrame
    intercept: float
    coefficients: dict[str, float]
    terms: dict[str, list[str]]
    levels: dict[str, list[Any]]
    ranges: dict[str, tuple[float, float]]  # observed (min, max) of each continuous predictor
    n: int
    events: int
    log_likelihood: float
    aic: float
    result: Any = field(repr=False, compare=False)

    @property
    def predictors(self) -> list[str]:
        return list(self.terms)

    def linear_predictor(self, frame: pd.DataFrame) -> np.ndarray:
        design = design_matrix(frame, self.predictors, levels=self.levels).matrix
        return self.intercept + design.to_numpy(float) @ np.array([self.coefficients[t] for t in design.columns])

    def predict_probability(self, frame: pd.DataFrame) -> np.ndarray:
        return 1.0 / (1.0 + np.exp(-self.linear_predictor(frame)))


def _fit_logit(y: pd.Series, design: Design) -> Any:
    exog = sm.add_constant(design.matrix, has_constant="add")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            result = sm.Logit(y, exog).fit(method="newton", maxiter=100, disp=0)
        except np.linalg.LinAlgError as error:
            raise LogisticFitError(f"singular design (collinear predictors?): {error}") from error
    separated = any("separation" in str(w.message).lower() for w in caught)
    if separated or not result.mle_retvals.get("converged", False) or not np.isfinite(result.bse).all():
        raise LogisticFitError("maximum likelihood did not converge (complete or quasi-complete separation?)")
    return result


def _complete_cases(frame: pd.DataFrame, outcome: str, predictors: Sequence[str], positive: Any,
                    categorical: Sequence[str], reference: Mapping[str, Any] | None) -> tuple[pd.Series, Design]:
    rows = frame.dropna(subset=[outcome, *predictors])
    y = binary_outcome(frame[outcome], positive).loc[rows.index]
    design = design_matrix(rows, predictors, categorical, reference)
    return y, design


def _term_table(result: Any, y: pd.Series, design: Design) -> pd.DataFrame:
    z = stats.norm.ppf(0.975)
    rows = []
    for predictor, terms in design.terms.items():
        joint_p = _joint_wald_p(result, terms)
        reference = design.levels[predictor][0] if predictor in design.levels else None
        for term in terms:
            b, se = float(result.params[term]), float(result.bse[term])
            rows.append({"predictor": predictor, "term": term, "reference": reference, "n": int(y.size),
                         "events": int(y.sum()), "coefficient": b, "std_error": se, "odds_ratio": math.exp(b),
                         "ci_low": math.exp(b - z * se), "ci_high": math.exp(b + z * se),
                         "p_value": float(result.pvalues[term]), "predictor_p": joint_p})
    table = pd.DataFrame(rows)
    table["p"] = table["p_value"].map(format_p)
    return table


def _joint_wald_p(result: Any, terms: list[str]) -> float:
    if len(terms) == 1:
        return float(result.pvalues[terms[0]])
    beta = result.params[terms].to_numpy()
    covariance = result.cov_params().loc[terms, terms].to_numpy()
    statistic = float(beta @ np.linalg.solve(covariance, beta))
    return float(stats.chi2.sf(statistic, df=len(terms)))


def univariable_logistic(
    frame: pd.DataFrame,
    outcome: str,
    predictors: Sequence[str],
    *,
    positive: Any = None,
    categorical: Sequence[str] = (),
    reference: Mapping[str, Any] | None = None,
) -> pd.DataFrame:
    """One logistic model per predictor (its own complete cases); one row per term.

    Columns: predictor, term, reference, n, events, coefficient, std_error, odds_ratio, ci_low, ci_high,
    p_value (term Wald), predictor_p (joint Wald), p (formatted), note (why a model could not be estimated).
    """
    tables = []
    for predictor in predictors:
        try:
            y, design = _complete_cases(frame, outcome, [predictor], positive, categorical, reference)
            table = _term_table(_fit_logit(y, design), y, design)
            table["note"] = ""
        except LogisticFitError as error:
            table = _not_estimable(frame, outcome, predictor, positive, str(error))
        tables.append(table)
    return pd.concat(tables, ignore_index=True)


def _not_estimable(frame: pd.DataFrame, outcome: str, predictor: str, positive: Any, note: str) -> pd.DataFrame:
    y = binary_outcome(frame[outcome], positive).loc[frame.dropna(subset=[outcome, predictor]).index]
    return pd.DataFrame([{"predictor": predictor, "term": predictor, "reference": None, "n": int(y.size),
                          "events": int(y.sum()), "coefficient": math.nan, "std_error": math.nan,
                          "odds_ratio": math.nan, "ci_low": math.nan, "ci_high": math.nan, "p_value": math.nan,
                          "predictor_p": math.nan, "p": "", "note": note}])


def multivariable_logistic(
    frame: pd.DataFrame,
    outcome: str,
    predictors: Sequence[str],
    *,
    positive: Any = None,
    categorical: Sequence[str] = (),
    reference: Mapping[str, Any] | None = None,
) -> LogisticFit:
    """One logistic model of all `predictors` on the complete cases; raises `LogisticFitError` if not estimable."""
    if not predictors:
        raise ValueError("multivariable_logistic needs at least one predictor")
    y, design = _complete_cases(frame, outcome, predictors, positive, categorical, reference)
    result = _fit_logit(y, design)
    continuous = [p for p in predictors if p not in design.levels]
    return LogisticFit(
        table=_term_table(result, y, design),
        intercept=float(result.params["const"]),
        coefficients={term: float(result.params[term]) for term in design.matrix.columns},
        terms=design.terms,
        levels=design.levels,
        ranges={p: (float(design.matrix[p].min()), float(design.matrix[p].max())) for p in continuous},
        n=int(y.size),
        events=int(y.sum()),
        log_likelihood=float(result.llf),
        aic=float(result.aic),
        result=result,
    )
