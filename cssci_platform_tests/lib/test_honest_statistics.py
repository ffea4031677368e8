"""Issue 13, "honest numbers in every table": each defect of the statistics review as a simulation or a unit check
that fails on the code before the fix (in-sample stacking, HL degrees of freedom and groups, degenerate and
small-sample AUC intervals, SHAP background, multiclass best model chosen on test data)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from cssci_platform.lib.evaluation import binary_auc
from cssci_platform.lib.harmonization.settings import HarmonizationSettings
from cssci_platform.lib.modeling.chains import ChainSettings, build_pipeline
from cssci_platform.lib.modeling.signatures import Signature
from cssci_platform.lib.selection.settings import SelectionSettings

# ------------------------------------------------------------------------------------ 1. stacking the Rad-score


def _stacking_cohort(seed: int, rad_signal: float, n: int = 120, p: int = 40) -> tuple[pd.DataFrame, pd.Series]:
    """`p` radiomics features (the first 3 shifted by `rad_signal` x label) and one clinical factor that carries
    the outcome (logit = 1.5 x factor); patient keys as the matrix has them."""
    rng = np.random.default_rng(seed)
    factor = rng.normal(size=n)
    label = (rng.random(n) < 1 / (1 + np.exp(-1.5 * factor))).astype(int)
    values = rng.normal(size=(n, p))
    values[:, :3] += rad_signal * label[:, None]
    rows = pd.DataFrame(
        values,
        columns=[f"rad__T2__lesion__original__f{i:03d}" for i in range(p)],
        index=pd.Index([f"P{i:03d}" for i in range(n)], name="patient_key"),
    )
    rows["clin__factor"] = factor
    rows["center"] = "C0"
    return rows, pd.Series(label.astype(str), index=rows.index)


def _combined_fit(seed: int, rad_signal: float) -> tuple[float, float, float, float]:
    """(Rad-score head coefficient per SD of the score the head saw, clinical coefficient per SD, Combined test AUC,
    Clinical-only test AUC) with 80 training and 40 test patients."""
    rows, label = _stacking_cohort(seed, rad_signal)
    train, test = rows.index[:80], rows.index[80:]
    settings = ChainSettings(
        harmonization=HarmonizationSettings(enabled=False),
        selection=SelectionSettings(mrmr_k=10),
        lasso_cv=5,
        seed=seed,
    )
    columns = [c for c in rows.columns if c != "center"]
    combined = build_pipeline(Signature("combined"), columns, None, settings).fit(rows.loc[train], label.loc[train])
    head = combined.named_steps["clf"]
    clinical_sd, rad_coefficient = head.head_.coef_[0][0], head.head_.coef_[0][1]
    rad_sd = float(np.std(head.head_scores_))
    from cssci_platform.lib.report.study import out_of_fold_rad_scores

    nomogram_scores = out_of_fold_rad_scores(combined)  # what the report's nomogram is refit on
    assert nomogram_scores["patient_key"].tolist() == list(train) and np.array_equal(
        nomogram_scores["rad_score"], head.head_scores_
    )
    y_test = (label.loc[test] == "1").astype(int).to_numpy()
    combined_auc = binary_auc(y_test, combined.predict_proba(rows.loc[test])[:, 1])
    clinical_auc = binary_auc(y_test, rows.loc[test, "clin__factor"].to_numpy())
    return rad_coefficient * rad_sd, clinical_sd, combined_auc, clinical_auc


def test_combined_head_learns_no_weight_for_a_noise_rad_score_and_keeps_a_real_one() -> None:
    """Pure-noise radiomics: the head sees out-of-fold Rad-scores, so their weight is near 0 and the Combined
    model is as good as the clinical factor on new patients. In-sample Rad-scores of a noise model are nearly
    separating, and their weight rivalled the real factor's."""
    noise = [_combined_fit(seed, 0.0) for seed in range(5)]
    rad_weight = np.array([abs(r[0]) for r in noise])
    clinical_weight = np.array([r[1] for r in noise])
    auc_loss = np.array([r[3] - r[2] for r in noise])
    print(
        f"noise: |Rad weight| {rad_weight.round(2)}, clinical weight {clinical_weight.round(2)}, "
        f"Clinical - Combined test AUC {auc_loss.round(3)}"
    )
    assert rad_weight.mean() < 0.35 and rad_weight.max() < 0.6
    assert clinical_weight.mean() > 3 * rad_weight.mean()
    assert auc_loss.mean() < 0.03
    planted = [_combined_fit(seed, 1.2) for seed in range(2)]
    print(f"planted: Rad weight {[round(r[0], 2) for r in planted]}")
    assert min(r[0] for r in planted) > 0.8


def test_stacking_folds_keep_two_patients_of_every_center_for_combat() -> None:
    """Cross-fitting inside an already small CV fold (15 patients, a center of 3): every fold's training part keeps
    every center with at least 2 patients and both outcomes, so the Rad pipeline's ComBat stays estimable."""
    from cssci_platform.lib.modeling.chains import stacking_splits

    rng = np.random.default_rng(0)
    for seed in range(100):
        center = pd.Series(rng.permutation(["A"] * 6 + ["B"] * 6 + ["C"] * 3))
        y = pd.Series(rng.permutation(["0"] * 7 + ["1"] * 8))
        splits = stacking_splits(pd.DataFrame({"center": center, "f": 0.0}), y, 5, seed)
        assert len(splits) == 5 and sorted(np.concatenate([test for _, test in splits])) == list(range(15))
        for train, _ in splits:
            assert center.iloc[train].value_counts().min() >= 2 and center.iloc[train].nunique() == 3
            assert y.iloc[train].nunique() == 2


def test_cross_fitting_survives_a_center_of_two_and_a_class_of_three() -> None:
    """A 14-patient CV fold with a center of 2 and LASSO asking 3 CV folds: stacking folds leave the lone patient's
    center out of that fold's ComBat fit (its held-out patient is an unseen center) and clamp LASSO's folds."""
    rows, label = _stacking_cohort(4, 1.5, n=14, p=20)
    rows["center"] = ["C0"] * 6 + ["C1"] * 6 + ["C2"] * 2
    label.iloc[:] = ["1", "1", "1"] + ["0"] * 11
    settings = ChainSettings(
        harmonization=HarmonizationSettings(enabled=True), selection=SelectionSettings(mrmr_k=5), lasso_cv=3
    )
    columns = [c for c in rows.columns if c != "center"]
    combined = build_pipeline(Signature("combined"), columns, None, settings).fit(rows, label)
    assert np.isfinite(combined.named_steps["clf"].head_scores_).all() and combined.predict_proba(rows).shape == (14, 2)


# ------------------------------------------------------------------------------------------ 5. SHAP background


def test_shap_background_is_the_training_patients_through_the_fitted_chain() -> None:
    """E[f(X)] of the explanation is the mean log-odds over the training patients (not over the explained, here
    shifted, test patients), for a linear and a tree champion, and the report's caption says so."""
    from sklearn.ensemble import RandomForestClassifier
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import Pipeline
    from sklearn.preprocessing import StandardScaler

    from cssci_platform.lib.report.explain import explain_pipeline
    from cssci_platform.lib.report.study import shap_section

    rng = np.random.default_rng(3)
    train = pd.DataFrame(rng.normal(size=(60, 3)), columns=["a", "b", "c"])
    y = (train["a"] + 0.5 * rng.normal(size=60) > 0).astype(int)
    test = pd.DataFrame(rng.normal(1.5, 1.0, size=(20, 3)), columns=["a", "b", "c"], index=[f"T{i}" for i in range(20)])
    linear = Pipeline([("scale", StandardScaler()), ("clf", LogisticRegression())]).fit(train, y)
    explanation = explain_pipeline(linear, test, train)
    assert explanation.base_value == pytest.approx(linear.decision_function(train).mean(), abs=1e-9)
    assert abs(explanation.base_value - linear.decision_function(test).mean()) > 0.5
    np.testing.assert_allclose(explanation.model_output(), linear.decision_function(test), atol=1e-9)
    forest = Pipeline([("scale", StandardScaler()), ("clf", RandomForestClassifier(20, random_state=0))]).fit(train, y)
    trees = explain_pipeline(forest, test, train)
    assert trees.base_value == pytest.approx(forest.predict_proba(train)[:, 1].mean(), abs=1e-6)
    page = shap_section("Rad_LR", linear, test, train)
    assert "background of the 60 training patients" in page and "data:image/png;base64," in page


# ------------------------------------------------------------------------------------------ 2. Hosmer-Lemeshow


@pytest.mark.parametrize("n", [40, 100, 300])
def test_hosmer_lemeshow_holds_its_size_on_a_held_out_cohort_with_perfectly_calibrated_risks(n: int) -> None:
    """Risks that are the true event probabilities, scored on an independent cohort: the test must reject about 5 %
    of the time at alpha 0.05. With df = G - 2 and always 10 groups it rejected far less (n = 100, 300) or erratically
    (n = 40: groups of 4 patients)."""
    from scipy.special import expit

    from cssci_platform.lib.evaluation import hosmer_lemeshow

    rng = np.random.default_rng(n)
    simulations = 2000
    rejected, groups = 0, []
    for _ in range(simulations):
        risk = expit(rng.normal(-0.5, 1.0, n))
        y = (rng.random(n) < risk).astype(int)
        test = hosmer_lemeshow(y, risk)
        rejected += test.p_value < 0.05
        groups.append(len(test.counts))
        assert test.df == len(test.counts)
    rate = rejected / simulations
    print(f"n = {n}: HL rejection rate {rate:.3f} with {np.mean(groups):.1f} groups on average")
    assert 0.03 <= rate <= 0.07, rate


def test_hosmer_lemeshow_group_rule_and_development_degrees_of_freedom() -> None:
    """G = floor(min(expected events, expected non-events) / 5), within 2..10 (3..10 on the fitting cohort, so df > 0);
    df = G on a held-out cohort, G - 2 on the cohort the model was fitted on; the rule is stated."""
    from cssci_platform.lib.evaluation import hosmer_lemeshow, hosmer_lemeshow_groups

    risk = np.full(40, 0.25)  # 10 expected events -> 2 groups
    assert hosmer_lemeshow_groups(risk) == 2 and hosmer_lemeshow_groups(risk, development=True) == 3
    assert hosmer_lemeshow_groups(np.full(1000, 0.5)) == 10
    assert hosmer_lemeshow_groups(np.full(200, 0.2)) == 8
    rng = np.random.default_rng(0)
    risk = rng.uniform(0.1, 0.9, 200)
    y = (rng.random(200) < risk).astype(int)
    held_out, development = hosmer_lemeshow(y, risk), hosmer_lemeshow(y, risk, development=True)
    assert held_out.statistic == development.statistic and len(held_out.counts) == 10
    assert (held_out.df, development.df) == (10, 8)
    assert "held-out" in held_out.convention and "df = G" in held_out.convention
    assert "df = G - 2" in development.convention


# -------------------------------------------------------------------------------------------- 3. AUC intervals


def test_auc_interval_covers_at_auc_0_9_with_15_patients_per_class() -> None:
    """Binormal scores (AUC 0.9), 15 patients per class: the printed interval covers the true AUC 92-97 % of the
    time (the plain DeLong interval covers about 87 %)."""
    from scipy.stats import norm

    from cssci_platform.lib.evaluation import auc_interval

    shift, simulations, m = np.sqrt(2) * norm.ppf(0.9), 2000, 15
    rng = np.random.default_rng(13)
    y = np.r_[np.ones(m), np.zeros(m)].astype(int)
    covered = 0
    for _ in range(simulations):
        interval = auc_interval(y, np.r_[rng.normal(shift, 1, m), rng.normal(0, 1, m)])
        covered += interval.low <= 0.9 <= interval.high
    print(f"coverage of the AUC interval at AUC 0.9, 15 per class: {covered / simulations:.3f}")
    assert 0.92 <= covered / simulations <= 0.97


def test_auc_interval_at_auc_1_and_0_is_not_degenerate_and_says_so() -> None:
    from cssci_platform.lib.evaluation import auc_interval

    y = np.r_[np.ones(10), np.zeros(10)].astype(int)
    perfect = auc_interval(y, np.r_[np.arange(10) + 20.0, np.arange(10)])
    assert perfect.auc == 1.0 and perfect.high == 1.0 and 0.6 < perfect.low < 0.99
    worst = auc_interval(y, -np.r_[np.arange(10) + 20.0, np.arange(10)])
    assert worst.auc == 0.0 and worst.low == 0.0 and 0.01 < worst.high < 0.4
    assert (
        any("AUC = 1" in note for note in perfect.notes)
        and perfect.method != auc_interval(y, np.r_[np.arange(10) + 5.0, np.arange(10)]).method
    )
    small = auc_interval(np.r_[np.ones(6), np.zeros(12)].astype(int), np.arange(18.0)[::-1] + np.tile([0, 3], 9))
    assert any("6 patients in the smaller class" in note for note in small.notes)
    assert 0 < small.low < small.auc < small.high <= 1


def test_drift_flag_bar_is_the_boundary_respecting_test_interval() -> None:
    """A test AUC of 1 on 10 + 10 patients: the bar is the interval's lower bound (about 0.80), so a prospective AUC
    of 0.9 is not flagged as drift (with DeLong's (1, 1) every AUC below 1 was)."""
    from cssci_platform.lib.evaluation.prospective_validation import lower_test_bound

    y = np.r_[np.ones(10), np.zeros(10)].astype(int)
    bar = lower_test_bound(y, np.r_[np.linspace(0.6, 0.9, 10), np.linspace(0.1, 0.4, 10)])
    assert 0.75 < bar < 0.85 and not 0.9 < bar
    assert np.isnan(lower_test_bound(np.ones(5, dtype=int), np.linspace(0, 1, 5)))


def _scored(y: np.ndarray, probability: np.ndarray, mode: str = "leakage_safe", threshold: float = 0.5) -> pd.DataFrame:
    return pd.DataFrame(
        {
            "patient_key": [f"P{i}" for i in range(len(y))],
            "role": "test",
            "result_name": "Rad_LR",
            "mode": mode,
            "y": y,
            "probability": probability,
            "threshold": threshold,
        }
    )


def test_report_table_prints_a_non_degenerate_interval_at_auc_1_with_a_visible_note() -> None:
    from cssci_platform.lib.report.study import _performance_table, performance_rows

    y = np.r_[np.ones(8), np.zeros(8)].astype(int)
    scored = _scored(y, np.r_[np.linspace(0.6, 0.9, 8), np.linspace(0.1, 0.4, 8)])
    rows, notes = performance_rows(scored, "test")
    assert rows["AUC"].iloc[0] == 1.0 and not rows["95% CI"].iloc[0].startswith("1.000-1.000")
    assert rows["95% CI"].iloc[0].endswith("†")
    assert any("AUC = 1" in n for n in notes) and any("only 8 patients in the smaller class" in n for n in notes)
    page = _performance_table(scored, pd.DataFrame(), "test")
    assert "† Rad_LR (leakage_safe): AUC = 1" in page


def test_calibration_slope_under_separation_says_why_instead_of_nan() -> None:
    from cssci_platform.lib.report.study import calibration_cells

    y = np.r_[np.ones(10), np.zeros(10)].astype(int)
    cells = calibration_cells(y, np.r_[np.linspace(0.6, 0.9, 10), np.linspace(0.1, 0.4, 10)])
    assert "separate the outcomes" in cells["Calibration slope"] and "nan" not in " ".join(cells.values()).lower()
    assert "df = G" in cells["Hosmer-Lemeshow"]
    rng = np.random.default_rng(1)
    risk = rng.uniform(0.05, 0.95, 200)
    fine = calibration_cells((rng.random(200) < risk).astype(int), risk)
    assert float(fine["Calibration slope"]) == pytest.approx(1.0, abs=0.4)


def test_report_states_the_unseen_center_policy_of_each_held_out_center() -> None:
    from cssci_platform.lib.report.methods import unseen_center_statement

    default = unseen_center_statement(["center_A", "center_B"], "none", harmonize=True)
    assert default.count("Held-out center") == 2 and "unharmonized" in default and "center_B" in default
    assert "refit_site" in unseen_center_statement(["center_A"], "refit_site", harmonize=True)
    assert "harmonization disabled" in unseen_center_statement(["center_A"], "none", harmonize=False)
