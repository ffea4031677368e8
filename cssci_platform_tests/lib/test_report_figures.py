"""Report figures (valid PNGs of the declared size), nomogram math against the models' own predictions, SHAP
additivity against the models' outputs, impurity importance and the Rad-score formula."""

from __future__ import annotations

import base64
import io
import re
from pathlib import Path

import matplotlib.image
import numpy as np
import pandas as pd
import pytest
from PIL import Image
from sklearn.ensemble import GradientBoostingClassifier, RandomForestClassifier
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import StandardScaler

from cssci_platform.lib.classifiers import make_estimator
from cssci_platform.lib.clinical import multivariable_logistic
from cssci_platform.lib.report.artifacts import ReportFigure, figure_png_bytes, figure_svg_bytes
from cssci_platform.lib.report.explain import (
    explain,
    explain_linear,
    explain_tree,
    final_step_inputs,
    impurity_importance,
    radscore_formula,
    shap_summary_png,
    shap_waterfall_png,
)
from cssci_platform.lib.report.figures import (
    CalibrationCurve,
    DecisionCurve,
    RocCurve,
    calibration_figure,
    calibration_report,
    confusion_matrix_report,
    decision_curve_figure,
    decision_curve_report,
    feature_importance_figure,
    feature_importance_report,
    gradcam_gallery,
    gradcam_report,
    png_data_uri,
    png_img_tag,
    png_size,
    roc_figure,
    roc_grid,
    roc_grid_report,
    roc_panels,
    roc_panels_report,
    roc_report,
)
from cssci_platform.lib.report.nomogram import (
    CategoricalAxis,
    ContinuousAxis,
    Nomogram,
    model_equation,
    nomogram_equation_table,
    nomogram_figure,
    nomogram_from_coefficients,
    nomogram_from_fit,
    nomogram_report,
    unstandardized,
)


def assert_png(png: bytes, size: tuple[int, int]) -> None:
    """PNG magic bytes, and PIL decodes it to the expected (width, height)."""
    assert png[:8] == b"\x89PNG\r\n\x1a\n"
    image = Image.open(io.BytesIO(png))
    image.verify()
    assert Image.open(io.BytesIO(png)).size == size == png_size(png)


def classification_data(n: int = 200, p: int = 5, seed: int = 0) -> tuple[pd.DataFrame, np.ndarray]:
    rng = np.random.default_rng(seed)
    X = pd.DataFrame(rng.normal(size=(n, p)), columns=[f"f{j}" for j in range(p)])
    logit = 2.0 * X["f0"] - 1.0 * X["f1"] + 0.5 * X["f2"]
    return X, (rng.random(n) < 1 / (1 + np.exp(-logit))).astype(int)


# -------------------------------------------------------------------------------------------------- figures


def test_png_helpers_embed_and_reject_non_png() -> None:
    png = roc_figure([RocCurve("A", [0, 0.5, 1], [0, 0.8, 1])], size=(3, 2))
    assert base64.b64decode(png_data_uri(png).removeprefix("data:image/png;base64,")) == png
    tag = png_img_tag(png, 'ROC "test"')
    assert 'width="300" height="200"' in tag and 'alt="ROC &quot;test&quot;"' in tag
    with pytest.raises(ValueError, match="not a PNG"):
        png_size(b"GIF89a" + bytes(30))


def test_roc_figures_have_declared_sizes_and_legend_text() -> None:
    fpr = np.linspace(0, 1, 30)
    curves = [RocCurve("Rad", fpr, np.sqrt(fpr), 0.8123, (0.7412, 0.8834)),
              RocCurve("Clinical", fpr, fpr ** 0.8, 0.6, "95% CI 0.50-0.70"), RocCurve("Plain", fpr, fpr)]
    assert curves[0].legend() == "Rad (AUC 0.812, 95% CI 0.741-0.883)"
    assert curves[1].legend() == "Clinical (AUC 0.600, 95% CI 0.50-0.70)" and curves[2].legend() == "Plain"
    assert_png(roc_figure(curves, "Test cohort"), (550, 550))
    assert_png(roc_panels({"Training": curves, "Test": curves[:1], "Validation": []}, panel_inches=4), (1200, 400))
    assert roc_figure(curves) == roc_figure(curves)  # deterministic
    with pytest.raises(ValueError, match="equal length"):
        roc_figure([RocCurve("bad", [0, 1], [0, 0.5, 1])])
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        roc_figure([RocCurve("bad", [0, 1.5], [0, 1])])


def test_calibration_and_decision_curves() -> None:
    predicted = np.linspace(0.05, 0.95, 10)
    assert_png(calibration_figure([CalibrationCurve("Rad", predicted, predicted * 0.9)], "Calibration"), (550, 550))
    thresholds = np.linspace(0.01, 0.99, 99)
    treat_all = 0.3 - 0.7 * thresholds / (1 - thresholds)
    png = decision_curve_figure(thresholds, [DecisionCurve("Rad", np.maximum(treat_all, 0) + 0.01)], treat_all)
    assert_png(png, (650, 450))
    with pytest.raises(ValueError, match="98 values for 99 thresholds"):
        decision_curve_figure(thresholds, [DecisionCurve("Rad", np.zeros(98))], treat_all)


def test_gradcam_gallery_grid_from_png_files(tmp_path: Path) -> None:
    paths = []
    for index in range(5):
        paths.append(tmp_path / f"patient{index}.png")
        matplotlib.image.imsave(paths[-1], np.random.default_rng(index).random((16, 20, 3)))
    assert_png(gradcam_gallery(paths, columns=4, tile_inches=2.0), (800, 2 * 230))
    assert_png(gradcam_gallery(paths[:2], [f"P{i}" for i in range(2)], columns=4, tile_inches=2.0), (400, 230))
    with pytest.raises(ValueError, match="2 captions for 5 images"):
        gradcam_gallery(paths, ["a", "b"])
    with pytest.raises(FileNotFoundError):
        gradcam_gallery([tmp_path / "missing.png"])


def test_feature_importance_height_grows_with_bars_shown() -> None:
    names = [f"feature_{i}" for i in range(30)]
    values = np.random.default_rng(0).normal(size=30)
    assert_png(feature_importance_figure(names, values, top_n=5), (650, 270))
    assert_png(feature_importance_figure(names, values, top_n=40), (650, 1020))
    with pytest.raises(ValueError, match="29 names for 30 values"):
        feature_importance_figure(names[:-1], values)


# ------------------------------------------------------------------------------------------------ nomogram


def test_nomogram_total_points_map_to_the_fitted_models_probability() -> None:
    X, y = classification_data(n=300, p=3, seed=1)
    X["f1"] = X["f1"] * 10 + 50  # different scales: the points scaling must handle them
    model = LogisticRegression(C=1e6, max_iter=5000).fit(X, y)
    ranges = {c: (float(X[c].min()), float(X[c].max())) for c in X.columns}
    nomogram = nomogram_from_coefficients(model.intercept_[0], dict(zip(X.columns, model.coef_[0], strict=True)),
                                          ranges)
    patients = X.sample(8, random_state=0)
    expected = model.predict_proba(patients)[:, 1]
    for (_, patient), probability in zip(patients.iterrows(), expected, strict=True):
        total = nomogram.total_points(patient.to_dict())
        assert nomogram.probability_from_points(total) == pytest.approx(probability, abs=1e-9)
        assert nomogram.points_for_probability(probability) == pytest.approx(total, abs=1e-6)
    spans = {a.name: abs(nomogram.variable_points(a.name, a.high) - nomogram.variable_points(a.name, a.low))
             for a in nomogram.axes}
    assert max(spans.values()) == pytest.approx(100.0) and min(spans.values()) < 100
    negative = next(a for a in nomogram.axes if a.coefficient < 0)  # f1: its lowest value scores most
    assert nomogram.variable_points(negative.name, negative.high) == pytest.approx(0.0, abs=1e-9)
    assert nomogram.variable_points(negative.name, negative.low) > 0


def test_nomogram_from_clinical_fit_with_a_categorical_variable() -> None:
    rng = np.random.default_rng(7)
    n = 300
    frame = pd.DataFrame({"age": rng.normal(60, 10, n), "grade": rng.choice(["I", "II", "III"], n)})
    logit = -3 + 0.04 * frame.age + frame.grade.map({"I": 0.0, "II": 0.8, "III": 1.6})
    frame["event"] = (rng.random(n) < 1 / (1 + np.exp(-logit))).astype(int)
    fit = multivariable_logistic(frame, "event", ["age", "grade"])
    nomogram = nomogram_from_fit(fit)
    grade = nomogram.axis("grade")
    assert isinstance(grade, CategoricalAxis) and list(grade.effects) == ["I", "II", "III"]
    exog = np.column_stack([np.ones(n), frame.age, frame.grade == "II", frame.grade == "III"]).astype(float)
    reference = fit.result.predict(exog)  # statsmodels' own prediction
    for index in range(0, n, 37):
        patient = frame.iloc[index][["age", "grade"]].to_dict()
        total = nomogram.total_points(patient)
        assert nomogram.probability_from_points(total) == pytest.approx(reference[index], abs=1e-9)
    with pytest.raises(ValueError, match="no level 'IV'"):
        nomogram.total_points({"age": 60, "grade": "IV"})
    rows = len(nomogram.axes) + 3
    assert_png(nomogram_figure(nomogram, "Nomogram"), (900, round((0.6 * rows + 0.6) * 100)))


def test_nomogram_of_a_model_fitted_on_z_scores_reads_raw_units() -> None:
    X, y = classification_data(n=250, p=3, seed=3)
    X = X.drop(columns="f2")
    X["f0"] = X["f0"] * 12 + 60
    X["rad_score"] = np.random.default_rng(3).normal(size=250)
    clinical = ["f0", "f1"]
    scaler = StandardScaler().fit(X[clinical])
    design = np.column_stack([scaler.transform(X[clinical]), X["rad_score"]])
    model = LogisticRegression(max_iter=5000).fit(design, y)
    coefficients = dict(zip([*clinical, "rad_score"], model.coef_[0], strict=True))
    intercept, raw = unstandardized(model.intercept_[0], coefficients, dict(zip(clinical, scaler.mean_, strict=True)),
                                    dict(zip(clinical, scaler.scale_, strict=True)))
    nomogram = nomogram_from_coefficients(intercept, raw, {c: (float(X[c].min()), float(X[c].max())) for c in X})
    expected = model.predict_proba(design)[:, 1]
    for index in (0, 50, 199):
        total = nomogram.total_points(X.iloc[index].to_dict())
        assert nomogram.probability_from_points(total) == pytest.approx(expected[index], abs=1e-9)


def test_model_equation_and_degenerate_nomogram() -> None:
    assert model_equation(-1.5, {"age": 0.25, "sex[M]": -0.8}) == "logit(p) = -1.500 + 0.250 × age - 0.800 × sex[M]"
    nomogram = Nomogram(0.5, (ContinuousAxis("age", 0.02, 20, 80), CategoricalAxis("sex", {"F": 0.0, "M": -0.3})))
    assert nomogram.equation(2) == "logit(p) = 0.50 + 0.02 × age - 0.30 × sex[M]"
    with pytest.raises(ValueError, match="zero effect"):
        Nomogram(0.0, (ContinuousAxis("age", 0.0, 20, 80),))


# ------------------------------------------------------------------------------------------------- explain


def test_tree_shap_values_add_up_to_forest_probabilities_and_boosting_log_odds() -> None:
    X, y = classification_data()
    forest = RandomForestClassifier(n_estimators=30, max_depth=5, random_state=0).fit(X, y)
    explanation = explain(forest, X)
    assert explanation.output == "probability" and explanation.values.shape == (200, 5)
    assert explanation.model_output() == pytest.approx(forest.predict_proba(X)[:, 1], abs=1e-6)
    assert explanation.mean_abs().index[0] == "f0"
    boosting = GradientBoostingClassifier(n_estimators=30, max_depth=2, random_state=0).fit(X, y)
    explanation = explain_tree(boosting, X, background=X.iloc[:50])
    assert explanation.output == "log-odds"
    assert explanation.model_output() == pytest.approx(boosting.decision_function(X), abs=1e-6)


def test_tree_shap_unwraps_the_label_encoded_xgboost_of_the_classifier_zoo() -> None:
    X, y = classification_data(n=150)
    labels = np.where(y == 1, "poor", "good")
    model = make_estimator("XGBoost", seed=0).set_params(estimator__n_estimators=20).fit(X, labels)
    explanation = explain_tree(model, X, positive_class="poor")
    probability = model.predict_proba(X)[:, list(model.classes_).index("poor")]
    assert explanation.model_output() == pytest.approx(np.log(probability / (1 - probability)), abs=1e-4)


def test_linear_shap_values_are_coefficient_times_centred_feature_and_add_up_to_log_odds() -> None:
    X, y = classification_data()
    pipeline = Pipeline([("scale", StandardScaler()), ("clf", LogisticRegression())]).set_output(transform="pandas")
    pipeline.fit(X, y)
    model, transformed = final_step_inputs(pipeline, X)
    explanation = explain_linear(model, transformed)
    assert explanation.feature_names == list(X.columns) and explanation.output == "log-odds"
    expected = model.coef_[0] * (transformed.to_numpy() - transformed.to_numpy().mean(axis=0))
    assert explanation.values == pytest.approx(expected, abs=1e-10)
    assert explanation.model_output() == pytest.approx(pipeline.decision_function(X), abs=1e-8)
    with pytest.raises(ValueError, match="positive class"):
        explain_linear(model, transformed, positive_class="yes")


def test_shap_plots_are_pngs_of_declared_size_and_leave_global_random_state_alone() -> None:
    X, y = classification_data(n=120, p=8)
    forest = RandomForestClassifier(n_estimators=20, max_depth=4, random_state=0).fit(X, y)
    explanation = explain(forest, X)
    state = np.random.get_state()[1].copy()
    summary = shap_summary_png(explanation, max_display=6)
    waterfall = shap_waterfall_png(explanation, patient=3, max_display=5)
    assert (np.random.get_state()[1] == state).all()
    assert_png(summary, (800, 390))
    assert_png(waterfall, (800, 350))
    assert summary == shap_summary_png(explanation, max_display=6)


def test_impurity_importance_ranks_the_informative_feature_first() -> None:
    X, y = classification_data()
    forest = RandomForestClassifier(n_estimators=30, random_state=0).fit(X, y)
    table = impurity_importance(forest, list(X.columns))
    assert table["feature"].iloc[0] == "f0" and table["importance"].is_monotonic_decreasing
    assert table.set_index("feature")["importance"].to_dict() == pytest.approx(
        dict(zip(X.columns, forest.feature_importances_, strict=True)))
    assert table["std"].gt(0).all()
    assert_png(feature_importance_figure(table["feature"], table["importance"], top_n=5), (650, 270))


def test_radscore_formula_reproduces_the_models_linear_predictor() -> None:
    X, y = classification_data()
    model = LogisticRegression(l1_ratio=1, solver="liblinear", C=0.05).fit(X, y)
    coefficients = model.coef_[0]
    assert (coefficients == 0).any() and (coefficients != 0).any()  # LASSO dropped something: premise
    formula = radscore_formula(model.coef_, model.intercept_, list(X.columns), digits=10)
    match = re.fullmatch(r"Rad-score = (-?[\d.]+)((?: [+-] [\d.]+ × \w+)*)", formula)
    assert match is not None
    terms = re.findall(r" ([+-]) ([\d.]+) × (\w+)", match.group(2))
    assert [name for *_, name in terms] == [c for c, b in zip(X.columns, coefficients, strict=True) if b != 0]
    score = float(match.group(1)) + sum((1 if sign == "+" else -1) * float(b) * X[name] for sign, b, name in terms)
    assert score.to_numpy() == pytest.approx(model.decision_function(X), abs=1e-8)
    with pytest.raises(ValueError, match="4 feature names for 5 coefficients"):
        radscore_formula(coefficients, 0.0, list(X.columns)[:4])


# ------------------------------------------------------------------------ captioned ReportFigure variants


def _figure_lines(item) -> list:
    return [line for axes in item.figure.axes for line in axes.get_lines()]


def test_roc_report_figures_draw_the_same_curves_and_say_cohort_and_n() -> None:
    fpr = np.linspace(0, 1, 30)
    curves = [RocCurve("Rad", fpr, np.sqrt(fpr), 0.81, (0.74, 0.88), n=40, n_positive=15),
              RocCurve("Clinical", fpr, fpr ** 0.8, 0.6, n=40, n_positive=15)]
    item = roc_report("test", curves, positive="good_outcome=1")
    assert isinstance(item, ReportFigure) and item.key == "roc_test"
    assert "test cohort (n = 40, 15 with outcome good_outcome=1)" in item.caption and "AUC" in item.caption
    drawn = _figure_lines(item)
    np.testing.assert_array_equal(drawn[0].get_ydata(), np.sqrt(fpr))  # the figure plots the given points
    assert figure_png_bytes(item) == roc_figure(curves, "test")  # same drawing as the PNG function
    panels = roc_panels_report({"train": curves, "test": curves[:1]})
    assert len(panels.figure.axes) == 2 and "train (n = 40, 15 with outcome 1); test (n = 40" in panels.caption
    with pytest.raises(ValueError, match="validation cohort"):
        roc_report("validation", [])


def test_calibration_and_decision_curve_report_figures() -> None:
    predicted = np.linspace(0.05, 0.95, 10)
    item = calibration_report([CalibrationCurve("Rad", predicted, predicted * 0.9)], "test", n=8, n_positive=3)
    assert item.key == "calibration_test" and "test cohort (n = 8, 3 with outcome 1)" in item.caption
    np.testing.assert_allclose(_figure_lines(item)[1].get_ydata(), predicted * 0.9)
    thresholds = np.linspace(0.01, 0.99, 99)
    treat_all = 0.3 - 0.7 * thresholds / (1 - thresholds)
    model = np.maximum(treat_all, 0) + 0.01
    curve = decision_curve_report(thresholds, [DecisionCurve("Rad", model)], treat_all, "validation", n=10)
    assert curve.key == "decision_curve_validation" and "validation cohort (n = 10)" in curve.caption
    labels = [line.get_label() for line in _figure_lines(curve)]
    assert labels == ["Rad", "Treat all", "Treat none"]
    np.testing.assert_allclose(_figure_lines(curve)[0].get_ydata(), model)
    assert b"<svg" in figure_svg_bytes(curve)
    with pytest.raises(ValueError, match="98 values for 99 thresholds"):
        decision_curve_report(thresholds, [DecisionCurve("Rad", np.zeros(98))], treat_all, "test")


def test_gradcam_report_figure(tmp_path: Path) -> None:
    paths = []
    for index in range(3):
        paths.append(tmp_path / f"patient{index}.png")
        matplotlib.image.imsave(paths[-1], np.random.default_rng(index).random((16, 20, 3)))
    item = gradcam_report(paths, what="the fine-tuned ResNet18 on sag_T2")
    assert item.key == "gradcam" and "3 image(s)" in item.caption
    assert len([a for a in item.figure.axes if a.images]) == 3


def test_nomogram_report_writes_the_equation_that_gives_the_models_probability() -> None:
    X, y = classification_data(n=300, p=3, seed=1)
    model = LogisticRegression(C=1e6, max_iter=5000).fit(X, y)
    ranges = {c: (float(X[c].min()), float(X[c].max())) for c in X.columns}
    nomogram = nomogram_from_coefficients(model.intercept_[0], dict(zip(X.columns, model.coef_[0], strict=True)),
                                          ranges)
    item = nomogram_report(nomogram, n_training=300, outcome="P(good_outcome = 1)", note="Rad-score out-of-fold.")
    assert item.key == "nomogram" and "300 training patients" in item.caption
    assert nomogram.equation() in item.caption and item.caption.endswith("Rad-score out-of-fold.")
    assert item.figure.get_supxlabel().replace("\n", " ") == nomogram.equation()
    # the equation's printed coefficients reproduce the model's probabilities (to the printed precision)
    equation = nomogram.equation(6)
    terms = {name: float(sign + value) for sign, value, name in re.findall(r"([-+]) ([\d.]+) × (\w+)", equation)}
    assert list(terms) == list(X.columns)
    logit = float(equation.split("=")[1].split()[0]) + sum(b * X[n].to_numpy() for n, b in terms.items())
    np.testing.assert_allclose(1 / (1 + np.exp(-logit)), model.predict_proba(X)[:, 1], atol=1e-4)
    table = nomogram_equation_table(nomogram, 300)
    assert list(table.frame["Term"]) == ["(intercept)", *X.columns]
    np.testing.assert_allclose(table.frame["Coefficient (log-odds)"].iloc[1:], model.coef_[0])
    np.testing.assert_allclose(table.frame["Odds ratio"].iloc[1:], np.exp(model.coef_[0]))
    points = table.frame["Points per unit"].iloc[1:].to_numpy()
    assert max(abs(points) * np.array([ranges[c][1] - ranges[c][0] for c in X.columns])) == pytest.approx(100)


def test_multiclass_and_importance_report_figures_match_their_png_twins() -> None:
    fpr = np.linspace(0, 1, 20)
    panels = {c: [RocCurve("LR", fpr, np.sqrt(fpr), 0.8)] for c in ("lung", "breast", "kidney", "prostate")}
    grid = roc_grid_report(panels, "test", n=25)
    assert grid.key == "roc_classes_test" and "(n = 25)" in grid.caption
    assert len([a for a in grid.figure.axes if a.get_lines()]) == 4
    assert figure_png_bytes(grid) == roc_grid(panels)
    counts = np.array([[5, 1, 0], [2, 3, 1], [0, 0, 4]])
    matrix = confusion_matrix_report(counts, ["a", "b", "c"], "LR", "test")
    assert "(n = 16)" in matrix.caption and matrix.key == "confusion_lr_test"
    cells = [text.get_text() for text in matrix.figure.axes[0].texts]
    assert cells == [str(v) for v in counts.ravel()]
    names = [f"feature_{i}" for i in range(30)]
    values = np.random.default_rng(0).normal(size=30)
    importance = feature_importance_report(names, values, "Rad_RF", "impurity importance", top_n=5)
    assert "The 5 features of Rad_RF" in importance.caption and len(importance.figure.axes[0].patches) == 5
    assert figure_png_bytes(importance) == feature_importance_figure(names, values, top_n=5)
