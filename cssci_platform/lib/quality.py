"""Per-patient quality control of the files a manifest row points at.

Each problem becomes a `QcIssue` naming the patient, the file and the fix; nothing here raises for a
bad patient, so one broken file never stops the rest of the cohort.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Literal

import SimpleITK as sitk

from cssci_platform.lib.cohort import Cohort, ManifestIssue, MaskRef, PatientRecord
from cssci_platform.lib.imaging import (
    Geometry,
    GeometryTolerance,
    ImageReadError,
    file_sha256,
    geometry_mismatches,
    mask_label_counts,
    nonfinite_voxels_in_file,
    nonintegral_voxels,
    read_image,
)
from cssci_platform.lib.messages import shorten
from cssci_platform.lib.paths import PathEscapeError


@dataclass(frozen=True)
class QcIssue:
    patient_key: str
    stage: str
    code: str
    message: str
    fix: str
    file: str = ""
    severity: Literal["error", "warning"] = "error"

    def as_row(self) -> dict:
        return asdict(self)

    @classmethod
    def from_manifest(cls, issue: ManifestIssue) -> QcIssue:
        return cls(issue.patient_key, "manifest", issue.code, issue.describe(), issue.fix, "", issue.severity)


@dataclass(frozen=True)
class ScanInfo:
    patient_key: str
    sequence: str
    kind: Literal["image", "mask"]
    roi: str
    segmentation: str
    path: str
    sha256: str
    size: tuple[int, ...]
    spacing: tuple[float, ...]
    origin: tuple[float, ...]
    direction: tuple[float, ...]
    mask_voxels: int

    def as_row(self) -> dict:
        row = asdict(self)
        row.update({k: list(row[k]) for k in ("size", "spacing", "origin", "direction")})
        return row


@dataclass
class PatientInspection:
    patient_key: str
    scans: list[ScanInfo]
    issues: list[QcIssue]

    @property
    def passed(self) -> bool:
        return not any(issue.severity == "error" for issue in self.issues)


def inspect_patient(cohort: Cohort, record: PatientRecord, tolerance: GeometryTolerance) -> PatientInspection:
    """Read every image and mask of one patient and check them; never raises for bad files."""
    issues = [QcIssue.from_manifest(issue) for issue in record.issues]
    scans: list[ScanInfo] = []
    images: dict[str, sitk.Image] = {}
    for sequence, relative in record.images.items():
        opened = _open(cohort, record, relative, issues)
        if opened is None:
            continue
        path, image = opened
        images[sequence] = image
        issues += _image_issues(record.patient_key, relative, image, nonfinite_voxels_in_file(path, image))
        scans.append(_scan(record.patient_key, sequence, "image", "", "", relative, path, image, 0))
    for mask_ref in record.masks:
        opened = _open(cohort, record, mask_ref.path, issues)
        if opened is None:
            continue
        path, mask = opened
        issues += _mask_value_issues(record.patient_key, mask_ref, mask, nonfinite_voxels_in_file(path, mask), cohort)
        issues += _mask_issues(record.patient_key, mask_ref, mask, images.get(mask_ref.sequence), cohort, tolerance)
        voxels = mask_label_counts(mask).get(cohort.spec.mask_label, 0)
        scans.append(
            _scan(record.patient_key, mask_ref.sequence, "mask", mask_ref.roi, mask_ref.segmentation, mask_ref.path,
                  path, mask, voxels)
        )
    return PatientInspection(record.patient_key, scans, issues)


def _open(cohort: Cohort, record: PatientRecord, relative: str,
          issues: list[QcIssue]) -> tuple[Path, sitk.Image] | None:
    """(real path, image) of a manifest path, or None with an issue when it leaves the roots or cannot be read."""
    try:
        path = cohort.resolve(relative)
    except PathEscapeError as error:
        issues.append(QcIssue(record.patient_key, "scans", "path_escapes_root", f"{shorten(relative)}: {error.reason}",
                              error.fix, relative))
        return None
    try:
        return path, read_image(path)
    except ImageReadError as error:
        code = "missing_file" if error.reason == "file not found" else "unreadable_file"
        issues.append(QcIssue(record.patient_key, "scans", code, f"{shorten(relative)}: {error.reason}", error.fix,
                              relative))
        return None


def _scan(key: str, sequence: str, kind: str, roi: str, seg: str, relative: str, path: Path, image: sitk.Image,
          voxels: int) -> ScanInfo:
    geometry = Geometry.of(image)
    return ScanInfo(
        key, sequence, kind, roi, seg, relative, file_sha256(path),  # type: ignore[arg-type]
        geometry.size, geometry.spacing, geometry.origin, geometry.direction, voxels,
    )


def _image_issues(key: str, relative: str, image: sitk.Image, bad: int) -> list[QcIssue]:
    issues = []
    if image.GetDimension() != 3:
        issues.append(QcIssue(key, "scans", "not_3d",
                              f"{shorten(relative)}: image has {image.GetDimension()} dimensions, expected 3",
                              "export a 3D volume", relative))
    if bad:
        issues.append(QcIssue(key, "scans", "nonfinite_voxels",
                              f"{shorten(relative)}: {bad} voxels are NaN or infinite",
                              "re-export the image; check the reconstruction", relative))
    return issues


def _mask_value_issues(key: str, ref: MaskRef, mask: sitk.Image, nonfinite: int, cohort: Cohort) -> list[QcIssue]:
    """NaN/Inf voxels and labels that are not whole numbers: a mask must hold integer labels only."""
    label = cohort.spec.mask_label
    fix = f"save the mask with integer labels (a uint8 voxel type): 0 outside, label {label} for the {ref.roi}"
    issues = []
    if nonfinite:
        issues.append(QcIssue(key, "scans", "nonfinite_voxels",
                              f"{shorten(ref.path)}: {nonfinite} mask voxels are NaN or infinite", fix, ref.path))
    fractional = nonintegral_voxels(mask)
    if fractional.count:
        issues.append(QcIssue(key, "scans", "mask_label_not_integral",
                              f"{shorten(ref.path)}: {fractional.count} voxels have labels that are not whole numbers "
                              f"(e.g. {fractional.example:.6g})", fix, ref.path))
    return issues


def _mask_issues(key: str, ref: MaskRef, mask: sitk.Image, image: sitk.Image | None, cohort: Cohort,
                 tolerance: GeometryTolerance) -> list[QcIssue]:
    label = cohort.spec.mask_label
    counts = mask_label_counts(mask)
    issues = []
    if image is not None:
        for problem in geometry_mismatches(image, mask, tolerance):
            issues.append(QcIssue(key, "scans", "geometry_mismatch",
                                  f"{shorten(ref.path)} vs image__{ref.sequence}: {problem}",
                                  "export the mask on the image's grid (same size, spacing, origin, direction)",
                                  ref.path))
    if counts.get(label, 0) == 0:
        issues.append(QcIssue(key, "scans", "empty_mask",
                              f"{shorten(ref.path)}: no voxel has label {label} ({ref.roi}, {ref.segmentation})",
                              f"segment the {ref.roi} with label {label}", ref.path))
    other = sorted(set(counts) - {label})
    if other:
        voxels = sum(counts[v] for v in other)
        issues.append(QcIssue(key, "scans", "unexpected_labels",
                              f"{shorten(ref.path)}: labels {_label_list(other)} present besides {label} "
                              f"({voxels} voxels)",
                              f"keep only label {label} in the {ref.roi} mask or change mask_label in cohort.yaml",
                              ref.path))
    return issues


def _label_list(labels: list[int], shown: int = 10) -> str:
    """`[2, 3]`, or the first `shown` labels and their count when a mask holds many (an image given as mask)."""
    if len(labels) <= shown:
        return str(labels)
    return f"[{', '.join(map(str, labels[:shown]))}, …] ({len(labels)} labels)"


def resampled_mask_issues(patient_key: str, masks) -> list[QcIssue]:
    """Masks (from `preprocessing.MaskFile`) that lost every voxel when resampled: a thin ROI can vanish."""
    issues = []
    for mask in masks:
        counts = mask_label_counts(read_image(Path(mask.mask_path)))
        if not counts:
            issues.append(QcIssue(
                patient_key, "preprocess", "empty_roi_after_resampling",
                f"{mask.sequence} {mask.roi} ({mask.segmentation}) has no voxel left after resampling",
                "use a finer spacing_mm in the preprocessing config, or check the segmentation", mask.mask_path))
    return issues
