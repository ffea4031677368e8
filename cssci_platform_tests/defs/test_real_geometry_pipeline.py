"""Real MRI geometry through the Dagster path with the shipped defaults: ROIs at the edge of the field of view
(a cervical cord mask spanning the whole image, a sarcoma at the border of its image) are clipped and recorded,
not quarantined; the sagittal slice follows the direction cosines; a manifest without `sag_T2` runs."""

import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import dagster as dg
import polars as pl
import pytest
import yaml

from cssci_platform.defs.embeddings.assets import roi_slices
from cssci_platform.defs.embeddings.checks import roi_slice_found
from cssci_platform.defs.ingest.assets import cohort_manifest
from cssci_platform.resources.cohort import CohortResource
from cssci_platform.resources.image_store import ImageStoreResource
from cssci_platform.resources.study import StudyResource
from cssci_platform.resources.warehouse import WarehouseResource
from cssci_platform_tests.defs.conftest import PATIENT_ASSETS, PATIENT_CHECKS, Platform, check_results
from cssci_platform_tests.refdata import refdata_root

pytestmark = pytest.mark.refdata
SLICE_ASSETS = [*PATIENT_ASSETS, roi_slices]


def _one_patient_manifest(folder: Path, image: Path, mask: Path, sequence: str, roi: str) -> Path:
    """cohort.yaml + patients.csv declaring one sequence and one ROI, for patient `p01` (copies of the files)."""
    data = folder / "data" / "p01"
    data.mkdir(parents=True)
    shutil.copy(image, data / "image.nii.gz")
    shutil.copy(mask, data / "mask.nii.gz")
    spec = {"manifest_version": 1, "name": "real_geometry", "table": "patients.csv", "data_root": "data",
            "centers": ["site"], "sequences": [sequence], "rois": [roi], "mask_label": 1}
    (folder / "cohort.yaml").write_text(yaml.safe_dump(spec, sort_keys=False), encoding="utf-8")
    pl.DataFrame([{"patient_id": "p01", "center": "site", "cohort": "development",
                   f"image__{sequence}": "p01/image.nii.gz", f"mask__{sequence}__{roi}": "p01/mask.nii.gz"}]
                 ).write_csv(folder / "patients.csv")
    return folder / "cohort.yaml"


def _study(folder: Path, manifest: Path, roi: str, overrides: list[str]) -> StudyResource:
    """The shipped study defaults on this manifest (which has no outcome: the patient stage needs none), with
    radiomics on its one ROI."""
    document = {"name": "real_geometry", "cohort": {"manifest": str(manifest)}, "outcome": {"name": "unused"},
                "imaging": {"radiomics_rois": [roi]}}
    (folder / "study.yaml").write_text(yaml.safe_dump(document, sort_keys=False), encoding="utf-8")
    return StudyResource(path=str(folder / "study.yaml"), overrides=overrides)


@contextmanager
def _platform(manifest: Path, folder: Path, roi: str, overrides: list[str] | None = None) -> Iterator[Platform]:
    resources = {"cohort": CohortResource(manifest_path=str(manifest)),
                 "warehouse": WarehouseResource(path=str(folder / "w.duckdb")),
                 "image_store": ImageStoreResource(root=str(folder / "store")),
                 "study": _study(folder, manifest, roi, overrides or [])}
    with dg.instance_for_test() as instance:
        platform = Platform(manifest, folder / "w.duckdb", instance, resources)
        assert platform.materialize_manifest().success and platform.register() == ["p01"]
        yield platform


def _ingest_with_slices(platform: Platform) -> dg.ExecuteInProcessResult:
    """Scans, preprocessing, radiomics and ROI slices of `p01` with their blocking checks."""
    return dg.materialize([*SLICE_ASSETS, *PATIENT_CHECKS, roi_slice_found, cohort_manifest],
                          selection=[a.key for a in SLICE_ASSETS], partition_key="p01", instance=platform.instance,
                          resources=platform.resources, raise_on_error=False)


def test_real_cord_t2_with_its_whole_field_of_view_cord_mask_runs_with_the_shipped_defaults(tmp_path: Path) -> None:
    source = refdata_root() / "spinal_cord_sct" / "t2"
    manifest = _one_patient_manifest(tmp_path, source / "t2.nii.gz", source / "t2_seg-manual.nii.gz", "sag_T2", "cord")
    with _platform(manifest, tmp_path, "cord") as platform:
        result = _ingest_with_slices(platform)
        assert result.success and check_results(result) == {
            "patient_qc": True, "roi_survives_resampling": True, "features_finite": True, "roi_slice_found": True}
        assert platform.query("SELECT count(*) AS n FROM qc_issues")["n"][0] == 0
        assert platform.query("SELECT count(DISTINCT feature) AS n FROM radiomics_features")["n"][0] == 107
        slices = platform.query("SELECT * FROM roi_slices ORDER BY channel")
    assert slices["channel"].to_list() == ["box", "gaussian", "mean", "median", "original"]
    assert set(slices["sequence"]) == {"sag_T2"} and set(slices["roi"]) == {"cord"}
    assert set(slices["axis"]) == {"sagittal"}
    # the cord runs through the whole 55 mm supero-inferior field of view: the 5 mm margin is cut at both ends
    assert {tuple(c) for c in slices["crop"]} == {(0, 55, 21, 42)}  # columns: the cord's A-P extent 26:37 + 5 px
    assert {tuple(c) for c in slices["clipped_px"]} == {(5, 5, 0, 0)}


def test_sarcoma_at_the_edge_of_its_field_of_view_in_an_ax_t1_only_manifest_runs_without_a_slice_config(
        tmp_path: Path) -> None:
    source = refdata_root() / "mri_sts_multivendor" / "STS_021"
    manifest = _one_patient_manifest(tmp_path, source / "MR_T1_image.nii.gz", source / "MR_T1_mask.nii.gz", "ax_T1",
                                     "tumour")
    fast = ["preprocessing.channels=[original]", "deep.channels=[original]"]
    with _platform(manifest, tmp_path, "tumour", fast) as platform:
        result = _ingest_with_slices(platform)
        assert result.success and check_results(result)["roi_slice_found"], platform.query("SELECT * FROM qc_issues")
        slices = platform.query("SELECT * FROM roi_slices")
    assert (slices["sequence"][0], slices["roi"][0], slices["axis"][0]) == ("ax_T1", "tumour", "axial")
    assert slices["clipped_px"][0].to_list() == [0, 0, 0, 1]  # the tumour touches the image's left border
