"""Patients run through the home's Dagster instance (issue 18): runs submitted to the run queue as the launchpad
submits them, launched from the run queue, give the same warehouse rows as the in-process path; an interrupted command
cancels the runs it left; a run whose worker is killed (SIGKILL) is marked failed; the same call again runs only
the patients not done, and the tables equal the uninterrupted ones."""

from __future__ import annotations

import os
import shutil
import signal
import threading
import time
from pathlib import Path

import dagster as dg
import duckdb
import pytest

from cssci_platform.cli import instance_runs, orphaned_runs, patient_runs
from cssci_platform.cli.dagster_runs import IN_PROCESS, materialize_manifest, register_partitions, run_job
from cssci_platform.cli.home import activate_study, configure_environment
from cssci_platform.lib.cohort import load_cohort
from cssci_platform.lib.synthetic import write_sci_cohort
from cssci_platform_tests.conftest import STORE_VARIABLES

pytestmark = [pytest.mark.timeout(900), pytest.mark.usefixtures("restored_environment")]
PATIENT_TABLES = {
    "patients": ["patient_key"],
    "clinical": ["patient_key", "variable"],
    "outcomes": ["patient_key", "outcome"],
    "scans": ["patient_key", "path"],
    "qc_issues": ["patient_key", "code", "file"],
    "preprocessed_channels": ["patient_key", "sequence", "channel"],
    "radiomics_features": ["patient_key", "sequence", "roi", "segmentation", "channel", "feature"],
    "patient_status": ["patient_key"],
}
VOLATILE = {"updated_at", "detected_at", "created_at", "run_id"}
ONE_RUN_AT_A_TIME = "concurrency:\n  runs:\n    max_concurrent_runs: 1\ntelemetry:\n  enabled: false\n"


def _prepared_home(home: Path, manifest: Path) -> list[str]:
    """A fresh home whose instance launches one run at a time, with the manifest materialized and the patients
    registered; returns the patient keys."""
    shutil.rmtree(home, ignore_errors=True)
    for name in STORE_VARIABLES:
        os.environ.pop(name, None)
    (home / "dagster_home").mkdir(parents=True)
    (home / "dagster_home" / "dagster.yaml").write_text(ONE_RUN_AT_A_TIME, encoding="utf-8")
    configure_environment(home, manifest)
    activate_study(home, manifest)
    cohort = load_cohort(manifest)
    keys = sorted(cohort.patients)
    with dg.DagsterInstance.get() as instance:
        materialize_manifest(instance)
        register_partitions(instance, keys, sorted({p.center for p in cohort.patients.values()}))
    return keys


def _run_patients(instance: dg.DagsterInstance, keys: list[str],
                  on_outcome=lambda outcome: None) -> list[patient_runs.PatientRunOutcome]:
    """The patients through the instance, in a session of their own (as one command)."""
    with instance_runs.instance_session(instance) as session:  # one worker: a batch run per patient here
        return patient_runs.run_patients_on_instance(session, keys, on_outcome, workers=1)


def _tables(home: Path) -> dict[str, list[tuple]]:
    with duckdb.connect(str(home / "warehouse.duckdb"), read_only=True) as con:
        tables = {}
        for table, order in PATIENT_TABLES.items():
            frame = con.execute(f"SELECT * FROM {table} ORDER BY {', '.join(order)}").pl()
            frame = frame.drop([c for c in frame.columns if c in VOLATILE])
            tables[table] = [tuple(str(v).replace(str(home), "<home>") for v in row) for row in frame.rows()]
    return tables


def _kill_worker_of(patient_key: str, timeout: float = 600) -> None:
    """SIGKILL the process executing the patient's next run as soon as it has one (own instance: another thread)."""
    with dg.DagsterInstance.get() as instance:
        _kill_next_worker(instance, patient_key, timeout)


def _kill_next_worker(instance: dg.DagsterInstance, patient_key: str, timeout: float) -> None:
    known = patient_runs.latest_patient_run(instance, patient_key)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        run = patient_runs.latest_patient_run(instance, patient_key)
        if run is not None and run.run_id != (known and known.run_id):
            if pid := orphaned_runs.run_worker_pid(instance, run.run_id):
                os.kill(pid, signal.SIGKILL)
                return
        time.sleep(0.2)


def test_instance_runs_equal_in_process_runs_and_an_interrupted_call_resumes(tmp_path: Path) -> None:
    manifest = write_sci_cohort(tmp_path / "cohort", n_development=2, n_prospective=0, seed=41,
                                second_rater_fraction=0)
    home = tmp_path / "home"  # the same path for both (derived file names hash their source paths)
    keys = _prepared_home(home, manifest)
    in_process = [run_job(patient_runs.PATIENT_JOB, partition_key=key) for key in keys]  # the serial path
    assert all(result.success for result in in_process)
    reference = _tables(home)

    _prepared_home(home, manifest)
    seen: list[patient_runs.PatientRunOutcome] = []

    def interrupt_after_first(outcome: patient_runs.PatientRunOutcome) -> None:
        seen.append(outcome)
        raise KeyboardInterrupt("SIGINT")

    with dg.DagsterInstance.get() as instance:
        with pytest.raises(KeyboardInterrupt):
            _run_patients(instance, keys, interrupt_after_first)
        [first] = seen
        assert first.success and first.patient_key == keys[0]  # runs leave the queue in submission order
        second = patient_runs.latest_patient_run(instance, keys[1])
        # queued when the command stopped: canceled; or already launched by the daemon (the first batch's outcome
        # arrives before its run ends): terminated, then canceled or failed. Either way not done.
        assert second is not None and second.status in (dg.DagsterRunStatus.CANCELED, dg.DagsterRunStatus.FAILURE)
        assert patient_runs.patients_to_run(instance, keys) == [keys[1]]

        killer = threading.Thread(target=_kill_worker_of, args=(keys[1],), daemon=True)
        killer.start()
        [killed] = _run_patients(instance, keys)
        killer.join(timeout=5)
        assert not killed.success and killed.patient_key == keys[1] and killed.failed_outside_qc
        assert "run worker" in killed.reason and ("SIGKILL" in killed.reason or "killed" in killed.reason)

        resumed = _run_patients(instance, keys)
        assert [(o.patient_key, o.success) for o in resumed] == [(keys[1], True)]
        assert _run_patients(instance, keys) == []  # nothing left to run
    assert _tables(home) == reference


def test_a_patient_whose_row_or_image_changed_since_its_successful_run_is_run_again(tmp_path: Path) -> None:
    manifest = write_sci_cohort(tmp_path / "cohort", n_development=2, n_prospective=0, seed=42,
                                second_rater_fraction=0)
    cohort = load_cohort(manifest)
    keys = sorted(cohort.patients)
    digests = {key: patient_runs.patient_input_digest(cohort, cohort.patients[key]) for key in keys}
    home = tmp_path / "dagster_home"
    home.mkdir()
    (home / "dagster.yaml").write_text("telemetry:\n  enabled: false\n", encoding="utf-8")
    with dg.DagsterInstance.from_config(str(home)) as instance:
        for key in keys:  # each patient's run succeeded on today's inputs
            instance.add_run(dg.DagsterRun(job_name=patient_runs.PATIENT_JOB, status=dg.DagsterRunStatus.SUCCESS,
                                           tags={patient_runs.PARTITION_TAG: key,
                                                 patient_runs.INPUT_DIGEST_TAG: digests[key]}))
        assert patient_runs.patients_to_run(instance, keys, digests) == []

        image = cohort.resolve(next(iter(cohort.patients[keys[1]].images.values())))
        time.sleep(0.01)
        image.write_bytes(image.read_bytes())  # the same path, a new file (modification time)
        changed = load_cohort(manifest)
        now = {key: patient_runs.patient_input_digest(changed, changed.patients[key]) for key in keys}
        assert patient_runs.patients_to_run(instance, keys, now) == [keys[1]]

        rows = manifest.parent / "patients.csv"
        rows.write_text(rows.read_text(encoding="utf-8").replace(",1,", ",0,", 1), encoding="utf-8")
        edited = load_cohort(manifest)
        after = {key: patient_runs.patient_input_digest(edited, edited.patients[key]) for key in keys}
        assert sorted(k for k in keys if after[k] != now[k])  # some row's content changed
        assert patient_runs.patients_to_run(instance, keys, after) == sorted(
            {keys[1]} | {k for k in keys if after[k] != now[k]})


def test_a_command_launches_each_run_it_queues_at_once_not_at_the_queues_next_tick(tmp_path: Path) -> None:
    # Before: a command's runs were launched by a `dagster-daemon run` process of its own, which looks at the queue
    # once per dequeue interval: each run waited up to that interval (1 s in a command's home; here an hour, so the
    # second run would wait an hour). Now the command's run queue looks as soon as the command queued a run.
    manifest = write_sci_cohort(tmp_path / "cohort", n_development=1, n_prospective=0, seed=45,
                                second_rater_fraction=0)
    home = tmp_path / "home"
    _prepared_home(home, manifest)
    (home / "dagster_home" / "dagster.yaml").write_text(
        ONE_RUN_AT_A_TIME + "run_queue:\n  dequeue_interval_seconds: 3600\n", encoding="utf-8")
    with dg.DagsterInstance.get() as instance, instance_runs.instance_session(instance) as session:
        for _ in range(2):
            started = time.monotonic()
            ended = session.run(patient_runs.MANIFEST_JOB, run_config=IN_PROCESS)
            assert ended.success, ended.failure
            assert time.monotonic() - started < 300, "the run waited for the queue's next tick"
        assert not orphaned_runs.daemon_alive(instance)  # launched by the command itself, no daemon process
    log = (home / "logs" / "dagster-daemon.log").read_text(encoding="utf-8")
    assert log.count("Launched 1 runs") == 2, log[-3000:]
