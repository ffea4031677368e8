"""The prospective inbox: new patients arrive as folders, follow-up outcomes as CSV files.

Layout under ``<data_root>/<inbox>/``::

    <patient_id>/patient.csv | patient.json   one manifest row (cohort is always prospective); image and
                                              mask paths relative to the patient's folder
    <patient_id>/...                          the images and masks it names
    <patient_id>/READY                        optional: complete now (otherwise: when every file has been
                                              unchanged for `stable_seconds`)
    followup/*.csv                            patient_id, outcome, value, outcome_date

A half-copied series is never read: an arrival is complete only when its row and every file it names
exist and (READY or) no file changed for `stable_seconds`. Admitted rows go to the cohort's
`admitted_table` with paths rewritten relative to data_root.
"""

from __future__ import annotations

import hashlib
import json
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import polars as pl

from cssci_platform.lib.cohort import Cohort, validate_row

ROW_FILES = ("patient.csv", "patient.json")
READY_MARKER = "READY"
FOLLOWUP_FOLDER = "followup"
FOLLOWUP_COLUMNS = ("patient_id", "outcome", "value", "outcome_date")
ArrivalStatus = Literal["complete", "incomplete", "malformed", "duplicate", "admitted"]


@dataclass
class Arrival:
    patient_id: str
    folder: Path
    status: ArrivalStatus
    reasons: list[str] = field(default_factory=list)
    row: dict[str, str | None] = field(default_factory=dict)  # paths relative to data_root once complete
    digest: str = ""


def inbox_folder(cohort: Cohort) -> Path | None:
    return cohort.data_root / cohort.spec.inbox if cohort.spec.inbox else None


def scan_arrivals(cohort: Cohort, stable_seconds: float, now: float | None = None) -> list[Arrival]:
    """Every patient folder of the inbox with its status; nothing is read from an incomplete arrival's images."""
    folder = inbox_folder(cohort)
    if folder is None or not folder.is_dir():
        return []
    now = time.time() if now is None else now
    return [_arrival(cohort, path, stable_seconds, now) for path in sorted(folder.iterdir())
            if path.is_dir() and path.name != FOLLOWUP_FOLDER]


def admit(cohort: Cohort, arrivals: list[Arrival]) -> Path:
    """Append complete arrivals' rows to the admitted table (atomically rewritten); returns its path."""
    path = cohort.manifest_path.parent / cohort.spec.admitted_table
    rows = [a.row for a in arrivals]
    existing = pl.read_csv(path, infer_schema=False) if path.is_file() else None
    incoming = pl.DataFrame(rows, schema={k: pl.String for k in rows[0]}) if rows else None
    frames = [f for f in (existing, incoming) if f is not None]
    if not frames:
        return path
    temporary = path.with_suffix(".tmp")
    pl.concat(frames, how="diagonal_relaxed").write_csv(temporary)
    os.replace(temporary, path)
    return path


def _arrival(cohort: Cohort, folder: Path, stable_seconds: float, now: float) -> Arrival:
    arrival = Arrival(folder.name, folder, "incomplete")
    row_file = next((folder / name for name in ROW_FILES if (folder / name).is_file()), None)
    if row_file is None:
        arrival.reasons.append(f"no {' or '.join(ROW_FILES)} in {folder}")
        return arrival
    try:
        row = read_arrival_row(row_file)
    except (ValueError, OSError, pl.exceptions.PolarsError) as error:
        return _malformed(arrival, f"{row_file.name}: {error}")
    if row.get("patient_id") != folder.name:
        return _malformed(arrival, f"{row_file.name} names patient_id {row.get('patient_id')!r} but the folder is "
                                   f"'{folder.name}'; name the folder after the patient")
    try:
        files = _referenced_files(row)
    except ValueError as error:
        return _malformed(arrival, str(error))
    missing = [name for name in files if not (folder / name).exists()]
    if missing:
        arrival.reasons.append(f"waiting for {', '.join(missing)}")
        return arrival
    newest = max((folder / name).stat().st_mtime for name in [*files, row_file.name])
    if not (folder / READY_MARKER).exists() and now - newest < stable_seconds:
        arrival.reasons.append(f"files changed {now - newest:.0f} s ago; waiting until stable for {stable_seconds:.0f} s "
                               f"(or add a {READY_MARKER} file)")
        return arrival
    relative = folder.relative_to(cohort.data_root).as_posix()
    row = {**row, "cohort": "prospective", **{column: f"{relative}/{row[column]}" for column in _path_columns(row)}}
    record, problems = validate_row(cohort.spec, row)
    if problems or record is None:
        return _malformed(arrival, *problems)
    arrival.status, arrival.row = "complete", row
    arrival.digest = _digest(folder, [*files, row_file.name])
    if folder.name in cohort.patients:
        arrival.status = "admitted" if _already_admitted(cohort, folder.name, relative) else "duplicate"
        if arrival.status == "duplicate":
            arrival.reasons.append(f"patient_id '{folder.name}' already exists in the cohort (line "
                                   f"{cohort.patients[folder.name].line}); a new arrival needs a new id")
    return arrival


def read_arrival_row(path: Path) -> dict[str, str | None]:
    if path.suffix == ".json":
        raw = json.loads(path.read_text(encoding="utf-8"))
        if not isinstance(raw, dict):
            raise ValueError("expected one JSON object (column -> value)")
        return {str(k): None if v is None else str(v) for k, v in raw.items()}
    table = pl.read_csv(path, infer_schema=False)
    if table.height != 1:
        raise ValueError(f"expected exactly one patient row, found {table.height}")
    return table.row(0, named=True)


def _path_columns(row: dict[str, str | None]) -> list[str]:
    return [c for c, v in row.items() if c.startswith(("image__", "mask__")) and v]


def _referenced_files(row: dict[str, str | None]) -> list[str]:
    files = [str(row[c]) for c in _path_columns(row)]
    for name in files:
        if Path(name).is_absolute() or ".." in Path(name).parts:
            raise ValueError(f"path '{name}' must be relative to the patient's folder")
    return files


def _malformed(arrival: Arrival, *reasons: str) -> Arrival:
    arrival.status = "malformed"
    arrival.reasons.extend(reasons)
    return arrival


def _digest(folder: Path, names: list[str]) -> str:
    digest = hashlib.sha256()
    for name in sorted(set(names)):
        stat = (folder / name).stat()
        digest.update(f"{name}|{stat.st_size}|{stat.st_mtime_ns}".encode())
    return digest.hexdigest()[:16]


def _already_admitted(cohort: Cohort, patient_id: str, relative: str) -> bool:
    return any(path.startswith(relative + "/") for path in cohort.patients[patient_id].images.values())


def followup_files(cohort: Cohort) -> list[Path]:
    folder = inbox_folder(cohort)
    return sorted((folder / FOLLOWUP_FOLDER).glob("*.csv")) if folder and (folder / FOLLOWUP_FOLDER).is_dir() else []


def file_digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()[:16]


def read_followup(path: Path, cohort: Cohort) -> tuple[pl.DataFrame, list[str]]:
    """Valid outcome rows (patient_key, outcome, value, outcome_date) and one problem per rejected row."""
    table = pl.read_csv(path, infer_schema=False)
    missing = [c for c in FOLLOWUP_COLUMNS if c not in table.columns]
    if missing:
        return pl.DataFrame(), [f"{path.name}: missing columns {missing}; expected {list(FOLLOWUP_COLUMNS)}"]
    good, problems = [], []
    for line, row in enumerate(table.iter_rows(named=True), start=2):
        problem = _followup_problem(row, cohort)
        if problem:
            problems.append(f"{path.name} line {line}: {problem}")
        else:
            good.append({"patient_key": row["patient_id"], "outcome": row["outcome"], "value": row["value"],
                         "outcome_date": row["outcome_date"]})
    return pl.DataFrame(good, schema={c: pl.String for c in ("patient_key", "outcome", "value", "outcome_date")}), problems


def _followup_problem(row: dict, cohort: Cohort) -> str | None:
    if row["patient_id"] not in cohort.patients:
        return f"patient '{row['patient_id']}' is not in the cohort (check the id, or wait for its arrival)"
    variable = cohort.spec.outcomes.get(row["outcome"])
    if variable is None:
        return f"outcome '{row['outcome']}' is not declared (outcomes: {list(cohort.spec.outcomes)})"
    if variable.type == "continuous":
        try:
            float(row["value"])
        except (TypeError, ValueError):
            return f"value {row['value']!r} of '{row['outcome']}' is not a number (the outcome is continuous)"
        return None
    allowed = variable.levels or ["0", "1"]
    if row["value"] not in allowed:
        return f"value {row['value']!r} of '{row['outcome']}' is not one of {allowed}"
    return None
