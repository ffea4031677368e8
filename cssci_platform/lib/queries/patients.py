"""Named reads of the patient stage: scans, preprocessed files, ROI slices, networks and their QC issues."""

from __future__ import annotations

from collections.abc import Sequence

import duckdb
import polars as pl

from cssci_platform.lib.queries.eligibility import ELIGIBLE_PATIENTS, rule_parameters

PATIENT_SCANS = "SELECT * FROM scans WHERE patient_key = ?"
PATIENT_CHANNELS = "SELECT * FROM preprocessed_channels WHERE patient_key = ?"
PATIENT_MASKS = "SELECT * FROM preprocessed_masks WHERE patient_key = ?"
PATIENT_ISSUES = ("SELECT patient_key, stage, code, message, fix, file, severity FROM qc_issues "
                  "WHERE patient_key = ? AND list_contains(?, stage) ORDER BY stage, code")
CENTER_PATIENTS = "SELECT patient_key FROM patients WHERE center = ? ORDER BY patient_key"
CENTER_SLICES_TO_EMBED = f"""
SELECT s.*, p.center FROM roi_slices s JOIN patients p USING (patient_key)
WHERE p.center = $center AND s.patient_key IN ({ELIGIBLE_PATIENTS})
"""
CHANNEL_SLICES_FOR_NETWORKS = f"""
SELECT s.patient_key, s.sequence, s.slice_path, p.cohort, sp.role, o.value AS label FROM roi_slices s
JOIN patients p USING (patient_key)
JOIN splits sp ON sp.patient_key = s.patient_key AND sp.split = $split AND sp.fold = $fold
LEFT JOIN outcomes o ON o.patient_key = s.patient_key AND o.outcome = sp.outcome
WHERE s.channel = $channel AND s.patient_key IN ({ELIGIBLE_PATIENTS})
"""
FINE_TUNED_CHECKPOINTS = "SELECT channel, checkpoint_path FROM networks WHERE backbone = ?"
CENTER_EMBEDDING_COVERAGE = """
SELECT p.patient_key, count(DISTINCT s.channel) AS slices, count(e.patient_key) AS embeddings,
       bool_or(q.severity = 'error') AS quarantined
FROM patients p
LEFT JOIN roi_slices s USING (patient_key)
LEFT JOIN embeddings e ON e.patient_key = p.patient_key
LEFT JOIN qc_issues q ON q.patient_key = p.patient_key AND q.stage = ?
WHERE p.center = ? GROUP BY p.patient_key
"""


def patient_scans(con: duckdb.DuckDBPyConnection, patient_key: str) -> pl.DataFrame:
    """The patient's `scans` rows: one per image or mask file, with its geometry."""
    return con.execute(PATIENT_SCANS, [patient_key]).pl()


def preprocessed_channels(con: duckdb.DuckDBPyConnection, patient_key: str) -> pl.DataFrame:
    """The patient's preprocessed channel files (one row per sequence x channel)."""
    return con.execute(PATIENT_CHANNELS, [patient_key]).pl()


def preprocessed_masks(con: duckdb.DuckDBPyConnection, patient_key: str) -> pl.DataFrame:
    """The patient's masks resampled onto the preprocessed grid (one row per sequence x ROI x segmentation)."""
    return con.execute(PATIENT_MASKS, [patient_key]).pl()


def patient_issues(con: duckdb.DuckDBPyConnection, patient_key: str, stages: Sequence[str]) -> list[dict]:
    """The patient's recorded QC issues of `stages` (warnings and errors), as `QcIssue` field dicts."""
    return list(con.execute(PATIENT_ISSUES, [patient_key, list(stages)]).pl().iter_rows(named=True))


def center_patients(con: duckdb.DuckDBPyConnection, center: str) -> list[str]:
    """Every patient of the center in the current manifest, sorted."""
    return [row[0] for row in con.execute(CENTER_PATIENTS, [center]).fetchall()]


def center_slices_to_embed(con: duckdb.DuckDBPyConnection, center: str) -> pl.DataFrame:
    """The ROI slices of the center's patients the embeddings may use (eligibility rule `embeddings`), with center."""
    return con.execute(CENTER_SLICES_TO_EMBED, {"center": center, **rule_parameters("embeddings")}).pl()


def channel_slices_for_networks(con: duckdb.DuckDBPyConnection, split: str, fold: str, channel: str) -> pl.DataFrame:
    """One channel's ROI slices of the patients with a role in `fold` of `split` (eligibility rule `networks`):
    patient_key, sequence, slice_path, cohort, role and label (the split outcome's value, null when unknown)."""
    parameters = {"split": split, "fold": fold, "channel": channel, **rule_parameters("networks")}
    return con.execute(CHANNEL_SLICES_FOR_NETWORKS, parameters).pl()


def fine_tuned_checkpoints(con: duckdb.DuckDBPyConnection, backbone: str) -> pl.DataFrame:
    """channel, checkpoint_path of the stored fine-tuned networks of one backbone."""
    return con.execute(FINE_TUNED_CHECKPOINTS, [backbone]).pl()


def center_embedding_coverage(con: duckdb.DuckDBPyConnection, center: str, embedding_stage: str) -> pl.DataFrame:
    """Per patient of the center: slice channels, embedding rows, and whether an `embedding_stage` error is recorded."""
    return con.execute(CENTER_EMBEDDING_COVERAGE, [embedding_stage, center]).pl()
