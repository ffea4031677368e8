"""The main job end to end: `cssci demo` in a subprocess, as a user runs it."""

import os
import subprocess
import sys
from pathlib import Path

import duckdb
import pandas as pd
import pytest
import yaml

DEMO = ["demo", "--patients", "30", "--prospective", "2", "--workers", "2", "--classifiers", "LR", "--cv-folds", "2"]
REUSED = "inputs unchanged since run"


def _demo(env: dict, folder: Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "cssci_platform.cli.main", *DEMO], env=env, capture_output=True,
                          text=True, encoding="utf-8", timeout=600, cwd=folder)


def _models(home: Path) -> list[tuple]:
    with duckdb.connect(str(home / "warehouse.duckdb"), read_only=True) as con:
        return con.execute("SELECT signature, classifier, mode, run_id, model_version FROM trained_models "
                           "ORDER BY ALL").fetchall()


def _a_second_demo_reuses_every_stage_whose_inputs_are_unchanged(env: dict, folder: Path, first: str) -> None:
    """The same command again: no patient and no stage after them runs again, except the report, whose file was
    deleted; the models and the MLflow study run are the first command's."""
    home = folder / "home"
    models = _models(home)
    [report] = (home / "image_store" / "reports").glob("demo.html")
    report.unlink()
    second = _demo(env, folder)
    assert second.returncode == 0, second.stdout + second.stderr
    for job in ("center_embeddings_batch_job", "modeling_job", "champion_scoring_batch_job"):
        assert f"{job}: {REUSED}" in second.stdout, second.stdout
    assert f"report_job: {REUSED}" not in second.stdout and report.exists()
    assert _models(home) == models
    study_run = [line for line in first.splitlines() if line.startswith("study run: ")]
    assert study_run and study_run[0] in second.stdout.splitlines()


@pytest.mark.long_running
@pytest.mark.timeout(960)  # the demo subprocess may take 600 s and the comparison 300 s
def test_cssci_demo_materializes_every_patient(tmp_path: Path) -> None:
    env = {**os.environ, "CSSCI_HOME": str(tmp_path / "home")}
    for name in ("CSSCI_WAREHOUSE", "CSSCI_IMAGE_STORE", "CSSCI_MANIFEST", "DAGSTER_HOME", "CSSCI_MLFLOW_URI"):
        env.pop(name, None)
    completed = _demo(env, tmp_path)
    assert completed.returncode == 0, completed.stdout + completed.stderr
    assert "32 patients processed" in completed.stdout and "QC errors: 0" in completed.stdout
    home = tmp_path / "home"
    with duckdb.connect(str(home / "warehouse.duckdb"), read_only=True) as con:
        assert con.execute("SELECT count(*) FROM patient_status WHERE status = 'features'").fetchone()[0] == 32
        # every channel of the demo config (original and gaussian since issue 18 sized the demo for 200 patients)
        channels = yaml.safe_load((home / "experiment.yaml").read_text())["preprocessing"]["channels"]
        assert sorted(r[0] for r in con.execute("SELECT DISTINCT channel FROM radiomics_features").fetchall()) == \
            sorted(channels)
        assert con.execute("SELECT count(DISTINCT patient_key) FROM embeddings").fetchone()[0] == 32
        champions = con.execute("SELECT signature FROM trained_models WHERE champion ORDER BY 1").fetchall()
        assert [c[0] for c in champions] == ["Clinical", "Combined", "DL_resnet18", "Rad", "Rad+DL_resnet18"]
        # the demo's own prospective patients are scored by every champion (issue 16 bug 4: none were)
        query = "SELECT patient_key, count(DISTINCT signature) FROM prospective_predictions GROUP BY 1"
        scored = con.execute(query).fetchall()
        prospective = con.execute("SELECT patient_key FROM patients WHERE cohort = 'prospective'").fetchall()
        assert sorted(scored) == sorted((key, 5) for (key,) in prospective) and len(prospective) == 2
    assert (home / "mlflow.db").exists()
    assert "report: " in completed.stdout and list((home / "image_store" / "reports").glob("demo.html"))
    runs = list((home / "dagster_home").rglob("*.db"))
    assert runs, "the Dagster instance in DAGSTER_HOME recorded the runs"
    assert "experiment.yaml" in {p.name for p in home.iterdir()}, "the resolved demo config the UI's jobs default to"
    _a_second_demo_reuses_every_stage_whose_inputs_are_unchanged(env, tmp_path, completed.stdout)
    env["CSSCI_MLFLOW_URI"] = f"sqlite:///{home / 'mlflow.db'}"
    compared = subprocess.run(
        [
            sys.executable,
            "-m",
            "cssci_platform.cli.main",
            "compare",
            "demo:leakage_safe",
            "demo:paper_faithful",
            "--csv",
            str(tmp_path / "compare.csv"),
        ],
        env={**env, "COLUMNS": "200"},
        capture_output=True,
        text=True,
        encoding="utf-8",
        timeout=300,
        cwd=tmp_path,
    )
    assert compared.returncode == 0, compared.stdout + compared.stderr
    table = pd.read_csv(tmp_path / "compare.csv")
    assert set(table["model"]) == {"Rad_LR", "ResNet18_LR", "Rad + ResNet18_LR", "Clinical_LR", "Combined_LR"}
    assert {"test AUC A", "test AUC B", "test AUC B-A"} <= set(table.columns)
    delta = table["test AUC B"] - table["test AUC A"]
    assert (delta - table["test AUC B-A"]).abs().max() < 1e-12
