"""The inbox as a hospital runs it for months: content digests, half-copied series, links, corrections, follow-ups."""

import os
import shutil
import time
from pathlib import Path

import polars as pl
import pytest
import yaml

from cssci_platform.lib import inbox
from cssci_platform.lib.cohort import load_cohort
from cssci_platform.lib.inbox import admit, read_followup, scan_arrivals
from cssci_platform.lib.synthetic import write_sci_cohort


@pytest.fixture(scope="module")
def template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("inbox_template")
    write_sci_cohort(root / "cohort", n_development=3, n_prospective=0, seed=21, second_rater_fraction=0)
    spec = yaml.safe_load((root / "cohort" / "cohort.yaml").read_text(encoding="utf-8"))
    (root / "cohort" / "cohort.yaml").write_text(
        yaml.safe_dump({**spec, "inbox": "inbox"}, sort_keys=False), encoding="utf-8"
    )
    write_sci_cohort(root / "source", n_development=1, n_prospective=2, seed=22)
    return root


@pytest.fixture
def hospital(template: Path, tmp_path: Path) -> Path:
    shutil.copytree(template, tmp_path / "h")
    return tmp_path / "h"


def _source_row(hospital: Path, index: int, new_id: str) -> tuple[str, dict]:
    source = hospital / "source"
    patient_id = sorted(load_cohort(source / "cohort.yaml").patients)[index]
    row = (
        pl.read_csv(source / "patients.csv", infer_schema=False)
        .filter(pl.col("patient_id") == patient_id)
        .row(0, named=True)
    )
    row = {k: (Path(v).name if k.startswith(("image__", "mask__")) and v else v) for k, v in row.items()}
    return patient_id, {**row, "patient_id": new_id, "good_outcome": None, "outcome_date": None}


def drop(hospital: Path, new_id: str, index: int = 0, ready: bool = True, **changes: str) -> Path:
    patient_id, row = _source_row(hospital, index, new_id)
    folder = hospital / "cohort" / "inbox" / new_id
    shutil.copytree(hospital / "source" / "images" / patient_id, folder)
    write_row(folder, {**row, **changes})
    if ready:
        (folder / "READY").touch()
    return folder


def write_row(folder: Path, row: dict) -> None:
    pl.DataFrame([row], schema={k: pl.String for k in row}).write_csv(folder / "patient.csv")


def arrivals(hospital: Path, stable_seconds: float = 60) -> dict:
    return {a.patient_id: a for a in scan_arrivals(load_cohort(hospital / "cohort" / "cohort.yaml"), stable_seconds)}


def test_touching_an_arrival_without_changing_content_keeps_its_digest(hospital: Path) -> None:
    folder = drop(hospital, "NEW-1")
    before = arrivals(hospital)["NEW-1"].digest
    later = time.time() + 5
    for path in folder.rglob("*"):
        os.utime(path, (later, later))
    assert arrivals(hospital)["NEW-1"].digest == before
    image = next(folder.glob("*.nii*"))
    image.write_bytes(image.read_bytes() + b"\0")  # a content change is a new digest
    assert arrivals(hospital)["NEW-1"].digest != before


def test_a_dicom_series_with_a_slice_still_being_written_is_not_complete(hospital: Path) -> None:
    folder = drop(hospital, "NEW-2", ready=False)
    _, row = _source_row(hospital, 0, "NEW-2")
    image_column = next(c for c in row if c.startswith("image__"))
    series = folder / "series"
    series.mkdir()
    shutil.move(folder / row[image_column], series / "slice_001.dcm")  # stands in for a series: a folder of files
    write_row(folder, {**row, image_column: "series"})
    past = time.time() - 600
    for path in [*folder.rglob("*"), folder]:
        os.utime(path, (past, past))
    assert arrivals(hospital)["NEW-2"].status == "complete"
    digest = arrivals(hospital)["NEW-2"].digest
    (series / "slice_002.dcm").write_bytes(b"half written")  # a new slice: the folder's own mtime is reset below
    os.utime(series, (past, past))
    state = arrivals(hospital)["NEW-2"]
    assert state.status == "incomplete" and "slice_002.dcm" in " ".join(state.reasons)
    os.utime(series / "slice_002.dcm", (past, past))
    assert arrivals(hospital)["NEW-2"].digest != digest  # the series' content is part of the digest


def test_an_arrival_folder_that_is_a_link_is_refused(hospital: Path, tmp_path: Path) -> None:
    outside = drop(hospital, "ELSEWHERE")
    shutil.move(outside, tmp_path / "outside")
    (hospital / "cohort" / "inbox" / "LINKED-1").symlink_to(tmp_path / "outside", target_is_directory=True)
    write_row(tmp_path / "outside", {**_source_row(hospital, 0, "LINKED-1")[1]})
    state = arrivals(hospital)["LINKED-1"]
    assert state.status == "malformed" and "link" in " ".join(state.reasons)


def test_an_arrival_linking_to_another_patients_files_is_refused(hospital: Path) -> None:
    drop(hospital, "NEW-3", index=0)
    folder = drop(hospital, "NEW-4", index=1)
    _, row = _source_row(hospital, 1, "NEW-4")
    image_column = next(c for c in row if c.startswith("image__"))
    (folder / row[image_column]).unlink()
    other = hospital / "cohort" / "inbox" / "NEW-3" / _source_row(hospital, 0, "NEW-3")[1][image_column]
    (folder / row[image_column]).symlink_to(other)
    state = arrivals(hospital)["NEW-4"]
    assert state.status == "malformed"
    assert any(row[image_column] in reason and "outside" in reason for reason in state.reasons)


def test_a_link_into_a_declared_archive_root_is_accepted(hospital: Path, tmp_path: Path) -> None:
    archive = tmp_path / "pacs_export"
    archive.mkdir()
    folder = drop(hospital, "NEW-5")
    _, row = _source_row(hospital, 0, "NEW-5")
    image_column = next(c for c in row if c.startswith("image__"))
    shutil.move(folder / row[image_column], archive / row[image_column])
    (folder / row[image_column]).symlink_to(archive / row[image_column])
    assert arrivals(hospital)["NEW-5"].status == "malformed"
    manifest = hospital / "cohort" / "cohort.yaml"
    spec = yaml.safe_load(manifest.read_text(encoding="utf-8"))
    manifest.write_text(yaml.safe_dump({**spec, "archive_roots": [str(archive)]}, sort_keys=False), encoding="utf-8")
    assert arrivals(hospital)["NEW-5"].status == "complete"


def test_a_huge_cell_is_quoted_short_in_the_arrival_reason(hospital: Path) -> None:
    drop(hospital, "BIG-1", age="9" * 10_000_000)
    state = arrivals(hospital)["BIG-1"]
    reason = "; ".join(state.reasons)
    assert state.status == "malformed" and len(reason) < 2_000 and "10000000 characters" in reason


def test_a_corrected_admitted_arrival_updates_the_admitted_row_with_an_audit(hospital: Path) -> None:
    folder = drop(hospital, "NEW-6", age="29")
    cohort = load_cohort(hospital / "cohort" / "cohort.yaml")
    admit(cohort, [a for a in scan_arrivals(cohort, 60) if a.status == "complete"])
    assert inbox.admitted_patient_ids(load_cohort(hospital / "cohort" / "cohort.yaml")) == {"NEW-6"}
    first = arrivals(hospital)["NEW-6"]
    assert first.status == "admitted" and first.changes == []

    _, row = _source_row(hospital, 0, "NEW-6")
    write_row(folder, {**row, "age": "77"})
    corrected = arrivals(hospital)["NEW-6"]
    assert corrected.status == "corrected" and corrected.digest != first.digest
    assert [(c.column, c.old, c.new) for c in corrected.changes] == [("age", "29", "77")]
    cohort = load_cohort(hospital / "cohort" / "cohort.yaml")
    admit(cohort, [corrected])
    cohort = load_cohort(hospital / "cohort" / "cohort.yaml")
    assert cohort.patients["NEW-6"].clinical["age"] == 77
    assert len(cohort.patients) == 4 and not cohort.patients["NEW-6"].issues
    assert arrivals(hospital)["NEW-6"].status == "admitted"


def test_impossible_follow_up_dates_are_rejected_with_their_line(hospital: Path) -> None:
    cohort_dir = hospital / "cohort"
    patients = sorted(load_cohort(cohort_dir / "cohort.yaml").patients)
    path = cohort_dir / "june.csv"
    pl.DataFrame(
        {
            "patient_id": patients[:2],
            "outcome": ["good_outcome"] * 2,
            "value": ["1", "0"],
            "outcome_date": ["2026-06-01", "2025-13-45"],
        }
    ).write_csv(path)
    rows, problems = read_followup(path, load_cohort(cohort_dir / "cohort.yaml"))
    assert rows["patient_key"].to_list() == [patients[0]] and rows["line"].to_list() == [2]
    assert len(problems) == 1 and "line 3" in problems[0] and "2025-13-45" in problems[0]
