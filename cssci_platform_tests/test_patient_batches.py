"""How a command cuts its patients into `patient_batch_job` runs: one wave of runs (each run's start-up paid once per
worker, not twice), balanced by each patient's image and mask bytes, at most MAX_BATCH patients per run."""

from __future__ import annotations

from pathlib import Path

from cssci_platform.cli.patient_runs import MAX_BATCH, patient_batches, patient_work
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


def test_a_patients_work_is_the_bytes_of_its_images_and_masks(tmp_path: Path) -> None:
    cohort = load_cohort(write_sci_cohort(tmp_path / "cohort", n_development=2, n_prospective=0, seed=3))
    key, record = sorted(cohort.patients.items())[0]
    files = [*record.images.values(), *(mask.path for mask in record.masks)]
    assert patient_work(cohort, record) == sum(cohort.resolve(path).stat().st_size for path in files) > 0
    cohort.resolve(record.masks[0].path).unlink()  # a missing file counts nothing (QC will name it)
    assert patient_work(cohort, record) == sum(cohort.resolve(p).stat().st_size for p in files[:-len(record.masks)]
                                               + [m.path for m in record.masks[1:]])
