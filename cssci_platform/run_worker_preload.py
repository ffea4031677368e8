"""What a run worker of a command's code server loads, loaded once by that server's fork server (issue 18).

A run worker that Dagster spawns is a new interpreter: it imports Dagster and its storages, loads the definitions and,
on its first patient, the imaging libraries, ~1.4 s of a 2-core machine before its first step and ~2 s of CPU per run
(benchmarks/RESULTS.md, "Issue 18, session 17"). The code server a command starts (`cli.code_server`) forks its run
workers from a fork server that imported this module once, while the command was still starting, so each run worker
begins with all of it in memory. Importing this module is the preloading: it imports what a run worker imports (found
by listing a run worker's new modules at its end), loads the definitions as a run worker does, then refuses to serve
forks if any of it started a thread pool that a forked run worker would wait on for ever (`lib.fork_safety`). It opens
no file, connection or instance that a forked process could share.
"""

import importlib

from cssci_platform.definitions import defs
from cssci_platform.lib.fork_safety import refuse_unsafe_fork

RUN_WORKER_MODULES = (
    "dagster._grpc.impl",  # the run worker's entry point (start_run_in_subprocess)
    "dagster._core.instance.factory",  # the instance a run worker opens from its instance ref, and its storages
    "dagster._core.storage.sqlite_storage",
    "dagster._core.storage.local_compute_log_manager",
    "dagster._core.executor.in_process",
    "dagster._core.workspace.context",
    "pandas",  # imported by Dagster's and the imaging libraries' code paths a patient's steps take
    "pyarrow",
    "alembic.migration",
    "rich.console",
    # the patient steps' libraries, beyond what the definitions import
    "radiomics.featureextractor",
    "scipy.ndimage",
    "PIL.Image",
)


def preload() -> None:
    for name in RUN_WORKER_MODULES:
        importlib.import_module(name)
    defs()  # imports every module of the definitions folder, as a run worker finding its job does
    refuse_unsafe_fork("preloading the run workers' modules")


preload()
