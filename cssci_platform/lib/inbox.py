"""The prospective inbox: new patients arrive as folders, follow-up outcomes as CSV files.

Layout under ``<data_root>/<inbox>/``::

    <patient_id>/patient.csv | patient.json   one manifest row (cohort is always prospective); image and
                                              mask paths relative to the patient's folder
    <patient_id>/...                          the images and masks it names (files or DICOM series folders)
    <patient_id>/READY                        optional: complete now (otherwise: when every file has been
                                              unchanged for `stable_seconds`)
    followup/*.csv                            patient_id, outcome, value, outcome_date

A half-copied series is never read: an arrival is complete only when its row and every file it names
(every file of a DICOM series folder included) exist and (READY or) no file changed for `stable_seconds`.
An arrival is identified by the *content* of those files (SHA-256), never by their times, so a `touch` or a
sync tool re-copying the same bytes changes nothing. Every file must really lie inside the arrival's folder
(symbolic links are resolved) or in an archive root the cohort declares. Admitted rows go to the cohort's
`admitted_table` with paths rewritten relative to data_root; a later change of an admitted arrival's row is
a correction: the admitted row is replaced and the changed values are returned for the audit trail.
"""

from __future__ import annotations

import hashlib
import json
import os
import time
from collections.abc import Iterator, MutableMapping
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path
from typing import Literal

import polars as pl

from cssci_platform.lib.cohort import Cohort, validate_row
from cssci_platform.lib.messages import quote_value, shorten
from cssci_platform.lib.paths import PathEscapeError, resolve_within

ROW_FILES = ("patient.csv", "patient.json")
READY_MARKER = "READY"
FOLLOWUP_FOLDER = "followup"
FOLLOWUP_COLUMNS = ("patient_id", "outcome", "value", "outcome_date")
REASON_LIMIT = 1000  # characters of one reason kept in events and logs
ArrivalStatus = Literal["complete", "incomplete", "malformed", "duplicate", "admitted", "corrected"]
# path -> (size, mtime_ns, sha256): a file's content digest is recomputed only when its size or mtime changed
DigestCache = MutableMapping[str, tuple[int, int, str]]


@dataclass(frozen=True)
class FieldChange:
    column: str
    old: str | None
    new: str | None


@dataclass
class Arrival:
    patient_id: str
    folder: Path
    status: ArrivalStatus
    reasons: list[str] = field(default_factory=list)
    row: dict[str, str | None] = field(default_factory=dict)  # paths relative to data_root once complete
    digest: str = ""  # content of the row file and every file it names (row file only while malformed)
    changes: list[FieldChange] = field(default_factory=list)  # a correction of an admitted row

    @property
    def reason(self) -> str | None:
        return "; ".join(shorten(r, REASON_LIMIT) for r in self.reasons) or None


def inbox_folder(cohort: Cohort) -> Path | None:
    return cohort.data_root / cohort.spec.inbox if cohort.spec.inbox else None


def scan_arrivals(cohort: Cohort, stable_seconds: float, now: float | None = None,
                  cache: DigestCache | None = None) -> list[Arrival]:
    """Every patient folder of the inbox with its status; nothing is read from an incomplete arrival's images."""
    folder = inbox_folder(cohort)
    if folder is None or not folder.is_dir():
        return []
    now = time.time() if now is None else now
    admitted = admitted_rows(cohort)
    cache = {} if cache is None else cache
    return [_arrival(cohort, path, stable_seconds, now, admitted, cache) for path in sorted(folder.iterdir())
            if path.is_dir() and path.name != FOLLOWUP_FOLDER]


def admitted_table_path(cohort: Cohort) -> Path:
    return cohort.manifest_path.parent / cohort.spec.admitted_table


def admitted_rows(cohort: Cohort) -> dict[str, dict[str, str | None]]:
    """The admitted table's rows by patient id (rows the platform wrote from inbox arrivals)."""
    path = admitted_table_path(cohort)
    if not path.is_file():
        return {}
    return {row["patient_id"]: row for row in pl.read_csv(path, infer_schema=False).iter_rows(named=True)}


def admitted_patient_ids(cohort: Cohort) -> set[str]:
    return set(admitted_rows(cohort))


def admit(cohort: Cohort, arrivals: list[Arrival]) -> Path:
    """New arrivals' rows appended to the admitted table, corrected ones replaced in place (atomic rewrite)."""
    path = admitted_table_path(cohort)
    rows = list(admitted_rows(cohort).values())
    positions = {row["patient_id"]: index for index, row in enumerate(rows)}
    for arrival in arrivals:
        if arrival.status == "corrected" and arrival.patient_id in positions:
            rows[positions[arrival.patient_id]] = arrival.row
        elif arrival.status == "complete":
            rows.append(arrival.row)
    if not rows:
        return path
    columns = list(dict.fromkeys(column for row in rows for column in row))
    table = pl.DataFrame([{c: row.get(c) for c in columns} for row in rows], schema={c: pl.String for c in columns})
    temporary = path.with_suffix(".tmp")
    table.write_csv(temporary)
    os.replace(temporary, path)
    return path


def _arrival(cohort: Cohort, folder: Path, stable_seconds: float, now: float,
             admitted: dict[str, dict[str, str | None]], cache: DigestCache) -> Arrival:
    arrival = Arrival(folder.name, folder, "incomplete")
    if folder.is_symlink():
        return _malformed(arrival, f"{folder} is a symbolic link to {os.path.realpath(folder)}; copy the arrival "
                                   "into the inbox instead of linking it")
    row_file = next((folder / name for name in ROW_FILES if (folder / name).is_file()), None)
    if row_file is None:
        arrival.reasons.append(f"no {' or '.join(ROW_FILES)} in {folder}")
        return arrival
    try:
        _inside(folder, row_file.name, cohort)
        arrival.digest = _content_digest([row_file], cache)
        row = read_arrival_row(row_file)
    except (ValueError, OSError, pl.exceptions.PolarsError) as error:
        return _malformed(arrival, f"{row_file.name}: {error}")
    if row.get("patient_id") != folder.name:
        return _malformed(arrival, f"{row_file.name} names patient_id {quote_value(row.get('patient_id'))} but the "
                                   f"folder is '{folder.name}'; name the folder after the patient")
    try:
        files = [_inside(folder, name, cohort) for name in _referenced_files(row)]
    except ValueError as error:
        return _malformed(arrival, str(error))
    missing = [path.name for path in files if not path.exists()]
    if missing:
        arrival.reasons.append(f"waiting for {', '.join(missing)}")
        return arrival
    try:
        contents = [row_file, *_expanded(files, folder, cohort)]
    except ValueError as error:
        return _malformed(arrival, str(error))
    if not (folder / READY_MARKER).exists() and (recent := _recently_changed(contents, now, stable_seconds)):
        arrival.reasons.append(f"{', '.join(recent[:3])} changed less than {stable_seconds:.0f} s ago; waiting until "
                               f"every file is stable (unchanged for {stable_seconds:.0f} s), or a {READY_MARKER} file")
        return arrival
    relative = folder.relative_to(cohort.data_root).as_posix()
    row = {**row, "cohort": "prospective", **{column: f"{relative}/{row[column]}" for column in _path_columns(row)}}
    record, problems = validate_row(cohort.spec, row)
    if problems or record is None:
        return _malformed(arrival, *problems)
    arrival.status, arrival.row = "complete", row
    arrival.digest = _content_digest(contents, cache)
    if folder.name in cohort.patients:
        _classify_known(arrival, cohort, relative, admitted.get(folder.name))
    return arrival


def _classify_known(
    arrival: Arrival, cohort: Cohort, relative: str, admitted_row: dict[str, str | None] | None
) -> None:
    """An id already in the cohort: this arrival admitted before (unchanged or corrected), or a duplicate."""
    record = cohort.patients[arrival.patient_id]
    if admitted_row is None or not any(path.startswith(relative + "/") for path in record.images.values()):
        arrival.status = "duplicate"
        arrival.reasons.append(f"patient_id '{arrival.patient_id}' already exists in the cohort (line {record.line}); "
                               "a new arrival needs a new id")
        return
    arrival.changes = row_changes(admitted_row, arrival.row)
    arrival.status = "corrected" if arrival.changes else "admitted"


def row_changes(old: dict[str, str | None], new: dict[str, str | None]) -> list[FieldChange]:
    """The columns whose value differs between two rows (empty and missing are the same)."""
    def clean(value: str | None) -> str | None:
        return None if value is None or str(value).strip() == "" else str(value).strip()
    return [FieldChange(c, clean(old.get(c)), clean(new.get(c))) for c in dict.fromkeys([*old, *new])
            if clean(old.get(c)) != clean(new.get(c))]


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
            raise ValueError(f"path {quote_value(name)} must be relative to the patient's folder")
    return files


def _inside(folder: Path, name: str, cohort: Cohort) -> Path:
    """`folder/name` as written, after checking that its real location stays in the folder or a declared archive."""
    try:
        resolve_within(Path(name), folder, cohort.archive_roots)  # declared read-only image archives
    except PathEscapeError as error:
        raise ValueError(f"'{name}' lies outside the arrival's folder: {error}") from None
    return folder / name


def _expanded(files: list[Path], folder: Path, cohort: Cohort) -> list[Path]:
    """Every file the arrival names: a DICOM series folder stands for each file in it (each checked to stay inside)."""
    expanded = []
    for path in files:
        if path.is_dir():
            for child in _walk(path):
                _inside(folder, child.relative_to(folder).as_posix(), cohort)
                expanded.extend(_expanded([child], folder, cohort) if child.is_dir() else [child])
        else:
            expanded.append(path)
    return expanded


def _walk(directory: Path) -> Iterator[Path]:
    for root, directories, names in os.walk(directory):
        directories.sort()
        for name in sorted(names):
            yield Path(root) / name
        for name in directories:
            if (Path(root) / name).is_symlink():
                yield Path(root) / name  # not followed by os.walk: checked (and refused if it leaves) by the caller


def _recently_changed(paths: list[Path], now: float, stable_seconds: float) -> list[str]:
    return [path.name for path in paths if now - path.stat().st_mtime < stable_seconds]


def _content_digest(paths: list[Path], cache: DigestCache) -> str:
    digest = hashlib.sha256()
    for path in sorted(paths):
        digest.update(f"{path.name}|{file_content_sha256(path, cache)}\n".encode())
    return digest.hexdigest()[:16]


def file_content_sha256(path: Path, cache: DigestCache) -> str:
    """SHA-256 of the file's bytes, recomputed only when its size or modification time changed."""
    stat = path.stat()
    key = str(path)
    known = cache.get(key)
    if known is not None and known[0] == stat.st_size and known[1] == stat.st_mtime_ns:
        return known[2]
    sha = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            sha.update(block)
    cache[key] = (stat.st_size, stat.st_mtime_ns, sha.hexdigest())
    return sha.hexdigest()


def _malformed(arrival: Arrival, *reasons: str) -> Arrival:
    arrival.status = "malformed"
    arrival.reasons.extend(reasons)
    return arrival


def followup_files(cohort: Cohort) -> list[Path]:
    folder = inbox_folder(cohort)
    return sorted((folder / FOLLOWUP_FOLDER).glob("*.csv")) if folder and (folder / FOLLOWUP_FOLDER).is_dir() else []


def file_digest(path: Path) -> str:
    return file_content_sha256(path, {})[:16]


FOLLOWUP_SCHEMA = {"patient_key": pl.String, "outcome": pl.String, "value": pl.String, "outcome_date": pl.String,
                   "line": pl.Int64}


def read_followup(path: Path, cohort: Cohort) -> tuple[pl.DataFrame, list[str]]:
    """Valid outcome rows (patient_key, outcome, value, outcome_date, line) and one problem per rejected row.

    Row by row: a bad row is rejected with its line and reason, the valid rows are kept.
    """
    table = pl.read_csv(path, infer_schema=False)
    missing = [c for c in FOLLOWUP_COLUMNS if c not in table.columns]
    if missing:
        unusable = f"{path.name}: missing columns {missing}; expected {list(FOLLOWUP_COLUMNS)}"
        return pl.DataFrame(schema=FOLLOWUP_SCHEMA), [unusable]
    good, problems = [], []
    for line, row in enumerate(table.iter_rows(named=True), start=2):
        problem = _followup_problem(row, cohort)
        if problem:
            problems.append(f"{path.name} line {line}: {problem}")
        else:
            good.append({"patient_key": row["patient_id"], "outcome": row["outcome"], "value": row["value"],
                         "outcome_date": row["outcome_date"] or None, "line": line})
    return pl.DataFrame(good, schema=FOLLOWUP_SCHEMA), problems


def _followup_problem(row: dict, cohort: Cohort) -> str | None:
    if row["patient_id"] not in cohort.patients:
        return f"patient {quote_value(row['patient_id'])} is not in the cohort (check the id, or wait for its arrival)"
    variable = cohort.spec.outcomes.get(row["outcome"])
    if variable is None:
        return f"outcome {quote_value(row['outcome'])} is not declared (outcomes: {list(cohort.spec.outcomes)})"
    if row["outcome_date"] and not _is_date(row["outcome_date"]):
        return f"outcome_date {quote_value(row['outcome_date'])} is not a date; write dates as YYYY-MM-DD"
    if variable.type == "continuous":
        try:
            float(row["value"])
        except (TypeError, ValueError):
            return (f"value {quote_value(row['value'])} of '{row['outcome']}' is not a number "
                    "(the outcome is continuous)")
        return None
    allowed = variable.levels or ["0", "1"]
    if row["value"] not in allowed:
        return f"value {quote_value(row['value'])} of '{row['outcome']}' is not one of {allowed}"
    return None


def _is_date(value: str) -> bool:
    try:
        date.fromisoformat(value)
    except ValueError:
        return False
    return len(value) == 10
