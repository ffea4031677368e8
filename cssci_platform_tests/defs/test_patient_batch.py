"""`patient_batch_job`: several patients in one run give the warehouse rows, per-partition materializations and
check evaluations of a `patient_features_job` run per patient; a quarantined patient does not stop the batch, nor does
one whose step raises (the run then fails naming it); each patient's outcome is recorded for a resumed command; the
runs of a wave each take the patients no other run of the wave took, and name them in their tags."""

import gzip
from pathlib import Path

import dagster as dg
import duckdb
import pytest

from cssci_platform.cli.patient_runs import (
    BATCH_OP,
    PATIENT_BATCH_JOB,
    _untagged_batch_runs,
    latest_patient_runs,
    taken_patients,
)
from cssci_platform.defs.embeddings.assets import roi_slices
from cssci_platform.defs.embeddings.checks import roi_slice_found
from cssci_platform.defs.ingest import patient_batch
from cssci_platform.defs.ingest.assets import cohort_manifest
from cssci_platform.defs.ingest.jobs import PATIENT_ASSETS
from cssci_platform.lib.feature_store import feature_store_root
from cssci_platform.lib.patient_claims import claim_patient, claims_folder, patient_claimant
from cssci_platform_tests.defs.conftest import PATIENT_ASSETS as FEATURE_ASSETS
from cssci_platform_tests.defs.conftest import PATIENT_CHECKS, Platform

VOLATILE = {"updated_at", "detected_at", "created_at", "run_id"}
TABLES = {"scans": "patient_key, path", "qc_issues": "patient_key, stage, code, file",
          "preprocessed_channels": "patient_key, sequence, channel", "preprocessed_masks": "patient_key, sequence, roi",
          "radiomics_features": "patient_key, sequence, roi, segmentation, channel, feature",
          "roi_slices": "patient_key, channel", "patient_status": "patient_key"}


def _asset_def(name: str) -> dg.AssetsDefinition:
    return {a.key.to_user_string(): a for a in [*FEATURE_ASSETS, roi_slices]}[name]


def _per_partition_run(platform: Platform, key: str) -> dg.ExecuteInProcessResult:
    assets = [*FEATURE_ASSETS, roi_slices]
    return dg.materialize([*assets, *PATIENT_CHECKS, roi_slice_found, cohort_manifest],
                          selection=[a.key for a in assets], partition_key=key, instance=platform.instance,
                          resources=platform.resources, raise_on_error=False)


def _batch_config(keys: list[str], wave: str = "") -> dict:
    digests = {k: "d-" + k for k in keys}
    return {"ops": {BATCH_OP: {"config": {"patients": keys, "input_digests": digests, "wave": wave}}}}


def _batch_run(platform: Platform, keys: list[str], wave: str = "") -> dg.ExecuteInProcessResult:
    return patient_batch.patient_batch_job.execute_in_process(run_config=_batch_config(keys, wave),
                                                              instance=platform.instance,
                                                              resources=platform.resources, raise_on_error=False)


def _tables(platform: Platform) -> dict[str, list[tuple]]:
    tables = {}
    for table, order in TABLES.items():
        frame = platform.query(f"SELECT * FROM {table} ORDER BY {order}")
        tables[table] = frame.drop([c for c in frame.columns if c in VOLATILE]).rows()
    return tables


def _recorded(result: dg.ExecuteInProcessResult) -> tuple[set, set]:
    materialized = {(m.asset_key.to_user_string(), m.partition) for m in
                    (e.event_specific_data.materialization for e in result.get_asset_materialization_events())}
    checks = {(e.check_name, e.partition, e.passed) for e in result.get_asset_check_evaluations()}
    return materialized, checks


def _outcomes(result: dg.ExecuteInProcessResult) -> dict[str, dict]:
    events = [e for e in result.all_events if e.event_type == dg.DagsterEventType.ASSET_OBSERVATION]
    observed = [e.event_specific_data.asset_observation for e in events]
    return {o.partition: {k: v.value for k, v in o.metadata.items()} for o in observed}


def _corrupt_image(platform: Platform, key: str) -> None:
    path = platform.manifest.parent / "images" / key / "sag_T2.nii.gz"
    path.write_bytes(gzip.compress(b"not a nifti at all")[:20])


def test_the_batch_steps_are_the_patient_jobs_assets_and_checks_in_order() -> None:
    assert [step.asset for step in patient_batch.PATIENT_STEPS] == PATIENT_ASSETS
    checks = {next(iter(c.check_keys)).name: c for c in [*PATIENT_CHECKS, roi_slice_found]}
    for step in patient_batch.PATIENT_STEPS:
        [spec] = checks[step.check].check_specs
        assert spec.asset_key.to_user_string() == step.asset and spec.blocking
        upstream = {dep.asset_key.to_user_string() for dep in _asset_def(step.asset).specs_by_key[spec.asset_key].deps}
        assert set(step.after) == upstream - {"cohort_manifest"}


def test_a_batch_run_equals_a_run_per_patient(platform: Platform, tmp_path: Path) -> None:
    platform.materialize_manifest()
    keys = platform.register()
    _corrupt_image(platform, keys[1])
    per_patient = [_per_partition_run(platform, key) for key in keys]
    assert [r.success for r in per_patient] == [key != keys[1] for key in keys]  # its blocking check failed
    reference_events = [set().union(*parts) for parts in zip(*map(_recorded, per_patient), strict=True)]
    reference = _tables(platform)

    platform.warehouse_path.unlink()
    platform.materialize_manifest()
    batch = _batch_run(platform, keys)
    assert batch.success  # a quarantined patient is an outcome, not a failure of the batch
    assert list(_recorded(batch)) == reference_events
    assert _tables(platform) == reference
    outcomes = _outcomes(batch)
    assert {k: o[patient_batch.OUTCOME] for k, o in outcomes.items()} == {
        k: patient_batch.QUARANTINED if k == keys[1] else patient_batch.PROCESSED for k in keys}
    assert outcomes[keys[1]]["failed_checks"] == "patient_qc"
    assert all(outcomes[k][patient_batch.INPUT_DIGEST] == "d-" + k for k in keys)
    stored = platform.instance.fetch_materializations(
        dg.AssetRecordsFilter(asset_key=dg.AssetKey("roi_slices"), asset_partitions=[keys[0]]), limit=5).records
    assert [r.event_log_entry.run_id for r in stored][0] == batch.run_id  # the UI's per-patient history shows it


def test_a_batch_opens_the_warehouse_once_per_step_that_writes(platform: Platform,
                                                              monkeypatch: pytest.MonkeyPatch) -> None:
    """Opening the warehouse costs ~45 ms (DuckDB creates a database instance each time), a good part of a reused
    patient's ~1.5 s: in a batch a step reads its inputs on the connection the step before it wrote with (4 per
    patient: one per step that writes), not on one of its own (7)."""
    platform.materialize_manifest()
    keys = platform.register()[:3]
    opened: list[str] = []
    real_connect = duckdb.connect

    def counting_connect(database: str = ":memory:", *args, **kwargs) -> duckdb.DuckDBPyConnection:
        opened.append(str(database))
        return real_connect(database, *args, **kwargs)

    monkeypatch.setattr(duckdb, "connect", counting_connect)
    batch = _batch_run(platform, keys)
    monkeypatch.undo()
    assert batch.success
    assert opened.count(str(platform.warehouse_path)) == len(patient_batch.PATIENT_STEPS) * len(keys), opened


def test_a_patient_whose_step_raises_fails_alone_and_the_run_names_it(platform: Platform, tmp_path: Path) -> None:
    platform.materialize_manifest()
    keys = platform.register()[:3]
    broken = keys[1]
    channels = feature_store_root(None, platform.manifest) / "channels"
    channels.mkdir(parents=True)
    (channels / broken).write_text("a file where the patient's channel folder goes", encoding="utf-8")

    batch = _batch_run(platform, keys)
    assert not batch.success
    failure = batch.get_step_failure_events()[0].event_specific_data.error.message
    assert broken in failure and "preprocessed_channels" in failure
    outcomes = _outcomes(batch)
    assert outcomes[broken][patient_batch.OUTCOME] == patient_batch.FAILED and outcomes[broken]["error"]
    assert {k: outcomes[k][patient_batch.OUTCOME] for k in keys if k != broken} == {
        k: patient_batch.PROCESSED for k in keys if k != broken}  # the patient after it was processed
    assert platform.query("SELECT count(*) AS n FROM radiomics_features WHERE patient_key = ?", [keys[2]])["n"][0] > 0


def test_each_patients_latest_batch_run_is_found_by_its_tag_and_older_untagged_runs_by_their_config(
        platform: Platform) -> None:
    """A resumed command asks for each patient's latest run: a batch run tags itself with each patient it takes (an
    indexed query whose cost does not grow with history); runs from before those tags are still found, from their
    config."""
    platform.materialize_manifest()
    keys = platform.register()[:3]
    untagged = dg.DagsterRun(job_name=PATIENT_BATCH_JOB, run_id="0" * 32, run_config=_batch_config(keys[:2]),
                             status=dg.DagsterRunStatus.SUCCESS)  # a batch run as recorded before the tags
    platform.instance.add_run(untagged)
    tagged = _batch_run(platform, keys[1:]).run_id
    assert taken_patients(platform.instance.get_run_by_id(tagged)) == keys[1:]
    latest = latest_patient_runs(platform.instance, [*keys, "never-run"])
    assert {key: run.run_id for key, run in latest.items()} == {keys[0]: untagged.run_id, keys[1]: tagged,
                                                                keys[2]: tagged}
    assert [r.dagster_run.run_id for r in _untagged_batch_runs(platform.instance)] == [untagged.run_id]
    newest = _batch_run(platform, keys[:1]).run_id
    assert latest_patient_runs(platform.instance, keys[:1])[keys[0]].run_id == newest


def test_the_runs_of_a_wave_each_take_only_the_patients_no_other_run_of_the_wave_took(platform: Platform) -> None:
    """The command gives every run of a wave the same patients: a run skips a patient another run of its wave took
    (no warehouse row, event or tag of it), takes the rest and names them in its tags, so the patient's latest run
    is the one that did it; a run that comes when all are taken does nothing."""
    platform.materialize_manifest()
    keys = platform.register()[:3]
    folder = claims_folder(platform.warehouse_path)
    assert claim_patient(folder, "wave-1", keys[1], "the other run")

    first = _batch_run(platform, keys, wave="wave-1")
    assert first.success
    assert sorted(_outcomes(first)) == [keys[0], keys[2]]
    assert {partition for _, partition in _recorded(first)[0]} == {keys[0], keys[2]}
    assert taken_patients(platform.instance.get_run_by_id(first.run_id)) == [keys[0], keys[2]]
    assert [patient_claimant(folder, "wave-1", key) for key in keys] == [first.run_id, "the other run", first.run_id]
    assert platform.query("SELECT DISTINCT patient_key FROM scans ORDER BY 1")["patient_key"].to_list() == [
        keys[0], keys[2]]
    latest = latest_patient_runs(platform.instance, keys)
    assert {key: run.run_id for key, run in latest.items()} == {keys[0]: first.run_id, keys[2]: first.run_id}

    late = _batch_run(platform, keys, wave="wave-1")
    assert late.success and _outcomes(late) == {} and _recorded(late) == (set(), set())
    assert taken_patients(platform.instance.get_run_by_id(late.run_id)) == []

    another_wave = _batch_run(platform, keys[1:2], wave="wave-2")  # claims are per wave: a new wave takes it
    assert sorted(_outcomes(another_wave)) == [keys[1]]
