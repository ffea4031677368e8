"""Cohort manifest (schema version 1): a `cohort.yaml` that declares the study, plus a patient table.

The YAML declares centers, sequences, ROIs, the mask label and typed clinical / outcome variables. The
table (CSV or Parquet, one row per patient) has the columns `patient_id`, `center`, `cohort`,
`image__<sequence>`, `mask__<sequence>__<roi>[__<segmentation>]`, one column per declared clinical
variable and outcome, and `outcome_date`. Paths are relative to `data_root` and may not leave it: every
symbolic link is resolved when a file is opened (`Cohort.resolve`), and a path whose real location is
outside `data_root` is refused unless it lies in one of the read-only image archives declared under
`archive_roots:` (absolute, or relative to cohort.yaml; each must exist).

Problems that make the whole manifest unusable (unreadable YAML, missing columns, undeclared columns)
raise `ManifestError`; problems of one row become `ManifestIssue`s on that patient only, so the rest
of the cohort proceeds.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path, PurePosixPath
from typing import Literal

import polars as pl
import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator
from pydantic_core import ErrorDetails

from cssci_platform.lib.imaging import header_data_files
from cssci_platform.lib.messages import quote_value
from cssci_platform.lib.paths import (
    archive_root_problem,
    require_data_files_within,
    require_tree_within,
    resolve_within,
)

MANIFEST_VERSION = 1
COHORT_ROLES = ("development", "prospective")
PRIMARY_SEGMENTATION = "primary"
PATIENT_ID_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")
NAME_PATTERN = r"^[A-Za-z][A-Za-z0-9_]*$"
BINARY_VALUES = {"0": 0, "1": 1}
MAX_PATH_CHARACTERS, MAX_NAME_CHARACTERS = 4096, 255  # Linux PATH_MAX and NAME_MAX


class ManifestError(Exception):
    """The manifest as a whole cannot be used; the message lists every problem found."""

    def __init__(self, source: Path, problems: list[str]) -> None:
        self.source, self.problems = source, problems
        super().__init__(f"{source}:\n  - " + "\n  - ".join(problems))


class VariableSpec(BaseModel):
    model_config = ConfigDict(extra="forbid")
    type: Literal["continuous", "binary", "categorical", "multiclass"]
    levels: list[str] | None = None

    @model_validator(mode="after")
    def _levels_match_type(self) -> VariableSpec:
        needs_levels = self.type in ("categorical", "multiclass")
        if needs_levels and not self.levels:
            raise ValueError(f"type '{self.type}' needs 'levels' (the allowed values)")
        if not needs_levels and self.levels:
            raise ValueError(f"type '{self.type}' takes no 'levels'")
        return self


class CohortSpec(BaseModel):
    model_config = ConfigDict(extra="forbid")
    manifest_version: Literal[1]
    name: str = Field(pattern=NAME_PATTERN)
    table: str
    data_root: str = "."
    # Read-only image archives that links under data_root may point into (e.g. /mnt/pacs_export).
    archive_roots: list[str] = Field(default_factory=list)
    centers: list[str] = Field(min_length=1)
    sequences: list[str] = Field(min_length=1)
    rois: list[str] = Field(min_length=1)
    mask_label: int = Field(default=1, ge=1)
    clinical: dict[str, VariableSpec] = Field(default_factory=dict)
    outcomes: dict[str, VariableSpec] = Field(default_factory=dict)
    # Prospective operations: arrivals land in <data_root>/<inbox>/<patient_id>/; admitted rows are kept in
    # `admitted_table` (beside cohort.yaml, written by the platform) and read as part of the cohort.
    inbox: str | None = None
    admitted_table: str = "admitted_patients.csv"


@dataclass(frozen=True)
class ManifestIssue:
    patient_key: str
    line: int
    column: str
    code: str
    message: str
    fix: str
    severity: Literal["error", "warning"] = "error"

    def describe(self) -> str:
        return f"line {self.line}, column '{self.column}': {self.message}. Fix: {self.fix}"


@dataclass(frozen=True)
class MaskRef:
    sequence: str
    roi: str
    segmentation: str
    path: str
    column: str


@dataclass
class PatientRecord:
    patient_key: str
    line: int
    center: str
    cohort: str
    images: dict[str, str]
    masks: list[MaskRef]
    clinical: dict[str, float | str | None]
    outcomes: dict[str, int | str | None]
    outcome_date: str | None
    issues: list[ManifestIssue] = field(default_factory=list)

    @property
    def quarantined(self) -> bool:
        return any(issue.severity == "error" for issue in self.issues)


@dataclass
class Cohort:
    spec: CohortSpec
    manifest_path: Path
    data_root: Path
    manifest_sha256: str
    patients: dict[str, PatientRecord]
    unkeyed_issues: list[ManifestIssue]  # rows whose patient_id cannot name a partition
    archive_roots: tuple[Path, ...] = ()  # real locations of the declared archive roots

    def resolve(self, relative_path: str) -> Path:
        """The real location of a manifest path; `PathEscapeError` if it, a file of a DICOM series folder, or
        the data file an .mhd/.nrrd header names, leaves data_root and the archive roots."""
        roots = [self.data_root, *self.archive_roots]
        real = resolve_within(Path(relative_path), self.data_root, self.archive_roots)
        if real.is_dir():
            require_tree_within(real, roots)
        elif real.is_file():
            require_data_files_within(real, header_data_files(real), roots)
        return real

    @property
    def issues(self) -> list[ManifestIssue]:
        return self.unkeyed_issues + [i for p in self.patients.values() for i in p.issues]


def load_cohort(manifest_path: Path) -> Cohort:
    manifest_path = Path(manifest_path).resolve()
    spec = _read_spec(manifest_path)
    table_path = (manifest_path.parent / spec.table).resolve()
    table = _read_table(table_path)
    admitted_path = manifest_path.parent / spec.admitted_table
    if admitted_path.is_file():
        table = pl.concat([table, _read_table(admitted_path)], how="diagonal_relaxed")
    columns = _classify_columns(table.columns, spec, table_path)
    data_root = (manifest_path.parent / spec.data_root).resolve()
    archive_roots = _archive_roots(spec, manifest_path)
    records, unkeyed = _records(table, spec, columns)
    admitted_bytes = admitted_path.read_bytes() if admitted_path.is_file() else b""
    digest = hashlib.sha256(manifest_path.read_bytes() + table_path.read_bytes() + admitted_bytes).hexdigest()
    return Cohort(spec, manifest_path, data_root, digest, records, unkeyed, archive_roots)


def _archive_roots(spec: CohortSpec, manifest_path: Path) -> tuple[Path, ...]:
    roots = tuple((manifest_path.parent / root).resolve() for root in spec.archive_roots)
    problems = [archive_root_problem(root) for root in roots]
    if any(problems):
        raise ManifestError(manifest_path, [p for p in problems if p])
    return roots


def validate_row(spec: CohortSpec, row: dict[str, str | None]) -> tuple[PatientRecord | None, list[str]]:
    """One patient row checked as the manifest would check it: (record, problems); problems name the column."""
    table = pl.DataFrame({k: [None if v is None or str(v).strip() == "" else str(v).strip()] for k, v in row.items()},
                         schema={k: pl.String for k in row})
    try:
        columns = _classify_columns(table.columns, spec, Path("<arrival>"))
    except ManifestError as error:
        return None, error.problems
    records, unkeyed = _records(table, spec, columns)
    if unkeyed:
        return None, [unkeyed[0].message]
    record = next(iter(records.values()))
    return record, [f"column '{i.column}': {i.message}. Fix: {i.fix}" for i in record.issues if i.severity == "error"]


def _read_spec(path: Path) -> CohortSpec:
    if not path.is_file():
        raise ManifestError(path, ["cohort manifest not found; pass the path of your cohort.yaml"])
    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as error:
        raise ManifestError(path, [f"not valid YAML: {error}"]) from None
    if not isinstance(raw, dict):
        raise ManifestError(path, ["expected a mapping of keys (manifest_version, name, table, ...)"])
    if raw.get("manifest_version") != MANIFEST_VERSION:
        raise ManifestError(
            path, [f"manifest_version is {quote_value(raw.get('manifest_version'))}; this platform reads version "
                   f"{MANIFEST_VERSION}"]
        )
    try:
        return CohortSpec.model_validate(raw)
    except ValidationError as error:
        raise ManifestError(path, [_pydantic_problem(e) for e in error.errors()]) from None


def _pydantic_problem(error: ErrorDetails) -> str:
    where = ".".join(str(part) for part in error["loc"]) or "(top level)"
    return f"key '{where}': {error['msg']} (got {quote_value(error.get('input'))})"


def _read_table(path: Path) -> pl.DataFrame:
    if not path.is_file():
        raise ManifestError(path, ["patient table not found; check 'table' in cohort.yaml (relative to it)"])
    try:
        if path.suffix.lower() == ".parquet":
            table = pl.read_parquet(path).cast(pl.String)
        else:
            table = pl.read_csv(path, infer_schema=False)
    except (pl.exceptions.PolarsError, OSError) as error:
        raise ManifestError(path, [f"cannot read the table: {error}"]) from None
    return table.with_columns(pl.all().str.strip_chars()).with_columns(
        pl.when(pl.all() == "").then(None).otherwise(pl.all()).name.keep()
    )


@dataclass(frozen=True)
class _Columns:
    images: dict[str, str]
    masks: dict[str, tuple[str, str, str]]


def _classify_columns(names: list[str], spec: CohortSpec, source: Path) -> _Columns:
    problems, images, masks = [], {}, {}
    required = ["patient_id", "center", "cohort"] + [f"image__{s}" for s in spec.sequences]
    required += [*spec.clinical, *spec.outcomes]
    problems += [f"required column '{c}' is missing" for c in required if c not in names]
    declared = set(spec.clinical) | set(spec.outcomes) | {"patient_id", "center", "cohort", "outcome_date"}
    for name in names:
        parts = name.split("__")
        if parts[0] == "image" and len(parts) == 2 and parts[1] in spec.sequences:
            images[parts[1]] = name
        elif parts[0] == "mask" and len(parts) in (3, 4):
            problem = _mask_column_problem(parts, spec)
            if problem:
                problems.append(f"column {quote_value(name)}: {problem}")
            else:
                masks[name] = (parts[1], parts[2], parts[3] if len(parts) == 4 else PRIMARY_SEGMENTATION)
        elif name not in declared:
            problems.append(
                f"column {quote_value(name)} is not declared; name images 'image__<sequence>', masks "
                "'mask__<sequence>__<roi>[__<segmentation>]', or declare it under clinical:/outcomes: in cohort.yaml"
            )
    if problems:
        raise ManifestError(source, problems)
    return _Columns(images, masks)


def _mask_column_problem(parts: list[str], spec: CohortSpec) -> str | None:
    if parts[1] not in spec.sequences:
        return f"sequence '{parts[1]}' is not declared (sequences: {spec.sequences})"
    if parts[2] not in spec.rois:
        return f"ROI '{parts[2]}' is not declared (rois: {spec.rois})"
    if len(parts) == 4 and not re.match(NAME_PATTERN, parts[3]):
        return f"segmentation tag '{parts[3]}' must start with a letter and use letters, digits, '_'"
    return None


def _records(
    table: pl.DataFrame, spec: CohortSpec, columns: _Columns
) -> tuple[dict[str, PatientRecord], list[ManifestIssue]]:
    records: dict[str, PatientRecord] = {}
    unkeyed: list[ManifestIssue] = []
    for index, row in enumerate(table.iter_rows(named=True)):
        line = index + 2  # 1-based, after the header line
        raw_id = row.get("patient_id")
        if raw_id is None or not PATIENT_ID_PATTERN.match(raw_id):
            unkeyed.append(_bad_id_issue(raw_id, line))
            continue
        record = _record(row, line, raw_id, spec, columns)
        if raw_id in records:
            _flag_duplicate(records[raw_id], record)
            continue
        records[raw_id] = record
    return records, unkeyed


def _bad_id_issue(raw_id: str | None, line: int) -> ManifestIssue:
    return ManifestIssue(
        patient_key=f"<line {line}>", line=line, column="patient_id", code="invalid_patient_id",
        message=f"patient_id {quote_value(raw_id)} is empty or has characters other than letters, digits, "
                "'.', '_', '-'",
        fix="give every patient a unique id of at most 64 such characters, starting with a letter or digit",
    )


def _flag_duplicate(first: PatientRecord, duplicate: PatientRecord) -> None:
    first.issues.append(
        ManifestIssue(
            first.patient_key, duplicate.line, "patient_id", "duplicate_patient_id",
            f"patient_id '{first.patient_key}' appears on lines {first.line} and {duplicate.line}",
            "keep one row per patient (prefix ids with the center if two centers reuse ids)",
        )
    )


def _record(row: dict, line: int, key: str, spec: CohortSpec, columns: _Columns) -> PatientRecord:
    issues: list[ManifestIssue] = []

    def issue(column: str, code: str, message: str, fix: str, severity: str = "error") -> None:
        issues.append(ManifestIssue(key, line, column, code, message, fix, severity))  # type: ignore[arg-type]

    center, cohort = row.get("center"), row.get("cohort")
    if center not in spec.centers:
        issue("center", "unknown_center", f"center {quote_value(center)} is not declared",
              f"use one of {spec.centers} or declare it under centers:")
    if cohort not in COHORT_ROLES:
        issue("cohort", "bad_cohort_role", f"cohort {quote_value(cohort)} is not a cohort role",
              f"use one of {list(COHORT_ROLES)}")
    images = {seq: _checked_path(row.get(col), col, True, issue) for seq, col in columns.images.items()}
    masks = [
        MaskRef(seq, roi, seg, path, col)
        for col, (seq, roi, seg) in columns.masks.items()
        if (path := _checked_path(row.get(col), col, seg == PRIMARY_SEGMENTATION, issue)) is not None
    ]
    clinical = {name: _parse_value(row.get(name), name, var, issue) for name, var in spec.clinical.items()}
    outcomes = {name: _parse_value(row.get(name), name, var, issue) for name, var in spec.outcomes.items()}
    if cohort == "development" and any(v is None for v in outcomes.values()):
        issue("outcome", "missing_outcome", "development patient without outcome",
              "fill the outcome or mark the patient prospective", "warning")
    outcome_date = _parse_date(row.get("outcome_date"), issue)
    return PatientRecord(
        key, line, center or "", cohort or "", {k: v for k, v in images.items() if v}, masks,
        clinical, outcomes, outcome_date, issues,  # type: ignore[arg-type]
    )


def _checked_path(value: str | None, column: str, required: bool, issue) -> str | None:
    if value is None:
        if required:
            issue(column, "missing_path", "no file given", "enter the file path relative to data_root")
        return None
    posix = PurePosixPath(value.replace("\\", "/"))
    if len(value) > MAX_PATH_CHARACTERS or any(len(part) > MAX_NAME_CHARACTERS for part in posix.parts):
        issue(column, "path_too_long", f"path {quote_value(value)} is too long for a file path",
              f"shorten the folder and file names (at most {MAX_NAME_CHARACTERS} characters each, "
              f"{MAX_PATH_CHARACTERS} in all)")
        return None
    if posix.is_absolute() or re.match(r"^[A-Za-z]:", value):
        issue(column, "absolute_path", f"path {quote_value(value)} is absolute", "write it relative to data_root")
        return None
    if ".." in posix.parts:
        issue(column, "path_escapes_root", f"path {quote_value(value)} leaves data_root",
              "move the file under data_root")
        return None
    return str(posix)


def _parse_value(value: str | None, column: str, var: VariableSpec, issue) -> float | int | str | None:
    if value is None:
        return None
    if var.type == "continuous":
        try:
            number = float(value)
        except ValueError:
            number = float("nan")
        if number == number and abs(number) != float("inf"):
            return number
        issue(column, "bad_value", f"{quote_value(value)} is not a finite number",
              "enter a number with '.' as decimal mark")
    elif var.type == "binary":
        if value in BINARY_VALUES or value in ("0.0", "1.0"):
            return BINARY_VALUES[value[0]]
        issue(column, "bad_value", f"{quote_value(value)} is not 0 or 1", "encode yes/present as 1 and no/absent as 0")
    elif value in (var.levels or []):
        return value
    else:
        issue(column, "bad_value", f"{quote_value(value)} is not an allowed level", f"use one of {var.levels}")
    return None


def _parse_date(value: str | None, issue) -> str | None:
    if value is None:
        return None
    try:
        return date.fromisoformat(value).isoformat()
    except ValueError:
        issue("outcome_date", "bad_date", f"{quote_value(value)} is not a date", "write dates as YYYY-MM-DD")
        return None
