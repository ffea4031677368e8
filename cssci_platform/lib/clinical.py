"""Clinical statistics: Table 1 and logistic regression for independent risk factors.

Table 1 (`table_one`), one column per group (outcome group, or cohort: train / test / validation):

- Continuous variables: normality is judged by Shapiro-Wilk in EVERY group (p >= ``normality_alpha``; a group
  with fewer than 3 values or constant values counts as not normal). All groups normal: mean ± SD (sample SD,
  ddof=1) and Student's t-test with pooled variance (2 groups; what SPSS' "equal variances assumed" row and
  the studies report) or one-way ANOVA (> 2 groups); ``welch=True`` switches to Welch's t-test / Welch's
  ANOVA. Otherwise: median [Q1, Q3] (linear interpolation, R's type 7) and the two-sided Mann-Whitney U test
  (scipy defaults: exact without ties for small samples, else normal approximation with tie and continuity
  correction, as R's wilcox.test) or Kruskal-Wallis (> 2 groups).
- Categorical variables: n (%) with percentages of the group's non-missing values. Test on the levels x groups
  table (levels or groups with no patients dropped): Pearson's chi-square (no Yates correction unless
  ``yates=True``) when every expected count is >= 5, else Fisher's exact test. 2x2: scipy's Fisher exact test.
  R x 2 / 2 x C: the exact Fisher-Freeman-Halton test (two-sided: sum of the probabilities of all tables with
  the same margins that are no more likely than the observed one, relative tolerance 1e-7 as R's fisher.test),
  enumerated when at most `EXACT_TABLE_LIMIT` partial tables arise. Larger tables (or more tables than that):
  Fisher-Freeman-Halton with a Monte Carlo p-value from `MONTE_CARLO_TABLES` seeded random tables (as R's
  ``fisher.test(simulate.p.value=TRUE)``); the test column says which was used.
- Missing values are excluded per variable and counted in the ``n_missing`` column; rows whose group is missing
  are left out. p-values are formatted by `format_p`; the raw value stays in ``p_value``.

Logistic regression (statsmodels Logit, Newton-Raphson maximum likelihood, complete cases per model):
odds ratios exp(b), Wald 95% CIs exp(b ± z·SE) (for a single binary predictor these are exactly Woolf's CI
of the 2x2 table; R's confint.glm would give profile-likelihood intervals instead) and Wald p-values.
Categorical predictors are one-hot coded against a reference level (the first level: categories' order, else
sorted; override with ``reference``); terms are named ``predictor[level]``. ``predictor_p`` is the joint Wald
test of all a predictor's terms (equal to the term's p for a one-term predictor); variable selection uses it.
A model that does not converge (usually complete or quasi-complete separation) gives NaN estimates in the
univariable table and raises `LogisticFitError` in a multivariable fit.

`independent_risk_factors`: univariable screening (``predictor_p < p_enter``), then one multivariable model of
the entered predictors; independent risk factors are those with ``predictor_p < p_independent`` in it. No
stepwise elimination is done.
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
from scipy.special import gammaln
from statsmodels.stats.oneway import anova_oneway

EXACT_TABLE_LIMIT = 5_000_000
MONTE_CARLO_TABLES = 100_000
MONTE_CARLO_SEED = 20240501
TABLE_COLUMNS = ("variable", "level", "summary", "n_missing", "statistical_test", "p_value", "p")


class LogisticFitError(ValueError):
    """A logistic model could not be estimated (separation, collinearity, too few events)."""


# --------------------------------------------------------------------------------------------------- p-values


def format_p(p: float | None, digits: int = 3) -> str:
    """``<0.001`` below 10^-digits, else `digits` decimals; more decimals when rounding would reach 0.05."""
    if p is None or not np.isfinite(p):
        return ""
    floor = 10.0**-digits
    if p < floor:
        return f"<{floor:.{digits}f}"
    text = f"{p:.{digits}f}"
    while p < 0.05 <= float(text) and digits < 6:
        digits += 1
        text = f"{p:.{digits}f}"
    return text


# ------------------------------------------------------------------------------------------ continuous tests


def is_normal(values: np.ndarray, alpha: float = 0.05) -> bool:
    """Shapiro-Wilk p >= alpha; fewer than 3 values or constant values are not called normal."""
    if values.size < 3 or np.ptp(values) == 0:
        return False
    return bool(stats.shapiro(values).pvalue >= alpha)


def compare_continuous(groups: Sequence[np.ndarray], normal: bool, welch: bool = False) -> tuple[str, float]:
    """(test name, two-sided p) for two or more groups of a continuous variable."""
    if any(g.size == 0 for g in groups):
        return "", math.nan
    if len(groups) == 2:
        if normal:
            name = "Welch's t-test" if welch else "Student's t-test"
            return name, float(stats.ttest_ind(groups[0], groups[1], equal_var=not welch).pvalue)
        return "Mann-Whitney U", float(stats.mannwhitneyu(groups[0], groups[1], alternative="two-sided").pvalue)
    if normal:
        if welch:
            return "Welch's ANOVA", float(anova_oneway(list(groups), use_var="unequal").pvalue)
        return "One-way ANOVA", float(stats.f_oneway(*groups).pvalue)
    return "Kruskal-Wallis", float(stats.kruskal(*groups).pvalue)


def mean_sd(values: np.ndarray, digits: int) -> str:
    if values.size == 0:
        return "-"
    sd = values.std(ddof=1) if values.size > 1 else math.nan
    return f"{values.mean():.{digits}f} ± {sd:.{digits}f}"


def median_iqr(values: np.ndarray, digits: int) -> str:
    if values.size == 0:
        return "-"
    q1, median, q3 = np.quantile(values, [0.25, 0.5, 0.75])
    return f"{median:.{digits}f} [{q1:.{digits}f}, {q3:.{digits}f}]"


# ----------------------------------------------------------------------------------------- categorical tests


def fisher_exact_r_by_2(table: np.ndarray, limit: int = EXACT_TABLE_LIMIT) -> float | None:
    """Exact two-sided Fisher-Freeman-Halton p of an R x 2 table; None when enumeration would exceed `limit`.

    Tables with the observed margins are enumerated row by row through the first-column count; a table's
    probability is prod_i C(r_i, x_i) / C(N, c_1).
    """
    table = np.asarray(table, dtype=np.int64)
    rows = table.sum(axis=1)
    first_total = int(table[:, 0].sum())
    capacity_after = np.append(np.cumsum(rows[::-1])[::-1][1:], 0)
    sums = np.zeros(1, dtype=np.int64)
    log_weights = np.zeros(1)
    for row_total, capacity in zip(rows, capacity_after, strict=True):
        if sums.size * (row_total + 1) > limit:
            return None
        counts = np.arange(row_total + 1)
        sums = (sums[:, None] + counts[None, :]).ravel()
        log_weights = (log_weights[:, None] + _log_choose(row_total, counts)[None, :]).ravel()
        feasible = (sums <= first_total) & (sums + capacity >= first_total)
        sums, log_weights = sums[feasible], log_weights[feasible]
    log_total = float(_log_choose(int(rows.sum()), np.array([first_total]))[0])
    observed = float(sum(_log_choose(int(r), np.array([x]))[0] for r, x in zip(rows, table[:, 0], strict=True)))
    probabilities = np.exp(log_weights - log_total)
    as_extreme = probabilities <= math.exp(observed - log_total) * (1 + 1e-7)
    return float(min(1.0, probabilities[as_extreme].sum()))


def _log_choose(n: int, k: np.ndarray) -> np.ndarray:
    return gammaln(n + 1) - gammaln(k + 1) - gammaln(n - k + 1)


def compare_categorical(table: np.ndarray, yates: bool = False) -> tuple[str, float]:
    """(test name, p) for a levels x groups count table; see the module docstring for the choice."""
    table = np.asarray(table, dtype=np.int64)
    table = table[table.sum(axis=1) > 0][:, table.sum(axis=0) > 0]
    if min(table.shape) < 2:
        return "", math.nan
    if (stats.contingency.expected_freq(table) >= 5).all():
        return "Chi-square", float(stats.chi2_contingency(table, correction=yates).pvalue)
    if table.shape == (2, 2):
        return "Fisher's exact", float(stats.fisher_exact(table).pvalue)
    if 2 in table.shape:
        exact = fisher_exact_r_by_2(table if table.shape[1] == 2 else table.T)
        if exact is not None:
            return "Fisher-Freeman-Halton exact", exact
    method = stats.MonteCarloMethod(n_resamples=MONTE_CARLO_TABLES, rng=np.random.default_rng(MONTE_CARLO_SEED))
    return "Fisher-Freeman-Halton (Monte Carlo)", float(stats.fisher_exact(table, method=method).pvalue)


def ordered_levels(values: pd.Series) -> list[Any]:
    """Categories' own order for a categorical dtype, else sorted (by text when types are mixed)."""
    if isinstance(values.dtype, pd.CategoricalDtype):
        present = set(values.dropna())
        return [c for c in values.cat.categories if c in present]
    unique = list(pd.unique(values.dropna()))
    try:
        return sorted(unique)
    except TypeError:
        return sorted(unique, key=str)


# ------------------------------------------------------------------------------------------------- Table 1


def table_one(
    frame: pd.DataFrame,
    group_col: str,
    continuous: Sequence[str] = (),
    categorical: Sequence[str] = (),
    normality_alpha: float = 0.05,
    *,
    group_order: Sequence[Any] | None = None,
    welch: bool = False,
    yates: bool = False,
    overall: bool = True,
    digits: int | Mapping[str, int] = 2,
    percent_digits: int = 1,
) -> pd.DataFrame:
    """Table 1 by `group_col` (see the module docstring for summaries and tests).

    Columns: ``variable``, ``level``, ``summary`` (how the cells are summarised), one column per group (named
    ``str(group)``), ``Overall`` (when `overall`), ``n_missing``, ``statistical_test``, ``p_value`` (float) and
    ``p`` (text).
    The first row gives each group's n; a categorical variable has a header row (its test and p) followed by
    one row per level.
    """
    groups = _group_labels(frame[group_col], group_order)
    if len(groups) < 2:
        raise ValueError(f"table_one needs at least two groups in '{group_col}', found {groups}")
    data = frame[frame[group_col].isin(groups)]
    names = [str(g) for g in groups]
    clashes = set(names) & {*TABLE_COLUMNS, "Overall"}
    if clashes:
        raise ValueError(f"group labels {sorted(clashes)} clash with Table 1's own column names")
    members = [data[group_col] == g for g in groups]
    rows = [_size_row(names, [int(m.sum()) for m in members], len(data), overall)]
    for column in continuous:
        places = digits if isinstance(digits, int) else digits.get(column, 2)
        rows.append(_continuous_row(data[column], members, names, normality_alpha, welch, places, overall))
    for column in categorical:
        rows.extend(_categorical_rows(data[column], members, names, yates, percent_digits, overall))
    columns = ["variable", "level", "summary", *names, *(["Overall"] if overall else []), "n_missing",
               "statistical_test", "p_value", "p"]
    table = pd.DataFrame(rows, columns=columns)
    table["n_missing"] = table["n_missing"].astype("Int64")
    return table


def _group_labels(values: pd.Series, group_order: Sequence[Any] | None) -> list[Any]:
    present = ordered_levels(values)
    if group_order is None:
        return present
    unknown = [g for g in group_order if g not in present]
    if unknown:
        raise ValueError(f"groups {unknown} are not in the data (present: {present})")
    return list(group_order)


def _size_row(names: list[str], sizes: list[int], total: int, overall: bool) -> dict[str, Any]:
    row: dict[str, Any] = {"variable": "n", "level": "", "summary": "", "n_missing": None,
                           "statistical_test": "", "p_value": math.nan, "p": ""}
    row.update({name: str(size) for name, size in zip(names, sizes, strict=True)})
    if overall:
        row["Overall"] = str(total)
    return row


def _continuous_row(
    values: pd.Series, members: list[pd.Series], names: list[str], alpha: float, welch: bool, digits: int,
    overall: bool,
) -> dict[str, Any]:
    numeric = pd.to_numeric(values, errors="raise").astype(float)
    groups = [numeric[m].dropna().to_numpy() for m in members]
    normal = all(is_normal(g, alpha) for g in groups)
    summarise = mean_sd if normal else median_iqr
    test, p = compare_continuous(groups, normal, welch)
    row: dict[str, Any] = {"variable": values.name, "level": "", "summary": "mean ± SD" if normal else "median [IQR]",
                           "n_missing": int(numeric.isna().sum()), "statistical_test": test, "p_value": p,
                           "p": format_p(p)}
    row.update({name: summarise(g, digits) for name, g in zip(names, groups, strict=True)})
    if overall:
        row["Overall"] = summarise(numeric.dropna().to_numpy(), digits)
    return row


def _categorical_rows(
    values: pd.Series, members: list[pd.Series], names: list[str], yates: bool, percent_digits: int, overall: bool,
) -> list[dict[str, Any]]:
    levels = ordered_levels(values)
    counts = np.array([[int(((values == level) & m).sum()) for m in members] for level in levels], dtype=np.int64)
    test, p = compare_categorical(counts, yates) if levels else ("", math.nan)
    header: dict[str, Any] = {"variable": values.name, "level": "", "summary": "n (%)",
                              "n_missing": int(values.isna().sum()), "statistical_test": test, "p_value": p,
                              "p": format_p(p)}
    header.update({name: "" for name in names})
    if overall:
        header["Overall"] = ""
    rows = [header]
    group_totals = counts.sum(axis=0)
    for level, level_counts in zip(levels, counts, strict=True):
        row: dict[str, Any] = {"variable": values.name, "level": str(level), "summary": "", "n_missing": None,
                               "statistical_test": "", "p_value": math.nan, "p": ""}
        row.update({name: _n_percent(n, total, percent_digits)
                    for name, n, total in zip(names, level_counts, group_totals, strict=True)})
        if overall:
            row["Overall"] = _n_percent(int(level_counts.sum()), int(group_totals.sum()), percent_digits)
        rows.append(row)
    return rows


def _n_percent(n: int, total: int, digits: int) -> str:
    return f"{n} ({100.0 * n / total:.{digits}f}%)" if total else f"{n}"


def table_one_display(table: pd.DataFrame) -> pd.DataFrame:
    """The publishable view: level rows indented under their variable, raw p and bookkeeping columns dropped."""
    shown = table.drop(columns=["p_value"]).copy()
    is_level = shown["level"] != ""
    label = shown["variable"].astype(str) + np.where(shown["summary"] != "", ", " + shown["summary"], "")
    shown.insert(0, "Characteristic", np.where(is_level, "    " + shown["level"], label))
    shown = shown.drop(columns=["variable", "level", "summary"])
    shown["n_missing"] = shown["n_missing"].astype(object).where(shown["n_missing"].notna(), "")
    return shown.rename(columns={"n_missing": "Missing", "statistical_test": "Test"})


def table_one_html(table: pd.DataFrame, caption: str | None = None) -> str:
    """Table 1 as an HTML ``<table>`` (cells escaped)."""
    html = table_one_display(table).to_html(index=False, escape=True, na_rep="", classes="table-one")
    if caption:
        html = html.replace(">\n  <thead>", f">\n  <caption>{_escape(caption)}</caption>\n  <thead>", 1)
    return html


def table_one_markdown(table: pd.DataFrame) -> str:
    """Table 1 as a GitHub-flavoured Markdown table."""
    shown = table_one_display(table).astype(str)
    lines = ["| " + " | ".join(shown.columns) + " |", "|" + "---|" * shown.shape[1]]
    lines += ["| " + " | ".join(cell.replace("|", "\\|") for cell in row) + " |" for row in shown.to_numpy()]
    return "\n".join(lines)


def _escape(text: str) -> str:
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


# ------------------------------------------------------------------------------------- logistic regression


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


@dataclass(frozen=True)
class RiskFactorAnalysis:
    """Univariable screening, the multivariable model of the entered predictors, and the independent ones."""

    univariable: pd.DataFrame
    entered: list[str]
    multivariable: LogisticFit | None
    independent: list[str]
    p_enter: float
    p_independent: float

    def summary(self, digits: int = 2) -> pd.DataFrame:
        """The papers' table: per term, univariable and multivariable OR (95% CI) and p."""
        table = self.univariable[["predictor", "term"]].copy()
        table["univariable OR (95% CI)"] = [_or_text(r, digits) for r in self.univariable.itertuples()]
        table["univariable p"] = self.univariable["p"].to_numpy()
        multi = self.multivariable.table.set_index("term") if self.multivariable is not None else None
        table["multivariable OR (95% CI)"] = [
            _or_text(multi.loc[t], digits) if multi is not None and t in multi.index else "" for t in table["term"]]
        table["multivariable p"] = [multi.loc[t, "p"] if multi is not None and t in multi.index else ""
                                    for t in table["term"]]
        table["independent"] = table["predictor"].isin(self.independent)
        return table


def _or_text(row: Any, digits: int) -> str:
    if not np.isfinite(row.odds_ratio):
        return ""
    return f"{row.odds_ratio:.{digits}f} ({row.ci_low:.{digits}f}-{row.ci_high:.{digits}f})"


def independent_risk_factors(
    frame: pd.DataFrame,
    outcome: str,
    candidates: Sequence[str],
    p_enter: float = 0.05,
    p_independent: float = 0.05,
    *,
    positive: Any = None,
    categorical: Sequence[str] = (),
    reference: Mapping[str, Any] | None = None,
) -> RiskFactorAnalysis:
    """Univariable ``predictor_p < p_enter`` -> multivariable; independent where ``predictor_p < p_independent``."""
    options = {"positive": positive, "categorical": categorical, "reference": reference}
    univariable = univariable_logistic(frame, outcome, candidates, **options)
    screened = univariable.groupby("predictor", sort=False)["predictor_p"].first()
    entered = [p for p in candidates if screened[p] < p_enter]
    if not entered:
        return RiskFactorAnalysis(univariable, [], None, [], p_enter, p_independent)
    multivariable = multivariable_logistic(frame, outcome, entered, **options)
    joint = multivariable.table.groupby("predictor", sort=False)["predictor_p"].first()
    independent = [p for p in entered if joint[p] < p_independent]
    return RiskFactorAnalysis(univariable, entered, multivariable, independent, p_enter, p_independent)
