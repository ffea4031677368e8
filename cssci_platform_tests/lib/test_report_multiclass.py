"""The multiclass HTML study report (spinal-metastasis layout) on small synthetic prediction frames: every number
against `lib/evaluation` and scikit-learn, the sections of the page, per-row labels preferred over the outcomes
table, multiclass SHAP additivity and the new figures' sizes."""

from __future__ import annotations

import re

import numpy as np
import pandas as pd
import pytest
from sklearn.ensemble import RandomForestClassifier
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import (
    accuracy_score,
    confusion_matrix,
    precision_recall_fscore_support,
    roc_auc_score,
    top_k_accuracy_score,
)
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import StandardScaler

from cssci_platform.lib.evaluation import auc_interval, delong_roc_test, multiclass_evaluation
from cssci_platform.lib.report.explain import explain_classes
from cssci_platform.lib.report.figures import (
    RocCurve,
    confusion_matrix_figure,
    png_size,
    roc_grid,
    stacked_importance_figure,
)
from cssci_platform.lib.report.inputs import MethodSettings
from cssci_platform.lib.report.study import ReportInputs, build_report, labelled_predictions
from cssci_platform.lib.report.study_multiclass import (
    best_model,
    cnn_display_name,
    confusion_counts,
    delong_pairs,
    multiclass_scores,
)

CLASSES = ["lung", "kidney", "breast", "thyroid", "prostate"]
CNN_ID = "resnet50__sag_T2__original__IMAGENET1K_V2"
N_BOOT = 200
MODELS = pd.DataFrame(
    [
        {
            "run_id": "r1",
            "result_name": "Clinical_LR",
            "signature": "Clinical",
            "classifier": "LR",
            "mode": "leakage_safe",
            "champion": True,
        },
        {
            "run_id": "r2",
            "result_name": "Clinical_LR",
            "signature": "Clinical",
            "classifier": "LR",
            "mode": "paper_faithful",
            "champion": False,
        },
        {
            "run_id": "r3",
            "result_name": "Rad_LR",
            "signature": "Rad",
            "classifier": "LR",
            "mode": "leakage_safe",
            "champion": True,
        },
        {
            "run_id": "r4",
            "result_name": "Rad_RandomForest",
            "signature": "Rad",
            "classifier": "RandomForest",
            "mode": "leakage_safe",
            "champion": False,
        },
    ]
).assign(
    threshold=np.nan, split="holdout_8_2", fold="holdout", registered_model=None, cv_auc_mean=[0.70, 0.95, 0.80, 0.90]
)  # Rad_LR: best CV AUC of the champions, Clinical_LR: best test AUC
STRENGTH = {"r1": 3.0, "r2": 3.5, "r3": 1.5, "r4": 1.0, CNN_ID: 2.0}


def cohort(n: int = 90, seed: int = 0) -> tuple[list[str], np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    keys = [f"MET-{i:03d}" for i in range(n)]
    labels = np.array(CLASSES)[rng.choice(5, n, p=[0.35, 0.15, 0.22, 0.10, 0.18])]
    roles = np.array(["train"] * (n // 3) + ["test"] * (n - n // 3 - 20) + ["validation"] * 20)
    return keys, labels, roles


def prediction_frame(keys: list[str], labels: np.ndarray, roles: np.ndarray, seed: int = 1) -> pd.DataFrame:
    """Long rows as the `predictions` table holds them: the zoo's models and a fine-tuned CNN, scores leaning to
    the true class by model strength."""
    rng = np.random.default_rng(seed)
    signatures = {
        **dict(zip(MODELS["run_id"], MODELS[["signature", "classifier", "mode"]].itertuples(index=False))),
        CNN_ID: ("CNN", "ResNet50_original", "leakage_safe"),
    }
    rows = []
    for model, (signature, classifier, mode) in signatures.items():
        for key, label, role in zip(keys, labels, roles):
            alpha = np.ones(len(CLASSES))
            alpha[CLASSES.index(label)] += STRENGTH[model]
            for class_label, probability in zip(CLASSES, rng.dirichlet(alpha)):
                rows.append(
                    {
                        "patient_key": key,
                        "cohort": "development",
                        "role": role,
                        "signature": signature,
                        "classifier": classifier,
                        "mode": mode,
                        "split": "holdout_8_2",
                        "fold": "holdout",
                        "class_label": class_label,
                        "probability": probability,
                        "model_name": model,
                    }
                )
    return pd.DataFrame(rows)


@pytest.fixture(scope="module")
def frames() -> dict:
    keys, labels, roles = cohort()
    return {
        "keys": keys,
        "labels": labels,
        "roles": roles,
        "predictions": prediction_frame(keys, labels, roles),
        "outcomes": pd.DataFrame({"patient_key": keys, "label": labels}),
    }


@pytest.fixture(scope="module")
def scores(frames: dict):
    labelled = labelled_predictions(frames["predictions"], frames["outcomes"])
    return multiclass_scores(labelled, MODELS, CLASSES, n_bootstrap=N_BOOT, seed=0)


def wide(frames: dict, model: str, role: str) -> tuple[np.ndarray, np.ndarray]:
    """(labels, probabilities in CLASSES order) of one model and role, straight from the long frame."""
    rows = frames["predictions"].query("model_name == @model and role == @role")
    table = rows.pivot(index="patient_key", columns="class_label", values="probability")[CLASSES]
    truth = frames["outcomes"].set_index("patient_key")["label"].reindex(table.index)
    return truth.to_numpy(), table.to_numpy()


def ci_text(ci) -> str:
    return f"{ci.estimate:.3f} ({ci.low:.3f}-{ci.high:.3f})"


# ------------------------------------------------------------------------------------------- scores and tables


def test_scores_hold_held_out_rows_of_every_model_and_name_the_cnn(frames: dict, scores) -> None:
    assert (
        cnn_display_name("ResNet50_original") == "ResNet50 CNN (original)"
        and cnn_display_name("ResNet50") == "ResNet50 CNN"
    )
    assert set(scores.rows["role"]) == {"test", "validation"}  # training (apparent) rows are not reported
    assert list(scores.rows.columns[-5:]) == CLASSES
    assert dict(zip(scores.models["key"], scores.models["name"]))[CNN_ID] == "ResNet50 CNN (original)"
    assert [scores.name(k) for k in scores.featured()] == ["Clinical_LR", "Rad_LR", "ResNet50 CNN (original)"]
    assert delong_pairs(scores)[0] == ("r1", CNN_ID)  # expert features vs CNN first
    assert len(delong_pairs(scores)) == 3
    for model in ("r1", CNN_ID):
        for role in ("test", "validation"):
            labels, probabilities = wide(frames, model, role)
            expected = multiclass_evaluation(labels, probabilities, CLASSES, n=N_BOOT, seed=0)
            assert repr(scores.evaluations[model, role]) == repr(expected)  # equal, NaN (never predicted) included


def test_performance_table_numbers_match_scikit_learn(frames: dict, scores) -> None:
    page = build_report(report_inputs(frames))
    for model in ("r1", "r3", "r4", CNN_ID):
        labels, probabilities = wide(frames, model, "test")
        evaluation = scores.evaluations[model, "test"]
        predicted = np.array(CLASSES)[probabilities.argmax(axis=1)]
        assert evaluation.top_k_accuracy[1].estimate == pytest.approx(accuracy_score(labels, predicted))
        order = np.argsort(CLASSES)  # scikit-learn wants the labels sorted
        for k in (2, 3):
            assert evaluation.top_k_accuracy[k].estimate == pytest.approx(
                top_k_accuracy_score(labels, probabilities[:, order], k=k, labels=sorted(CLASSES))
            )
        assert evaluation.auc_macro_ovr.estimate == pytest.approx(
            roc_auc_score(labels, probabilities[:, order], multi_class="ovr", average="macro", labels=sorted(CLASSES))
        )
        for ci in (*evaluation.top_k_accuracy.values(), evaluation.auc_macro_ovr):
            assert ci.low <= ci.estimate <= ci.high and ci.n_replicates == N_BOOT
            assert ci_text(ci) in page


def test_per_class_table_uses_bootstrap_prf_and_delong_auc(frames: dict, scores) -> None:
    page = build_report(report_inputs(frames))
    section = page.split("Per-class performance")[1].split("Confusion matrix")[0]
    for model in ("r1", CNN_ID):
        labels, probabilities = wide(frames, model, "test")
        predicted = np.array(CLASSES)[probabilities.argmax(axis=1)]
        precision, recall, f1, _ = precision_recall_fscore_support(
            labels, predicted, labels=CLASSES, zero_division=np.nan
        )
        evaluation = scores.evaluations[model, "test"]
        for index, label in enumerate(CLASSES):
            assert evaluation.precision[label].estimate == pytest.approx(precision[index], nan_ok=True)
            assert evaluation.recall[label].estimate == pytest.approx(recall[index])
            assert evaluation.f1[label].estimate == pytest.approx(f1[index], nan_ok=True)
            y = (labels == label).astype(int)
            ci = auc_interval(y, probabilities[:, index])
            assert ci.auc == pytest.approx(roc_auc_score(y, probabilities[:, index]))
            assert f"{ci.auc:.3f} ({ci.low:.3f}-{ci.high:.3f})" in section
            assert ci_text(evaluation.recall[label]) in section
    assert "Rad_RandomForest" not in section  # only champions and CNNs per class


def test_best_model_is_chosen_by_cv_auc_not_test_auc(frames: dict, scores) -> None:
    """Issue 13, item 6: Clinical_LR has the highest test macro AUC, Rad_LR the highest CV AUC among the champions; the
    paper_faithful Clinical_LR and the non-champion forest (higher CV AUC) and the CNN (none) are not candidates."""
    macro = {k: scores.evaluations[k, "test"].auc_macro_ovr.estimate for k in scores.featured()}
    assert max(macro, key=macro.get) == "r1"
    assert best_model(scores) == "r3"
    section = (
        build_report(report_inputs(frames)).split("Confusion matrix of the best model")[1].split("One-vs-rest ROC")[0]
    )
    assert (
        "Best model: <b>Rad_LR</b>, chosen by cross-validated macro one-vs-rest AUC on the training folds (0.800"
        in section
    )


def test_confusion_matrix_of_the_best_model_matches_scikit_learn(frames: dict, scores) -> None:
    key = best_model(scores)
    assert key == "r3"
    labels, probabilities = wide(frames, "r3", "test")
    counts = confusion_counts(labels, probabilities, CLASSES)
    predicted = np.array(CLASSES)[probabilities.argmax(axis=1)]
    assert np.array_equal(counts, confusion_matrix(labels, predicted, labels=CLASSES))
    tied = confusion_counts(np.array(["kidney"]), np.array([[0.4, 0.4, 0.2, 0.0, 0.0]]), CLASSES)
    assert tied[1, 0] == 1  # ties go to the first listed class, as precision/recall in lib/evaluation
    page = build_report(report_inputs(frames))
    section = page.split("Confusion matrix of the best model")[1].split("One-vs-rest ROC")[0]
    assert "Best model: <b>Rad_LR</b>" in section
    assert len(re.findall(r'alt="Figure \d+\. Confusion matrix of Rad_LR', section)) == 2
    diagonal = [f"<td>{counts[i, i]}</td>" for i in range(len(CLASSES))]
    assert all(cell in section for cell in diagonal)


def test_delong_comparisons_per_class_match_the_paired_test(frames: dict) -> None:
    page = build_report(report_inputs(frames))
    section = page.split("DeLong comparisons per class")[1].split("SHAP explanations")[0]
    labels, clinical = wide(frames, "r1", "test")
    _, cnn = wide(frames, CNN_ID, "test")
    first_row = section.split("<tbody>")[1].split("</tr>")[0]
    cells = re.findall(r"<td>([^<]*)</td>", first_row)
    y = (labels == "lung").astype(int)
    test = delong_roc_test(y, clinical[:, 0], cnn[:, 0])
    assert cells[:3] == ["Clinical_LR", "ResNet50 CNN (original)", "lung"]
    assert cells[5:7] == [f"{test.auc_a:.3f}", f"{test.auc_b:.3f}"] and cells[-1] == f"{test.p_value:.4f}"
    testable = sum(
        0 < (wide(frames, "r1", role)[0] == label).sum() < len(wide(frames, "r1", role)[0])
        for role in ("test", "validation")
        for label in CLASSES
    )
    assert section.count("<tr>") == 3 * testable  # body rows: 3 pairs x (role, class) with members and non-members


# ------------------------------------------------------------------------------------------------ the report


def fitted_pipelines(frames: dict) -> tuple[Pipeline, Pipeline, pd.DataFrame]:
    rng = np.random.default_rng(5)
    labels, roles = frames["labels"], frames["roles"]
    X = pd.DataFrame(
        rng.normal(size=(len(labels), 4)),
        columns=["clin__age", "clin__n_vertebrae", "rad__a", "rad__b"],
        index=pd.Index(frames["keys"], name="patient_key"),
    )
    X["clin__age"] += 2.0 * (labels == "prostate")
    train = roles == "train"
    forest = Pipeline(
        [
            ("scale", StandardScaler().set_output(transform="pandas")),
            ("model", RandomForestClassifier(n_estimators=25, random_state=0)),
        ]
    ).fit(X[train], labels[train])
    linear = Pipeline(
        [("scale", StandardScaler().set_output(transform="pandas")), ("model", LogisticRegression(max_iter=2000))]
    ).fit(X[train], labels[train])
    return forest, linear, X[roles == "test"]


def report_inputs(frames: dict, **changes) -> ReportInputs:
    rng = np.random.default_rng(2)
    clinical = pd.DataFrame(
        {
            "patient_key": frames["keys"],
            "age": rng.normal(60, 10, len(frames["keys"])),
            "sex": rng.choice(["F", "M"], len(frames["keys"])),
        }
    )
    values = {
        "experiment": "metastasis",
        "predictions": frames["predictions"],
        "outcomes": frames["outcomes"],
        "models": MODELS,
        "clinical": clinical,
        "clinical_types": {"age": "continuous", "sex": "categorical"},
        "method": MethodSettings(cv_folds=5),
        "classes": CLASSES,
        "n_bootstrap": N_BOOT,
        "seed": 0,
    }
    return ReportInputs(**(values | changes))


def test_multiclass_report_has_every_section_and_opens_offline(frames: dict) -> None:
    forest, linear, rows = fitted_pipelines(frames)
    page = build_report(
        report_inputs(frames, explained=[("Clinical_LR", linear, rows), ("Rad_RandomForest", forest, rows)])
    )
    body = page.split("<body>")[1]
    for section in (
        "Methods",
        "Table 1: by outcome class",
        "<h2>Performance</h2>",
        "<h3>Test</h3>",
        "<h3>Validation (prospective)</h3>",
        "Top-3 accuracy (95% CI)",
        "Macro OvR AUC (95% CI)",
        "Per-class performance of the champions and CNNs",
        "Confusion matrix of the best model",
        "One-vs-rest ROC curves per class",
        "DeLong comparisons per class",
        "SHAP summary by class",
        "SHAP waterfall",
        "leakage_safe vs paper_faithful",
        "ResNet50 CNN (original)",
        f"{N_BOOT} bootstrap replicates",
        "expert-derived features (age, sex)",
    ):
        assert section in body, section
    text = re.sub(r"data:image/png;base64,[A-Za-z0-9+/=]+", "", body)
    assert "http" not in body and not re.search(r"\bnan\b", text, re.IGNORECASE)
    assert len(re.findall(r'alt="Figure \d+\. One-vs-rest ROC curves per class', body)) == 2
    assert body.count("data:image/png;base64,") >= 8
    figures = [int(n) for n in re.findall(r"<figcaption><b>Figure (\d+)\.</b>", body)]
    tables = [int(n) for n in re.findall(r'<p class="table-caption"><b>Table (\d+)\.</b>', body)]
    assert figures == list(range(1, len(figures) + 1)) and len(figures) >= 6  # numbered in page order
    assert tables == list(range(1, len(tables) + 1)) and "<b>Table 1.</b> Patient characteristics by" in body
    table_one = body.split("Table 1: by outcome class")[1].split("</thead>")[0]
    assert [c for c in re.findall(r"<th>([^<]*)</th>", table_one) if c in CLASSES] == CLASSES  # declared order
    delta = body.split("leakage_safe vs paper_faithful")[1].split("<h2>Reporting checklist")[0]
    assert "Clinical_LR" in delta and "Rad_LR" not in delta  # only models run in both modes


def test_a_class_missing_from_a_cohort_is_reported_not_crashed(frames: dict) -> None:
    keys, labels, roles = frames["keys"], frames["labels"].copy(), frames["roles"]
    labels[(roles == "validation") & (labels == "thyroid")] = "lung"
    outcomes = pd.DataFrame({"patient_key": keys, "label": labels})
    page = build_report(report_inputs(frames, outcomes=outcomes))
    validation = page.split("<h3>Validation (prospective)</h3>")[1].split("</table>")[0]
    assert "Classes without validation patients: thyroid" in page.split("<h2>Per-class")[0]
    assert validation.count("<tr>") == 5 and validation.count("<td>-</td>") == 5  # every model, macro AUC undefined


def test_label_column_is_preferred_over_the_outcomes_table(frames: dict) -> None:
    predictions, outcomes = frames["predictions"], frames["outcomes"]
    without = labelled_predictions(predictions, outcomes)
    inner = predictions.merge(outcomes.dropna(subset=["label"]), on="patient_key")
    pd.testing.assert_frame_equal(without.reset_index(drop=True), inner)  # no column: as the plain join
    relabelled = predictions.assign(label=None)
    cnn = relabelled["model_name"] == CNN_ID
    relabelled.loc[cnn, "label"] = "prostate"  # the CNN was evaluated against other labels
    unknown = outcomes.assign(label=lambda f: f["label"].where(f.index >= 10))  # 10 patients without outcome
    labelled = labelled_predictions(relabelled, unknown)
    assert (labelled.loc[labelled["model_name"] == CNN_ID, "label"] == "prostate").all()
    assert labelled.loc[labelled["model_name"] == CNN_ID, "patient_key"].nunique() == 90  # rows' own labels
    assert labelled.loc[labelled["model_name"] == "r1", "patient_key"].nunique() == 80  # null: outcomes, or left out
    scores = multiclass_scores(labelled, MODELS, CLASSES, n_bootstrap=N_BOOT)
    cnn_test = scores.of(CNN_ID, "test")
    assert set(cnn_test["label"]) == {"prostate"} and (CNN_ID, "test") not in scores.evaluations


def test_binary_report_is_unchanged_by_a_label_column_that_agrees(frames: dict) -> None:
    keys, roles = frames["keys"], frames["roles"]
    rng = np.random.default_rng(3)
    y = rng.integers(0, 2, len(keys))
    risk = np.clip(0.3 + 0.4 * y + rng.normal(0, 0.2, len(keys)), 0.01, 0.99)
    rows = [
        {
            "patient_key": k,
            "cohort": "development",
            "role": r,
            "signature": "Rad",
            "classifier": "LR",
            "mode": "leakage_safe",
            "split": "holdout_8_2",
            "fold": "holdout",
            "class_label": c,
            "probability": p,
            "model_name": "b1",
        }
        for k, r, q in zip(keys, roles, risk)
        for c, p in (("0", 1 - q), ("1", q))
    ]
    predictions = pd.DataFrame(rows)
    outcomes = pd.DataFrame({"patient_key": keys, "label": y.astype(str)})
    models = pd.DataFrame(
        [
            {
                "run_id": "b1",
                "result_name": "Rad_LR",
                "signature": "Rad",
                "classifier": "LR",
                "mode": "leakage_safe",
                "champion": True,
                "threshold": 0.5,
                "split": "holdout_8_2",
                "fold": "holdout",
                "registered_model": None,
            }
        ]
    )
    base = report_inputs(
        frames,
        predictions=predictions,
        outcomes=outcomes,
        models=models,
        classes=["0", "1"],
        clinical=pd.DataFrame({"patient_key": keys, "age": rng.normal(60, 10, len(keys))}),
        clinical_types={"age": "continuous"},
    )
    plain = build_report(base)
    label = dict(zip(keys, y.astype(str)))
    with_column = build_report(
        ReportInputs(
            **{**base.__dict__, "predictions": predictions.assign(label=predictions["patient_key"].map(label))}
        )
    )
    assert "Calibration and decision curves" in plain and "Top-1 accuracy" not in plain
    assert with_column == plain


# ------------------------------------------------------------------------------------------ SHAP and figures


def test_multiclass_shap_adds_up_per_class_and_predicts_the_models_class() -> None:
    rng = np.random.default_rng(4)
    X = pd.DataFrame(rng.normal(size=(120, 4)), columns=["a", "b", "c", "d"])
    y = np.array(CLASSES)[(X["a"] > 0).astype(int) + 2 * (X["b"] > 0.5).astype(int)]
    forest = RandomForestClassifier(n_estimators=20, random_state=0).fit(X, y)
    explanation = explain_classes(forest, X)
    assert explanation.values.shape == (120, 4, 4) and explanation.classes == list(forest.classes_)
    np.testing.assert_allclose(explanation.model_output(), forest.predict_proba(X), atol=1e-9)
    assert list(np.array(explanation.classes)[explanation.predicted()]) == list(forest.predict(X))
    linear = LogisticRegression(max_iter=2000).fit(X, y)
    explanation = explain_classes(linear, X)
    np.testing.assert_allclose(explanation.model_output(), linear.decision_function(X), atol=1e-9)
    one = explanation.for_class("lung")
    np.testing.assert_allclose(
        one.model_output(), linear.decision_function(X)[:, explanation.classes.index("lung")], atol=1e-9
    )
    importance = explanation.mean_abs()
    assert list(importance.columns) == explanation.classes and importance.sum(axis=1).is_monotonic_decreasing
    assert importance.index[0] in ("a", "b")


def test_multiclass_figures_have_declared_sizes() -> None:
    fpr = np.linspace(0, 1, 20)
    panels = {f"{c} vs rest": [RocCurve("A", fpr, np.sqrt(fpr), 0.8, (0.7, 0.9))] for c in CLASSES}
    assert png_size(roc_grid(panels, columns=3, panel_inches=3)) == (900, 600)
    assert png_size(roc_grid(dict(list(panels.items())[:2]), columns=3, panel_inches=3, title="t")) == (600, 340)
    counts = np.arange(25).reshape(5, 5)
    assert png_size(confusion_matrix_figure(counts, CLASSES, cell_inches=1.0)) == (780, 700)
    with pytest.raises(ValueError, match="5-class confusion matrix"):
        confusion_matrix_figure(counts[:4], CLASSES)
    importance = np.abs(np.random.default_rng(0).normal(size=(30, 5)))
    assert png_size(stacked_importance_figure([f"f{i}" for i in range(30)], importance, CLASSES, top_n=10)) == (
        750,
        460,
    )
    with pytest.raises(ValueError, match="30 features x 4 groups"):
        stacked_importance_figure([f"f{i}" for i in range(30)], importance, CLASSES[:4])


def test_methods_describe_the_chain_that_was_configured():
    from cssci_platform.lib.report.methods import chain_steps
    from cssci_platform.lib.selection.settings import SelectionSettings

    ianr = MethodSettings(
        selection=SelectionSettings(
            icc_threshold=0.75, rank_test=False, spearman_threshold=None, mrmr_k=None, lasso=True, pca_components=32
        ),
        cv_folds=10,
    )
    assert chain_steps(ianr) == [
        "harmonized across centers with ComBat",
        "deep features reduced by per-channel PCA (32 components)",
        "kept when ICC(3,1) between repeat segmentations was &gt;= 0.75",
        "z-scored",
        "filtered by LASSO (10-fold CV)",
    ]
    default = chain_steps(MethodSettings())
    assert default[-1] == (
        "filtered by Mann-Whitney U / Kruskal-Wallis (p &lt; 0.05), Spearman redundancy (|rho| &gt; 0.9), "
        "mRMR (k = 20) and LASSO (10-fold CV)"
    )
