"""N writer processes replacing patients' radiomics_features rows in one warehouse at once, a reader taking snapshots
while they run, and the checks that no row was lost or duplicated and every snapshot was consistent.

Each writer owns the patients `W<writer>-P<index>`; it writes each once (extractor_version 'v1'), then writes its
first `rewrites` patients again ('v2'), as a re-materialization after a fixed file would. A consistent snapshot shows
every patient it contains with exactly `rows_per_patient` rows, all of one version.
"""

from __future__ import annotations

import multiprocessing
import queue
import time
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import polars as pl

from cssci_platform.lib.cluster.warehouse_backends import (
    WarehouseTarget,
    backend_name,
    open_writer,
    prepare_table,
    read_frame,
)

TABLE = "radiomics_features"
SEQUENCES, ROIS, SEGMENTATIONS = ("sag_T1", "sag_T2"), ("lesion", "cord"), ("primary", "perturbed")
CHANNELS = ("original", "wavelet-LLH", "wavelet-HLL", "log-sigma-1", "log-sigma-3")
START_TIMEOUT_S, WRITE_TIMEOUT_S = 120.0, 900.0

SNAPSHOT_SQL = f"""SELECT patient_key, count(*) AS n_rows, count(DISTINCT extractor_version) AS versions
FROM {TABLE} GROUP BY patient_key"""
PER_WRITER_SQL = f"""SELECT left(patient_key, 3) AS writer, count(*) AS n_rows, count(DISTINCT patient_key) AS patients,
       sum(CASE WHEN extractor_version = 'v2' THEN 1 ELSE 0 END) AS rewritten_rows
FROM {TABLE} GROUP BY 1 ORDER BY 1"""
DISTINCT_KEYS_SQL = f"""SELECT left(patient_key, 3) AS writer, count(*) AS distinct_keys
FROM (SELECT DISTINCT patient_key, sequence, roi, segmentation, channel, feature FROM {TABLE}) AS keys
GROUP BY 1 ORDER BY 1"""


def patient_key(writer: int, index: int) -> str:
    return f"W{writer:02d}-P{index:04d}"


def synthetic_feature_rows(key: str, rows: int, version: str, seed: int) -> pl.DataFrame:
    """`rows` radiomics_features rows of one patient, shaped like pyradiomics output (sequence x roi x segmentation
    x channel x feature, ~107 features per channel), each (patient, sequence, roi, segmentation, channel, feature)
    once."""
    per_feature = len(SEQUENCES) * len(ROIS) * len(SEGMENTATIONS) * len(CHANNELS)
    features = -(-rows // per_feature)
    combos = [(s, r, g, c, f"original_feature_{f:03d}") for s in SEQUENCES for r in ROIS for g in SEGMENTATIONS
              for c in CHANNELS for f in range(features)][:rows]
    sequence, roi, segmentation, channel, feature = (list(column) for column in zip(*combos))
    return pl.DataFrame({
        "patient_key": [key] * rows, "sequence": sequence, "roi": roi, "segmentation": segmentation,
        "channel": channel, "feature": feature, "value": np.random.default_rng(seed).normal(size=rows),
        "extractor_version": [version] * rows, "params_name": ["default"] * rows, "params_hash": [f"h{seed}"] * rows,
    })


@dataclass(frozen=True)
class WriterPlan:
    target: WarehouseTarget
    writer: int
    patients: int
    rows_per_patient: int
    rewrites: int


@dataclass(frozen=True)
class WriterReport:
    writer: int
    writes: int
    rows_written: int
    seconds: float  # from the common start to this writer's last commit
    slowest_write_s: float
    conflict_retries: int
    finished_at: float = 0.0  # time.time() of the last commit (or of the failure)
    error: str = ""


def run_writer(plan: WriterPlan, start: Any, reports: Any) -> None:
    """A writer process: open the backend, wait for the common start, write, report (errors reported, not raised)."""
    try:
        writer = open_writer(plan.target)
        frames = [(patient_key(plan.writer, i), synthetic_feature_rows(
            patient_key(plan.writer, i), plan.rows_per_patient, "v1", plan.writer * 10_000 + i))
            for i in range(plan.patients)]
        frames += [(key, frame.with_columns(pl.lit("v2").alias("extractor_version"), pl.col("value") + 1.0))
                   for key, frame in frames[:plan.rewrites]]
    except Exception as error:  # noqa: BLE001  (the parent reports it)
        start.wait(START_TIMEOUT_S)
        reports.put(WriterReport(plan.writer, 0, 0, 0.0, 0.0, 0, time.time(), f"{type(error).__name__}: {error}"))
        return
    start.wait(START_TIMEOUT_S)
    began, rows, retries, slowest, writes = time.perf_counter(), 0, 0, 0.0, 0
    try:
        for key, frame in frames:
            before = time.perf_counter()
            outcome = writer.replace_patient_rows(TABLE, key, frame)
            slowest = max(slowest, time.perf_counter() - before)
            rows, retries, writes = rows + outcome.rows, retries + outcome.conflict_retries, writes + 1
        reports.put(WriterReport(plan.writer, writes, rows, time.perf_counter() - began, slowest, retries, time.time()))
    except Exception as error:  # noqa: BLE001
        reports.put(WriterReport(plan.writer, writes, rows, time.perf_counter() - began, slowest, retries,
                                 time.time(), f"{type(error).__name__}: {error}"))
    finally:
        writer.close()


@dataclass
class LoadResult:
    backend: str
    writers: int
    patients_per_writer: int
    rows_per_patient: int
    rewrites: int
    wall_seconds: float  # common start -> last writer's report
    reports: list[WriterReport]
    snapshots: int = 0  # reads that began before the last writer's last commit
    snapshot_read_seconds: list[float] = field(default_factory=list)  # of those reads
    snapshot_reads: list[tuple[float, float]] = field(default_factory=list)  # every read: (time.time() at start, s)
    problems: list[str] = field(default_factory=list)

    @property
    def rows_written(self) -> int:
        return sum(report.rows_written for report in self.reports)

    @property
    def rows_per_second(self) -> float:
        return self.rows_written / self.wall_seconds if self.wall_seconds else 0.0

    @property
    def conflict_retries(self) -> int:
        return sum(report.conflict_retries for report in self.reports)

    def summary(self) -> dict[str, Any]:
        reads = self.snapshot_read_seconds
        return {
            "backend": self.backend, "writers": self.writers, "patients_per_writer": self.patients_per_writer,
            "rows_per_patient": self.rows_per_patient, "rewrites_per_writer": self.rewrites,
            "rows_written": self.rows_written, "wall_s": round(self.wall_seconds, 3),
            "rows_per_s": round(self.rows_per_second), "conflict_retries": self.conflict_retries,
            "slowest_write_s": round(max((r.slowest_write_s for r in self.reports), default=0.0), 3),
            "snapshots_during_writes": self.snapshots,
            "snapshot_read_s_median": round(float(np.median(reads)), 3) if reads else None,
            "snapshot_read_s_max": round(max(reads), 3) if reads else None,
            "problems": self.problems,
        }


def snapshot_problems(snapshot: pl.DataFrame, rows_per_patient: int) -> list[str]:
    """What makes a snapshot inconsistent: a patient with part of its rows, rows of two versions, or doubled rows."""
    bad = snapshot.filter((pl.col("n_rows") != rows_per_patient) | (pl.col("versions") != 1))
    return [f"snapshot: {row['patient_key']} has {row['n_rows']} rows of {row['versions']} version(s), expected "
            f"{rows_per_patient} of one" for row in bad.iter_rows(named=True)]


def final_problems(target: WarehouseTarget, writers: int, patients: int, rows_per_patient: int,
                   rewrites: int) -> list[str]:
    """Lost or duplicated rows per writer after all writers finished (count, distinct keys, rewritten version)."""
    per_writer = {row["writer"]: row for row in read_frame(target, PER_WRITER_SQL).iter_rows(named=True)}
    keys = {row["writer"]: row["distinct_keys"] for row in read_frame(target, DISTINCT_KEYS_SQL).iter_rows(named=True)}
    expected_rows = patients * rows_per_patient
    problems = []
    for writer in range(writers):
        name = f"W{writer:02d}"
        found = per_writer.get(name, {"n_rows": 0, "patients": 0, "rewritten_rows": 0})
        if found["n_rows"] != expected_rows or keys.get(name, 0) != expected_rows:
            problems.append(f"{name}: {found['n_rows']} rows, {keys.get(name, 0)} distinct keys, expected "
                            f"{expected_rows} of each (lost or duplicated rows)")
        if found["patients"] != patients:
            problems.append(f"{name}: {found['patients']} patients, expected {patients}")
        if int(found["rewritten_rows"] or 0) != rewrites * rows_per_patient:
            problems.append(f"{name}: {found['rewritten_rows']} rewritten rows, expected {rewrites * rows_per_patient}")
    unexpected = sorted(set(per_writer) - {f"W{w:02d}" for w in range(writers)})
    return problems + [f"rows of unknown writers {unexpected}"] * bool(unexpected)


def run_write_load(target: WarehouseTarget, writers: int, patients_per_writer: int, rows_per_patient: int,
                   rewrites: int = 1, read_pause_s: float = 0.05) -> LoadResult:
    """Start `writers` processes (spawn) that each open the warehouse, then write together from a common start while
    this process reads snapshots; wait for all, then check every writer's rows. Problems are listed, not raised."""
    prepare_table(target, TABLE)
    context = multiprocessing.get_context("spawn")
    start, reports = context.Barrier(writers + 1), context.Queue()
    plans = [WriterPlan(target, w, patients_per_writer, rows_per_patient, rewrites) for w in range(writers)]
    processes = [multiprocessing.get_context("spawn").Process(target=run_writer, args=(plan, start, reports))
                 for plan in plans]
    for process in processes:
        process.start()
    result = LoadResult(backend_name(target), writers, patients_per_writer, rows_per_patient, rewrites, 0.0, [])
    try:
        start.wait(START_TIMEOUT_S)
        began = time.perf_counter()
        while len(result.reports) < writers and time.perf_counter() - began < WRITE_TIMEOUT_S:
            _take_snapshot(target, result)
            _collect(reports, result, timeout=read_pause_s)
        result.wall_seconds = max((report.seconds for report in result.reports), default=0.0)
        last_commit = max((report.finished_at for report in result.reports), default=0.0)
        result.snapshot_read_seconds = [seconds for began, seconds in result.snapshot_reads if began < last_commit]
        result.snapshots = len(result.snapshot_read_seconds)
    finally:
        for process in processes:
            process.join(timeout=60)
            if process.is_alive():
                process.kill()
    if len(result.reports) < writers:
        result.problems.append(f"only {len(result.reports)} of {writers} writers finished in {WRITE_TIMEOUT_S:.0f} s")
    result.problems += [f"writer W{r.writer:02d} failed: {r.error}" for r in result.reports if r.error]
    result.problems += final_problems(target, writers, patients_per_writer, rows_per_patient, rewrites)
    return result


def _take_snapshot(target: WarehouseTarget, result: LoadResult) -> None:
    began, before = time.time(), time.perf_counter()
    snapshot = read_frame(target, SNAPSHOT_SQL)
    result.snapshot_reads.append((began, time.perf_counter() - before))
    result.problems += snapshot_problems(snapshot, result.rows_per_patient) if snapshot.height else []


def _collect(reports: Any, result: LoadResult, timeout: float) -> None:
    try:
        result.reports.append(reports.get(timeout=timeout))
        while True:
            result.reports.append(reports.get_nowait())
    except queue.Empty:
        return
