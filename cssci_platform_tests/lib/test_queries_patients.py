"""Named reads of the patient stage on a small DuckDB file: the slices embeddings and networks may use."""

from __future__ import annotations

import pytest

from cssci_platform.lib.queries import patients as queries
from cssci_platform.lib.warehouse import connect, replace_rows


def _issue(key: str, stage: str) -> dict:
    return {"patient_key": key, "stage": stage, "code": "c", "message": "m", "fix": "f", "file": "",
            "severity": "error"}


@pytest.fixture
def con(tmp_path):
    with connect(tmp_path / "warehouse.duckdb") as con:
        replace_rows(con, "patients", {}, [{"patient_key": k, "center": c, "cohort": "development"}
                                           for k, c in [("a1", "A"), ("a2", "A"), ("a3", "A"), ("b1", "B")]])
        replace_rows(con, "roi_slices", {}, [
            {"patient_key": k, "sequence": "sag_T2", "channel": ch, "slice_path": f"{k}-{ch}"}
            for k in ["a1", "a2", "a3", "b1"] for ch in ["original", "mean"]])
        replace_rows(con, "qc_issues", {}, [_issue("a2", "embeddings"), _issue("a3", "scans")])
        replace_rows(con, "splits", {}, [
            {"split": "s", "fold": "holdout", "patient_key": k, "role": r, "outcome": "y"}
            for k, r in [("a1", "train"), ("a2", "test"), ("a3", "train"), ("b1", "test")]])
        replace_rows(con, "outcomes", {}, [{"patient_key": "a1", "outcome": "y", "value": "1"}])
        yield con


def test_a_center_embeds_its_patients_without_errors_but_those_of_the_embedding_stage_itself(con):
    slices = queries.center_slices_to_embed(con, "A")
    assert sorted(set(slices["patient_key"])) == ["a1", "a2"] and set(slices["center"]) == {"A"}
    assert slices.height == 4


def test_networks_see_one_channel_of_the_patients_with_no_error_at_any_stage(con):
    slices = queries.channel_slices_for_networks(con, "s", "holdout", "original").sort("patient_key")
    assert slices["patient_key"].to_list() == ["a1", "b1"]
    assert slices["role"].to_list() == ["train", "test"] and slices["label"].to_list() == ["1", None]
    assert queries.channel_slices_for_networks(con, "other", "holdout", "original").is_empty()


def test_stored_issues_are_read_by_stage(con):
    assert [i["stage"] for i in queries.patient_issues(con, "a3", ["scans", "manifest"])] == ["scans"]
    assert queries.patient_issues(con, "a3", ["manifest"]) == []
