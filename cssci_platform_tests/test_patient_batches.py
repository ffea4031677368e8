"""How a command cuts its patients into `patient_batch_job` runs: one wave of runs (each run's start-up paid once per
worker, not twice), balanced by each patient's expected work (its image and mask file sizes), at most MAX_BATCH
patients per run."""

from __future__ import annotations

from pathlib import Path

import pytest

from cssci_platform.cli.patient_runs import (
    MASK_BYTES_UNIT,
    MAX_BATCH,
    WORK_PER_IMAGE_MB,
    WORK_PER_MASK,
    WORK_PER_PATIENT,
    patient_batches,
    patient_work,
)
from cssci_platform.lib.cohort import load_cohort
from cssci_platform.lib.synthetic import write_sci_cohort


def _flat(batches: list[list[str]]) -> list[str]:
    return sorted(key for batch in batches for key in batch)


def test_a_small_cohort_is_one_run_per_worker() -> None:
    keys = [f"P{i:02d}" for i in range(30)]
    batches = patient_batches(keys, workers=2)
    assert len(batches) == 2 and _flat(batches) == keys
    assert sorted(map(len, batches)) == [15, 15]
    assert all(batch == sorted(batch) for batch in batches)  # each run takes its patients in key order


def test_runs_are_balanced_by_work_not_by_count() -> None:
    work = {"big": 100, "a": 30, "b": 30, "c": 20, "d": 20}
    batches = patient_batches(sorted(work), workers=2, work=work)
    assert sorted(sorted(batch) for batch in batches) == [["a", "b", "c", "d"], ["big"]]


def test_a_large_cohort_keeps_runs_under_max_batch_and_fewer_patients_than_workers_get_a_run_each() -> None:
    keys = [f"P{i:03d}" for i in range(200)]
    batches = patient_batches(keys, workers=2)
    assert len(batches) == 8 and max(map(len, batches)) <= MAX_BATCH and _flat(batches) == keys
    assert patient_batches(["A"], workers=4) == [["A"]]
    assert patient_batches([], workers=2) == []
    assert [len(b) for b in patient_batches(keys[:7], workers=2, per_run=3)] == [3, 3, 1]  # --per-run is as asked


def test_a_patients_work_is_a_fixed_part_its_image_megabytes_and_its_squared_mask_sizes(tmp_path: Path) -> None:
    cohort = load_cohort(write_sci_cohort(tmp_path / "cohort", n_development=2, n_prospective=0, seed=3))
    key, record = sorted(cohort.patients.items())[0]
    images = [cohort.resolve(path).stat().st_size for path in record.images.values()]
    masks = [cohort.resolve(mask.path).stat().st_size for mask in record.masks]
    expected = (WORK_PER_PATIENT + WORK_PER_IMAGE_MB * sum(images) / 1e6
                + WORK_PER_MASK * sum((size / MASK_BYTES_UNIT) ** 2 for size in masks))
    assert patient_work(cohort, record) == pytest.approx(expected) and sum(masks) > 0
    cohort.resolve(record.masks[0].path).unlink()  # a missing file counts nothing (QC will name it)
    assert patient_work(cohort, record) == pytest.approx(expected - WORK_PER_MASK * (masks[0] / MASK_BYTES_UNIT) ** 2)


def _sphere_cohort(folder: Path, radii: dict[str, int]) -> Path:
    """Patients with the same 128^3 noise image (2 MB) and one spherical tumour mask of the given radius (voxels)."""
    import numpy as np
    import SimpleITK as sitk
    import yaml

    grid = np.indices((128, 128, 128)) - 64
    noise = np.random.default_rng(0).integers(0, 255, (128, 128, 128), dtype=np.uint8)
    rows = ["patient_id,center,cohort,image__T1,mask__T1__tumour"]
    for key, radius in radii.items():
        (folder / key).mkdir(parents=True)
        sitk.WriteImage(sitk.GetImageFromArray(noise), str(folder / key / "image.nii.gz"))
        sphere = ((grid ** 2).sum(axis=0) <= radius ** 2).astype(np.uint8)
        sitk.WriteImage(sitk.GetImageFromArray(sphere), str(folder / key / "mask.nii.gz"))
        rows.append(f"{key},A,development,{key}/image.nii.gz,{key}/mask.nii.gz")
    (folder / "patients.csv").write_text("\n".join(rows) + "\n", encoding="utf-8")
    spec = {"manifest_version": 1, "name": "spheres", "table": "patients.csv", "data_root": ".", "centers": ["A"],
            "sequences": ["T1"], "rois": ["tumour"], "mask_label": 1}
    (folder / "cohort.yaml").write_text(yaml.safe_dump(spec), encoding="utf-8")
    return folder / "cohort.yaml"


def test_a_patient_with_a_large_tumour_weighs_more_than_one_with_a_large_image(tmp_path: Path) -> None:
    """Radiomics time grows with the ROI, not with the image file: on the 32 real sarcoma MRIs the largest tumour
    took 44 s and the next 10 s with images of about the same size, and balancing runs by file bytes left one worker
    idle for a third of the stage (benchmarks/RESULTS.md, session 16). A patient's work follows its masks."""
    cohort = load_cohort(_sphere_cohort(tmp_path, {"big": 48, **{f"small{i}": 8 for i in range(5)}}))
    work = {key: patient_work(cohort, record) for key, record in cohort.patients.items()}
    assert work["big"] > 3 * max(work[f"small{i}"] for i in range(5))
    batches = patient_batches(sorted(work), workers=2, work=work)
    with_big, other = sorted(batches, key=lambda batch: "big" not in batch)
    assert "big" in with_big and len(with_big) < len(other)  # by file bytes the runs got 3 and 3
