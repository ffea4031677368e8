"""`cssci ingest` runs every unit of work through the home's Dagster instance (issue 18): the manifest's run and the
patients' batch runs are queued on the instance's run queue and launched from it by Dagster's queued-run coordinator
(the command's, in a thread: no daemon process) in a process of their own (as the UI's launchpad does), never executed
inside the command or a private process pool; each patient's partitions are
recorded as materialized, each by the one run of its wave that took it; `--workers` is the run queue's limit in the
home's dagster.yaml; the same command again runs nothing that already succeeded."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import dagster as dg
import pytest
import yaml

from cssci_platform.cli import patient_runs
from cssci_platform.cli.orphaned_runs import run_worker_pid
from cssci_platform.lib.batch_outcomes import WAVE_TAG
from cssci_platform.lib.patient_claims import CLAIMS_FOLDER
from cssci_platform.lib.synthetic import write_sci_cohort
from cssci_platform_tests.test_cli_failures import clean_env

pytestmark = pytest.mark.timeout(900)
CODE_SERVER = ["-m", "cssci_platform.cli.code_server"]  # a code server's command line after the interpreter
DAEMONS = ("dagster-daemon", "dagster._daemon", "cssci_platform.cli.command_daemon")  # a daemon process's command line


def _ingest(manifest: Path, home: Path, cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "cssci_platform.cli.main", "ingest", str(manifest), "--workers", "2"],
                          env=clean_env(home), cwd=cwd, capture_output=True, text=True, encoding="utf-8", timeout=600)


def _ingest_watching_processes(manifest: Path, home: Path, cwd: Path) -> tuple[subprocess.CompletedProcess, dict]:
    """`_ingest`, and every process it started while it ran: pid -> (parent pid, command line), from /proc."""
    command = [sys.executable, "-m", "cssci_platform.cli.main", "ingest", str(manifest), "--workers", "2"]
    process = subprocess.Popen(command, env=clean_env(home), cwd=cwd, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                               text=True, encoding="utf-8")
    seen: dict[int, tuple[int, str]] = {}
    deadline = time.monotonic() + 600
    while process.poll() is None and time.monotonic() < deadline:
        seen |= _descendants(process.pid, seen)
        time.sleep(0.05)
    stdout, stderr = process.communicate(timeout=60)
    return subprocess.CompletedProcess(command, process.returncode, stdout, stderr), seen


def _descendants(root: int, known: dict[int, tuple[int, str]]) -> dict[int, tuple[int, str]]:
    """The processes now running below `root` (through `known` parents that have ended), with their parent and
    latest command line: a child read between its fork and its exec shows its parent's command line, so a running
    process is read again at every look (an ended one that is not reaped yet reads empty and keeps what was seen)."""
    table = dict(known)
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            parent = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
            line = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode()
        except (OSError, IndexError, ValueError):  # ended while read
            continue
        if line:
            table[int(entry.name)] = (parent, line)
    below = {root}
    while grown := {pid for pid, (parent, _) in table.items() if parent in below and pid not in below}:
        below |= grown
    return {pid: table[pid] for pid in below - {root}}


def _code_servers(processes: dict[int, tuple[int, str]]) -> list[int]:
    """The code servers among `processes`; a fork of one that was seen before its exec (the fork server, the
    resource tracker) is not another."""
    lines = {pid: line.split()[1:1 + len(CODE_SERVER)] for pid, (_, line) in processes.items()}
    return [pid for pid, (parent, _) in processes.items()
            if lines[pid] == CODE_SERVER and lines.get(parent) != CODE_SERVER]


def _launched_by_the_daemon(instance: dg.DagsterInstance, run: dg.DagsterRun) -> bool:
    """Queued on the run queue, then executed by a run worker the run launcher started (not `execute_in_process`)."""
    types = {dg.DagsterEventType.RUN_ENQUEUED, dg.DagsterEventType.ENGINE_EVENT}
    events = instance.all_logs(run.run_id, of_type=types)
    enqueued = any(e.dagster_event and e.dagster_event.event_type == dg.DagsterEventType.RUN_ENQUEUED for e in events)
    return enqueued and any("Started process for run" in (e.message or "") for e in events)


def test_ingest_queues_each_run_on_the_instance_and_a_second_ingest_runs_nothing_again(tmp_path: Path) -> None:
    manifest = write_sci_cohort(tmp_path / "cohort", n_development=3, n_prospective=0, seed=44,
                                second_rater_fraction=0)
    home = tmp_path / "home"
    first, processes = _ingest_watching_processes(manifest, home, tmp_path)
    assert first.returncode == 0, first.stdout[-3000:] + first.stderr[-3000:]
    assert "3 patients processed" in first.stdout
    # one code server loads the definitions for the command and the daemon it starts, and starts the run workers
    # (before: one for the command and one for its daemon, each loading the definitions)
    code_servers = _code_servers(processes)
    assert len(code_servers) == 1, [(pid, processes[pid][0], processes[pid][1][:160]) for pid in code_servers]
    # no daemon process: the command dequeues and launches its runs itself (`cli/run_queue.py`; before, a
    # `dagster-daemon run` of its own imported Dagster and loaded the workspace again, and ticked the home's sensors)
    daemons = [line for _, line in processes.values() if any(name in line for name in DAEMONS)]
    assert daemons == [], daemons
    # what Dagster's coordinator logs goes to the home's daemon log, not the terminal
    assert "Launched 1 runs" in (home / "logs" / "dagster-daemon.log").read_text(encoding="utf-8")
    assert "QueuedRunCoordinatorDaemon" not in first.stdout + first.stderr
    settings = yaml.safe_load((home / "dagster_home" / "dagster.yaml").read_text(encoding="utf-8"))
    assert settings["concurrency"]["runs"]["max_concurrent_runs"] == 2  # --workers 2
    with dg.DagsterInstance.from_config(str(home / "dagster_home")) as instance:
        runs = instance.get_runs()
        # one wave of patient runs: a run per worker (`patient_waves`), both given the 3 patients
        assert sorted(r.job_name for r in runs) == ["cohort_manifest_job", "patient_batch_job", "patient_batch_job"]
        assert all(r.status == dg.DagsterRunStatus.SUCCESS for r in runs)
        assert all(_launched_by_the_daemon(instance, run) for run in runs), [r.job_name for r in runs]
        workers = [run_worker_pid(instance, run.run_id) for run in runs]
        assert any(pid in processes for pid in workers), "no run worker was seen running"
        # the run workers are forked from the code server's fork server, which preloaded what they load (not spawned
        # by the code server, each importing Dagster and the definitions again)
        fork_servers = {processes[pid][0] for pid in workers if pid in processes}
        assert len(fork_servers) == 1, [processes[pid] for pid in workers if pid in processes]
        [fork_server] = fork_servers
        assert processes[fork_server][0] == code_servers[0], processes[fork_server]
        assert "multiprocessing.forkserver" in processes[fork_server][1], processes[fork_server]
        assert "cssci_platform.run_worker_preload" in processes[fork_server][1]
        keys = sorted(instance.get_dynamic_partitions("patients"))
        batch_runs = [run for run in runs if run.job_name == "patient_batch_job"]
        assert all(sorted(patient_runs.batch_patients(run)) == keys for run in batch_runs) and len(keys) == 3
        assert len({run.tags[WAVE_TAG] for run in batch_runs}) == 1
        taken = sorted(key for run in batch_runs for key in patient_runs.taken_patients(run))
        assert taken == keys  # each patient by one run, the one whose outcome the command reported
        for run in batch_runs:
            assert sorted(patient_runs.batch_outcomes(instance, run.run_id)) == sorted(patient_runs.taken_patients(run))
        assert list((home / CLAIMS_FOLDER).iterdir()) == []  # the wave's claims went with it
        for asset in ("patient_scans", "preprocessed_channels", "radiomics_features", "roi_slices"):
            assert instance.get_materialized_partitions(dg.AssetKey(asset)) == set(keys), asset

    again = _ingest(manifest, home, tmp_path)
    assert again.returncode == 0, again.stdout[-3000:] + again.stderr[-3000:]
    assert "3 of 3 patients already done" in " ".join(again.stdout.split())
    with dg.DagsterInstance.from_config(str(home / "dagster_home")) as instance:
        assert len(instance.get_runs(filters=dg.RunsFilter(job_name="patient_batch_job"))) == 2  # nothing ran again
