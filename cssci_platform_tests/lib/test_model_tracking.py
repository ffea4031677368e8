"""MLflow tracking and registry against real, temporary sqlite-backed MLflow stores.

A new sqlite tracking database costs ~1 s (MLflow creates and migrates its tables), and the first
`log_model` in a process ~3 s (skops imports all of scikit-learn), so one database and two logged runs are
shared by the module; only the isolation tests create more.
"""

from __future__ import annotations

import json
import math
import multiprocessing
import os
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import dagster as dg
import mlflow
import numpy as np
import pandas as pd
import polars as pl
import pytest
import yaml
from mlflow.entities import LoggedModelStatus
from mlflow.exceptions import MlflowException
from mlflow.models import infer_signature
from sklearn.base import BaseEstimator, TransformerMixin
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import Pipeline

from cssci_platform.lib.harmonization import ComBat
from cssci_platform.lib.model_tracking import (
    CHALLENGER,
    CHAMPION,
    TRAIN_HINT,
    ChampionNotFoundError,
    LoggedRun,
    TrackingConfig,
    champion_version,
    get_or_create_experiment,
    load_champion,
    load_model,
    log_metrics_to_version,
    log_model_run,
    mlflow_key,
    model_run_tags,
    register_challenger,
    register_champion,
    registered_model_name,
    select_champion,
    set_alias,
    sqlite_tracking_uri,
)
from cssci_platform.lib.model_tracking.model_format import model_signature
from cssci_platform.lib.selection import ZScoreScaler, pipeline_reports
from cssci_platform.resources.tracking import TrackingResource

FEATURES = ["original_firstorder_Mean", "original_glcm_Contrast", "wavelet-LLH_glszm_ZoneEntropy", "age"]
# MLflow's own SQLAlchemy use, nothing of ours
pytestmark = pytest.mark.filterwarnings("ignore:The ``noload`` loader strategy is deprecated")
MLFLOW_ENV = ("MLFLOW_TRACKING_URI", "MLFLOW_REGISTRY_URI", "MLFLOW_ALLOW_PICKLE_DESERIALIZATION")


class Doubler(TransformerMixin, BaseEstimator):
    """A custom transformer outside cssci_platform: skops refuses it, cloudpickle stores it by reference."""

    def fit(self, X, y=None):
        return self

    def transform(self, X):
        return X * 2


def _cohort(seed: int = 0, n: int = 40) -> tuple[pd.DataFrame, np.ndarray]:
    rng = np.random.default_rng(seed)
    X = pd.DataFrame(rng.normal(size=(n, len(FEATURES))), columns=FEATURES)
    X["center"] = np.repeat(["A", "B"], n // 2)
    X.loc[X["center"] == "B", FEATURES[0]] += 3.0  # a center shift for ComBat to remove
    y = (X[FEATURES[1]] + rng.normal(scale=0.5, size=n) > 0).astype(int).to_numpy()
    return X, y


def _pipeline(C: float) -> Pipeline:
    return Pipeline(
        [("combat", ComBat(batch_col="center")), ("zscore", ZScoreScaler()), ("model", LogisticRegression(C=C))]
    ).set_output(transform="pandas")


def _log(config: TrackingConfig, model: Pipeline, X: pd.DataFrame, auc: float, run_name: str, **kwargs) -> LoggedRun:
    return log_model_run(
        config,
        run_name=run_name,
        model=model,
        input_example=X.head(4),
        params={"C": model.named_steps["model"].C, "grid": {"C": [0.1, 1.0]}},
        metrics={"cv_auc_mean": auc - 0.02, "test auc (95% CI low)": auc - 0.1, "test_auc": auc},
        tags=model_run_tags(
            signature="Rad", classifier="LR", mode="leakage_safe", manifest_hash="abc123", dagster_run_id="r-1"
        ),
        **kwargs,
    )


@pytest.fixture(scope="module", autouse=True)
def empty_working_directory(tmp_path_factory):
    """Run the module in an empty folder and prove MLflow's cwd defaults (./mlflow.db, ./mlruns) stay unused."""
    folder, previous = tmp_path_factory.mktemp("cwd"), Path.cwd()
    os.chdir(folder)
    try:
        yield
        assert sorted(path.name for path in folder.iterdir()) == []
    finally:
        os.chdir(previous)


@pytest.fixture(scope="module")
def store(tmp_path_factory) -> TrackingConfig:
    folder = tmp_path_factory.mktemp("mlflow")
    return TrackingConfig(tracking_uri=sqlite_tracking_uri(folder / "mlflow.db"), experiment_name="unit demo")


@pytest.fixture(scope="module")
def cohort() -> tuple[pd.DataFrame, np.ndarray]:
    return _cohort()


@pytest.fixture(scope="module")
def fitted(cohort) -> dict[str, Pipeline]:
    X, y = cohort
    return {"weak": _pipeline(C=0.01).fit(X, y), "strong": _pipeline(C=1.0).fit(X, y)}


@pytest.fixture(scope="module")
def runs(store, cohort, fitted, tmp_path_factory) -> dict[str, LoggedRun]:
    X, _ = cohort
    params_file = tmp_path_factory.mktemp("params") / "radiomics_params.yaml"
    params_file.write_text("setting:\n  binWidth: 25\n", encoding="utf-8")
    split = pl.DataFrame(
        {
            "split": ["holdout"] * 3,
            "fold": ["holdout"] * 3,
            "patient_key": ["P001", "P002", "P003"],
            "role": ["train", "train", "test"],
        }
    )
    weak = _log(
        store,
        fitted["weak"],
        X,
        0.70,
        "Rad_LR_weak",
        selected_features=FEATURES[:2],
        selection_reports=pipeline_reports(fitted["weak"]),
        split_table=split,
        extra_artifacts={"config.yaml": "experiment: demo\n", "params/radiomics.yaml": params_file},
    )
    return {"weak": weak, "strong": _log(store, fitted["strong"], X, 0.80, "Rad_LR_strong")}


def test_logged_run_holds_params_metrics_tags_and_artifacts(store, runs, tmp_path):
    client = store.client()
    run = client.get_run(runs["weak"].run_id)
    assert run.info.status == "FINISHED" and run.info.run_name == "Rad_LR_weak"
    assert run.data.params["C"] == "0.01"
    assert run.data.params["grid"] == '{"C": [0.1, 1.0]}'
    assert run.data.params["n_selected_features"] == "2"
    assert run.data.metrics == pytest.approx({"cv_auc_mean": 0.68, "test auc _95_ CI low_": 0.60, "test_auc": 0.70})
    ours = ("signature", "classifier", "mode", "manifest_hash", "dagster_run_id")
    assert [run.data.tags[key] for key in ours] == ["Rad", "LR", "leakage_safe", "abc123", "r-1"]
    listed = {a.path for a in client.list_artifacts(run.info.run_id)} | {
        a.path for folder in ("selection", "splits", "params") for a in client.list_artifacts(run.info.run_id, folder)
    }
    assert {
        "config.yaml",
        "selection/selected_features.json",
        "selection/reports.json",
        "splits/split.csv",
        "params/radiomics.yaml",
    } <= listed
    folder = Path(client.download_artifacts(run.info.run_id, "", dst_path=str(tmp_path)))
    assert pl.read_csv(folder / "splits/split.csv")["role"].to_list() == ["train", "train", "test"]
    assert [r["step"] for r in json.loads((folder / "selection/reports.json").read_text(encoding="utf-8"))] == [
        "combat",
        "zscore",
    ]
    assert json.loads((folder / "selection/selected_features.json").read_text(encoding="utf-8")) == FEATURES[:2]
    assert (folder / "params/radiomics.yaml").read_text(encoding="utf-8") == "setting:\n  binWidth: 25\n"


def test_logged_model_round_trips_with_signature_and_requirements(store, runs, fitted, cohort, monkeypatch):
    X, _ = cohort
    example = X.head(4)
    loaded = load_model(store, runs["weak"].model_uri)
    assert isinstance(loaded.named_steps["zscore"], ZScoreScaler) and isinstance(loaded.named_steps["combat"], ComBat)
    np.testing.assert_array_equal(loaded.predict_proba(example), fitted["weak"].predict_proba(example))

    logged_model = store.client().get_logged_model(runs["weak"].model_id)
    assert logged_model.source_run_id == runs["weak"].run_id and logged_model.status == LoggedModelStatus.READY
    assert {"test_auc", "cv_auc_mean"} <= {m.key for m in logged_model.metrics}
    model_dir = Path(logged_model.artifact_location.removeprefix("file://"))
    mlmodel = yaml.safe_load((model_dir / "MLmodel").read_text(encoding="utf-8"))
    assert mlmodel["flavors"]["sklearn"]["serialization_format"] == "skops"
    assert "cssci_platform.lib.selection.scaling.ZScoreScaler" in mlmodel["flavors"]["sklearn"]["skops_trusted_types"]
    signature = mlflow.models.Model.load(str(model_dir / "MLmodel")).signature
    # written by libyaml (model_format._ModelWrittenWithLibyaml): the text MLflow's own pure-Python writer gives
    assert mlflow.models.Model.load(str(model_dir / "MLmodel")).to_yaml() == (model_dir / "MLmodel").read_text()
    assert signature.inputs.input_names() == [*FEATURES, "center"] and signature.outputs is not None
    requirements = (model_dir / "requirements.txt").read_text(encoding="utf-8")
    assert "cssci-platform==" in requirements and "scikit-learn==" in requirements and "skops==" in requirements

    monkeypatch.setenv("MLFLOW_ALLOW_PICKLE_DESERIALIZATION", "true")
    probabilities = mlflow.pyfunc.load_model(str(model_dir)).predict(example)  # pyfunc predicts probabilities
    np.testing.assert_allclose(np.asarray(probabilities), fitted["weak"].predict_proba(example))


def test_experiment_artifacts_live_beside_the_sqlite_file(store, runs):
    root = Path(store.tracking_uri.removeprefix("sqlite:///")).parent / "mlflow-artifacts"
    experiment = store.client().get_experiment_by_name(store.experiment_name)
    assert experiment.artifact_location == (root / "unit_demo").as_uri()
    assert Path(runs["weak"].artifact_uri.removeprefix("file://")).is_relative_to(root)
    assert (root / "unit_demo" / "models" / runs["weak"].model_id / "artifacts" / "MLmodel").is_file()
    assert get_or_create_experiment(store) == experiment.experiment_id


def test_champion_registers_and_loads_by_alias(store, runs, fitted, cohort):
    X, _ = cohort
    name = registered_model_name("unit", "Rad", "leakage_safe")
    info = register_champion(
        store,
        name,
        run_id=runs["weak"].run_id,
        model_uri=runs["weak"].model_uri,
        chosen_by=("test_auc", 0.70),
        description="best Rad model",
    )
    assert (info.name, info.version, info.run_id, info.aliases) == (name, "1", runs["weak"].run_id, (CHAMPION,))
    assert info.tags == {
        "signature": "Rad",
        "classifier": "LR",
        "mode": "leakage_safe",
        "manifest_hash": "abc123",
        "selection_metric": "test_auc",
        "selection_value": "0.7",
    }

    by_alias = load_model(store, f"models:/{name}@champion")
    model, version = load_champion(store, name)
    assert version == champion_version(store, name) and version.version == "1"
    for loaded in (by_alias, model):
        np.testing.assert_array_equal(loaded.predict_proba(X), fitted["weak"].predict_proba(X))


def test_a_model_is_read_back_without_the_pure_python_yaml_parser(store, runs, fitted, cohort, monkeypatch):
    """MLflow reads a model's MLmodel with `yaml.safe_load`, PyYAML's pure-Python parser: 0.35 s for the signature of
    a 2,700-column matrix, each time a report, a scoring run or `cssci predict` loads a champion. `load_model` reads
    it with libyaml; the model is the one logged, by model id and by alias."""
    X, _ = cohort
    name = registered_model_name("unit", "Rad", "libyaml")
    register_champion(store, name, run_id=runs["strong"].run_id, model_uri=runs["strong"].model_uri)

    def refused(*args, **kwargs):
        raise AssertionError("a model's MLmodel went through PyYAML's pure-Python parser")

    monkeypatch.setattr(yaml, "safe_load", refused)
    for uri in (runs["strong"].model_uri, f"models:/{name}@champion", f"models:/{name}/1"):
        loaded = load_model(store, uri)
        np.testing.assert_array_equal(loaded.predict_proba(X), fitted["strong"].predict_proba(X))


def test_better_run_takes_the_alias_and_the_old_version_stays(store, runs):
    name = registered_model_name("unit", "Rad", "moves")
    first = register_champion(store, name, run_id=runs["weak"].run_id, model_uri=runs["weak"].model_uri)
    best = select_champion([(runs["weak"].run_id, 0.70), (runs["strong"].run_id, 0.80)])
    second = register_champion(store, name, run_id=best, model_uri=runs["strong"].model_uri)
    assert (first.version, second.version, second.run_id) == ("1", "2", runs["strong"].run_id)
    assert champion_version(store, name).version == "2"
    assert store.client().get_model_version(name, "1").aliases == []

    again = register_champion(store, name, run_id=runs["strong"].run_id, model_uri=runs["strong"].model_uri)
    assert again.version == "2"  # same model, same version: re-materializing does not pile up versions
    challenger = register_challenger(store, name, run_id=runs["weak"].run_id, model_uri=runs["weak"].model_uri)
    assert (challenger.version, challenger.aliases) == ("1", (CHALLENGER,))
    promoted = set_alias(store, name, challenger.version, CHAMPION)
    assert set(promoted.aliases) == {CHAMPION, CHALLENGER} and champion_version(store, name).version == "1"
    assert len(store.client().search_model_versions(f"name = '{name}'")) == 2


def test_a_champion_is_loaded_once_per_process_and_again_when_the_alias_moves(store, runs, fitted, cohort):
    """A scoring batch asks for each champion once per patient: the registered version is loaded once; when the alias
    moves to another version, that version is loaded and scores as its own model."""
    X, _ = cohort
    name = registered_model_name("unit", "Rad", "cached")
    register_champion(store, name, run_id=runs["weak"].run_id, model_uri=runs["weak"].model_uri)
    first, version = load_champion(store, name)
    again, _ = load_champion(store, name)
    assert again is first and version.version == "1"
    register_champion(store, name, run_id=runs["strong"].run_id, model_uri=runs["strong"].model_uri)
    moved, moved_version = load_champion(store, name)
    assert moved_version.version == "2" and moved is not first
    np.testing.assert_array_equal(moved.predict_proba(X), fitted["strong"].predict_proba(X))
    np.testing.assert_array_equal(first.predict_proba(X), fitted["weak"].predict_proba(X))


def test_a_signature_is_inferred_once_per_input_columns_and_types():
    """Every classifier of a fit unit logs the same input columns: their MLflow signature is inferred once and equals
    MLflow's own inference; other columns, types, missing values, text value types or classes get their own."""
    X = pd.DataFrame({"rad_a": [0.1, 0.2, 0.3], "rad_b": [1.0, 2.0, 3.0]})
    proba = np.array([[0.2, 0.8], [0.6, 0.4], [0.5, 0.5]])
    first = model_signature(X, proba)
    assert first == infer_signature(X, proba)
    assert model_signature(X.copy() * 2, proba[::-1].copy()) is first  # other values, same columns and types
    renamed = X.rename(columns={"rad_b": "rad_c"})
    assert model_signature(renamed, proba) == infer_signature(renamed, proba) != first
    three_classes = np.array([[0.2, 0.3, 0.5]] * 3)
    assert model_signature(X, three_classes) == infer_signature(X, three_classes) != first
    as_integers = X.assign(rad_b=[1, 2, 3])
    assert model_signature(as_integers, proba) == infer_signature(as_integers, proba) != first
    with_text = X.assign(center=["A", "B", "A"])  # the center column ComBat reads
    text_signature = model_signature(with_text, proba)
    assert text_signature == infer_signature(with_text, proba) and model_signature(with_text, proba) is text_signature
    with_missing = with_text.assign(rad_a=[0.1, None, 0.3])
    assert model_signature(with_missing, proba) == infer_signature(with_missing, proba)
    assert model_signature(with_missing, proba) is not text_signature
    with_bytes = with_text.assign(center=[b"A", b"B", b"A"])
    assert model_signature(with_bytes, proba) == infer_signature(with_bytes, proba) != text_signature


def test_missing_champion_names_the_model_and_what_to_run(store, runs):
    with pytest.raises(ChampionNotFoundError) as missing:
        load_champion(store, "cssci.unit.Nope.leakage_safe")
    message = str(missing.value)
    assert "'cssci.unit.Nope.leakage_safe'" in message and store.tracking_uri in message and TRAIN_HINT in message

    name = registered_model_name("unit", "Rad", "no_alias")
    register_challenger(store, name, run_id=runs["weak"].run_id, model_uri=runs["weak"].model_uri)
    with pytest.raises(ChampionNotFoundError, match=r"has version\(s\) \['1'\] but none carries the alias 'champion'"):
        champion_version(store, name)


def test_validation_metrics_accumulate_on_one_run_per_version(store, runs):
    name = registered_model_name("unit", "Rad", "validated")
    version = register_champion(store, name, run_id=runs["strong"].run_id, model_uri=runs["strong"].model_uri)
    first = log_metrics_to_version(store, name, version.version, {"validation_auc": 0.71}, step=10)
    second = log_metrics_to_version(store, name, version.version, {"validation_auc": 0.74, "n": 12}, step=12)
    assert first == second
    client = store.client()
    history = client.get_metric_history(first, "validation_auc")
    assert [(m.step, m.value) for m in history] == [(10, 0.71), (12, 0.74)]
    run = client.get_run(first)
    assert run.data.tags["registered_model_name"] == name and run.data.tags["registered_model_version"] == "1"
    assert client.get_model_version(name, "1").tags["validation_run_id"] == first
    assert "validation_auc" not in client.get_run(runs["strong"].run_id).data.metrics  # training run untouched


def test_mlflow_process_state_is_restored(store, runs, tmp_path):
    elsewhere = sqlite_tracking_uri(tmp_path / "caller.db")
    before_env = {name: os.environ.get(name) for name in MLFLOW_ENV}
    mlflow.set_tracking_uri(elsewhere)  # a caller's own global setting must survive our calls
    try:
        name = registered_model_name("unit", "Rad", "state")
        register_champion(store, name, run_id=runs["weak"].run_id, model_uri=runs["weak"].model_uri)
        load_champion(store, name)
        assert mlflow.get_tracking_uri() == elsewhere and mlflow.get_registry_uri() == elsewhere
        assert {name: os.environ.get(name) for name in MLFLOW_ENV} == {**before_env, "MLFLOW_TRACKING_URI": elsewhere}
    finally:
        mlflow.set_tracking_uri(None)
        for key, value in before_env.items():
            os.environ.pop(key, None) if value is None else os.environ.__setitem__(key, value)
    assert not (tmp_path / "caller.db").exists()  # nothing of ours went to the caller's store


def test_two_stores_do_not_see_each_other_and_a_caller_run_is_left_alone(store, runs, cohort, fitted, tmp_path):
    X, _ = cohort
    before = mlflow.get_tracking_uri()
    other = TrackingConfig(sqlite_tracking_uri(tmp_path / "other.db"), "unit demo", artifact_root=str(tmp_path / "art"))
    caller = TrackingConfig(sqlite_tracking_uri(tmp_path / "caller.db"), "caller")
    mlflow.set_tracking_uri(caller.tracking_uri)
    try:
        with mlflow.start_run(experiment_id=get_or_create_experiment(caller)) as caller_run:
            logged = _log(other, fitted["strong"], X, 0.9, "other")
            assert mlflow.active_run().info.run_id == caller_run.info.run_id
    finally:
        mlflow.set_tracking_uri(None)
    assert mlflow.get_tracking_uri() == before
    assert caller.client().get_run(caller_run.info.run_id).outputs.model_outputs == []
    assert other.client().get_run(logged.run_id).info.experiment_id == logged.experiment_id
    with pytest.raises(MlflowException):
        store.client().get_run(logged.run_id)
    assert {run.info.run_id for run in other.client().search_runs([logged.experiment_id])} == {logged.run_id}
    assert Path(logged.artifact_uri.removeprefix("file://")).is_relative_to(tmp_path / "art" / "unit_demo")

    name = registered_model_name("unit", "Rad", "leakage_safe")
    register_champion(store, name, run_id=runs["weak"].run_id, model_uri=runs["weak"].model_uri)
    with pytest.raises(ChampionNotFoundError, match="no model is registered there yet"):
        champion_version(other, name)


def test_processes_opening_a_new_store_together_do_not_break_its_migration(tmp_path):
    # Without the lock beside the database, every one of 4 processes failed inside MLflow's table migrations.
    # Spawned, never forked: a fork of this threaded pytest-xdist worker once deadlocked on the pool's queue lock.
    config = TrackingConfig(sqlite_tracking_uri(tmp_path / "new" / "mlflow.db"), "parallel")
    pool = ProcessPoolExecutor(max_workers=3, mp_context=multiprocessing.get_context("spawn"))
    try:
        futures = [pool.submit(get_or_create_experiment, config) for _ in range(3)]
        experiment_ids = [future.result(timeout=120) for future in futures]
    finally:
        pool.shutdown(wait=False, cancel_futures=True)  # a stuck worker fails the test instead of hanging it
    assert len(set(experiment_ids)) == 1
    assert config.client().get_experiment(experiment_ids[0]).name == "parallel"


def test_foreign_classes_need_cloudpickle_which_stores_them_by_reference(store, cohort):
    X, y = cohort
    model = Pipeline([("double", Doubler()), ("model", LogisticRegression())]).fit(X[FEATURES], y)
    with pytest.raises(ValueError, match="test_model_tracking.Doubler.*serialization_format='cloudpickle'"):
        log_model_run(store, run_name="foreign", model=model, input_example=X[FEATURES].head(3))
    assert not store.client().search_runs([get_or_create_experiment(store)], "attributes.run_name = 'foreign'")

    logged = log_model_run(
        store, run_name="foreign ok", model=model, input_example=X[FEATURES].head(3), serialization_format="cloudpickle"
    )
    loaded = load_model(store, logged.model_uri)
    assert type(loaded.named_steps["double"]) is Doubler
    np.testing.assert_array_equal(loaded.predict_proba(X[FEATURES]), model.predict_proba(X[FEATURES]))


def test_keys_and_names_are_made_mlflow_safe():
    assert mlflow_key("AUC (95% CI)") == "AUC _95_ CI_"
    assert mlflow_key("/cv//fold:1/../auc/") == "cv/fold_1/auc"
    with pytest.raises(ValueError):
        mlflow_key("///")
    assert registered_model_name("demo", "Rad+DL_resnet34") == "cssci.demo.Rad_plus_DL_resnet34.leakage_safe"
    assert registered_model_name("SCI v2.1", "Rad + ResNet34_RandomForest", "paper_faithful") == (
        "cssci.SCI_v2_1.Rad_plus_ResNet34_RandomForest.paper_faithful"
    )
    with pytest.raises(ValueError, match="leaves nothing usable"):
        registered_model_name("demo", "***", "x")


def test_colliding_or_bad_values_fail_before_any_run(store, fitted, cohort):
    X, _ = cohort
    runs_before = len(store.client().search_runs([get_or_create_experiment(store)]))
    common = {"run_name": "bad", "model": fitted["weak"], "input_example": X.head(2)}
    with pytest.raises(ValueError, match="'auc/test' and 'auc//test' both become 'auc/test'"):
        log_model_run(store, metrics={"auc/test": 0.5, "auc//test": 0.6}, **common)
    with pytest.raises(TypeError, match="metric 'auc' must be a real number"):
        log_model_run(store, metrics={"auc": "0.5"}, **common)
    with pytest.raises(ValueError, match="log it as an artifact"):
        log_model_run(store, params={"features": "x" * 7000}, **common)
    with pytest.raises(ValueError, match="must be a relative file path"):
        log_model_run(store, extra_artifacts={"../escape.txt": "x"}, **common)
    with pytest.raises(ValueError, match="may hold only letters"):
        register_champion(store, "Rad model", run_id="r", model_uri="models:/m-1")
    assert len(store.client().search_runs([get_or_create_experiment(store)])) == runs_before


def test_select_champion_is_deterministic():
    assert select_champion([("b", 0.7), ("a", 0.9), ("c", 0.8)]) == "a"
    assert select_champion([("b", 0.7), ("a", 0.9)], higher_is_better=False) == "b"
    assert select_champion([("z", 0.9), ("m", 0.9), ("q", 0.1)]) == "m"
    assert select_champion([("m", 0.9), ("z", 0.9)]) == select_champion([("z", 0.9), ("m", 0.9)]) == "m"
    assert select_champion([("nan", math.nan), ("none", None), ("ok", 0.1)]) == "ok"
    with pytest.raises(ValueError, match="no candidate has a finite metric"):
        select_champion([("a", math.nan)])
    with pytest.raises(ValueError, match="listed twice"):
        select_champion([("a", 0.1), ("a", 0.2)])


def test_tracking_resource_builds_config_and_dagster_tags(tmp_path):
    resource = TrackingResource(tracking_uri=sqlite_tracking_uri(tmp_path / "m.db"))
    assert resource.config("demo") == TrackingConfig(sqlite_tracking_uri(tmp_path / "m.db"), "demo")
    assert resource.config("other").experiment_name == "other"

    @dg.asset(partitions_def=dg.StaticPartitionsDefinition(["P001"]))
    def trained_models(context, tracking: TrackingResource) -> dict:  # no annotation: this module has string ones
        return tracking.run_tags(context, signature="Rad", classifier="LR", mode="leakage_safe")

    result = dg.materialize([trained_models], resources={"tracking": resource}, partition_key="P001")
    tags = result.output_for_node("trained_models")
    assert tags == {
        "signature": "Rad",
        "classifier": "LR",
        "mode": "leakage_safe",
        "dagster_run_id": result.run_id,
        "dagster_asset": "trained_models",
        "dagster_partition": "P001",
    }


def test_a_store_lock_held_by_a_stuck_process_ends_the_wait_naming_the_lock_file(tmp_path):
    import fcntl

    from cssci_platform.lib.model_tracking.store import _exclusive_file_lock

    lock = tmp_path / "mlflow.db.init-lock"
    with open(lock, "a") as holder:  # another open file description: conflicts like another process would
        fcntl.flock(holder, fcntl.LOCK_EX)
        with pytest.raises(TimeoutError, match="mlflow.db.init-lock"):
            with _exclusive_file_lock(lock, wait_seconds=0.3):
                pass
    with _exclusive_file_lock(lock, wait_seconds=0.3):  # released: taken at once
        pass


def test_a_sqlite_store_writes_through_sqlites_write_ahead_log(tmp_path):
    """Every logged param/metric batch is a commit; in SQLite's default rollback-journal mode each one syncs the journal
    and blocks readers (parallel fit steps waited on each other's commits: benchmarks/RESULTS.md, T2). The store is
    switched to WAL where it is first opened; the mode is kept in the file."""
    import sqlite3
    from contextlib import closing

    database = tmp_path / "store" / "mlflow.db"
    get_or_create_experiment(TrackingConfig(sqlite_tracking_uri(database), "wal"))
    with closing(sqlite3.connect(database)) as con:
        assert con.execute("PRAGMA journal_mode").fetchone()[0] == "wal"


def test_an_input_example_is_converted_once_and_stored_as_mlflow_stores_it(fitted, cohort, tmp_path, monkeypatch):
    """Every classifier of a fit unit logs the same input example: MLflow's conversion of it to JSON (pandas'
    `to_dict` walks a wide frame column by column: 1.4 s per model at 15,909 columns) runs once per example, and
    the model folder holds what `mlflow.sklearn.save_model` itself writes: the example files byte for byte and the
    same MLmodel (its size in bytes included), apart from the model's own id and creation time."""
    from mlflow.models import utils as mlflow_model_utils

    from cssci_platform.lib.model_tracking.model_format import (
        _ModelWrittenWithLibyaml,
        _SklearnWithoutServingCheck,
        skops_trusted_types,
    )

    X, _ = cohort
    example = X.head(3)
    conversions: list[int] = []
    original_init = mlflow_model_utils._Example.__init__

    def counted_init(self, *args, **kwargs):
        conversions.append(1)
        original_init(self, *args, **kwargs)

    monkeypatch.setattr(mlflow_model_utils._Example, "__init__", counted_init)
    signature = model_signature(example, fitted["weak"].predict_proba(example))
    common = {"serialization_format": "skops", "signature": signature, "pyfunc_predict_fn": "predict_proba",
              "skops_trusted_types": skops_trusted_types(fitted["weak"]),
              "pip_requirements": ["scikit-learn", "skops"]}
    for name in ("weak", "strong"):
        _SklearnWithoutServingCheck.save_model(sk_model=fitted[name], path=str(tmp_path / name),
                                               mlflow_model=_ModelWrittenWithLibyaml(), input_example=example.copy(),
                                               validate_serving_input=False, **common)
    assert len(conversions) == 1
    mlflow.sklearn.save_model(fitted["strong"], str(tmp_path / "mlflow"), input_example=example, **common)

    def stored(folder: Path) -> tuple[dict, dict]:
        # model.skops is a zip archive stamped with the time it was written
        files = {path.name: path.read_bytes() if path.name != "model.skops" else b"" for path in folder.iterdir()
                 if path.name != "MLmodel"}
        mlmodel = yaml.safe_load((folder / "MLmodel").read_text(encoding="utf-8"))
        return files, {key: value for key, value in mlmodel.items() if key not in ("model_uuid", "utc_time_created")}

    ours, theirs = stored(tmp_path / "strong"), stored(tmp_path / "mlflow")
    assert ours == theirs
    assert {"input_example.json", "serving_input_example.json"} <= set(ours[0])
