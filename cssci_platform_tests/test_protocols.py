"""Each shipped protocol end to end through `cssci run --config` (subprocess, as a user runs it) on a small
synthetic cohort with random-init networks: predictions, MLflow study + model runs, and the report."""

import json
import os
import subprocess
import sys
from pathlib import Path

import duckdb
import pandas as pd
import pytest
from mlflow import MlflowClient

PROTOCOL_TIME_LIMIT = 1200  # seconds: the `cssci run` subprocess may take 900 (upper limb: ~22 min at full size)
SMALL = ["--set", "deep.weights=none", "--set", "models.cv_folds=3"]
PROTOCOL_OVERRIDES = {
    "cervical_sci_ianr": [
        "cohort.synthetic.patients=24",
        "cohort.synthetic.prospective=4",
        "models.classifiers=[LR]",
    ],
    "cervical_sci_upper_limb": [
        "cohort.synthetic.patients=40",
        "preprocessing.channels=[original]",
        "deep.channels=[original]",
        "models.classifiers=[LR]",  # one classifier: the test is about the protocol's path, not the zoo
    ],
    "spinal_metastasis_primary_site": [
        "cohort.synthetic.patients=30",
        "deep.fine_tuning.epochs=1",
        "deep.fine_tuning.batch_size=16",
    ],
}


def run_protocol(name: str, tmp_path: Path) -> tuple[subprocess.CompletedProcess, Path, str]:
    home, mlflow_uri = tmp_path / name, f"sqlite:///{tmp_path / 'mlflow.db'}"
    env = {**os.environ, "CSSCI_MLFLOW_URI": mlflow_uri}
    for variable in (
        "CSSCI_WAREHOUSE",
        "CSSCI_IMAGE_STORE",
        "CSSCI_MANIFEST",
        "DAGSTER_HOME",
        "CSSCI_EXPERIMENT_CONFIG",
    ):
        env.pop(variable, None)
    overrides = [part for o in PROTOCOL_OVERRIDES[name] for part in ("--set", o)]
    completed = subprocess.run(
        [
            sys.executable,
            "-m",
            "cssci_platform.cli.main",
            "run",
            "--config",
            name,
            "--home",
            str(home),
            *SMALL,
            *overrides,
        ],
        env=env,
        capture_output=True,
        text=True,
        encoding="utf-8",
        timeout=900,
        cwd=tmp_path,
    )
    assert completed.returncode == 0, completed.stdout[-6000:] + completed.stderr[-6000:]
    return completed, home, mlflow_uri


def query(home: Path, sql: str) -> pd.DataFrame:
    with duckdb.connect(str(home / "warehouse.duckdb"), read_only=True) as con:
        return con.execute(sql).df()


def check_study_run(mlflow_uri: str, experiment: str, home: Path) -> None:
    client = MlflowClient(mlflow_uri)
    [study] = client.search_runs([client.get_experiment_by_name(experiment).experiment_id], "tags.run_kind = 'study'")
    assert study.info.status == "FINISHED"
    artifacts = {a.path for a in client.list_artifacts(study.info.run_id)}
    assert {"config", "report"} <= artifacts
    assert study.data.params["deep.weights"] == "none" and json.loads(study.data.params["modes"])  # the resolved config
    nested = client.search_runs([study.info.experiment_id], f"tags.`cssci.study_run` = '{study.info.run_id}'")
    models = [run for run in nested if run.data.tags.get("run_kind") != "report"]  # the report run is nested too
    assert len(models) == len(query(home, "SELECT * FROM trained_models")) > 0
    report = home / "image_store" / "reports" / f"{experiment}.html"
    assert (
        report.exists()
        and "http://" not in report.read_text(encoding="utf-8")
        and "https://" not in report.read_text(encoding="utf-8")
    )


def truth(home: Path) -> pd.DataFrame:
    [cohort] = home.glob("cohort_*")
    return pd.read_csv(cohort / "truth.csv").set_index("patient_id")


@pytest.mark.long_running
@pytest.mark.timeout(PROTOCOL_TIME_LIMIT)
def test_cervical_sci_ianr(tmp_path):
    completed, home, mlflow_uri = run_protocol("cervical_sci_ianr", tmp_path)
    check_study_run(mlflow_uri, "cervical_sci_ianr", home)
    labels = query(home, "SELECT patient_key, value FROM outcomes WHERE outcome = 'good_outcome'").set_index(
        "patient_key"
    )["value"]
    expected = (truth(home)["ianr_6m"] >= 37).astype(int).astype(str)
    assert (
        len(labels) == 28 and (labels == expected.reindex(labels.index)).all()
    )  # prospective follow-ups recorded first
    sequences = set(query(home, "SELECT DISTINCT sequence FROM radiomics_features")["sequence"])
    assert sequences == {"sag_T1", "sag_T2", "ax_T1", "ax_T2", "cor_T1", "cor_T2"}
    assert set(query(home, "SELECT DISTINCT backbone FROM embeddings")["backbone"]) == {"resnet152"}
    champions = set(query(home, "SELECT signature FROM trained_models WHERE champion")["signature"])
    assert champions == {"Rad", "DL_resnet152", "Rad+DL_resnet152", "Clinical", "Combined"}
    clinical = [c for c in query(home, "SELECT * FROM feature_matrix LIMIT 1").columns if c.startswith("clin__")]
    assert not any(c.startswith(("clin__sex", "clin__asia_grade")) for c in clinical)  # only the published predictors
    validation = query(home, "SELECT count(*) AS n FROM model_results WHERE role = 'validation' AND metric = 'auc'")
    assert validation["n"][0] > 0


@pytest.mark.long_running
@pytest.mark.timeout(PROTOCOL_TIME_LIMIT)
def test_cervical_sci_upper_limb(tmp_path):
    completed, home, mlflow_uri = run_protocol("cervical_sci_upper_limb", tmp_path)
    check_study_run(mlflow_uri, "cervical_sci_upper_limb", home)
    change = truth(home)["uems_change"]
    roles = query(home, "SELECT patient_key, role FROM splits").set_index("patient_key")["role"]
    predictions = query(home, "SELECT DISTINCT patient_key, mode, label FROM predictions WHERE signature = 'Rad'")
    for mode, mean in (("leakage_safe", change[roles == "train"].mean()), ("paper_faithful", change.mean())):
        rows = predictions[predictions["mode"] == mode].set_index("patient_key")["label"]
        expected = (change.reindex(rows.index) > mean).astype(int).astype(str)
        assert (rows == expected).all(), mode
    assert set(query(home, "SELECT DISTINCT backbone FROM embeddings")["backbone"]) == {
        "resnet18",
        "resnet34",
        "resnet152",
    }
    assert set(query(home, "SELECT DISTINCT classifier FROM trained_models WHERE signature = 'Rad'")["classifier"]) == {
        "LR"
    }
    # The label is derived (uems change above the mean): study_outcome writes it into `outcomes` while modelling,
    # which made the next command's inputs differ and every stage run again. The same command now reuses them.
    again, _, _ = run_protocol("cervical_sci_upper_limb", tmp_path)
    for job in ("center_embeddings_batch_job", "modeling_job", "report_job"):
        assert f"{job}: inputs unchanged since run" in again.stdout, (job, again.stdout[-3000:])


@pytest.mark.long_running
@pytest.mark.timeout(PROTOCOL_TIME_LIMIT)
def test_spinal_metastasis_primary_site(tmp_path):
    completed, home, mlflow_uri = run_protocol("spinal_metastasis_primary_site", tmp_path)
    check_study_run(mlflow_uri, "spinal_metastasis_primary_site", home)
    signatures = set(query(home, "SELECT DISTINCT signature FROM predictions")["signature"])
    assert signatures == {"Clinical", "CNN"}
    classes = set(query(home, "SELECT DISTINCT class_label FROM predictions")["class_label"])
    assert classes == {"lung", "kidney", "breast", "thyroid", "prostate"}
    metrics = set(query(home, "SELECT DISTINCT metric FROM model_results WHERE role = 'test'")["metric"])
    assert {"top1_accuracy", "top2_accuracy", "top3_accuracy", "auc_macro_ovr"} <= metrics
    assert query(home, "SELECT count(*) AS n FROM networks")["n"][0] == 1  # one ResNet50 on the original channel
