"""Shared helpers for the library unit tests: tiny synthetic volumes and a tiny cohort on disk.

`tiny_cohort` is a factory fixture that writes `cohort.yaml`, `patients.csv` (or `.parquet`) and one small
NIfTI image + lesion mask per patient under `tmp_path`. Its keyword arguments break things on purpose
(change the YAML, drop or add columns, give raw table text); tests overwrite single files afterwards with
`TinyCohort.write` to plant file-level problems. Volumes are 20 x 24 x 16 voxels, so everything is fast.
"""

from __future__ import annotations

import csv
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

import numpy as np
import polars as pl
import pytest
import SimpleITK as sitk
import yaml

from cssci_platform.lib.cohort import Cohort, load_cohort

SEQUENCE = "sag_T2"
SIZE = (20, 24, 16)  # SimpleITK order (x, y, z); numpy arrays are (z, y, x)
SPACING = (0.8, 0.8, 1.5)
ORIGIN = (-8.0, -9.6, -12.0)
IDENTITY = (1.0, 0.0, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0, 1.0)
LESION_BOX = (slice(5, 11), slice(8, 16), slice(6, 14))  # numpy (z, y, x): 6 x 8 x 8 = 384 voxels
LESION_VOXELS = 6 * 8 * 8


def make_image(
    size: Sequence[int] = SIZE,
    spacing: Sequence[float] = SPACING,
    origin: Sequence[float] = ORIGIN,
    direction: Sequence[float] = IDENTITY,
    seed: int = 0,
    dtype=np.float32,
) -> sitk.Image:
    """Noisy background (~100) with a brighter block (~300) where the lesion mask sits."""
    rng = np.random.default_rng(seed)
    array = rng.normal(100.0, 10.0, tuple(size)[::-1])
    array[LESION_BOX] += 200.0
    return from_array(array.astype(dtype), spacing, origin, direction)


def make_mask(
    size: Sequence[int] = SIZE,
    spacing: Sequence[float] = SPACING,
    origin: Sequence[float] = ORIGIN,
    direction: Sequence[float] = IDENTITY,
    labels: Mapping[int, tuple[slice, slice, slice]] | None = None,
) -> sitk.Image:
    """uint8 mask; by default label 1 fills LESION_BOX."""
    array = np.zeros(tuple(size)[::-1], np.uint8)
    for label, box in (labels if labels is not None else {1: LESION_BOX}).items():
        array[box] = label
    return from_array(array, spacing, origin, direction)


def from_array(array: np.ndarray, spacing=SPACING, origin=ORIGIN, direction=IDENTITY) -> sitk.Image:
    image = sitk.GetImageFromArray(array)
    image.SetSpacing(tuple(float(s) for s in spacing))
    image.SetOrigin(tuple(float(o) for o in origin))
    image.SetDirection(tuple(float(d) for d in direction))
    return image


def base_spec(**changes) -> dict:
    """The cohort.yaml mapping; keyword arguments replace top-level keys (value None removes the key)."""
    spec = {
        "manifest_version": 1,
        "name": "tiny_cohort",
        "table": "patients.csv",
        "data_root": "data",
        "centers": ["center_A", "center_B"],
        "sequences": [SEQUENCE],
        "rois": ["lesion", "cord"],
        "mask_label": 1,
        "clinical": {
            "age": {"type": "continuous"},
            "diabetes": {"type": "binary"},
            "asia": {"type": "categorical", "levels": ["A", "B", "C", "D"]},
        },
        "outcomes": {"good_outcome": {"type": "binary"}},
    }
    for key, value in changes.items():
        if value is None:
            spec.pop(key, None)
        else:
            spec[key] = value
    return spec


def base_row(patient_id: str, **changes: str | None) -> dict[str, str | None]:
    """A valid patient row; keyword arguments replace (or add) cells, None writes an empty cell."""
    row: dict[str, str | None] = {
        "patient_id": patient_id,
        "center": "center_A",
        "cohort": "development",
        f"image__{SEQUENCE}": f"images/{patient_id}_{SEQUENCE}.nii.gz",
        f"mask__{SEQUENCE}__lesion": f"masks/{patient_id}_{SEQUENCE}_lesion.nii.gz",
        "age": "54.5",
        "diabetes": "0",
        "asia": "C",
        "good_outcome": "1",
        "outcome_date": "2024-03-01",
    }
    row.update(changes)
    return row


def default_rows(n: int = 3) -> list[dict[str, str | None]]:
    return [base_row(f"P{i:03d}") for i in range(1, n + 1)]


def write_csv(path: Path, rows: Sequence[Mapping[str, str | None]], columns: Sequence[str] | None = None) -> None:
    columns = list(columns) if columns is not None else _union_columns(rows)
    with open(path, "w", newline="", encoding="utf-8") as stream:
        writer = csv.writer(stream, lineterminator="\n")
        writer.writerow(columns)
        for row in rows:
            writer.writerow(["" if row.get(c) is None else row.get(c) for c in columns])


def _union_columns(rows: Sequence[Mapping]) -> list[str]:
    columns: list[str] = []
    for row in rows:
        columns += [c for c in row if c not in columns]
    return columns


def _is_plain_relative(value: str | None) -> bool:
    if not value:
        return False
    posix = PurePosixPath(value)
    return not posix.is_absolute() and ".." not in posix.parts and has_nifti_suffix(value)


def has_nifti_suffix(value: str) -> bool:
    return value.endswith((".nii", ".nii.gz"))


@dataclass
class TinyCohort:
    root: Path
    manifest: Path
    table: Path
    data_root: Path
    rows: list[dict[str, str | None]]

    def load(self) -> Cohort:
        return load_cohort(self.manifest)

    def path(self, relative: str) -> Path:
        return self.data_root / relative

    def image_path(self, patient_id: str) -> Path:
        return self.path(f"images/{patient_id}_{SEQUENCE}.nii.gz")

    def mask_path(self, patient_id: str, roi: str = "lesion") -> Path:
        return self.path(f"masks/{patient_id}_{SEQUENCE}_{roi}.nii.gz")

    def write(self, relative: str | Path, image: sitk.Image) -> Path:
        path = self.path(str(relative)) if not Path(relative).is_absolute() else Path(relative)
        path.parent.mkdir(parents=True, exist_ok=True)
        sitk.WriteImage(image, str(path), useCompression=True)
        return path


@pytest.fixture
def tiny_cohort(tmp_path: Path) -> Callable[..., TinyCohort]:
    """Factory: `tiny_cohort(rows=None, spec=None, ...)` writes a cohort and returns a `TinyCohort`.

    rows: patient rows (default three valid patients P001-P003); spec: the YAML mapping (default
    `base_spec()`); yaml_text: raw YAML instead of `spec`; columns: explicit column order (cells of
    missing keys are empty); drop_columns: header columns to leave out; table_text: raw table text;
    table_format: "csv" or "parquet"; write_files: write an image and mask for every plain relative
    path in the rows; folder: sub-folder of tmp_path (several cohorts per test)."""

    def build(
        rows: Sequence[Mapping[str, str | None]] | None = None,
        *,
        spec: dict | None = None,
        yaml_text: str | None = None,
        columns: Sequence[str] | None = None,
        drop_columns: Sequence[str] = (),
        table_text: str | None = None,
        table_format: str = "csv",
        write_files: bool = True,
        folder: str = "cohort",
    ) -> TinyCohort:
        root = tmp_path / folder
        root.mkdir(parents=True, exist_ok=True)
        rows = [dict(r) for r in (rows if rows is not None else default_rows())]
        spec = dict(spec if spec is not None else base_spec())
        if table_format == "parquet" and yaml_text is None:
            spec["table"] = "patients.parquet"
        manifest = root / "cohort.yaml"
        manifest.write_text(
            yaml_text if yaml_text is not None else yaml.safe_dump(spec, sort_keys=False), encoding="utf-8"
        )
        table = root / str(spec.get("table", "patients.csv"))
        cols = [c for c in (columns if columns is not None else _union_columns(rows)) if c not in drop_columns]
        if table_text is not None:
            table.write_text(table_text, encoding="utf-8")
        elif table_format == "parquet":
            frame = pl.DataFrame({c: [r.get(c) for r in rows] for c in cols}, schema={c: pl.String for c in cols})
            frame.write_parquet(table)
        else:
            write_csv(table, rows, cols)
        data_root = root / str(spec.get("data_root", "."))
        data_root.mkdir(parents=True, exist_ok=True)
        cohort = TinyCohort(root, manifest, table, data_root, rows)
        if write_files:
            for number, row in enumerate(rows):
                for column, value in row.items():
                    if not _is_plain_relative(value) or cohort.path(str(value)).exists():
                        continue
                    if column.startswith("image__"):
                        cohort.write(str(value), make_image(seed=number))
                    elif column.startswith("mask__"):
                        cohort.write(str(value), make_mask())
        return cohort

    return build
