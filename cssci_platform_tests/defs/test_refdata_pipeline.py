"""Real MRI through our path: 32 multi-scanner sarcoma MRIs (lib path) and a real spinal cord T2 (Dagster path)."""

import csv
import math
import shutil
from concurrent.futures import ProcessPoolExecutor
from multiprocessing import get_context
from pathlib import Path

import dagster as dg
import polars as pl
import pytest
import yaml

from cssci_platform.lib.cohort import load_cohort
from cssci_platform.lib.feature_extraction import extract_patient_features
from cssci_platform.lib.imaging import GeometryTolerance
from cssci_platform.lib.preprocessing import PreprocessingSettings, preprocess_patient
from cssci_platform.lib.quality import inspect_patient
from cssci_platform.resources.cohort import CohortResource
from cssci_platform.resources.image_store import ImageStoreResource
from cssci_platform.resources.warehouse import WarehouseResource
from cssci_platform_tests.defs.conftest import Platform, check_results
from cssci_platform_tests.refdata import refdata_root
from cssci_platform_tests.study_files import study_resource

pytestmark = pytest.mark.refdata


def _write_manifest(
    folder: Path, data_root: Path, centers: list[str], sequence: str, roi: str, rows: list[dict]
) -> Path:
    spec = {
        "manifest_version": 1,
        "name": "refdata",
        "table": "patients.csv",
        "data_root": str(data_root),
        "centers": centers,
        "sequences": [sequence],
        "rois": [roi],
        "mask_label": 1,
    }
    (folder / "cohort.yaml").write_text(yaml.safe_dump(spec, sort_keys=False), encoding="utf-8")
    pl.DataFrame(rows).write_csv(folder / "patients.csv")
    return folder / "cohort.yaml"


def _ingest_one(manifest: Path, key: str, store: Path) -> pl.DataFrame:
    """QC, preprocessing (1 mm isotropic, [0, 1], all five channels) and radiomics (original channel)."""
    cohort = load_cohort(manifest)
    settings = PreprocessingSettings()
    inspection = inspect_patient(cohort, cohort.patients[key], GeometryTolerance())
    assert inspection.passed, [i.message for i in inspection.issues]
    result = preprocess_patient(inspection.scans, cohort.resolve, store, settings)
    assert sorted(c.channel for c in result.channels) == sorted(settings.channels)
    channels = pl.DataFrame([vars(c) for c in result.channels]).filter(pl.col("channel") == "original")
    extraction = extract_patient_features(key, channels, pl.DataFrame([vars(m) for m in result.masks]), "default")
    assert not extraction.issues, [i.message for i in extraction.issues]
    return extraction.rows


@pytest.mark.long_running
def test_all_32_multiscanner_mris_are_ingested_preprocessed_and_extracted(tmp_path: Path) -> None:
    root = refdata_root() / "mri_sts_multivendor"
    with open(root / "scanners.csv") as stream:
        listed = list(csv.DictReader(stream))
    scanners = {row["patient"]: row["vendor"].split()[0] for row in listed}
    # largest tumours first: radiomics time grows faster than the tumour (STS_013, 490k voxels, takes minutes), so the
    # two workers end together instead of one finishing the largest alone
    largest_first = [row["patient"] for row in sorted(listed, key=lambda row: -int(row["mask_voxels"]))]
    rows = [
        {
            "patient_id": p,
            "center": vendor,
            "cohort": "development",
            "image__T1": f"{p}/MR_T1_image.nii.gz",
            "mask__T1__tumour": f"{p}/MR_T1_mask.nii.gz",
        }
        for p, vendor in sorted(scanners.items())
    ]
    cohort = load_cohort(_write_manifest(tmp_path, root, sorted(set(scanners.values())), "T1", "tumour", rows))
    assert len(cohort.patients) == 32 and not cohort.issues and sorted(largest_first) == sorted(cohort.patients)

    store = tmp_path / "store"
    # spawn, as the platform's runner does: forked workers inherit pytest's and ITK's threads and can deadlock
    with ProcessPoolExecutor(max_workers=2, mp_context=get_context("spawn")) as pool:
        extracted = list(pool.map(_ingest_one, [cohort.manifest_path] * 32, largest_first, [store] * 32))
    values = pl.concat(extracted)
    assert values["patient_key"].n_unique() == 32
    assert all(math.isfinite(v) for v in values["value"])
    per_patient = values.group_by("patient_key").len()["len"]
    assert per_patient.min() == per_patient.max() == 107  # 14 shape + 93 intensity/texture features


def test_real_spinal_cord_t2_goes_through_the_dagster_pipeline(tmp_path: Path) -> None:
    source = refdata_root() / "spinal_cord_sct" / "t2"
    data = tmp_path / "data" / "sct01"
    data.mkdir(parents=True)
    for name in ("t2.nii.gz", "t2_seg-manual.nii.gz"):
        shutil.copy(source / name, data / name)
    manifest = _write_manifest(
        tmp_path,
        tmp_path / "data",
        ["sct"],
        "sag_T2",
        "cord",
        [
            {
                "patient_id": "sct01",
                "center": "sct",
                "cohort": "development",
                "image__sag_T2": "sct01/t2.nii.gz",
                "mask__sag_T2__cord": "sct01/t2_seg-manual.nii.gz",
            }
        ],
    )
    resources = {
        "cohort": CohortResource(manifest_path=str(manifest)),
        "warehouse": WarehouseResource(path=str(tmp_path / "w.duckdb")),
        "image_store": ImageStoreResource(root=str(tmp_path / "store")),
        # the patient stage only: no outcome is modelled; radiomics on the study's ROI, the cord
        "study": study_resource(
            tmp_path, manifest, {"outcome": {"name": "not_modelled"}, "imaging": {"radiomics_rois": ["cord"]}}
        ),
    }
    with dg.instance_for_test() as instance:
        platform = Platform(manifest, tmp_path / "w.duckdb", instance, resources)
        platform.materialize_manifest()
        assert platform.register() == ["sct01"]
        result = platform.materialize_patient("sct01")
        assert result.success and all(check_results(result).values())
        features = platform.query("SELECT channel, feature, value FROM radiomics_features")
    assert sorted(set(features["channel"])) == ["box", "gaussian", "mean", "median", "original"]
    assert features.height == 5 * 107 and all(math.isfinite(v) for v in features["value"])
    volume = features.filter((pl.col("channel") == "original") & (pl.col("feature") == "original_shape_MeshVolume"))[
        "value"
    ][0]
    assert 3000 < volume < 30000  # a cervical cord segment of ~5 cm: ~80 mm^2 cross-section x length, in mm^3
