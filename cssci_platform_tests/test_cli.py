"""The main job end to end: `cssci demo` in a subprocess, as a user runs it."""

import os
import subprocess
import sys
from pathlib import Path

import duckdb


def test_cssci_demo_materializes_every_patient(tmp_path: Path) -> None:
    env = {**os.environ, "CSSCI_HOME": str(tmp_path / "home")}
    for name in ("CSSCI_WAREHOUSE", "CSSCI_IMAGE_STORE", "CSSCI_MANIFEST", "DAGSTER_HOME", "CSSCI_MLFLOW_URI"):
        env.pop(name, None)
    completed = subprocess.run(
        [sys.executable, "-m", "cssci_platform.cli", "demo", "--patients", "30", "--prospective", "2", "--workers", "2",
         "--classifiers", "LR", "--cv-folds", "2"],
        env=env, capture_output=True, text=True, encoding="utf-8", timeout=600, cwd=tmp_path,
    )
    assert completed.returncode == 0, completed.stdout + completed.stderr
    assert "32 patients processed" in completed.stdout and "QC errors: 0" in completed.stdout
    home = tmp_path / "home"
    with duckdb.connect(str(home / "warehouse.duckdb"), read_only=True) as con:
        assert con.execute("SELECT count(*) FROM patient_status WHERE status = 'features'").fetchone()[0] == 32
        assert con.execute("SELECT count(DISTINCT channel) FROM radiomics_features").fetchone()[0] == 5
        assert con.execute("SELECT count(DISTINCT patient_key) FROM embeddings").fetchone()[0] == 32
        champions = con.execute("SELECT signature FROM trained_models WHERE champion ORDER BY 1").fetchall()
        assert [c[0] for c in champions] == ["Clinical", "Combined", "DL_resnet18", "Rad", "Rad+DL_resnet18"]
    assert (home / "mlflow.db").exists()
    assert "report: " in completed.stdout and list((home / "image_store" / "reports").glob("demo.html"))
    runs = list((home / "dagster_home").rglob("*.db"))
    assert runs, "the Dagster instance in DAGSTER_HOME recorded the runs"
