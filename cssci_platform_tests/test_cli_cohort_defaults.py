"""Issue 19, items 4 and 5 on the command line: stores found from an experiment home alone, a slice target without
masks stopped before any patient (exit 2, the config key named), a quarantined patient's reason and fix printed."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import polars as pl
import pytest
import yaml

from cssci_platform.cli.home import configure_environment, home_experiment_name
from cssci_platform.cli.study_stages import activate
from cssci_platform.lib.study_config import dump_config, load_config
from cssci_platform.lib.synthetic import write_sci_cohort
from cssci_platform_tests.conftest import STORE_VARIABLES


@pytest.fixture(scope="module")
def manifest(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_sci_cohort(tmp_path_factory.mktemp("cohort"), n_development=1, n_prospective=0, seed=3)


def clean_env(home: Path) -> dict[str, str]:
    env = {**os.environ, "CSSCI_HOME": str(home), "COLUMNS": "200"}
    for name in STORE_VARIABLES[1:]:
        env.pop(name, None)
    return env


def cssci(args: list[str], env: dict[str, str], cwd: Path, timeout: int = 300) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "cssci_platform.cli.main", *args],
        env=env,
        cwd=cwd,
        capture_output=True,
        text=True,
        encoding="utf-8",
        timeout=timeout,
    )


def output(completed: subprocess.CompletedProcess) -> str:
    return " ".join((completed.stdout + completed.stderr).split())  # rich wraps long lines


def test_an_experiment_home_alone_leads_every_command_to_the_shared_mlflow_store(
    manifest: Path, tmp_path: Path, restored_environment
) -> None:
    # Before: `cssci predict/report/ui --home .cssci/<experiment>` looked for <home>/mlflow.db, an empty store, while
    # `cssci run` had written every model to the shared .cssci/mlflow.db one level up.
    config = load_config("demo", ["deep.weights=none"])
    home = tmp_path / ".cssci" / "demo"
    shared = f"sqlite:///{tmp_path / '.cssci' / 'mlflow.db'}"
    activate(config, home, manifest, shared)  # what `cssci run --config demo` does to its home
    for name in STORE_VARIABLES:
        os.environ.pop(name, None)  # a later command, in a fresh shell, given only --home
    values = configure_environment(home)
    assert values["CSSCI_MLFLOW_URI"] == shared
    assert values["CSSCI_MANIFEST"] == str(manifest.resolve())
    assert home_experiment_name(home.resolve()) == "demo"  # predict/report default to the home's experiment


def test_a_plain_home_keeps_its_own_mlflow_store(tmp_path: Path, restored_environment) -> None:
    values = configure_environment(tmp_path / "home")
    assert values["CSSCI_MLFLOW_URI"] == f"sqlite:///{(tmp_path / 'home').resolve() / 'mlflow.db'}"
    assert home_experiment_name(tmp_path / "home") is None


def test_a_commands_processes_wait_for_openmp_work_passively_unless_the_user_chose(
    tmp_path: Path, restored_environment, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Worker processes run side by side: spinning OpenMP threads (torch, scikit-learn) would take the cores the
    others need. The daemon, code servers and runs a command starts inherit this environment."""
    monkeypatch.delenv("OMP_WAIT_POLICY", raising=False)
    assert configure_environment(tmp_path / "home")["OMP_WAIT_POLICY"] == "PASSIVE"
    assert os.environ["OMP_WAIT_POLICY"] == "PASSIVE"
    monkeypatch.setenv("OMP_WAIT_POLICY", "ACTIVE")  # a user's own choice is kept
    assert configure_environment(tmp_path / "home")["OMP_WAIT_POLICY"] == "ACTIVE"


def without_masks(manifest: Path, folder: Path) -> Path:
    """The same patients with every mask column dropped (a cohort delivered before segmentation)."""
    spec = yaml.safe_load(manifest.read_text(encoding="utf-8"))
    table = pl.read_csv(manifest.parent / spec["table"])
    table.select([c for c in table.columns if not c.startswith("mask__")]).write_csv(folder / "patients.csv")
    spec.update({"table": "patients.csv", "data_root": str((manifest.parent / spec["data_root"]).resolve())})
    (folder / "cohort.yaml").write_text(yaml.safe_dump(spec, sort_keys=False), encoding="utf-8")
    return folder / "cohort.yaml"


def test_ingest_of_a_manifest_without_masks_for_the_slice_target_stops_before_any_patient(
    manifest: Path, tmp_path: Path
) -> None:
    # Before: every patient ran through QC, preprocessing and radiomics, then was quarantined at roi_slices.
    bare = without_masks(manifest, tmp_path)
    completed = cssci(["ingest", str(bare)], clean_env(tmp_path / "home"), tmp_path, timeout=120)
    text = output(completed)
    assert completed.returncode == 2, text
    assert "deep.slice.sequence" in text and "deep.slice.roi" in text and "no patient has any mask" in text, text
    assert "Traceback" not in text
    assert not (tmp_path / "home" / "warehouse.duckdb").exists()  # stopped before anything was written


def test_ingest_names_the_slice_configured_by_the_homes_experiment_when_it_has_no_masks(
    manifest: Path, tmp_path: Path
) -> None:
    home = tmp_path / "home"
    home.mkdir()
    experiment = load_config("demo", ["deep.weights=none", "deep.slice.roi=cord", "deep.slice.sequence=sag_T1"])
    (home / "experiment.yaml").write_text(dump_config(experiment), encoding="utf-8")
    spec = yaml.safe_load(manifest.read_text(encoding="utf-8"))
    table = pl.read_csv(manifest.parent / spec["table"]).drop("mask__sag_T1__cord")
    table.write_csv(tmp_path / "patients.csv")
    spec.update({"table": "patients.csv", "data_root": str((manifest.parent / spec["data_root"]).resolve())})
    (tmp_path / "cohort.yaml").write_text(yaml.safe_dump(spec, sort_keys=False), encoding="utf-8")
    completed = cssci(["ingest", str(tmp_path / "cohort.yaml")], clean_env(home), tmp_path, timeout=120)
    text = output(completed)
    assert completed.returncode == 2, text
    assert "no patient has a 'cord' mask on sequence 'sag_T1'" in text and "deep.slice.sequence" in text, text


def test_a_quarantined_patient_is_printed_with_the_checks_reason_and_fix(manifest: Path, tmp_path: Path) -> None:
    # Before: `quarantined SCI-...: roi_slice_found`, with no word of what was wrong or how to fix it.
    home = tmp_path / "home"
    home.mkdir()
    experiment = load_config(
        "demo",
        [
            "deep.weights=none",
            "deep.slice.margin=1000",
            "deep.slice.clip_to_slice=false",
            "preprocessing.channels=[original]",
            "deep.channels=[original]",
        ],
    )
    (home / "experiment.yaml").write_text(dump_config(experiment), encoding="utf-8")  # the patient job's settings
    completed = cssci(["ingest", str(manifest), "--workers", "1"], clean_env(home), tmp_path)
    text = output(completed)
    assert completed.returncode == 0, text
    assert "quarantined" in text and "roi_slice_found" in text, text
    assert "[roi_slices/slice_smaller_than_crop]" in text and "fix: set clip_to_slice: true" in text, text


def test_run_refuses_a_slice_target_without_masks_before_any_patient(manifest: Path, tmp_path: Path) -> None:
    # Before: `cssci run` processed every patient (the 40 minutes of feature extraction), quarantined each at
    # roi_slices, then failed in modeling with no patient left.
    spec = yaml.safe_load(manifest.read_text(encoding="utf-8"))
    pl.read_csv(manifest.parent / spec["table"]).drop("mask__sag_T1__cord").write_csv(tmp_path / "patients.csv")
    spec.update({"table": "patients.csv", "data_root": str((manifest.parent / spec["data_root"]).resolve())})
    (tmp_path / "cohort.yaml").write_text(yaml.safe_dump(spec, sort_keys=False), encoding="utf-8")
    config = yaml.safe_load(dump_config(load_config("demo")))
    config["cohort"] = {"manifest": str(tmp_path / "cohort.yaml")}
    config["deep"]["slice"].update({"sequence": "sag_T1", "roi": "cord"})
    (tmp_path / "study.yaml").write_text(yaml.safe_dump(config, sort_keys=False), encoding="utf-8")
    home = tmp_path / "home"
    completed = cssci(
        ["run", "--config", str(tmp_path / "study.yaml"), "--home", str(home), "--set", "deep.weights=none"],
        clean_env(home),
        tmp_path,
        timeout=120,
    )
    text = output(completed)
    assert completed.returncode == 2, text
    assert "deep.slice" in text and "no patient has a 'cord' mask on sequence 'sag_T1'" in text, text
    assert not (home / "warehouse.duckdb").exists()


@pytest.fixture(scope="module")
def three_small_centers(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_sci_cohort(tmp_path_factory.mktemp("small"), n_development=8, n_prospective=0, seed=3)  # 3 + 3 + 2


def manifest_config(manifest: Path, folder: Path, *overrides: str) -> Path:
    config = yaml.safe_load(dump_config(load_config("demo", ["deep.weights=none", "models.cv_folds=3", *overrides])))
    config["cohort"] = {"manifest": str(manifest)}
    (folder / "study.yaml").write_text(yaml.safe_dump(config, sort_keys=False), encoding="utf-8")
    return folder / "study.yaml"


def test_run_refuses_centers_too_small_for_combat_before_any_patient_when_the_policy_is_error(
    three_small_centers: Path, tmp_path: Path
) -> None:
    # Before: every patient's features were extracted, then every model failed inside a CV fold ("1 sample").
    config = manifest_config(three_small_centers, tmp_path, "harmonization.small_center=error")
    home = tmp_path / "home"
    completed = cssci(["run", "--config", str(config), "--home", str(home)], clean_env(home), tmp_path, timeout=120)
    text = output(completed)
    assert completed.returncode == 2, text
    # names the center and where ComBat lacks patients: the split's training patients (3 + 3 + 2 patients leave a
    # center 1 of them since center_checks reads the study's settings) or a CV fold inside them
    assert "harmonization.small_center: center 'center_" in text and re.search(r"(CV|split) fold", text), text
    assert "--set harmonization.small_center=pool" in text, text
    assert not (home / "warehouse.duckdb").exists()


def test_small_centers_the_policy_handles_are_announced_once_per_center_before_the_run(
    three_small_centers: Path, tmp_path: Path
) -> None:
    from cssci_platform.cli.study_stages import center_size_notes

    notes = center_size_notes(load_config(manifest_config(three_small_centers, tmp_path)), three_small_centers)
    assert notes and len(notes) == len({note.split("'")[1] for note in notes})  # one line per center
    assert all("harmonization.small_center 'pool'" in note and "fit(s)" in note for note in notes), notes
