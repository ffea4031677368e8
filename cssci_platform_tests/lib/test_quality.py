"""Per-patient QC: every bad file becomes a `QcIssue` on that patient only, naming the file and the fix."""

from __future__ import annotations

import shutil
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk

from cssci_platform.lib.imaging import GeometryTolerance, file_sha256
from cssci_platform.lib.preprocessing import PreprocessingSettings, preprocess_patient
from cssci_platform.lib.quality import PatientInspection, QcIssue, ScanInfo, inspect_patient, resampled_mask_issues
from cssci_platform_tests.lib.conftest import (
    LESION_BOX,
    LESION_VOXELS,
    ORIGIN,
    SEQUENCE,
    SIZE,
    SPACING,
    TinyCohort,
    base_row,
    base_spec,
    default_rows,
    from_array,
    make_image,
    make_mask,
)
from cssci_platform_tests.lib.test_imaging import write_dicom_series

TOLERANCE = GeometryTolerance()
IMAGE = f"images/P002_{SEQUENCE}.nii.gz"
MASK = f"masks/P002_{SEQUENCE}_lesion.nii.gz"
FLIPPED = (-1.0, 0.0, 0.0, 0.0, -1.0, 0.0, 0.0, 0.0, 1.0)


def inspect(cohort: TinyCohort, key: str, tolerance: GeometryTolerance = TOLERANCE) -> PatientInspection:
    loaded = cohort.load()
    return inspect_patient(loaded, loaded.patients[key], tolerance)


def test_clean_patient_passes_with_scan_rows(tiny_cohort):
    cohort = tiny_cohort()
    result = inspect(cohort, "P002")
    assert result.patient_key == "P002" and result.issues == [] and result.passed
    image, mask = result.scans
    assert image == ScanInfo(
        "P002", SEQUENCE, "image", "", "", IMAGE, file_sha256(cohort.path(IMAGE)),
        SIZE, image.spacing, image.origin, image.direction, 0,
    )
    assert mask == ScanInfo(
        "P002", SEQUENCE, "mask", "lesion", "primary", MASK, file_sha256(cohort.path(MASK)),
        SIZE, mask.spacing, mask.origin, mask.direction, LESION_VOXELS,
    )
    for scan in (image, mask):
        np.testing.assert_allclose(scan.spacing, SPACING, rtol=1e-6)
        np.testing.assert_allclose(scan.origin, ORIGIN, rtol=1e-6)
        np.testing.assert_allclose(scan.direction, np.eye(3).ravel(), atol=1e-6)
    row = mask.as_row()
    assert row["size"] == list(SIZE) and isinstance(row["spacing"], list) and row["mask_voxels"] == LESION_VOXELS


def test_repeat_segmentation_is_scanned_too(tiny_cohort):
    rows = default_rows()
    rows[1][f"mask__{SEQUENCE}__lesion__rater2"] = "masks/P002_rater2.nii.gz"
    cohort = tiny_cohort(rows)
    result = inspect(cohort, "P002")
    assert result.passed
    assert [(s.kind, s.roi, s.segmentation) for s in result.scans] == [
        ("image", "", ""), ("mask", "lesion", "primary"), ("mask", "lesion", "rater2")]


# ---------------------------------------------------------------- one file problem at a time


def nan_image() -> sitk.Image:
    data = sitk.GetArrayFromImage(make_image(seed=1))
    data[0, 0, 0] = data[2, 3, 4] = np.nan
    data[5, 5, 5] = np.inf
    return from_array(data)


def labels_1_and_2() -> sitk.Image:
    return make_mask(labels={1: LESION_BOX, 2: (slice(0, 2), slice(0, 3), slice(0, 4))})


def garbage(cohort: TinyCohort, relative: str) -> None:
    cohort.path(relative).write_bytes(b"not a nifti file\n" * 50)


BREAKAGES: dict[str, tuple[Callable[[TinyCohort], None], str, str, str, str]] = {
    # name: (break it, code, file, text in message, text in fix)
    "missing image": (lambda c: c.path(IMAGE).unlink(), "missing_file", IMAGE, f"{IMAGE}: file not found",
                      "check the path"),
    "missing mask": (lambda c: c.path(MASK).unlink(), "missing_file", MASK, f"{MASK}: file not found",
                     "check the path"),
    "corrupt image": (lambda c: garbage(c, IMAGE), "unreadable_file", IMAGE, f"{IMAGE}: unreadable or corrupt image (",
                      "re-export"),
    "corrupt mask": (lambda c: garbage(c, MASK), "unreadable_file", MASK, f"{MASK}: unreadable or corrupt image (",
                     "re-export"),
    "empty image file": (lambda c: c.path(IMAGE).write_bytes(b""), "unreadable_file", IMAGE,
                         f"{IMAGE}: file is empty (0 bytes)", "re-copy"),
    "mask size": (lambda c: c.write(MASK, make_mask(size=(20, 24, 15))), "geometry_mismatch", MASK,
                  f"{MASK} vs image__{SEQUENCE}: size differs: image (20, 24, 16) vs mask (20, 24, 15)",
                  "on the image's grid"),
    "mask spacing": (lambda c: c.write(MASK, make_mask(spacing=(0.9, 0.8, 1.5))), "geometry_mismatch", MASK,
                     f"{MASK} vs image__{SEQUENCE}: spacing differs beyond 0.001 mm",
                     "same size, spacing, origin, direction"),
    "mask origin": (lambda c: c.write(MASK, make_mask(origin=(ORIGIN[0], ORIGIN[1] + 0.5, ORIGIN[2]))),
                    "geometry_mismatch", MASK,
                    f"{MASK} vs image__{SEQUENCE}: origin differs beyond 0.01 mm", "on the image's grid"),
    "mask direction": (lambda c: c.write(MASK, make_mask(direction=FLIPPED)), "geometry_mismatch", MASK,
                       f"{MASK} vs image__{SEQUENCE}: direction differs beyond 0.0001", "on the image's grid"),
    "empty mask": (lambda c: c.write(MASK, make_mask(labels={})), "empty_mask", MASK,
                   f"{MASK}: no voxel has label 1 (lesion, primary)", "segment the lesion with label 1"),
    "extra label": (lambda c: c.write(MASK, labels_1_and_2()), "unexpected_labels", MASK,
                    f"{MASK}: labels [2] present besides 1 (24 voxels)", "change mask_label in cohort.yaml"),
}


@pytest.mark.parametrize("name", list(BREAKAGES))
def test_file_problem(tiny_cohort, name):
    breaker, code, file, message, fix = BREAKAGES[name]
    cohort = tiny_cohort()
    breaker(cohort)
    result = inspect(cohort, "P002")
    assert [issue.code for issue in result.issues] == [code], result.issues
    issue = result.issues[0]
    assert (issue.patient_key, issue.stage, issue.severity, issue.file) == ("P002", "scans", "error", file)
    assert issue.message.startswith(message), issue.message
    assert fix in issue.fix
    assert not result.passed
    for other in ("P001", "P003"):
        assert inspect(cohort, other).passed


def test_nan_voxels_in_the_image(tiny_cohort):
    rows = default_rows()
    rows[1][f"image__{SEQUENCE}"] = "images/P002_sag_T2.nrrd"
    cohort = tiny_cohort(rows, write_files=False)
    for row in rows:
        cohort.write(row[f"mask__{SEQUENCE}__lesion"], make_mask())
        if row["patient_id"] != "P002":
            cohort.write(row[f"image__{SEQUENCE}"], make_image())
    cohort.write("images/P002_sag_T2.nrrd", nan_image())
    result = inspect(cohort, "P002")
    expected = [("nonfinite_voxels", "error", "images/P002_sag_T2.nrrd")]
    assert [(i.code, i.severity, i.file) for i in result.issues] == expected
    assert result.issues[0].message == "images/P002_sag_T2.nrrd: 3 voxels are NaN or infinite"
    assert "re-export the image" in result.issues[0].fix
    assert not result.passed and inspect(cohort, "P001").passed


def test_nan_voxels_in_a_nifti_image(tiny_cohort):
    cohort = tiny_cohort()
    cohort.write(IMAGE, nan_image())
    assert [i.code for i in inspect(cohort, "P002").issues] == ["nonfinite_voxels"]


def test_missing_image_still_scans_the_mask(tiny_cohort):
    cohort = tiny_cohort()
    cohort.path(IMAGE).unlink()
    result = inspect(cohort, "P002")
    assert [(s.kind, s.path) for s in result.scans] == [("mask", MASK)]


def test_origin_within_tolerance_passes(tiny_cohort):
    cohort = tiny_cohort()
    cohort.write(MASK, make_mask(origin=(ORIGIN[0], ORIGIN[1] + 0.004, ORIGIN[2])))
    assert inspect(cohort, "P002").passed
    assert not inspect(cohort, "P002", GeometryTolerance(origin_mm=0.001)).passed


def test_mask_with_only_another_label(tiny_cohort):
    cohort = tiny_cohort()
    cohort.write(MASK, make_mask(labels={2: LESION_BOX}))
    result = inspect(cohort, "P002")
    assert [i.code for i in result.issues] == ["empty_mask", "unexpected_labels"]
    assert result.scans[1].mask_voxels == 0


def test_mask_label_comes_from_the_manifest(tiny_cohort):
    cohort = tiny_cohort(spec=base_spec(mask_label=2))
    cohort.write(MASK, make_mask(labels={2: LESION_BOX}))
    result = inspect(cohort, "P002")
    assert result.passed and result.scans[1].mask_voxels == LESION_VOXELS
    assert [i.code for i in inspect(cohort, "P001").issues] == ["empty_mask", "unexpected_labels"]


def test_two_dimensional_image(tiny_cohort):
    cohort = tiny_cohort()
    cohort.write(IMAGE, sitk.Image([20, 24], sitk.sitkFloat32))
    codes = [i.code for i in inspect(cohort, "P002").issues]
    assert codes[0] == "not_3d" and set(codes[1:]) == {"geometry_mismatch"}


def test_truncated_nifti_fails_qc(tiny_cohort):
    cohort = tiny_cohort()
    data = cohort.path(IMAGE).read_bytes()
    cohort.path(IMAGE).write_bytes(data[: len(data) // 2])
    assert [i.code for i in inspect(cohort, "P002").issues] == ["unreadable_file"]


# ---------------------------------------------------------------- manifest issues and isolation


def test_manifest_issues_are_carried_over(tiny_cohort):
    rows = default_rows()
    rows[1].update({"age": "old", "good_outcome": None})
    cohort = tiny_cohort(rows)
    result = inspect(cohort, "P002")
    assert [(i.stage, i.code, i.severity, i.file) for i in result.issues] == [
        ("manifest", "bad_value", "error", ""), ("manifest", "missing_outcome", "warning", "")]
    issue = result.issues[0]
    assert issue.patient_key == "P002"
    assert issue.message == ("line 3, column 'age': 'old' is not a finite number. Fix: enter a number with '.' as "
                             "decimal mark")
    assert issue.fix == "enter a number with '.' as decimal mark"
    assert not result.passed and len(result.scans) == 2


def test_manifest_warning_alone_passes(tiny_cohort):
    rows = default_rows()
    rows[1]["good_outcome"] = None
    result = inspect(tiny_cohort(rows), "P002")
    assert [i.code for i in result.issues] == ["missing_outcome"] and result.passed


def test_manifest_path_issue_skips_that_file(tiny_cohort):
    rows = default_rows()
    rows[1][f"image__{SEQUENCE}"] = "../escape.nii.gz"
    result = inspect(tiny_cohort(rows), "P002")
    assert [(i.stage, i.code) for i in result.issues] == [("manifest", "path_escapes_root")]
    assert [s.kind for s in result.scans] == ["mask"]


def test_a_broken_patient_does_not_affect_another(tiny_cohort):
    clean = tiny_cohort(folder="clean")
    broken = tiny_cohort(folder="broken")
    broken.path(IMAGE).write_bytes(b"\x00" * 10)
    broken.write(MASK, make_mask(size=(5, 5, 5)))
    clean_cohort, broken_cohort = clean.load(), broken.load()
    results = {k: inspect_patient(broken_cohort, r, TOLERANCE) for k, r in broken_cohort.patients.items()}
    assert not results["P002"].passed
    for key in ("P001", "P003"):
        reference = inspect_patient(clean_cohort, clean_cohort.patients[key], TOLERANCE)
        assert results[key] == reference


def test_issue_rows():
    issue = QcIssue("P1", "scans", "empty_mask", "m", "f", "masks/a.nii.gz")
    assert issue.as_row() == {"patient_key": "P1", "stage": "scans", "code": "empty_mask", "message": "m", "fix": "f",
                              "file": "masks/a.nii.gz", "severity": "error"}


# ---------------------------------------------------------------- after resampling


def test_resampled_mask_issues_flags_a_vanishing_mask(tiny_cohort, tmp_path):
    rows = [base_row("P001", **{f"mask__{SEQUENCE}__cord": "masks/P001_sag_T2_cord.nii.gz"})]
    cohort = tiny_cohort(rows)
    # a one-voxel-thin (0.8 mm) cord slab at x index 1: nearest-neighbour sampling every 4 mm misses it
    cohort.write("masks/P001_sag_T2_cord.nii.gz", make_mask(labels={1: (slice(2, 14), slice(4, 20), slice(1, 2))}))
    inspection = inspect(cohort, "P001")
    assert inspection.passed
    loaded = cohort.load()
    settings = PreprocessingSettings(spacing_mm=(4.0, 4.0, 4.0), channels=("original",))
    result = preprocess_patient(inspection.scans, loaded.resolve, tmp_path / "store", settings)
    issues = resampled_mask_issues("P001", result.masks)
    assert len(issues) == 1
    issue = issues[0]
    cord = next(m for m in result.masks if m.roi == "cord")
    assert (issue.patient_key, issue.stage, issue.code, issue.severity, issue.file) == (
        "P001", "preprocess", "empty_roi_after_resampling", "error", cord.mask_path)
    assert issue.message == f"{SEQUENCE} cord (primary) has no voxel left after resampling"
    assert "finer spacing_mm" in issue.fix
    # at the default 1 mm both masks survive
    fine = preprocess_patient(inspection.scans, loaded.resolve, tmp_path / "store",
                              PreprocessingSettings(channels=("original",)))
    assert resampled_mask_issues("P001", fine.masks) == []


# ---------------------------------------------------------------- symbolic links leaving data_root


def outside_folder(cohort: TinyCohort) -> Path:
    """A folder beside the cohort (not under data_root) holding a valid image and mask."""
    outside = cohort.root.parent / "outside"
    outside.mkdir(exist_ok=True)
    sitk.WriteImage(make_image(seed=7), str(outside / "other.nii.gz"))
    sitk.WriteImage(make_mask(), str(outside / "other_mask.nii.gz"))
    return outside


def test_an_image_linked_to_a_file_outside_data_root_is_refused_naming_the_link(tiny_cohort):
    cohort = tiny_cohort()
    outside = outside_folder(cohort)
    cohort.path(IMAGE).unlink()
    cohort.path(IMAGE).symlink_to(outside / "other.nii.gz")
    result = inspect(cohort, "P002")
    assert [(i.stage, i.code, i.file) for i in result.issues] == [("scans", "path_escapes_root", IMAGE)]
    message = result.issues[0].message
    assert str(cohort.path(IMAGE)) in message and str((outside / "other.nii.gz").resolve()) in message
    assert "archive_roots" in result.issues[0].fix
    assert [s.kind for s in result.scans] == ["mask"]  # nothing read from the outside file
    assert not result.passed
    assert inspect(cohort, "P001").passed and inspect(cohort, "P003").passed


def test_a_mask_under_a_folder_linked_outside_data_root_is_refused_naming_the_folder(tiny_cohort):
    rows = default_rows()
    rows[1][f"mask__{SEQUENCE}__lesion"] = "linked/other_mask.nii.gz"
    cohort = tiny_cohort(rows)
    outside = outside_folder(cohort)
    shutil.rmtree(cohort.path("linked"))  # tiny_cohort wrote a real mask there
    cohort.path("linked").symlink_to(outside, target_is_directory=True)
    result = inspect(cohort, "P002")
    assert [(i.code, i.file) for i in result.issues] == [("path_escapes_root", "linked/other_mask.nii.gz")]
    assert f"{cohort.path('linked')} is a symbolic link to {outside.resolve()}" in result.issues[0].message
    assert [s.kind for s in result.scans] == ["image"]


def test_a_link_inside_data_root_is_followed(tiny_cohort):
    cohort = tiny_cohort()
    cohort.path(IMAGE).rename(cohort.path("images/real.nii.gz"))
    cohort.path(IMAGE).symlink_to(Path("real.nii.gz"))
    assert inspect(cohort, "P002").passed


def test_a_link_into_a_declared_archive_root_is_accepted(tiny_cohort, tmp_path):
    archive = tmp_path / "pacs_export"
    archive.mkdir()
    sitk.WriteImage(make_image(seed=7), str(archive / "P002.nii.gz"))
    cohort = tiny_cohort(spec=base_spec(archive_roots=[str(archive)]))
    cohort.path(IMAGE).unlink()
    cohort.path(IMAGE).symlink_to(archive / "P002.nii.gz")
    result = inspect(cohort, "P002")
    assert result.passed, result.issues
    assert result.scans[0].sha256 == file_sha256(archive / "P002.nii.gz")


def test_a_dicom_series_folder_with_one_slice_linked_outside_is_refused(tiny_cohort):
    rows = default_rows()
    rows[1][f"image__{SEQUENCE}"] = "dicom/P002"
    cohort = tiny_cohort(rows)
    series = cohort.path("dicom/P002")
    write_dicom_series(series, make_image(dtype=np.int16), series_number=1)
    outside = outside_folder(cohort)
    slice_file = sorted(series.iterdir())[3]
    slice_file.rename(outside / slice_file.name)
    slice_file.symlink_to(outside / slice_file.name)
    result = inspect(cohort, "P002")
    assert [(i.code, i.file) for i in result.issues] == [("path_escapes_root", "dicom/P002")]
    assert f"{slice_file} is a symbolic link" in result.issues[0].message
    assert [s.kind for s in result.scans] == ["mask"]


# ---------------------------------------------------------------- mask voxel values


def float_mask_with(*regions: tuple[tuple[slice, slice, slice], float]) -> sitk.Image:
    """A float32 lesion mask (label 1 in LESION_BOX) with some (box, value) regions overwritten."""
    data = sitk.GetArrayFromImage(make_mask()).astype(np.float32)
    for box, value in regions:
        data[box] = value
    return from_array(data)


HUNDRED_VOXELS = (slice(0, 1), slice(0, 10), slice(0, 10))  # outside LESION_BOX


@pytest.mark.parametrize("suffix", [".nii.gz", ".nrrd"])
def test_nan_voxels_in_a_float_mask_are_an_issue(tiny_cohort, suffix):
    rows = default_rows()
    rows[1][f"mask__{SEQUENCE}__lesion"] = f"masks/P002_lesion{suffix}"
    cohort = tiny_cohort(rows)
    cohort.write(f"masks/P002_lesion{suffix}", float_mask_with((HUNDRED_VOXELS, np.nan)))
    result = inspect(cohort, "P002")
    assert [(i.code, i.file) for i in result.issues] == [("nonfinite_voxels", f"masks/P002_lesion{suffix}")]
    assert result.issues[0].message == f"masks/P002_lesion{suffix}: 100 mask voxels are NaN or infinite"
    assert "integer labels" in result.issues[0].fix
    assert not result.passed and inspect(cohort, "P001").passed


def test_a_mask_with_labels_like_0_9999_is_not_integral(tiny_cohort):
    cohort = tiny_cohort()
    cohort.write(MASK, float_mask_with((LESION_BOX, 0.9999)))
    result = inspect(cohort, "P002")
    assert [(i.code, i.file) for i in result.issues] == [("mask_label_not_integral", MASK)]
    expected = f"{MASK}: {LESION_VOXELS} voxels have labels that are not whole numbers (e.g. 0.9999)"
    assert result.issues[0].message == expected
    assert "uint8" in result.issues[0].fix and "label 1" in result.issues[0].fix
    assert not result.passed


def test_a_float_mask_with_whole_labels_passes(tiny_cohort):
    cohort = tiny_cohort()
    cohort.write(MASK, float_mask_with())
    assert inspect(cohort, "P002").passed


def test_a_very_long_path_is_shortened_in_the_message_but_kept_whole_in_the_file_column(tiny_cohort):
    long_path = "/".join(["d" * 200] * 19) + "/scan.nii.gz"  # 3831 characters, each name within 255
    rows = default_rows()
    rows[1][f"image__{SEQUENCE}"] = long_path
    result = inspect(tiny_cohort(rows, write_files=False), "P002")
    missing = next(i for i in result.issues if i.file == long_path)
    assert missing.code == "missing_file"
    assert len(missing.message) < 400 and f"({len(long_path)} characters)" in missing.message


def test_an_image_given_as_mask_lists_a_few_of_its_labels_not_thousands(tiny_cohort):
    cohort = tiny_cohort()
    data = np.arange(np.prod(SIZE), dtype=np.int32).reshape(SIZE[::-1])  # every voxel its own label
    cohort.write(MASK, from_array(data))
    issue = next(i for i in inspect(cohort, "P002").issues if i.code == "unexpected_labels")
    assert len(issue.message) < 300, issue.message
    assert f"({np.prod(SIZE) - 2} labels)" in issue.message


# ---------------------------------------------------------------- data files named by a header

@pytest.mark.parametrize("header, write_header_as", [("images/P002.mhd", ".mhd"), ("images/P002.nrrd", ".nhdr")])
def test_a_header_naming_a_data_file_outside_data_root_is_refused(tiny_cohort, header, write_header_as):
    rows = default_rows()
    rows[1][f"image__{SEQUENCE}"] = header
    cohort = tiny_cohort(rows)
    outside = outside_folder(cohort)
    scratch = cohort.path(f"images/scratch{write_header_as}")
    sitk.WriteImage(make_image(seed=2), str(scratch), False)
    data = next(p for p in scratch.parent.iterdir() if p.suffix == ".raw")
    data.rename(outside / "voxels.raw")
    scratch.rename(cohort.path(header))
    text = cohort.path(header).read_text(encoding="latin-1")
    key = "ElementDataFile = " if write_header_as == ".mhd" else "data file: "
    lines = [f"{key}../../../outside/voxels.raw" if line.startswith(key) else line for line in text.splitlines()]
    cohort.path(header).write_text("\n".join(lines) + "\n", encoding="latin-1")
    result = inspect(cohort, "P002")
    assert [(i.code, i.file) for i in result.issues] == [("path_escapes_root", header)], result.issues
    assert f"names the data file {(outside / 'voxels.raw').resolve()}" in result.issues[0].message
    assert [s.kind for s in result.scans] == ["mask"]


def test_an_mhd_with_its_data_file_beside_it_passes(tiny_cohort):
    rows = default_rows()
    rows[1][f"image__{SEQUENCE}"] = "images/P002.mhd"
    cohort = tiny_cohort(rows)
    sitk.WriteImage(make_image(seed=2), str(cohort.path("images/P002.mhd")), False)
    assert inspect(cohort, "P002").passed
