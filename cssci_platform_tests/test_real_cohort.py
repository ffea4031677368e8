"""A real multi-scanner study end to end through `cssci run --config` (issue 19, "Tests (real data, in the suite)").

20 soft-tissue sarcoma T1 MRIs of ../shared/refdata/mri_sts_multivendor, the scanner vendor as center (GE,
Philips, Siemens), the expert tumour masks plus a second segmentation made by eroding each mask by one voxel
(for the ICC filter). Run twice on the same images with a config written here:
- the label is the tumour volume (above the median): the shape features carry it, so the test AUC is high;
- the label is a seeded coin toss: the study must complete and report an AUC (about 0.5), not crash.
Small enough for CI: the original channel only, no deep-learning signature, LR and RandomForest, fast grid,
3 CV folds. Skip it locally with `-m "not slow_real_cohort"`.
"""

from __future__ import annotations

import csv
import os
import random
import shutil
import subprocess
import sys
import time
from pathlib import Path

import duckdb
import pandas as pd
import pytest
import SimpleITK as sitk
import yaml

from cssci_platform_tests.refdata import refdata_root

pytestmark = [pytest.mark.refdata, pytest.mark.slow_real_cohort, pytest.mark.long_running]

VENDORS = {"GE": 7, "Philips": 7, "Siemens": 6}  # patients per vendor (center): its smallest tumours
SEQUENCE, ROI, REPEAT = "T1", "tumour", "eroded"
RUN_TIME_LIMIT = 540  # seconds per `cssci run` subprocess; two of them fit the test's 1200 s


def chosen_patients(root: Path) -> list[dict[str, str]]:
    """Each vendor's smallest tumours: radiomics time grows with the tumour, and the largest (STS_013, 1.5 litres)
    alone took minutes of a study whose other patients take seconds; the volumes still span 3,856-228,331 voxels."""
    return [row for vendor, count in VENDORS.items() for row in patients_by_tumour_size(root, vendor)[:count]]


def patients_by_tumour_size(root: Path, vendor: str) -> list[dict[str, str]]:
    with open(root / "scanners.csv", encoding="utf-8") as stream:
        rows = [row for row in csv.DictReader(stream) if row["vendor"] == vendor]
    return sorted(rows, key=lambda row: (int(row["mask_voxels"]), row["patient"]))


def write_eroded_mask(source: Path, target: Path) -> None:
    """The second segmentation: the expert mask eroded by one voxel (a plausible second rater, smaller by a rim)."""
    mask = sitk.ReadImage(str(source))
    eroded = sitk.BinaryErode(mask, [1, 1, 1], sitk.sitkBall, 0, 1)
    sitk.WriteImage(sitk.Cast(eroded, sitk.sitkUInt8), str(target))


def volume_labels(patients: list[dict[str, str]]) -> dict[str, int]:
    voxels = {p["patient"]: int(p["mask_voxels"]) for p in patients}
    median = sorted(voxels.values())[len(voxels) // 2]
    return {patient: int(count >= median) for patient, count in voxels.items()}


def random_labels(patients: list[dict[str, str]], seed: int = 19) -> dict[str, int]:
    keys = [p["patient"] for p in patients]
    labels = [index % 2 for index in range(len(keys))]
    random.Random(seed).shuffle(labels)
    return dict(zip(keys, labels))


@pytest.fixture(scope="module")
def real_manifest(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """cohort.yaml + patients.csv over copies of the real images and masks, with both labels as outcomes."""
    root = refdata_root() / "mri_sts_multivendor"
    folder = tmp_path_factory.mktemp("sarcoma")
    data = folder / "data"
    patients = chosen_patients(root)
    large, coin = volume_labels(patients), random_labels(patients)
    rows = []
    for patient in patients:
        key = patient["patient"]
        (data / key).mkdir(parents=True)
        shutil.copy(root / key / "MR_T1_image.nii.gz", data / key / "image.nii.gz")
        shutil.copy(root / key / "MR_T1_mask.nii.gz", data / key / "mask.nii.gz")
        write_eroded_mask(root / key / "MR_T1_mask.nii.gz", data / key / "mask_eroded.nii.gz")
        rows.append(
            {
                "patient_id": key,
                "center": patient["vendor"],
                "cohort": "development",
                f"image__{SEQUENCE}": f"{key}/image.nii.gz",
                f"mask__{SEQUENCE}__{ROI}": f"{key}/mask.nii.gz",
                f"mask__{SEQUENCE}__{ROI}__{REPEAT}": f"{key}/mask_eroded.nii.gz",
                "large_tumour": large[key],
                "coin_toss": coin[key],
            }
        )
    pd.DataFrame(rows).to_csv(folder / "patients.csv", index=False)
    spec = {
        "manifest_version": 1,
        "name": "sarcoma_multivendor",
        "table": "patients.csv",
        "data_root": "data",
        "centers": sorted(VENDORS),
        "sequences": [SEQUENCE],
        "rois": [ROI],
        "mask_label": 1,
        "outcomes": {"large_tumour": {"type": "binary"}, "coin_toss": {"type": "binary"}},
    }
    (folder / "cohort.yaml").write_text(yaml.safe_dump(spec, sort_keys=False), encoding="utf-8")
    return folder / "cohort.yaml"


def study_config(manifest: Path, name: str, outcome: str) -> dict:
    return {
        "name": name,
        "description": f"real multi-vendor sarcoma T1, label {outcome}",
        "cohort": {"manifest": str(manifest)},
        "outcome": {"name": outcome},
        "imaging": {"sequences": [SEQUENCE], "radiomics_rois": [ROI]},
        "preprocessing": {"channels": ["original"]},
        "deep": {
            "backbones": [],
            "channels": ["original"],
            "slice": {"sequence": SEQUENCE, "roi": ROI, "axis": "axial"},
        },
        "selection": {"icc_threshold": 0.75},
        "models": {"signatures": ["Rad"], "classifiers": ["LR", "RandomForest"], "grid": "fast", "cv_folds": 3},
        "split": {"preset": "holdout_7_3", "seed": 42},
    }


def run_study(
    manifest: Path, tmp_path: Path, name: str, outcome: str
) -> tuple[subprocess.CompletedProcess, Path, float]:
    config = tmp_path / f"{name}.yaml"
    config.write_text(yaml.safe_dump(study_config(manifest, name, outcome), sort_keys=False), encoding="utf-8")
    home = tmp_path / ".cssci" / name
    env = {**os.environ, "COLUMNS": "200"}
    for variable in (
        "CSSCI_HOME",
        "CSSCI_WAREHOUSE",
        "CSSCI_IMAGE_STORE",
        "CSSCI_MANIFEST",
        "DAGSTER_HOME",
        "CSSCI_EXPERIMENT_CONFIG",
        "CSSCI_MLFLOW_URI",
    ):
        env.pop(variable, None)
    started = time.monotonic()
    completed = subprocess.run(
        [sys.executable, "-m", "cssci_platform.cli.main", "run", "--config", str(config), "--set", "deep.weights=none"],
        env=env,
        capture_output=True,
        text=True,
        encoding="utf-8",
        timeout=RUN_TIME_LIMIT,
        cwd=tmp_path,
    )
    elapsed = time.monotonic() - started
    print(f"cssci run --config {name}: {elapsed:.0f} s")
    assert completed.returncode == 0, completed.stdout[-8000:] + completed.stderr[-8000:]
    return completed, home, elapsed


def new_patient_folder(root: Path, folder: Path, used: set[str]) -> Path:
    """A GE patient the study did not see (the smallest such tumour), in the inbox layout `cssci predict` reads
    (patient.csv + files)."""
    patient = next(p["patient"] for p in patients_by_tumour_size(root, "GE") if p["patient"] not in used)
    folder.mkdir(parents=True)
    shutil.copy(root / patient / "MR_T1_image.nii.gz", folder / "image.nii.gz")
    shutil.copy(root / patient / "MR_T1_mask.nii.gz", folder / "mask.nii.gz")
    pd.DataFrame(
        [
            {
                "patient_id": patient,
                "center": "GE",
                f"image__{SEQUENCE}": "image.nii.gz",
                f"mask__{SEQUENCE}__{ROI}": "mask.nii.gz",
                "large_tumour": None,
                "coin_toss": None,
            }
        ]
    ).to_csv(folder / "patient.csv", index=False)  # outcomes unknown yet
    return folder


def predict_from_home_alone(home: Path, patient_dir: Path, cwd: Path) -> subprocess.CompletedProcess:
    """`cssci predict --home .cssci/<experiment>` in a fresh shell: no CSSCI_* variable, the home alone."""
    env = {**os.environ, "COLUMNS": "200"}
    for variable in (
        "CSSCI_HOME",
        "CSSCI_WAREHOUSE",
        "CSSCI_IMAGE_STORE",
        "CSSCI_MANIFEST",
        "DAGSTER_HOME",
        "CSSCI_EXPERIMENT_CONFIG",
        "CSSCI_MLFLOW_URI",
    ):
        env.pop(variable, None)
    return subprocess.run(
        [
            sys.executable,
            "-m",
            "cssci_platform.cli.main",
            "predict",
            "--home",
            str(home),
            "--patient-dir",
            str(patient_dir),
            "--out",
            str(cwd / "prediction"),
        ],
        env=env,
        capture_output=True,
        text=True,
        encoding="utf-8",
        timeout=RUN_TIME_LIMIT,
        cwd=cwd,
    )


def held_out_aucs(home: Path) -> pd.DataFrame:
    with duckdb.connect(str(home / "warehouse.duckdb"), read_only=True) as con:
        return con.execute(
            "SELECT t.result_name, t.mode, r.value AS auc FROM trained_models t JOIN model_results r "
            "ON r.run_id = t.run_id AND r.role = 'test' AND r.metric = 'auc' ORDER BY 1, 2"
        ).df()


def every_patient_has_features(home: Path, expected: int) -> None:
    with duckdb.connect(str(home / "warehouse.duckdb"), read_only=True) as con:
        status = dict(con.execute("SELECT status, count(*) FROM patient_status GROUP BY status").fetchall())
        segmentations = {s for (s,) in con.execute("SELECT DISTINCT segmentation FROM radiomics_features").fetchall()}
    assert status == {"features": expected}, status
    assert {"primary", REPEAT} <= segmentations  # the eroded repeat segmentation feeds the ICC filter


@pytest.mark.timeout(1200)
def test_a_real_multivendor_study_finds_tumour_volume_and_survives_a_random_label(
    real_manifest: Path, tmp_path: Path
) -> None:
    patients = sum(VENDORS.values())
    completed, home, volume_seconds = run_study(real_manifest, tmp_path, "sarcoma_volume", "large_tumour")
    every_patient_has_features(home, patients)
    volume = held_out_aucs(home)
    print(volume.to_string())
    assert len(volume) == 4  # LR and RandomForest x both modes
    assert volume["auc"].max() > 0.75, volume  # the shape features carry the tumour volume
    assert (home / "image_store" / "reports" / "sarcoma_volume.html").exists()
    assert "quarantined" not in completed.stdout
    # the experiment home alone leads `cssci predict` to the shared MLflow store and the study's slice settings
    root = refdata_root() / "mri_sts_multivendor"
    newcomer = new_patient_folder(root, tmp_path / "newcomer", {p["patient"] for p in chosen_patients(root)})
    predicted = predict_from_home_alone(home, newcomer, tmp_path)
    assert predicted.returncode == 0, predicted.stdout[-4000:] + predicted.stderr[-4000:]
    assert "Rad" in predicted.stdout and "cssci.sarcoma_volume.Rad" in predicted.stdout, predicted.stdout

    completed, home, random_seconds = run_study(real_manifest, tmp_path, "sarcoma_coin_toss", "coin_toss")
    coin = held_out_aucs(home)
    print(coin.to_string())
    assert not coin.empty and coin["auc"].between(0, 1).all(), coin  # reported, not a crash
    assert abs(coin["auc"].mean() - 0.5) < 0.3, coin  # no signal: about 0.5 on 6 test patients
    assert (home / "image_store" / "reports" / "sarcoma_coin_toss.html").exists()
    print(f"wall time: volume label {volume_seconds:.0f} s, random label {random_seconds:.0f} s")
