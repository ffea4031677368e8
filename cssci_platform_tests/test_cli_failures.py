"""`cssci` on a broken disk, a held lock or a wrong file: it ends within seconds with one message naming the root
cause and a non-zero exit (2 for the user's input, 1 for the rest), never a traceback, never a hang."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from cssci_platform.lib.synthetic import write_sci_cohort

FAST = 120  # seconds: a command that fails must end long before this (the cyclic traceback never ended)


@pytest.fixture(scope="module")
def manifest(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_sci_cohort(tmp_path_factory.mktemp("cohort"), n_development=2, n_prospective=0, seed=3)


def clean_env(home: Path, **variables: str) -> dict[str, str]:
    env = {**os.environ, "CSSCI_HOME": str(home), "COLUMNS": "200", **variables}
    for name in (
        "CSSCI_WAREHOUSE",
        "CSSCI_IMAGE_STORE",
        "CSSCI_MANIFEST",
        "DAGSTER_HOME",
        "CSSCI_MLFLOW_URI",
        "CSSCI_EXPERIMENT_CONFIG",
        "CSSCI_LOG_DIR",
        "CSSCI_DEBUG",
        "CSSCI_PROFILE",
        "CSSCI_CLUSTER_FILE",
        "CSSCI_DAGSTER_STORAGE_URL",
        "CSSCI_WAREHOUSE_SERVER",
        "CSSCI_CELERY_BROKER",
    ):
        if name not in variables:
            env.pop(name, None)
    return env


def cssci(args: list[str], env: dict[str, str], cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "cssci_platform.cli.main", *args],
        env=env,
        cwd=cwd,
        capture_output=True,
        text=True,
        encoding="utf-8",
        timeout=FAST,
    )


def output(completed: subprocess.CompletedProcess) -> str:
    return " ".join((completed.stdout + completed.stderr).split())  # rich wraps long lines


def assert_one_clear_failure(completed: subprocess.CompletedProcess, code: int, *expected: str) -> None:
    text = output(completed)
    assert completed.returncode == code, text
    assert "Traceback" not in text and "Execution of step" not in text and "Stack Trace" not in text, text
    for part in expected:
        assert part in text, text


def test_ingest_into_a_warehouse_path_that_is_a_folder_ends_at_once(manifest: Path, tmp_path: Path) -> None:
    folder = tmp_path / "warehouse.duckdb"
    folder.mkdir()
    started = time.monotonic()
    completed = cssci(["ingest", str(manifest)], clean_env(tmp_path / "home", CSSCI_WAREHOUSE=str(folder)), tmp_path)
    assert_one_clear_failure(completed, 1, f"the warehouse {folder} is a folder", "full traceback: ")
    assert time.monotonic() - started < 60
    [log] = (tmp_path / "home" / "logs").glob("cssci-*.log")  # the details are kept, once, for whoever debugs
    assert "Traceback" in log.read_text(encoding="utf-8")


def test_ingest_where_a_file_stands_in_for_the_warehouse_folder(manifest: Path, tmp_path: Path) -> None:
    (tmp_path / "data").write_text("not a folder", encoding="utf-8")
    warehouse = tmp_path / "data" / "warehouse.duckdb"
    completed = cssci(["ingest", str(manifest)], clean_env(tmp_path / "home", CSSCI_WAREHOUSE=str(warehouse)), tmp_path)
    assert_one_clear_failure(completed, 1, "a file stands where a folder is expected", str(tmp_path / "data"))


HOLDER = textwrap.dedent("""
    import sys, time, duckdb
    duckdb.connect(sys.argv[1]).close()
    con = duckdb.connect(sys.argv[1], read_only=True)  # a user's read-only session, left open
    print("holding", flush=True)
    time.sleep(300)
""")


def test_ingest_while_a_users_duckdb_session_holds_the_warehouse_names_that_process(
    manifest: Path, tmp_path: Path
) -> None:
    warehouse = tmp_path / "home" / "warehouse.duckdb"
    warehouse.parent.mkdir(parents=True)
    holder = subprocess.Popen([sys.executable, "-c", HOLDER, str(warehouse)], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "holding"
        started = time.monotonic()
        completed = cssci(
            ["ingest", str(manifest)], clean_env(tmp_path / "home", CSSCI_LOCK_WAIT_SECONDS="1"), tmp_path
        )
        assert_one_clear_failure(
            completed,
            1,
            f"the warehouse {warehouse} is locked by another process",
            f"(PID {holder.pid})",
            "Close that DuckDB session",
        )
        assert time.monotonic() - started < 60
    finally:
        holder.kill()
        holder.wait(timeout=30)


def test_ingest_on_a_full_disk_says_the_disk_is_full_before_any_patient(manifest: Path, tmp_path: Path) -> None:
    home = tmp_path / "home"
    completed = cssci(["ingest", str(manifest)], clean_env(home, CSSCI_MIN_FREE_MB="1e12"), tmp_path)  # needs 1 PB free
    assert_one_clear_failure(completed, 1, "the disk is full", "MB free on the disk holding", "nothing was started")
    assert not (home / "warehouse.duckdb").exists()


def test_patients_failing_outside_qc_fail_the_command_with_their_root_cause(manifest: Path, tmp_path: Path) -> None:
    # The image store cannot be written (a file where its folder should be): every patient fails at preprocessing.
    # Before: "QC errors: 0" and exit 0.
    (tmp_path / "blocked").write_text("a file", encoding="utf-8")
    env = clean_env(tmp_path / "home", CSSCI_IMAGE_STORE=str(tmp_path / "blocked" / "store"))
    completed = cssci(["ingest", str(manifest), "--workers", "1"], env, tmp_path)
    assert_one_clear_failure(
        completed,
        1,
        "2 of 2 patients failed for a reason other than QC",
        "a file stands where a folder is expected",
        str(tmp_path / "blocked"),
    )
    assert "QC errors: 0" not in output(completed)


def test_a_second_command_on_the_same_home_is_refused_naming_the_first(manifest: Path, tmp_path: Path) -> None:
    home = tmp_path / "home"
    first = subprocess.Popen(
        [
            sys.executable,
            "-c",
            textwrap.dedent(f"""
        import time
        from pathlib import Path
        from cssci_platform.cli.home import home_lock
        with home_lock(Path({str(home)!r}), "cssci ingest first.yaml"):
            print("running", flush=True)
            time.sleep(300)
    """),
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert first.stdout is not None and first.stdout.readline().strip() == "running"
        completed = cssci(["ingest", str(manifest)], clean_env(home), tmp_path)
        assert_one_clear_failure(
            completed, 1, f"another cssci command is using {home}", f"pid {first.pid}", "`cssci ingest first.yaml`"
        )
        assert not (home / "warehouse.duckdb").exists()  # refused before touching anything
    finally:
        first.kill()
        first.wait(timeout=30)


# ---- user errors: exit 2, one message, before any patient ----------------------------------------------------


def test_a_zero_byte_cohort_yaml_is_one_message_and_exit_2(manifest: Path, tmp_path: Path) -> None:
    broken = tmp_path / "cohort"
    shutil.copytree(manifest.parent, broken)
    (broken / "cohort.yaml").write_bytes(b"")
    completed = cssci(["ingest", str(broken / "cohort.yaml")], clean_env(tmp_path / "home"), tmp_path)
    assert_one_clear_failure(completed, 2, str(broken / "cohort.yaml"), "expected a mapping of keys")
    assert not (tmp_path / "home" / "warehouse.duckdb").exists()


def test_a_malformed_patient_table_is_one_message_and_exit_2(manifest: Path, tmp_path: Path) -> None:
    broken = tmp_path / "cohort"
    shutil.copytree(manifest.parent, broken)
    (broken / "patients.csv").write_bytes(b"\x00\xff garbage\n\x01\x02")
    completed = cssci(["ingest", str(broken / "cohort.yaml")], clean_env(tmp_path / "home"), tmp_path)
    assert_one_clear_failure(completed, 2, str(broken / "patients.csv"), "required column 'patient_id' is missing")


def study_config(tmp_path: Path, manifest: str, weights: str = "none") -> Path:
    path = tmp_path / "study.yaml"
    path.write_text(
        textwrap.dedent(f"""
        name: my_study
        cohort: {{manifest: {manifest}}}
        outcome: {{name: good_outcome}}
        deep: {{backbones: [resnet18], weights: {weights}}}
    """),
        encoding="utf-8",
    )
    return path


def test_config_validate_refuses_a_manifest_that_does_not_exist(tmp_path: Path) -> None:
    config = study_config(tmp_path, "nowhere/cohort.yaml")
    completed = cssci(["config", "validate", str(config)], clean_env(tmp_path / "home"), tmp_path)
    assert_one_clear_failure(completed, 2, f"cohort.manifest: {tmp_path / 'nowhere' / 'cohort.yaml'} does not exist")


def test_config_validate_and_run_refuse_a_missing_weights_file_before_any_patient(
    manifest: Path, tmp_path: Path
) -> None:
    config = study_config(tmp_path, str(manifest), weights=str(tmp_path / "resnet18_finetuned.pt"))
    expected = f"deep.weights: the checkpoint file {tmp_path / 'resnet18_finetuned.pt'} does not exist"
    validated = cssci(["config", "validate", str(config)], clean_env(tmp_path / "home"), tmp_path)
    assert_one_clear_failure(validated, 2, expected)
    ran = cssci(
        ["run", "--config", str(config), "--home", str(tmp_path / "home")], clean_env(tmp_path / "home"), tmp_path
    )
    assert_one_clear_failure(ran, 2, expected)
    assert not (tmp_path / "home" / "warehouse.duckdb").exists()


def test_run_on_a_malformed_manifest_is_exit_2_before_any_patient(manifest: Path, tmp_path: Path) -> None:
    broken = tmp_path / "cohort"
    shutil.copytree(manifest.parent, broken)
    (broken / "cohort.yaml").write_text("manifest_version: 1\nname: [unclosed\n", encoding="utf-8")
    config = study_config(tmp_path, str(broken / "cohort.yaml"))
    completed = cssci(
        ["run", "--config", str(config), "--home", str(tmp_path / "home")], clean_env(tmp_path / "home"), tmp_path
    )
    assert_one_clear_failure(completed, 2, str(broken / "cohort.yaml"))
    assert not (tmp_path / "home" / "warehouse.duckdb").exists()


def test_predict_on_a_folder_without_the_patients_row_is_exit_2(manifest: Path, tmp_path: Path) -> None:
    folder = tmp_path / "new_patient"
    folder.mkdir()
    env = clean_env(tmp_path / "home", CSSCI_MANIFEST=str(manifest))
    completed = cssci(["predict", "--patient-dir", str(folder), "--home", str(tmp_path / "home")], env, tmp_path)
    assert_one_clear_failure(completed, 2, f"cannot score {folder}", "add the patient's row")


def started_patient_runs(home: Path) -> list:
    """The patient runs of the home's instance that a run worker executes now."""
    import dagster as dg

    if not (home / "patient_claims").exists():  # before a patient run claimed a patient, the command may be creating
        return []  # the instance's storage
    try:
        with dg.DagsterInstance.from_config(str(home / "dagster_home")) as instance:
            started = instance.get_runs(filters=dg.RunsFilter(statuses=[dg.DagsterRunStatus.STARTED]))
            return [run for run in started if run.job_name in ("patient_batch_job", "patient_features_job")]
    except Exception:  # noqa: BLE001 - the command is creating the instance's storage right now
        return []


def run_worker_pids(home: Path) -> list[int]:
    import dagster as dg

    from cssci_platform.cli.orphaned_runs import run_worker_pid

    with dg.DagsterInstance.from_config(str(home / "dagster_home")) as instance:
        pids = [run_worker_pid(instance, run.run_id) for run in instance.get_runs()]
    return [pid for pid in pids if pid is not None]


def unfinished_runs(home: Path) -> list:
    import dagster as dg

    with dg.DagsterInstance.from_config(str(home / "dagster_home")) as instance:
        return [run for run in instance.get_runs() if not run.is_finished]


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    stat = Path(f"/proc/{pid}/stat")
    return not (stat.exists() and stat.read_text().rsplit(")", 1)[1].split()[0] == "Z")


def ingest_with_running_workers(tmp_path: Path, stdout: int) -> tuple[subprocess.Popen, list[int]]:
    """`cssci ingest` of 12 patients (a few minutes), returned once two patient runs execute (their run workers
    launched from the command's run queue); returns the command and those workers' pids."""
    manifest = write_sci_cohort(tmp_path / "cohort", n_development=12, n_prospective=0, seed=4)
    process = subprocess.Popen(
        [sys.executable, "-m", "cssci_platform.cli.main", "ingest", str(manifest), "--workers", "2"],
        env=clean_env(tmp_path / "home"),
        cwd=tmp_path,
        stdout=stdout,
        stderr=subprocess.STDOUT,
        text=True,
        encoding="utf-8",
    )
    deadline, workers = time.monotonic() + 300, []
    while len(workers) < 2 and time.monotonic() < deadline and process.poll() is None:
        time.sleep(0.5)
        workers = [pid for pid in run_worker_pids(tmp_path / "home") if alive(pid)] \
            if started_patient_runs(tmp_path / "home") else []
    if process.poll() is not None:
        pytest.fail(f"the ingest ended ({process.returncode}) before two patient runs started: "
                    f"{process.stdout.read()[-3000:] if process.stdout else ''}")
    assert len(workers) >= 2, "the patient runs did not start"
    return process, workers


def test_sigterm_stops_an_ingest_at_once_and_says_what_was_kept(tmp_path: Path) -> None:
    # Before: SIGTERM was swallowed and the ingest went on through every patient, then exited 0.
    process, workers = ingest_with_running_workers(tmp_path, subprocess.PIPE)
    try:
        process.send_signal(15)
        started = time.monotonic()
        text, _ = process.communicate(timeout=FAST)
        assert time.monotonic() - started < 20, "it went on after SIGTERM"
    finally:
        if process.poll() is None:
            process.kill()
            process.wait(timeout=30)
    text = " ".join(text.split())
    assert process.returncode == 130, text
    assert "stopped (SIGTERM)" in text and "Traceback" not in text and "QC errors" not in text, text
    assert unfinished_runs(tmp_path / "home") == []  # queued runs canceled, started ones terminated
    assert not any(alive(pid) for pid in workers)


def _parent(pid: int) -> int:
    return int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[1])


def test_workers_of_a_killed_ingest_end_with_it(tmp_path: Path) -> None:
    # Before: SIGKILL of `cssci ingest` left its patient workers running as orphans for ever. Now its run queue (a
    # thread of the command) and its code server's run workers end with it: nothing launches the runs it left queued.
    process, workers = ingest_with_running_workers(tmp_path, subprocess.DEVNULL)
    # the command's code server (the parent of the workers' fork server) listens in a private folder the command can
    # no longer remove
    fork_server = _parent(workers[0])
    arguments = Path(f"/proc/{_parent(fork_server)}/cmdline").read_bytes().split(b"\0")
    folder = Path(arguments[arguments.index(b"--socket") + 1].decode()).parent
    assert folder.is_dir()
    try:
        process.kill()
        process.wait(timeout=30)
        deadline = time.monotonic() + 20
        while any(alive(pid) for pid in workers) and time.monotonic() < deadline:
            time.sleep(0.5)
        assert not any(alive(pid) for pid in workers + [fork_server]), "orphaned run workers still run"
        assert not folder.exists(), "the killed command's code server folder was left behind"
        time.sleep(5)  # a run queue left alive would launch the next queued patient within its 1 s dequeue interval
        assert not [pid for pid in run_worker_pids(tmp_path / "home") if alive(pid)]
    finally:
        for pid in workers:
            if alive(pid):
                os.kill(pid, 9)


def test_a_cluster_profile_without_its_file_is_one_message_and_exit_2(manifest: Path, tmp_path: Path) -> None:
    completed = cssci(["ingest", str(manifest)], clean_env(tmp_path / "home", CSSCI_PROFILE="cluster"), tmp_path)
    assert_one_clear_failure(completed, 2, "CSSCI_PROFILE=cluster needs CSSCI_CLUSTER_FILE")
    assert not (tmp_path / "home" / "warehouse.duckdb").exists()


def test_a_worker_outside_the_cluster_profile_is_one_message_and_exit_2(tmp_path: Path) -> None:
    completed = cssci(["worker", "--home", str(tmp_path / "home")], clean_env(tmp_path / "home"), tmp_path)
    assert_one_clear_failure(completed, 2, "cssci worker executes the steps of the cluster profile's Celery broker",
                             "CSSCI_PROFILE=cluster")
