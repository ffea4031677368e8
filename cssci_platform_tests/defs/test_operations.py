"""Months of operation on a real instance and warehouse: recorded outcomes survive, one arrival is one run,
follow-up files are applied row by row with a reason per rejected row and never twice."""

import logging
import shutil
from pathlib import Path

import dagster as dg
import polars as pl
import pytest
import yaml

from cssci_platform.defs.ingest.sensors import cohort_manifest_sensor
from cssci_platform.defs.prospective.assets import followup_outcomes
from cssci_platform.defs.prospective.sensors import new_patient_sensor
from cssci_platform.lib.cohort import load_cohort
from cssci_platform.resources.inbox import InboxResource
from cssci_platform_tests.defs.conftest import Platform


@pytest.fixture
def clinic(platform: Platform) -> Platform:
    """The platform's cohort with an inbox, its manifest materialized."""
    spec = yaml.safe_load(platform.manifest.read_text(encoding="utf-8"))
    platform.manifest.write_text(yaml.safe_dump({**spec, "inbox": "inbox"}, sort_keys=False), encoding="utf-8")
    (platform.manifest.parent / "inbox" / "followup").mkdir(parents=True)
    assert platform.materialize_manifest().success
    return platform


def _followup(clinic: Platform, name: str, rows: dict) -> Path:
    path = clinic.manifest.parent / "inbox" / "followup" / name
    pl.DataFrame(rows).write_csv(path)
    return path


def _apply(clinic: Platform, path: Path) -> dg.ExecuteInProcessResult:
    return dg.materialize(
        [followup_outcomes],
        instance=clinic.instance,
        resources=clinic.resources,
        run_config={"ops": {"followup_outcomes": {"config": {"file": str(path)}}}},
        raise_on_error=False,
    )


def _prospective(clinic: Platform) -> str:
    return next(k for k, p in load_cohort(clinic.manifest).patients.items() if p.cohort == "prospective")


def _drop_arrival(clinic: Platform, template_key: str, new_id: str) -> Path:
    cohort_dir = clinic.manifest.parent
    row = (
        pl.read_csv(cohort_dir / "patients.csv", infer_schema=False)
        .filter(pl.col("patient_id") == template_key)
        .row(0, named=True)
    )
    folder = cohort_dir / "inbox" / new_id
    shutil.copytree(cohort_dir / "images" / template_key, folder)
    row = {k: (Path(v).name if k.startswith(("image__", "mask__")) and v else v) for k, v in row.items()}
    row = {**row, "patient_id": new_id, "cohort": "prospective", "good_outcome": None, "outcome_date": None}
    pl.DataFrame([row], schema={k: pl.String for k in row}).write_csv(folder / "patient.csv")
    (folder / "READY").touch()
    return folder


class _Warnings(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.messages: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.messages.append(record.getMessage())


def _tick_inbox(clinic: Platform, cursor: str | None = None, warnings: _Warnings | None = None) -> dg.SensorResult:
    resources = {**{k: clinic.resources[k] for k in ("cohort", "warehouse")}, "inbox": InboxResource(stable_seconds=60)}
    context = dg.build_sensor_context(instance=clinic.instance, cursor=cursor, resources=resources)
    if warnings is not None:
        context.log.addHandler(warnings)  # the tick log the daemon keeps
    return new_patient_sensor(context)


def _tick_manifest(clinic: Platform, cursor: str | None) -> dg.SensorResult:
    context = dg.build_sensor_context(
        instance=clinic.instance, cursor=cursor, resources={"cohort": clinic.resources["cohort"]}
    )
    return cohort_manifest_sensor(context)


def _register(clinic: Platform, result: dg.SensorResult) -> None:
    for request in result.dynamic_partitions_requests or []:
        clinic.instance.add_dynamic_partitions(request.partitions_def_name, list(request.partition_keys))


def test_recorded_follow_up_outcomes_survive_a_manifest_rematerialization_with_provenance(clinic: Platform) -> None:
    key = _prospective(clinic)
    path = _followup(
        clinic,
        "june.csv",
        {"patient_id": [key], "outcome": ["good_outcome"], "value": ["1"], "outcome_date": ["2026-06-01"]},
    )
    assert _apply(clinic, path).success
    assert clinic.materialize_manifest().success  # e.g. the manifest sensor after an arrival was admitted
    assert clinic.query("SELECT value FROM outcomes WHERE patient_key = ? AND outcome = 'good_outcome'", [key])[
        "value"
    ].to_list() == ["1"]
    provenance = clinic.query(
        "SELECT source_file, source_line, source_sha256, recorded_at FROM recorded_outcomes WHERE patient_key = ?",
        [key],
    )
    assert provenance["source_file"].to_list() == [str(path)] and provenance["source_line"].to_list() == [2]
    assert provenance["source_sha256"][0] and provenance["recorded_at"][0] is not None


def test_a_later_follow_up_file_corrects_an_earlier_one_and_both_are_kept(clinic: Platform) -> None:
    key = _prospective(clinic)
    first = _followup(
        clinic,
        "june.csv",
        {"patient_id": [key], "outcome": ["good_outcome"], "value": ["1"], "outcome_date": ["2026-06-01"]},
    )
    assert _apply(clinic, first).success
    second = _followup(
        clinic,
        "july.csv",
        {"patient_id": [key], "outcome": ["good_outcome"], "value": ["0"], "outcome_date": ["2026-07-01"]},
    )
    assert _apply(clinic, second).success
    assert _apply(clinic, first).success  # re-running an old file neither duplicates rows nor overrides the later one
    assert clinic.query("SELECT value FROM outcomes WHERE patient_key = ? AND outcome = 'good_outcome'", [key])[
        "value"
    ].to_list() == ["0"]
    assert clinic.query("SELECT count(*) AS n FROM recorded_outcomes")["n"][0] == 2


def test_a_follow_up_file_with_an_impossible_date_records_the_valid_rows_and_a_reason_for_the_bad_one(
    clinic: Platform,
) -> None:
    keys = sorted(load_cohort(clinic.manifest).patients)
    path = _followup(
        clinic,
        "bad.csv",
        {
            "patient_id": keys[:2],
            "outcome": ["good_outcome"] * 2,
            "value": ["1", "0"],
            "outcome_date": ["2026-06-01", "2025-13-45"],
        },
    )
    assert _apply(clinic, path).success
    recorded = clinic.query("SELECT patient_key FROM recorded_outcomes")["patient_key"].to_list()
    assert recorded == [keys[0]]
    reasons = clinic.query("SELECT reason FROM inbox_events WHERE status = 'rejected'")["reason"].to_list()
    assert len(reasons) == 1 and "line 3" in reasons[0] and "2025-13-45" in reasons[0]
    assert _apply(clinic, path).success  # the same file again: its rejections are not appended twice
    assert clinic.query("SELECT count(*) AS n FROM inbox_events WHERE status = 'rejected'")["n"][0] == 1


def test_one_admitted_arrival_causes_exactly_one_processing_run(clinic: Platform) -> None:
    manifest_tick = _tick_manifest(clinic, None)
    _register(clinic, manifest_tick)
    _drop_arrival(clinic, _prospective(clinic), "NEW-0001")
    inbox_tick = _tick_inbox(clinic)
    _register(clinic, inbox_tick)
    after = _tick_manifest(clinic, manifest_tick.cursor)  # admitted_patients.csv changed the manifest digest
    processing = [r for r in [*inbox_tick.run_requests, *after.run_requests] if r.partition_key == "NEW-0001"]
    assert [r.job_name for r in processing] == ["prospective_patient_job"]


def test_a_malformed_arrival_is_recorded_once_not_on_every_tick(clinic: Platform) -> None:
    folder = _drop_arrival(clinic, _prospective(clinic), "BAD-0001")
    (folder / "patient.csv").write_text(
        (folder / "patient.csv").read_text(encoding="utf-8").replace("center_", "nowhere_"), encoding="utf-8"
    )
    first, later = _Warnings(), _Warnings()
    cursor = _tick_inbox(clinic, None, first).cursor
    _tick_inbox(clinic, cursor, later)
    _tick_inbox(clinic, None, later)  # a restarted daemon
    assert len([m for m in first.messages if "BAD-0001" in m]) == 1
    assert [m for m in later.messages if "BAD-0001" in m] == []
    assert clinic.query("SELECT count(*) AS n FROM inbox_events WHERE patient_key = 'BAD-0001'")["n"][0] == 1
