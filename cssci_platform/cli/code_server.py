"""One code server per command (issue 18: what a command costs): the `dagster api grpc` server of workspace.yaml's
code location, from which the command reads its jobs and its run queue (`run_queue`) launches the command's runs
(the run workers are forked from this server's fork server). Before, Dagster started one for the command and another
for the daemon it started, each importing Dagster and loading the definitions (~3 s of CPU per command on this
project's 2-core machines).

The server runs under `daemon_guard` (it and its run workers end with the command, even when the command is killed),
listens on a Unix socket in a private temporary folder (never a TCP port), and is described to Dagster by a
workspace file beside the socket: a `grpc_server` entry under the code location's own name, so that runs carry the
name the UI's and any daemon's workspace give that location.

Its run workers are forked from a fork server that imported what a run worker loads once (`run_worker_preload`),
started as the server starts, while the command is still starting: Dagster's own server spawns each run worker, a
new interpreter that imports Dagster, its storages and the definitions again (~1.4 s before a run's first step on
this project's 2-core machines, and ~2 s of CPU per run: benchmarks/RESULTS.md, "Issue 18, session 17")."""

from __future__ import annotations

import multiprocessing
import multiprocessing.forkserver
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import yaml

from cssci_platform.cli.daemon_guard import REMOVE_ENV, start_guarded
from cssci_platform.cli.home import PROJECT_ROOT

WORKSPACE_FILE = PROJECT_ROOT / "workspace.yaml"  # the code location: the UI, `dagster dev` and the commands load it
SERVER_MODULE = "cssci_platform.cli.code_server"  # `serve`: Dagster's code server with preloaded run workers
RUN_WORKER_PRELOAD = "cssci_platform.run_worker_preload"  # imported once by the fork server of the run workers
# Not given to the server: Dagster's code server opens the instance of DAGSTER_HOME as it starts (creating a new
# home's storage) though it needs none (every run it launches carries its instance's reference), and two processes
# creating an instance's storage at once leave it unreadable (two alembic heads): so the server can start while the
# command still creates its home. Nothing a run worker runs reads DAGSTER_HOME (every run of the suite goes through
# such a server); test_code_server checks the server's environment.
INSTANCE_ENV = ("DAGSTER_HOME",)
STARTUP_TIMEOUT_SECONDS = 180.0  # a loaded 2-core machine takes ~3-10 s to import Dagster and load the definitions
SHUTDOWN_WAIT_SECONDS = 10.0  # after asking the server to shut down
STOP_TIMEOUT_SECONDS = 30.0  # after SIGTERM to its guard
POLL_SECONDS = 0.05


class CodeServerFailed(RuntimeError):
    """The code server ended or did not answer in time; the message names its log."""


@dataclass(frozen=True)
class CodeLocation:
    """workspace.yaml's one code location: a Python module loaded from a working directory."""

    module_name: str
    working_directory: Path

    @property
    def name(self) -> str:
        return self.module_name  # Dagster's name for a `python_module` location without `location_name`


@dataclass(frozen=True)
class CodeServer:
    workspace_file: Path  # a workspace of one `grpc_server` location: this server
    socket: Path
    location: CodeLocation


def workspace_location(workspace_file: Path = WORKSPACE_FILE) -> CodeLocation:
    """The code location workspace.yaml declares (one `python_module` entry)."""
    [entry] = yaml.safe_load(workspace_file.read_text(encoding="utf-8"))["load_from"]
    module = entry["python_module"]
    return CodeLocation(module["module_name"], (workspace_file.parent / module.get("working_directory", ".")).resolve())


@dataclass
class StartingCodeServer:
    """A code server whose process has started; `serving` waits until it answers."""

    server: CodeServer
    process: subprocess.Popen
    log: Path
    folder: Path  # the private folder of its socket and workspace file

    def serving(self) -> CodeServer:
        """The server, once it answers; raises `CodeServerFailed` when it ended or did not answer in time."""
        _wait_until_serving(self.process, self.server, self.log)
        return self.server

    def stop(self) -> None:
        _stop(self.process, self.server)
        shutil.rmtree(self.folder, ignore_errors=True)


@contextmanager
def code_server(log_folder: Path, started: StartingCodeServer | None = None) -> Iterator[StartingCodeServer]:
    """A code server of workspace.yaml's location (`started`, one the command started earlier, else one started now),
    stopped (with any run worker still running) when the block ends. It may not answer yet: `serving()` waits for it
    (so that the command can go on meanwhile)."""
    starting = started or start_code_server(log_folder)
    try:
        yield starting
    finally:
        starting.stop()


def start_code_server(log_folder: Path) -> StartingCodeServer:
    """Start a code server of workspace.yaml's location; the caller stops it (`StartingCodeServer.stop`)."""
    location = workspace_location()
    folder = Path(tempfile.mkdtemp(prefix="cssci-code-"))  # short: a socket path has at most 107 characters
    server = CodeServer(folder / "workspace.yaml", folder / "server.sock", location)
    server.workspace_file.write_text(yaml.safe_dump({"load_from": [{"grpc_server": {
        "socket": str(server.socket), "host": "localhost", "location_name": location.name}}]}), encoding="utf-8")
    log = log_folder / "dagster-code-server.log"
    process = start_guarded([sys.executable, "-m", SERVER_MODULE, "--module-name", location.module_name,
                             "--working-directory", str(location.working_directory), "--socket", str(server.socket),
                             "--location-name", location.name, "--log-level", "warning"],
                            log, location.working_directory, {REMOVE_ENV: str(folder)}, unset=INSTANCE_ENV)
    return StartingCodeServer(server, process, log, folder)


def _client(socket: Path):
    from dagster._grpc.client import DagsterGrpcClient

    return DagsterGrpcClient(socket=str(socket), host="localhost")


def answers(socket: Path) -> bool:
    """Whether a code server answers on `socket`."""
    if not socket.exists():
        return False
    try:
        _client(socket).ping("")
        return True
    except Exception:  # noqa: BLE001 - not serving yet (the socket exists before the server answers)
        return False


def _wait_until_serving(process: subprocess.Popen, server: CodeServer, log: Path) -> None:
    deadline = time.monotonic() + STARTUP_TIMEOUT_SECONDS
    while True:
        if process.poll() is not None:
            raise CodeServerFailed(f"the code server of {server.location.name} ended while starting (exit "
                                   f"{process.returncode}); see {log}")
        if answers(server.socket):
            return
        if time.monotonic() > deadline:
            raise CodeServerFailed(f"the code server of {server.location.name} did not answer within "
                                   f"{STARTUP_TIMEOUT_SECONDS:.0f} s; see {log}")
        time.sleep(POLL_SECONDS)


def _stop(process: subprocess.Popen, server: CodeServer) -> None:
    """Ask the server to shut down (it ignores SIGTERM while serving); its guard then kills what is left of its group
    (a run worker still running). Should it not end, SIGTERM to the guard does the same after the guard's grace. A
    server that does not answer yet has started no run worker, and it ignores SIGTERM while it loads the definitions
    (a shutdown request would wait for the load): its guard's group is killed at once."""
    if process.poll() is None:
        if not answers(server.socket):
            _kill_group(process)
            return
        try:
            _client(server.socket).shutdown_server()
        except Exception:  # noqa: BLE001 - it answered, then not (stuck, or ending): the guard's SIGTERM path
            process.terminate()
    try:
        process.wait(timeout=SHUTDOWN_WAIT_SECONDS)
        return
    except subprocess.TimeoutExpired:
        process.terminate()
    try:
        process.wait(timeout=STOP_TIMEOUT_SECONDS)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


def _kill_group(process: subprocess.Popen) -> None:
    """SIGKILL the guard's process group (the guard leads its own session): the guard, the server, its fork server."""
    try:
        os.killpg(process.pid, signal.SIGKILL)
    except ProcessLookupError:  # ended meanwhile
        pass
    process.wait()


def serve(arguments: list[str]) -> None:
    """`python -m cssci_platform.cli.code_server ARGUMENTS`: Dagster's `dagster api grpc ARGUMENTS`, whose run workers
    are forked from a fork server that preloads `RUN_WORKER_PRELOAD` (started now, beside the server's own start)."""
    context = multiprocessing.get_context("forkserver")
    context.set_forkserver_preload([RUN_WORKER_PRELOAD])
    threading.Thread(target=multiprocessing.forkserver.ensure_running, name="run worker preload", daemon=True).start()
    _fork_run_workers_from(context)
    from dagster._cli import main as dagster_main

    sys.argv = ["dagster", "api", "grpc", *arguments]
    dagster_main()


def _fork_run_workers_from(context: multiprocessing.context.BaseContext) -> None:
    """Have Dagster's code server start its run workers from `context`. It starts each one as a process of
    `multiprocessing.get_context("spawn")`, kept as its `_mp_ctx` (set in `DagsterApiServer.__init__`, Dagster 1.13;
    no setting chooses another). Should a later Dagster not have it, the server keeps spawning, which is slower but
    right (test_cli_instance_runs fails, naming the run workers' parent)."""
    from dagster._grpc import server

    class PreloadedRunWorkersServer(server.DagsterApiServer):
        def __init__(self, *args, **kwargs) -> None:
            super().__init__(*args, **kwargs)
            if isinstance(getattr(self, "_mp_ctx", None), multiprocessing.context.BaseContext):
                self._mp_ctx = context  # type: ignore[assignment]  # a ForkServerContext

        def ShutdownServer(self, request, context):  # noqa: ANN001, ANN202, N802 - Dagster's gRPC method
            """Shut down at once when no run worker executes: Dagster's server looks every 0.5 s (its cleanup
            thread's `_check_for_orphaned_runs`, which ends the server once asked and idle), a command's stop waited
            for that look."""
            reply = super().ShutdownServer(request, context)
            if callable(look := getattr(self, "_check_for_orphaned_runs", None)):
                look()
            return reply

    server.DagsterApiServer = PreloadedRunWorkersServer  # type: ignore[misc]


if __name__ == "__main__":
    serve(sys.argv[1:])
