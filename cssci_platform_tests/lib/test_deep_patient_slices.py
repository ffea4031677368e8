"""A patient's stored network inputs: one slice and crop for every channel; bad ROIs become QC issues."""

from pathlib import Path

import numpy as np
import polars as pl
import SimpleITK as sitk

from cssci_platform.lib.cohort import CohortSpec
from cssci_platform.lib.deep import RoiSliceSettings
from cssci_platform.lib.deep.patient_slices import (
    SliceRequest,
    SliceTarget,
    cut_patient_slices,
    default_slice_target,
    load_network_inputs,
    masked_pairs,
    slice_target,
    slice_target_problem,
)


def _write(array: np.ndarray, path: Path) -> str:
    sitk.WriteImage(sitk.GetImageFromArray(array), str(path))
    return str(path)


def _patient(tmp_path: Path, lesion_x: int = 9) -> tuple[pl.DataFrame, pl.DataFrame]:
    """(z, y, x) = (40, 30, 20) volumes; a lesion whose largest sagittal cross-section is at x = lesion_x."""
    rng = np.random.default_rng(0)
    lesion = np.zeros((40, 30, 20), np.uint8)
    lesion[15:25, 10:18, lesion_x - 1:lesion_x + 2] = 1
    lesion[12:28, 8:20, lesion_x] = 1
    channels = pl.DataFrame([{"sequence": "sag_T2", "channel": name,
                              "image_path": _write(rng.random((40, 30, 20)).astype(np.float32),
                                                   tmp_path / f"{name}.nrrd")}
                             for name in ("original", "mean")])
    masks = pl.DataFrame([{"sequence": "sag_T2", "roi": "lesion", "segmentation": "primary",
                           "mask_path": _write(lesion, tmp_path / "lesion.nrrd")}])
    return channels, masks


def test_every_channel_gets_the_same_largest_slice_and_crop(tmp_path: Path) -> None:
    channels, masks = _patient(tmp_path)
    request = SliceRequest("sag_T2", settings=RoiSliceSettings(margin=2, margin_unit="px", output_size=(16, 16)))
    result = cut_patient_slices("P1", channels, masks, request, tmp_path / "store")
    assert not result.issues
    assert [r["channel"] for r in result.rows] == ["mean", "original"]
    assert {r["slice_index"] for r in result.rows} == {9}
    assert {tuple(r["crop"]) for r in result.rows} == {(10, 30, 6, 22)}  # rows z 12:28, columns y 8:20, +2 px
    inputs = load_network_inputs([r["slice_path"] for r in result.rows])
    assert inputs.shape == (2, 3, 16, 16)


def test_a_crop_larger_than_the_slice_is_clipped_by_default_and_the_clipping_stored(tmp_path: Path) -> None:
    channels, masks = _patient(tmp_path)
    request = SliceRequest("sag_T2", settings=RoiSliceSettings(margin=4, margin_unit="px", output_size=(16, 16)))
    result = cut_patient_slices("P7", channels, masks, request, tmp_path / "store")
    assert not result.issues and len(result.rows) == 2
    # lesion rows z 12:28 of 40, columns y 8:20 of 30: with 4 px the crop fits, nothing is clipped
    assert {tuple(r["crop"]) for r in result.rows} == {(8, 32, 4, 24)}
    assert {tuple(r["clipped_px"]) for r in result.rows} == {(0, 0, 0, 0)}
    wide = SliceRequest("sag_T2", settings=RoiSliceSettings(margin=14, margin_unit="px", output_size=(16, 16)))
    clipped = cut_patient_slices("P7", channels, masks, wide, tmp_path / "store")
    assert not clipped.issues
    assert {tuple(r["crop"]) for r in clipped.rows} == {(0, 40, 0, 30)}
    assert {tuple(r["clipped_px"]) for r in clipped.rows} == {(2, 2, 6, 4)}  # wanted rows -2:42, columns -6:34


def test_a_crop_larger_than_the_slice_is_a_qc_issue_naming_the_patient_without_clipping(tmp_path: Path) -> None:
    channels, masks = _patient(tmp_path)
    request = SliceRequest("sag_T2", settings=RoiSliceSettings(margin=40, margin_unit="mm", clip_to_slice=False))
    result = cut_patient_slices("P7", channels, masks, request, tmp_path / "store")
    assert result.rows == []
    [issue] = result.issues
    assert (issue.patient_key, issue.stage, issue.code) == ("P7", "roi_slices", "slice_smaller_than_crop")
    assert "lower the margin" in issue.fix


def test_a_missing_sequence_or_mask_is_a_qc_issue(tmp_path: Path) -> None:
    channels, masks = _patient(tmp_path)
    missing_sequence = cut_patient_slices("P2", channels, masks, SliceRequest("ax_T2"), tmp_path / "store")
    assert [i.code for i in missing_sequence.issues] == ["sequence_missing"]
    assert "sag_T2" in missing_sequence.issues[0].message
    missing_mask = cut_patient_slices("P3", channels, masks.head(0), SliceRequest("sag_T2"), tmp_path / "store")
    assert [i.code for i in missing_mask.issues] == ["roi_mask_missing"]
    assert "mask__sag_T2__lesion" in missing_mask.issues[0].fix and "deep.slice.roi" in missing_mask.issues[0].fix
    assert "deep.slice.sequence" in missing_sequence.issues[0].fix


def _spec(sequences: list[str], rois: list[str]) -> CohortSpec:
    return CohortSpec(manifest_version=1, name="c", table="t.csv", centers=["A"], sequences=sequences, rois=rois)


def test_slice_defaults_come_from_the_manifest_when_the_config_leaves_them_unset() -> None:
    assert default_slice_target(_spec(["ax_T1"], ["tumour"])) == SliceTarget("ax_T1", "tumour", "axial")
    assert default_slice_target(_spec(["T1"], ["tumour", "oedema"])) == SliceTarget("T1", "tumour", "sagittal")
    assert default_slice_target(_spec(["cor_STIR", "ax_T2"], ["cord"])) == SliceTarget("cor_STIR", "cord", "coronal")
    # the platform's own sequence and ROI names win where the manifest declares them
    spec = _spec(["sag_T1", "sag_T2"], ["cord", "lesion"])
    assert default_slice_target(spec) == SliceTarget("sag_T2", "lesion", "sagittal")
    assert default_slice_target(_spec(["tra_T2", "sag_T1"], ["lesion"])) == SliceTarget("tra_T2", "lesion", "axial")


def test_the_config_overrides_each_manifest_default_separately() -> None:
    spec = _spec(["ax_T1", "sag_T2"], ["tumour"])
    assert slice_target(spec, sequence="ax_T1") == SliceTarget("ax_T1", "tumour", "axial")
    assert slice_target(spec, roi="tumour", axis="coronal") == SliceTarget("sag_T2", "tumour", "coronal")


def test_a_warehouse_made_before_clipped_px_gets_the_column_on_its_next_write(tmp_path: Path) -> None:
    import duckdb

    from cssci_platform.lib.warehouse import connect, replace_rows, table_frame

    path = tmp_path / "old.duckdb"
    with duckdb.connect(str(path)) as old:
        old.execute("CREATE TABLE roi_slices (patient_key VARCHAR, sequence VARCHAR, roi VARCHAR, channel VARCHAR, "
                    "axis VARCHAR, slice_index INTEGER, roi_area_px INTEGER, crop INTEGER[], slice_path VARCHAR, "
                    "settings_digest VARCHAR)")
        old.execute("INSERT INTO roi_slices VALUES ('P0', 'sag_T2', 'lesion', 'original', 'sagittal', 3, 10, "
                    "[1, 2, 3, 4], 'a.npy', 'd')")
    channels, masks = _patient(tmp_path)
    wide = SliceRequest("sag_T2", settings=RoiSliceSettings(margin=14, margin_unit="px"))
    result = cut_patient_slices("P1", channels, masks, wide, tmp_path / "store")
    with connect(path) as con:
        replace_rows(con, "roi_slices", {"patient_key": "P1"}, result.rows)
    stored = table_frame(path, "SELECT patient_key, clipped_px FROM roi_slices ORDER BY patient_key")
    assert stored["patient_key"].to_list() == ["P0", "P1", "P1"]
    assert stored["clipped_px"].to_list() == [None, [2, 2, 6, 4], [2, 2, 6, 4]]


def test_an_oblique_scan_is_sliced_with_a_warning_naming_the_angle(tmp_path: Path) -> None:
    channels, masks = _patient(tmp_path)
    turned = np.radians(35.0)
    for path in [*channels["image_path"], *masks["mask_path"]]:
        image = sitk.ReadImage(path)
        image.SetDirection((np.cos(turned), 0.0, np.sin(turned), 0.0, 1.0, 0.0, -np.sin(turned), 0.0, np.cos(turned)))
        sitk.WriteImage(image, path)
    result = cut_patient_slices("P4", channels, masks, SliceRequest("sag_T2"), tmp_path / "store")
    assert len(result.rows) == 2 and result.issues == []
    [warning] = result.warnings
    assert result.qc_issues == [warning]
    assert (warning.code, warning.severity) == ("oblique_slice", "warning")
    assert "35°" in warning.message and "sagittal" in warning.message
    (tmp_path / "straight").mkdir()
    straight = cut_patient_slices("P5", *_patient(tmp_path / "straight"), SliceRequest("sag_T2"), tmp_path / "store")
    assert straight.issues == [] and straight.warnings == []


def test_the_default_prefers_a_sequence_and_roi_the_manifest_has_masks_for() -> None:
    spec = _spec(["sag_T1", "ax_T2"], ["lesion", "cord"])
    masked = {("ax_T2", "lesion"), ("sag_T1", "cord")}
    assert default_slice_target(spec, masked=masked) == SliceTarget("sag_T1", "cord", "sagittal")
    assert default_slice_target(spec, masked={("ax_T2", "lesion")}) == SliceTarget("ax_T2", "lesion", "axial")
    assert slice_target(spec, roi="lesion", masked={("ax_T2", "lesion"), ("sag_T1", "cord")}) == \
        SliceTarget("ax_T2", "lesion", "axial")


def test_a_slice_target_without_any_mask_is_a_problem_naming_the_config_keys() -> None:
    spec = _spec(["sag_T1", "ax_T2"], ["lesion"])
    masked = {("ax_T2", "lesion")}
    assert slice_target_problem(slice_target(spec, masked=masked), masked) is None
    problem = slice_target_problem(slice_target(spec, sequence="sag_T1", masked=masked), masked)
    assert "no patient has a 'lesion' mask on sequence 'sag_T1'" in problem
    assert "deep.slice.sequence" in problem and "overrides" in problem and "ax_T2/lesion" in problem
    assert "no patient has any mask" in slice_target_problem(default_slice_target(spec), set())


def test_mask_pairs_of_a_cohort_are_its_primary_masks(tmp_path: Path) -> None:
    from cssci_platform.lib.cohort import load_cohort
    from cssci_platform.lib.synthetic import write_sci_cohort

    write_sci_cohort(tmp_path, n_development=2, n_prospective=0, seed=1)
    assert masked_pairs(load_cohort(tmp_path / "cohort.yaml")) == {
        ("sag_T1", "lesion"), ("sag_T1", "cord"), ("sag_T2", "lesion"), ("sag_T2", "cord")}
