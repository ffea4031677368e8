"""How a command cuts its patients into waves of `patient_batch_job` runs: a run per worker (each run's start-up
paid once per worker, not twice), all given the wave's patients largest expected work first (its image and mask file
sizes), so the runs take the large patients first and end together; at most MAX_BATCH patients per run of a wave."""

from __future__ import annotations

from pathlib import Path

import pytest

from cssci_platform.cli.patient_runs import (
    MASK_BYTES_UNIT,
    MAX_BATCH,
    WORK_PER_IMAGE_MB,
    WORK_PER_MASK,
    WORK_PER_PATIENT,
    Wave,
    patient_waves,
    patient_work,
)
from cssci_platform.lib.cohort import load_cohort
from cssci_platform.lib.synthetic import write_sci_cohort


def _flat(waves: list[Wave]) -> list[str]:
    return sorted(key for wave in waves for key in wave.patients)


def test_a_small_cohort_is_one_wave_of_a_run_per_worker() -> None:
    keys = [f"P{i:02d}" for i in range(30)]
    assert patient_waves(keys, workers=2) == [Wave(keys, 2)]  # equal work: the given order


def test_a_wave_takes_its_patients_largest_work_first() -> None:
    work = {"a": 30, "big": 100, "b": 30, "c": 20, "d": 20}
    assert patient_waves(sorted(work), workers=2, work=work) == [Wave(["big", "a", "b", "c", "d"], 2)]


def test_a_large_cohort_is_cut_into_waves_and_fewer_patients_than_workers_get_a_run_each() -> None:
    keys = [f"P{i:03d}" for i in range(200)]
    waves = patient_waves(keys, workers=2)
    assert [(len(w.patients), w.runs) for w in waves] == [(2 * MAX_BATCH, 2)] * 4 and _flat(waves) == keys
    assert patient_waves(["A"], workers=4) == [Wave(["A"], 1)]
    assert patient_waves([], workers=2) == []
    assert patient_waves(keys[:7], workers=2, per_run=3) == [  # --per-run is as asked: runs of its own
        Wave(keys[:3], 1), Wave(keys[3:6], 1), Wave(keys[6:7], 1)]


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
    idle for a third of the stage (benchmarks/RESULTS.md, session 16). A patient's work follows its masks, and the
    wave's runs take the large tumour first (had it come last, one worker would work through it alone)."""
    cohort = load_cohort(_sphere_cohort(tmp_path, {"z_big": 48, **{f"small{i}": 8 for i in range(5)}}))
    work = {key: patient_work(cohort, record) for key, record in cohort.patients.items()}
    assert work["z_big"] > 3 * max(work[f"small{i}"] for i in range(5))
    [wave] = patient_waves(sorted(work), workers=2, work=work)
    assert wave.patients[0] == "z_big"  # last in key order
