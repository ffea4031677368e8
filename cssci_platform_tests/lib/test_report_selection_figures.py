"""The radiomics signature figures: the LASSO path recomputed from a fitted chain picks the pipeline's own penalty and
features, the CV curve marks it, and the Rad-score formula reproduces the model's own linear predictor."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from sklearn.ensemble import RandomForestClassifier
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import Pipeline

from cssci_platform.lib.harmonization.settings import HarmonizationSettings
from cssci_platform.lib.modeling.chains import ChainSettings, build_pipeline
from cssci_platform.lib.modeling.signatures import Signature
from cssci_platform.lib.report.artifacts import ReportFigure, ReportTable, figure_png_bytes, figure_svg_bytes
from cssci_platform.lib.report.selection_figures import (
    lasso_cv_figure,
    lasso_path,
    lasso_path_figure,
    rad_score_table,
    rad_score_terms,
    selected_coefficients_figure,
    selector_path,
)
from cssci_platform.lib.selection import LassoSelector
from cssci_platform.lib.selection.settings import SelectionSettings


def synthetic_matrix(n: int = 60, features: int = 24, seed: int = 3) -> tuple[pd.DataFrame, pd.Series]:
    """Radiomics columns (three informative), two clinical columns, three centers with a shift; labels as text."""
    rng = np.random.default_rng(seed)
    centers = np.array(["center_A", "center_B", "center_C"])[np.arange(n) % 3]
    values = rng.normal(size=(n, features))
    logit = 1.6 * values[:, 0] - 1.2 * values[:, 1] + 0.9 * values[:, 2]
    labels = (logit + rng.normal(scale=0.8, size=n) > 0).astype(int).astype(str)
    values += (centers == "center_B")[:, None] * 0.7
    frame = pd.DataFrame(values, columns=[f"rad__sag_T2__lesion__original__f{i:02d}" for i in range(features)])
    frame["clin__age"] = rng.normal(50, 10, n)
    frame["clin__ais"] = rng.integers(0, 2, n).astype(float)
    frame["center"] = centers
    frame.index = pd.Index([f"P{i:03d}" for i in range(n)], name="patient_key")
    return frame, pd.Series(labels, index=frame.index, name="label")


def chain_settings(rule: str = "min") -> ChainSettings:
    return ChainSettings(
        harmonization=HarmonizationSettings(),
        selection=SelectionSettings(rank_test=False, mrmr_k=12, lasso_rule=rule),  # type: ignore[arg-type]
        lasso_cv=5,
        seed=7,
    )


def rad_columns(frame: pd.DataFrame) -> list[str]:
    return [c for c in frame.columns if c.startswith("rad__")]


@pytest.mark.parametrize("rule", ["min", "1se"])
def test_recomputed_path_chooses_the_pipelines_penalty_and_features(rule: str) -> None:
    rows, labels = synthetic_matrix()
    pipeline = build_pipeline(Signature("rad"), rad_columns(rows), LogisticRegression(max_iter=5000),
                              chain_settings(rule)).fit(rows, labels)
    selector = pipeline.named_steps["lasso"]
    path = lasso_path(pipeline, rows, labels)
    assert path.chosen_penalty == pytest.approx(selector.report_.details["C"], rel=1e-12)
    assert set(path.selected) == set(selector.report_.kept)
    assert path.n_rows == len(rows) and sum(path.class_counts.values()) == len(rows)
    assert path.fold_scores.shape == (5, len(path.penalties))
    # penalties strongest first: coefficients vanish at the strongest end and log(lambda) decreases along the grid
    assert not path.coefficients[0].any() and path.coefficients[-1].any()
    assert np.all(np.diff(path.log_lambda) < 0)
    if rule == "1se":  # 1-SE: no weaker penalty than the best one
        assert path.chosen <= path.best


def test_path_of_a_combined_model_is_its_radiomics_part() -> None:
    rows, labels = synthetic_matrix()
    columns = [c for c in rows.columns if c != "center"]
    pipeline = build_pipeline(Signature("combined"), columns, None, chain_settings()).fit(rows, labels)
    inner = pipeline.steps[-1][1].rad_model_.named_steps["lasso"]
    path = lasso_path(pipeline, rows, labels)
    assert path.chosen_penalty == pytest.approx(inner.report_.details["C"], rel=1e-12)
    assert set(path.selected) == set(inner.report_.kept)


def test_other_rows_are_not_the_fit_and_no_lasso_is_a_clear_error() -> None:
    rows, labels = synthetic_matrix()
    settings = chain_settings()
    no_lasso = ChainSettings(selection=settings.selection.model_copy(update={"lasso": False}), lasso_cv=5)
    pipeline = build_pipeline(Signature("rad"), rad_columns(rows), LogisticRegression(), no_lasso).fit(rows, labels)
    with pytest.raises(ValueError, match="no LASSO step"):
        lasso_path(pipeline, rows, labels)


def test_path_and_cv_figures_mark_the_chosen_penalty_and_say_the_cohort() -> None:
    rows, labels = synthetic_matrix()
    pipeline = build_pipeline(Signature("rad"), rad_columns(rows), LogisticRegression(max_iter=5000),
                              chain_settings("1se")).fit(rows, labels)
    path = lasso_path(pipeline, rows, labels)
    for item in (lasso_path_figure(path), lasso_cv_figure(path)):
        assert isinstance(item, ReportFigure)
        assert f"n = {len(rows)}" in item.caption and "training" in item.caption
        axes = item.figure.axes[0]
        dashed = [line for line in axes.get_lines() if line.get_linestyle() == "--"]
        assert dashed and dashed[0].get_xdata()[0] == pytest.approx(path.log_lambda[path.chosen])
        assert figure_png_bytes(item)[:4] == b"\x89PNG" and b"<svg" in figure_svg_bytes(item)
    path_axes = lasso_path_figure(path).figure.axes[0]
    named = {text.get_text() for text in path_axes.get_legend().get_texts()}
    assert {name.removeprefix("rad__") for name in path.selected[:1]} <= named or len(path.selected) > 8
    mean, se = path.cv_error()
    assert np.all(mean > 0) and np.all(se >= 0)  # deviance is positive


def test_rad_score_formula_is_the_models_linear_predictor() -> None:
    rows, labels = synthetic_matrix()
    pipeline = build_pipeline(Signature("rad"), rad_columns(rows), LogisticRegression(max_iter=5000),
                              chain_settings()).fit(rows, labels)
    terms = rad_score_terms(pipeline)
    transformed = pipeline[:-1].transform(rows)
    np.testing.assert_allclose(terms.score(transformed), pipeline.decision_function(rows), rtol=1e-10, atol=1e-10)
    sizes = [abs(b) for b in terms.coefficients.values()]
    assert sizes == sorted(sizes, reverse=True) and all(sizes)
    formula = terms.formula()
    assert formula.startswith(f"Rad-score = {terms.intercept:.4f}") and all(n in formula for n in terms.coefficients)
    table = rad_score_table(terms, n_training=len(rows))
    assert isinstance(table, ReportTable) and len(table.frame) == len(terms.coefficients) + 1
    assert "Rad-score =" in (table.html or "") and "60 training patients" in table.caption
    figure = selected_coefficients_figure(terms, len(rows))
    bars = figure.figure.axes[0].patches
    assert len(bars) == len(terms.coefficients)
    widths = [abs(bar.get_width()) for bar in bars]
    assert widths == sorted(widths)  # largest on top (barh draws bottom-up)


def test_rad_score_of_a_combined_model_is_the_score_its_head_uses() -> None:
    rows, labels = synthetic_matrix()
    columns = [c for c in rows.columns if c != "center"]
    pipeline = build_pipeline(Signature("combined"), columns, None, chain_settings()).fit(rows, labels)
    combined = pipeline.steps[-1][1]
    terms = rad_score_terms(pipeline)
    assert "Combined" in terms.source
    head_input = pipeline[:-1].transform(rows)
    selected = combined.rad_model_[:-1].transform(head_input.drop(columns=["clin__age", "clin__ais"]))
    np.testing.assert_allclose(terms.score(selected), combined.rad_score(head_input), atol=1e-10)


def test_a_model_without_a_logistic_radiomics_part_has_no_formula() -> None:
    rows, labels = synthetic_matrix()
    forest = Pipeline(build_pipeline(Signature("rad"), rad_columns(rows), RandomForestClassifier(n_estimators=5),
                                     chain_settings()).steps).fit(rows, labels)
    with pytest.raises(ValueError, match="RandomForestClassifier"):
        rad_score_terms(forest)


def test_a_clinical_logistic_regression_is_not_a_rad_score() -> None:
    """Seen on the demo: the Clinical_LR champion (a binary LR on clin__ columns) was written out as a 'Rad-score'."""
    rows, labels = synthetic_matrix()
    clinical = Pipeline(build_pipeline(Signature("clinical"), ["clin__age", "clin__ais"], LogisticRegression(),
                                       chain_settings()).steps).fit(rows, labels)
    with pytest.raises(ValueError, match="non-radiomics input"):
        rad_score_terms(clinical)


@pytest.mark.parametrize("model", ["logistic", "linear_on_labels"])
def test_selector_path_of_other_lasso_models_chooses_their_penalty(model: str) -> None:
    rows, labels = synthetic_matrix(n=60, features=10)
    X = rows[rad_columns(rows)]
    X = (X - X.mean()) / X.std()
    if model == "logistic":  # three classes: the multinomial (saga) path
        labels = pd.Series(np.where(X.iloc[:, 0] > 0.5, "high", np.where(X.iloc[:, 1] > 0, "mid", "low")),
                           index=X.index)
    selector = LassoSelector(model=model, cv=3, n_penalties=8, random_state=1).fit(X, labels)  # type: ignore[arg-type]
    path = selector_path(selector, X, labels)
    assert path.chosen_penalty == pytest.approx(selector.report_.details[path.penalty_name], rel=1e-12)
    assert set(path.selected) == set(selector.report_.kept)
    assert path.error_name() == ("CV deviance (2 × mean log-loss)" if model == "logistic" else "CV mean squared error")
    if model == "linear_on_labels":  # alpha is the penalty itself: log10 alpha rises with the penalty's strength
        assert path.penalty_name == "alpha" and np.all(np.diff(path.log_lambda) < 0)
    lasso_cv_figure(path)


def test_caption_names_the_cohort_once_whatever_the_caller_passes() -> None:
    rows, labels = synthetic_matrix()
    pipeline = build_pipeline(Signature("rad"), rad_columns(rows), LogisticRegression(max_iter=5000),
                              chain_settings()).fit(rows, labels)
    path = lasso_path(pipeline, rows, labels)
    for cohort in ("training patients", "the 60 training patients", "The training patients"):
        caption = lasso_path_figure(path, cohort).caption
        assert "on the training patients (n = 60:" in caption and "the the" not in caption.lower()
