"""MLflow tidy (issue 16): classic-ML experiments, model runs nested under their study run, a model card as each
registered version's description, ROC and calibration plots as run artifacts. Real sqlite MLflow stores."""

from __future__ import annotations

import time

import numpy as np
import pandas as pd
import pytest
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import StandardScaler

from cssci_platform.lib.model_tracking import (
    CLASSIC_ML_KIND,
    EXPERIMENT_KIND_TAG,
    TAG_PARENT_RUN,
    LoggedRun,
    TrackingConfig,
    experiment_page_url,
    get_or_create_experiment,
    log_evaluation_plots,
    log_model_run,
    model_evidence,
    register_champion,
    sqlite_tracking_uri,
)
from cssci_platform.lib.study_runs import STUDY_TAG, start_study_run

pytestmark = pytest.mark.filterwarnings("ignore:The ``noload`` loader strategy is deprecated")
FEATURES = ["original_firstorder_Mean", "original_glcm_Contrast", "age"]


@pytest.fixture(scope="module")
def store(tmp_path_factory) -> TrackingConfig:
    folder = tmp_path_factory.mktemp("mlflow")
    return TrackingConfig(sqlite_tracking_uri(folder / "mlflow.db"), experiment_name="tidy")


@pytest.fixture(scope="module")
def zoo_fit():
    """A fitted pipeline with its predictions in the zoo's long format (train and test roles) and labels."""
    rng = np.random.default_rng(3)
    n = 40
    X = pd.DataFrame(rng.normal(size=(n, len(FEATURES))), columns=FEATURES,
                     index=[f"P{i:02d}" for i in range(n)])
    labels = pd.Series((X[FEATURES[1]] + rng.normal(scale=0.7, size=n) > 0).astype(float), index=X.index)
    roles = pd.Series(["train"] * 30 + ["test"] * 10, index=X.index)
    model = Pipeline([("scale", StandardScaler()), ("clf", LogisticRegression())])
    model.fit(X[roles == "train"], labels[roles == "train"].astype(int))
    probability = model.predict_proba(X)[:, 1]
    rows = []
    for key, role, p in zip(X.index, roles, probability):  # as the zoo: the training patients' in-sample ones
        rows += [(key, role, "0", 1 - p), (key, role, "1", p)]
    predictions = pd.DataFrame(rows, columns=["patient_key", "role", "class_label", "probability"])
    centers = pd.Series(np.repeat(["center_A", "center_B"], n // 2), index=X.index)
    return model, X, labels, roles, predictions, centers


def _log(store: TrackingConfig, zoo_fit, tags: dict) -> LoggedRun:
    model, X, _, roles, _, _ = zoo_fit
    run = log_model_run(
        store, run_name="LR on Radiomics [leakage_safe, fold0]", model=model, input_example=X.head(3),
        params={"signature": "Radiomics", "classifier": "LR", "mode": "leakage_safe", "cv_folds": 5, "grid": "small",
                "seed": 7, "threshold": 0.4321, "input_features": 3},
        metrics={"cv_auc_mean": 0.812, "cv_auc_sd": 0.05, "test_auc": 0.7, "test_n": 10},
        tags={**tags, "split": "random_70_30", "fold": "fold0"},
        selected_features=FEATURES[:2],
        split_table=pd.DataFrame({"patient_key": roles.index, "role": roles.to_numpy()}),
    )
    return run


def test_a_new_experiment_opens_as_a_classic_ml_experiment(store, tmp_path):
    client = store.client()
    experiment = client.get_experiment(get_or_create_experiment(store))
    assert experiment.tags[EXPERIMENT_KIND_TAG] == CLASSIC_ML_KIND == "custom_model_development"

    older = TrackingConfig(sqlite_tracking_uri(tmp_path / "old.db"), experiment_name="made_before")
    made = older.client().create_experiment("made_before")  # as MLflow itself creates one: no kind
    assert EXPERIMENT_KIND_TAG not in older.client().get_experiment(made).tags
    assert get_or_create_experiment(older) == made
    assert older.client().get_experiment(made).tags[EXPERIMENT_KIND_TAG] == CLASSIC_ML_KIND


def test_experiment_links_ask_for_the_machine_learning_view():
    assert experiment_page_url("http://127.0.0.1:5000/", "3") == (
        "http://127.0.0.1:5000/#/experiments/3?workflowType=machine_learning")
    assert experiment_page_url("http://h:1", None) == "http://h:1/#/experiments?workflowType=machine_learning"


def test_model_runs_are_nested_under_their_study_run(store, zoo_fit):
    study = start_study_run(store, "name: tidy\n", {"name": "tidy"}, {"config_name": "tidy"})
    run_id = _log(store, zoo_fit, {STUDY_TAG: study}).run_id
    client = store.client()
    tags = client.get_run(run_id).data.tags
    assert tags[TAG_PARENT_RUN] == study == tags[STUDY_TAG]
    children = client.search_runs([client.get_run(study).info.experiment_id], f"tags.mlflow.parentRunId = '{study}'")
    assert [child.info.run_id for child in children] == [run_id]
    outside = _log(store, zoo_fit, {}).run_id  # a run outside any study stays top level
    assert TAG_PARENT_RUN not in client.get_run(outside).data.tags


def test_a_registered_version_describes_itself_with_a_model_card(store, zoo_fit):
    model, X, labels, roles, predictions, centers = zoo_fit
    run = _log(store, zoo_fit, {})
    run_id = run.run_id
    evidence = model_evidence(predictions, labels, ["0", "1"], "good_outcome", centers)
    version = register_champion(store, "cssci.tidy.Radiomics.leakage_safe", run_id=run_id, model_uri=run.model_uri,
                                chosen_by=("cv_auc_mean", 0.812), evidence=evidence)
    card = store.client().get_model_version(version.name, version.version).description
    test = roles == "test"
    positives, total = int(labels[test].sum()), int(test.sum())
    assert f"test {total} (0: {total - positives}, 1: {positives})" in card
    assert "training 30" in card
    assert [scores.role for scores in evidence.scores] == ["test"]  # in-sample training predictions: no AUC, no plot
    assert "Centers: center_A 20, center_B 20" in card
    assert "outcome good_outcome, positive class '1'" in card
    assert "split random_70_30, fold fold0; 5-fold stratified CV" in card
    assert f"2 selected of 3 inputs: {FEATURES[0]}, {FEATURES[1]}" in card
    assert "CV AUC 0.812 ± 0.050" in card
    from sklearn.metrics import roc_auc_score

    test_auc = roc_auc_score(labels[test], model.predict_proba(X[test])[:, 1])
    assert f"test AUC {test_auc:.3f} (95% CI " in card
    assert "P(positive) >= 0.432" in card
    assert "**Intended use**" in card and "**Limits**" in card
    plots = {item.path for item in store.client().list_artifacts(run_id, "plots")}
    assert plots == {"plots/roc.png", "plots/calibration.png"}


def test_without_predictions_the_card_says_what_it_lacks(store, zoo_fit):
    run = _log(store, zoo_fit, {})
    run_id = run.run_id
    version = register_champion(store, "cssci.tidy.Bare.leakage_safe", run_id=run_id, model_uri=run.model_uri)
    card = store.client().get_model_version(version.name, version.version).description
    assert "patients per class not given to the registry" in card
    assert "test AUC 0.700 (n=10; no interval: predictions not given to the registry)" in card
    assert not store.client().list_artifacts(run_id, "plots")


def test_plot_cost_per_model_is_measured(store, zoo_fit, capsys):
    """Not a timing assertion: the cost is printed for the report (issue 18 wants tracking cost down)."""
    _, _, labels, _, predictions, _ = zoo_fit
    evidence = model_evidence(predictions, labels, ["0", "1"], "good_outcome")
    run_id = _log(store, zoo_fit, {}).run_id
    log_evaluation_plots(store.client(), run_id, evidence)  # first call imports matplotlib
    started = time.perf_counter()
    for _ in range(3):
        log_evaluation_plots(store.client(), run_id, evidence)
    with capsys.disabled():
        print(f"\nROC + calibration plots: {(time.perf_counter() - started) / 3:.3f} s per model")
    assert {item.path for item in store.client().list_artifacts(run_id, "plots")} == {"plots/roc.png",
                                                                                      "plots/calibration.png"}
