"""Table 1 and logistic regression against independent references: scipy on the same columns, hand-computed
2x2 odds ratios with Woolf CIs, brute-force exact tests, and a numpy Newton fit with its Fisher information."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pandas as pd
import pytest
from scipy import stats
from sklearn.linear_model import LogisticRegression

from cssci_platform.lib.clinical import (
    LogisticFitError,
    binary_outcome,
    compare_categorical,
    fisher_exact_r_by_2,
    format_p,
    independent_risk_factors,
    is_normal,
    multivariable_logistic,
    table_one,
    table_one_html,
    table_one_markdown,
    univariable_logistic,
)
from cssci_platform_tests.refdata import refdata_root

Z975 = 1.959963984540054


def table_rows(counts: dict[tuple[str, str], int], row_name: str = "exposure",
               col_name: str = "outcome") -> pd.DataFrame:
    """Patients expanded from a contingency table {(row level, column level): count}."""
    rows = [{row_name: r, col_name: c} for (r, c), n in counts.items() for _ in range(n)]
    return pd.DataFrame(rows)


def brute_force_fisher(table: np.ndarray) -> float:
    """Two-sided Fisher-Freeman-Halton p by enumerating every table with the observed margins."""
    rows, cols = table.sum(axis=1), table.sum(axis=0)
    n = int(table.sum())

    def probability(t: np.ndarray) -> float:
        numerator = math.prod(math.factorial(int(v)) for v in [*rows, *cols])
        return numerator / (math.factorial(n) * math.prod(math.factorial(int(v)) for v in t.ravel()))

    observed = probability(table)
    total = 0.0
    free_shape = (len(rows) - 1, len(cols) - 1)
    for cells in itertools.product(*[range(int(min(rows[i], cols[j])) + 1)
                                     for i in range(free_shape[0]) for j in range(free_shape[1])]):
        t = np.zeros(table.shape, dtype=int)
        t[: free_shape[0], : free_shape[1]] = np.reshape(cells, free_shape)
        t[: free_shape[0], -1] = rows[:-1] - t[: free_shape[0], :-1].sum(axis=1)
        t[-1, :] = cols - t[:-1, :].sum(axis=0)
        if (t < 0).any() or t[-1].sum() != rows[-1]:
            continue
        p = probability(t)
        if p <= observed * (1 + 1e-7):
            total += p
    return total


# --------------------------------------------------------------------------------------------------- format


@pytest.mark.parametrize(("p", "text"), [(0.0004, "<0.001"), (0.0123, "0.012"), (0.5, "0.500"), (0.05, "0.050"),
                                         (0.0496, "0.0496"), (0.04996, "0.04996"), (float("nan"), "")])
def test_format_p_never_rounds_a_significant_p_up_to_the_threshold(p: float, text: str) -> None:
    assert format_p(p) == text


# ------------------------------------------------------------------------------------------------- Table 1


def two_groups(a: np.ndarray, b: np.ndarray, name: str = "x") -> pd.DataFrame:
    return pd.DataFrame({"group": ["A"] * a.size + ["B"] * b.size, name: np.concatenate([a, b])})


def test_normal_groups_get_mean_sd_and_students_t_test() -> None:
    rng = np.random.default_rng(1)
    a, b = rng.normal(50, 10, 60), rng.normal(56, 10, 55)
    assert stats.shapiro(a).pvalue >= 0.05 and stats.shapiro(b).pvalue >= 0.05  # the branch this test needs
    row = table_one(two_groups(a, b), "group", continuous=["x"]).iloc[1]
    assert row["summary"] == "mean ± SD" and row["statistical_test"] == "Student's t-test"
    assert row["p_value"] == pytest.approx(stats.ttest_ind(a, b, equal_var=True).pvalue, rel=1e-12)
    assert row["A"] == f"{a.mean():.2f} ± {a.std(ddof=1):.2f}"
    welch = table_one(two_groups(a, b), "group", continuous=["x"], welch=True).iloc[1]
    assert welch["p_value"] == pytest.approx(stats.ttest_ind(a, b, equal_var=False).pvalue, rel=1e-12)
    assert welch["p_value"] != pytest.approx(row["p_value"], rel=1e-6)


def test_one_non_normal_group_switches_to_median_iqr_and_mann_whitney() -> None:
    rng = np.random.default_rng(2)
    a, b = rng.normal(5, 1, 50), rng.exponential(5, 50)
    assert stats.shapiro(a).pvalue >= 0.05 and stats.shapiro(b).pvalue < 0.05
    row = table_one(two_groups(a, b), "group", continuous=["x"]).iloc[1]
    assert row["summary"] == "median [IQR]" and row["statistical_test"] == "Mann-Whitney U"
    assert row["p_value"] == pytest.approx(stats.mannwhitneyu(a, b, alternative="two-sided").pvalue, rel=1e-12)
    q1, median, q3 = np.percentile(b, [25, 50, 75])
    assert row["B"] == f"{median:.2f} [{q1:.2f}, {q3:.2f}]"


def test_normality_threshold_is_the_shapiro_wilk_p() -> None:
    values = np.random.default_rng(3).exponential(1, 25)
    p = stats.shapiro(values).pvalue
    assert is_normal(values, alpha=p * 0.99) and not is_normal(values, alpha=p * 1.01)
    assert not is_normal(np.array([1.0, 2.0])) and not is_normal(np.full(10, 3.0))


def test_three_groups_use_anova_or_kruskal_wallis() -> None:
    rng = np.random.default_rng(4)
    groups = [rng.normal(m, 1, 40) for m in (0.0, 0.3, 0.6)]
    frame = pd.DataFrame({"cohort": np.repeat(["train", "test", "validation"], 40), "x": np.concatenate(groups),
                          "skewed": np.concatenate([rng.exponential(s, 40) for s in (1, 1.5, 2)])})
    table = table_one(frame, "cohort", continuous=["x", "skewed"], group_order=["train", "test", "validation"])
    assert list(table.columns[3:6]) == ["train", "test", "validation"]
    assert table.iloc[0][["train", "test", "validation", "Overall"]].tolist() == ["40", "40", "40", "120"]
    normal, skewed = table.iloc[1], table.iloc[2]
    assert normal["statistical_test"] == "One-way ANOVA"
    assert normal["p_value"] == pytest.approx(stats.f_oneway(*groups).pvalue, rel=1e-12)
    skewed_groups = [frame.loc[frame.cohort == c, "skewed"] for c in ("train", "test", "validation")]
    assert skewed["statistical_test"] == "Kruskal-Wallis"
    assert skewed["p_value"] == pytest.approx(stats.kruskal(*skewed_groups).pvalue, rel=1e-12)


def test_categorical_uses_pearson_chi_square_when_expected_counts_are_large() -> None:
    counts = {("yes", "A"): 30, ("no", "A"): 20, ("yes", "B"): 18, ("no", "B"): 32}
    frame = table_rows(counts, "smoker", "group")
    table = table_one(frame, "group", categorical=["smoker"])
    header = table.iloc[1]
    observed = np.array([[20, 32], [30, 18]])  # levels sorted: no, yes
    assert header["statistical_test"] == "Chi-square"
    assert header["p_value"] == pytest.approx(stats.chi2_contingency(observed, correction=False).pvalue, rel=1e-12)
    assert table.iloc[2]["level"] == "no" and table.iloc[2]["A"] == "20 (40.0%)" and table.iloc[3]["B"] == "18 (36.0%)"
    yates = table_one(frame, "group", categorical=["smoker"], yates=True).iloc[1]
    assert yates["p_value"] == pytest.approx(stats.chi2_contingency(observed, correction=True).pvalue, rel=1e-12)


def test_small_expected_count_2x2_uses_fisher_exact() -> None:
    counts = {("yes", "A"): 7, ("no", "A"): 3, ("yes", "B"): 2, ("no", "B"): 9}
    header = table_one(table_rows(counts, "smoker", "group"), "group", categorical=["smoker"]).iloc[1]
    assert header["statistical_test"] == "Fisher's exact"
    assert header["p_value"] == pytest.approx(stats.fisher_exact([[3, 9], [7, 2]]).pvalue, rel=1e-12)


def test_exact_r_by_2_fisher_matches_scipy_2x2_and_brute_force_3x2() -> None:
    for table in ([[3, 9], [7, 2]], [[10, 1], [2, 8]], [[5, 5], [5, 5]]):
        assert fisher_exact_r_by_2(np.array(table)) == pytest.approx(stats.fisher_exact(table).pvalue, rel=1e-9)
    table = np.array([[6, 1], [3, 4], [1, 7]])
    assert fisher_exact_r_by_2(table) == pytest.approx(brute_force_fisher(table), rel=1e-9)
    assert compare_categorical(table.T) == ("Fisher-Freeman-Halton exact", pytest.approx(brute_force_fisher(table)))
    assert fisher_exact_r_by_2(table, limit=5) is None


def test_larger_sparse_tables_use_monte_carlo_fisher_close_to_the_exact_value() -> None:
    table = np.array([[3, 1, 0], [1, 3, 2], [0, 2, 4]])
    test, p = compare_categorical(table)
    assert test == "Fisher-Freeman-Halton (Monte Carlo)"
    assert p == pytest.approx(brute_force_fisher(table), abs=0.01)
    assert compare_categorical(table) == (test, p)  # seeded


def test_table_one_excludes_missing_group_counts_missing_values_and_renders() -> None:
    frame = pd.DataFrame({"cohort": ["train"] * 6 + ["test"] * 4 + [None],
                          "age": [50, 51, np.nan, 60, 61, 62, 40, 41, 42, 43, 99],
                          "sex": ["F", "M", "F", None, "M", "F", "M", "M", "F", "F", "M"]})
    table = table_one(frame, "cohort", continuous=["age"], categorical=["sex"], group_order=["train", "test"])
    assert table.iloc[0]["Overall"] == "10"
    assert table.loc[table.variable == "age", "n_missing"].iloc[0] == 1
    assert table.loc[(table.variable == "sex") & (table.level == ""), "n_missing"].iloc[0] == 1
    assert table.loc[(table.variable == "sex") & (table.level == "F"), "train"].iloc[0] == "3 (60.0%)"
    html = table_one_html(table, caption="Table 1 <by cohort>")
    assert "<caption>Table 1 &lt;by cohort&gt;</caption>" in html and "3 (60.0%)" in html
    markdown = table_one_markdown(table).splitlines()
    assert len(markdown) == len(table) + 2 and markdown[0].startswith("| Characteristic | train | test |")


def test_table_one_rejects_a_single_group_and_unknown_group_order() -> None:
    frame = pd.DataFrame({"g": ["a", "a"], "x": [1.0, 2.0]})
    with pytest.raises(ValueError, match="at least two groups"):
        table_one(frame, "g", continuous=["x"])
    with pytest.raises(ValueError, match="not in the data"):
        table_one(frame, "g", continuous=["x"], group_order=["a", "b"])


@pytest.mark.refdata
def test_table_one_on_asah_matches_scipy_on_the_same_columns() -> None:
    asah = pd.read_csv(refdata_root() / "clinical_aSAH" / "aSAH.csv")
    table = table_one(asah, "outcome", continuous=["age", "s100b", "ndka"], categorical=["gender", "wfns"])
    good, poor = (asah[asah.outcome == g] for g in ("Good", "Poor"))
    for column in ("age", "s100b", "ndka"):
        row = table[table.variable == column].iloc[0]
        normal = min(stats.shapiro(good[column]).pvalue, stats.shapiro(poor[column]).pvalue) >= 0.05
        expected = (stats.ttest_ind(good[column], poor[column]).pvalue if normal
                    else stats.mannwhitneyu(good[column], poor[column], alternative="two-sided").pvalue)
        assert row["summary"] == ("mean ± SD" if normal else "median [IQR]")
        assert row["p_value"] == pytest.approx(expected, rel=1e-12)
    gender = table[(table.variable == "gender") & (table.level == "")].iloc[0]
    crosstab = pd.crosstab(asah.gender, asah.outcome).to_numpy()
    assert gender["p_value"] == pytest.approx(stats.chi2_contingency(crosstab, correction=False).pvalue, rel=1e-12)
    wfns = table[(table.variable == "wfns") & (table.level == "")].iloc[0]
    assert wfns["statistical_test"] == "Fisher-Freeman-Halton exact" and wfns["p"] == "<0.001"
    assert table.iloc[0][["Good", "Poor"]].tolist() == ["72", "41"]


# ------------------------------------------------------------------------------------- logistic regression


def woolf(a: int, b: int, c: int, d: int) -> tuple[float, float, float, float]:
    """Odds ratio ad/bc, Woolf 95% CI and Wald p of a 2x2 table (a, b exposed cases/controls)."""
    log_or = math.log(a * d / (b * c))
    se = math.sqrt(1 / a + 1 / b + 1 / c + 1 / d)
    return math.exp(log_or), math.exp(log_or - Z975 * se), math.exp(log_or + Z975 * se), \
        2 * stats.norm.sf(abs(log_or / se))


def test_binary_predictor_odds_ratio_is_ad_over_bc_with_woolf_ci() -> None:
    counts = {("yes", "case"): 20, ("yes", "control"): 10, ("no", "case"): 15, ("no", "control"): 30}
    frame = table_rows(counts)
    row = univariable_logistic(frame, "outcome", ["exposure"], positive="case").iloc[0]
    odds_ratio, low, high, p = woolf(20, 10, 15, 30)
    assert odds_ratio == 4.0 and row["term"] == "exposure[yes]" and row["reference"] == "no"
    assert row[["odds_ratio", "ci_low", "ci_high"]].tolist() == pytest.approx([odds_ratio, low, high], rel=1e-7)
    assert row["p_value"] == pytest.approx(p, rel=1e-6) and row["n"] == 75 and row["events"] == 35
    flipped = univariable_logistic(frame, "outcome", ["exposure"], positive="case", reference={"exposure": "yes"})
    assert flipped.iloc[0]["odds_ratio"] == pytest.approx(0.25, rel=1e-7)


def test_multilevel_categorical_odds_ratios_and_joint_wald_test_by_hand() -> None:
    cases, controls = {"I": 10, "II": 20, "III": 30}, {"I": 40, "II": 30, "III": 15}
    counts = {**{(k, "case"): v for k, v in cases.items()}, **{(k, "control"): v for k, v in controls.items()}}
    table = univariable_logistic(table_rows(counts, "grade"), "outcome", ["grade"], positive="case")
    log_or = np.array([math.log(cases[k] * controls["I"] / (controls[k] * cases["I"])) for k in ("II", "III")])
    shared = 1 / cases["I"] + 1 / controls["I"]
    covariance = np.full((2, 2), shared) + np.diag([1 / cases[k] + 1 / controls[k] for k in ("II", "III")])
    wald = float(log_or @ np.linalg.solve(covariance, log_or))
    assert table["term"].tolist() == ["grade[II]", "grade[III]"]
    assert table["odds_ratio"].to_numpy() == pytest.approx(np.exp(log_or), rel=1e-7)
    assert table["predictor_p"].iloc[0] == pytest.approx(stats.chi2.sf(wald, 2), rel=1e-6)


def simulated_cohort(n: int = 400, seed: int = 5) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    age = rng.normal(60, 10, n)
    marker = rng.normal(0, 1, n)
    sex = rng.choice(["F", "M"], n)
    noise = rng.normal(0, 1, n)
    confounder = marker + rng.normal(0, 0.6, n)  # tracks the marker, no effect of its own
    logit = -0.5 + 0.04 * (age - 60) + 1.2 * marker + 0.7 * (sex == "M")
    outcome = rng.random(n) < 1 / (1 + np.exp(-logit))
    return pd.DataFrame({"age": age, "marker": marker, "sex": sex, "noise": noise, "confounder": confounder,
                         "event": outcome.astype(int)})


def newton_logistic(X: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Maximum likelihood by Newton-Raphson in numpy; standard errors from the inverse Fisher information."""
    beta = np.zeros(X.shape[1])
    for _ in range(50):
        p = 1 / (1 + np.exp(-X @ beta))
        information = X.T @ (X * (p * (1 - p))[:, None])
        beta = beta + np.linalg.solve(information, X.T @ (y - p))
    p = 1 / (1 + np.exp(-X @ beta))
    return beta, np.sqrt(np.diag(np.linalg.inv(X.T @ (X * (p * (1 - p))[:, None]))))


def test_multivariable_model_matches_numpy_newton_fit_and_sklearn_predictions() -> None:
    frame = simulated_cohort()
    fit = multivariable_logistic(frame, "event", ["age", "marker", "sex"])
    X = np.column_stack([np.ones(len(frame)), frame.age, frame.marker, (frame.sex == "M").astype(float)])
    beta, se = newton_logistic(X, frame.event.to_numpy(float))
    table = fit.table.set_index("term")
    assert fit.intercept == pytest.approx(beta[0], rel=1e-8)
    assert table.loc[["age", "marker", "sex[M]"], "coefficient"].to_numpy() == pytest.approx(beta[1:], rel=1e-8)
    assert table.loc[["age", "marker", "sex[M]"], "std_error"].to_numpy() == pytest.approx(se[1:], rel=1e-6)
    assert table.loc["marker", "ci_high"] == pytest.approx(math.exp(beta[2] + Z975 * se[2]), rel=1e-6)
    reference = LogisticRegression(C=np.inf, tol=1e-10, max_iter=10_000).fit(X[:, 1:], frame.event)
    assert fit.predict_probability(frame) == pytest.approx(reference.predict_proba(X[:, 1:])[:, 1], abs=1e-5)
    assert fit.ranges["age"] == (frame.age.min(), frame.age.max()) and fit.levels == {"sex": ["F", "M"]}


def test_independent_risk_factors_drops_noise_at_screening_and_the_confounder_in_the_joint_model() -> None:
    frame = simulated_cohort()
    analysis = independent_risk_factors(frame, "event", ["age", "marker", "sex", "noise", "confounder"])
    univariable = analysis.univariable.set_index("predictor")["predictor_p"]
    assert univariable["confounder"] < 0.05 and univariable["noise"] >= 0.05  # premise of the scenario
    assert "noise" not in analysis.entered and "confounder" in analysis.entered
    assert analysis.independent == ["age", "marker", "sex"]
    summary = analysis.summary()
    assert summary.loc[summary.predictor == "noise", "multivariable OR (95% CI)"].iloc[0] == ""
    assert summary.set_index("predictor")["independent"].to_dict() == {
        "age": True, "marker": True, "sex": True, "noise": False, "confounder": False}


def test_no_candidate_entering_gives_no_multivariable_model() -> None:
    frame = simulated_cohort()
    analysis = independent_risk_factors(frame, "event", ["noise"])
    assert analysis.entered == [] and analysis.multivariable is None and analysis.independent == []


def test_separation_is_reported_in_univariable_and_raised_in_multivariable() -> None:
    frame = pd.DataFrame({"x": [0, 0, 0, 1, 1, 1, 0, 1], "age": [1, 2, 3, 4, 5, 6, 7, 8],
                          "event": [0, 0, 0, 1, 1, 1, 0, 1]})
    table = univariable_logistic(frame, "event", ["x", "age"])
    separated = table[table.predictor == "x"].iloc[0]
    assert math.isnan(separated["odds_ratio"]) and "separation" in separated["note"]
    with pytest.raises(LogisticFitError):
        multivariable_logistic(frame, "event", ["x"])


def test_outcome_coding_needs_a_positive_level_for_labels() -> None:
    with pytest.raises(ValueError, match="positive"):
        binary_outcome(pd.Series(["Good", "Poor"], name="outcome"))
    assert binary_outcome(pd.Series(["Good", "Poor", None]), positive="Poor").tolist()[:2] == [0.0, 1.0]
    with pytest.raises(ValueError, match="not in outcome"):
        binary_outcome(pd.Series(["Good", "Poor"]), positive="Bad")
