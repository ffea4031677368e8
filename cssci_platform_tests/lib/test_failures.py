"""Root causes of (cyclic) exception chains, and what storage errors tell the user."""

from __future__ import annotations

import errno
import os
from pathlib import Path

import dagster as dg
import duckdb
import pytest

from cssci_platform.cli import dagster_runs, home
from cssci_platform.lib.failures import MAX_MESSAGE, describe, exception_chain, first_line, root_cause, storage_problem


class StepWrapper(Exception):
    pass


StepWrapper.__module__ = "dagster._core.errors"  # what root_cause skips: the framework's wrappers


def cyclic_chain() -> duckdb.IOException:
    """What Dagster raises with raise_on_error=True: the inner error, whose context wraps it again."""
    inner = duckdb.IOException('IO Error: Could not read from file "/data/warehouse.duckdb": Is a directory')
    wrapper = StepWrapper('Error occurred while executing op "cohort_manifest"')
    wrapper.__cause__ = inner
    inner.__context__ = wrapper
    return inner


def test_a_cyclic_chain_is_walked_once_and_its_root_is_the_step_error() -> None:
    error = cyclic_chain()
    assert [type(e).__name__ for e in exception_chain(error)] == ["IOException", "StepWrapper"]
    assert root_cause(error) is error
    message = describe(error)
    assert (
        message.startswith("a path is a folder, but a file is expected there") and '"/data/warehouse.duckdb"' in message
    )


def test_root_cause_skips_the_framework_wrapper_around_the_error() -> None:
    inner = PermissionError(errno.EACCES, "Permission denied", "/srv/home/warehouse.duckdb")
    wrapper = StepWrapper("Execution of step failed")
    wrapper.__cause__ = inner
    assert root_cause(wrapper) is inner
    assert describe(wrapper).startswith("cannot write /srv/home/warehouse.duckdb: permission denied")


@pytest.mark.parametrize(
    "text",
    [
        "OSError: [Errno 28] No space left on device: '/srv/home/image_store/ab.nrrd'",
        'IOException: IO Error: Could not write file "/srv/home/warehouse.duckdb": No space left on device',
        "OperationalError: (sqlite3.OperationalError) database or disk is full",
    ],
)
def test_a_full_disk_is_called_a_full_disk(text: str) -> None:
    message = storage_problem(text)
    assert message is not None and message.startswith("the disk is full") and "Free space" in message


def test_an_oserror_for_a_full_disk_names_the_file() -> None:
    error = OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), "/srv/home/warehouse.duckdb")
    assert describe(error).startswith("the disk is full: cannot write /srv/home/warehouse.duckdb")


def test_sqlites_disk_io_error_points_at_the_disk() -> None:
    message = storage_problem("OperationalError: (sqlite3.OperationalError) disk I/O error")
    assert message is not None and "the disk may be full" in message


def test_a_lock_names_the_process_holding_it() -> None:
    text = (
        'IOException: IO Error: Could not set lock on file "/srv/home/warehouse.duckdb": Conflicting lock is held in '
        "/usr/bin/duckdb (PID 4242) by user ana. See also https://duckdb.org/docs/connect/concurrency"
    )
    message = storage_problem(text, "/srv/home/warehouse.duckdb")
    assert message is not None and "locked by another process: /usr/bin/duckdb (PID 4242)" in message


def test_read_only_file_systems_are_named() -> None:
    message = storage_problem("OSError: [Errno 30] Read-only file system: '/mnt/ro/warehouse.duckdb'")
    assert message is not None and message.startswith("cannot write: the file system is read-only")


def test_other_errors_are_not_dressed_up_as_storage_problems() -> None:
    assert storage_problem("ValueError: could not convert string to float: 'abc'") is None
    assert (
        describe(ValueError("could not convert string to float: 'abc'"))
        == "ValueError: could not convert string to float: 'abc'"
    )


def test_a_long_error_line_is_cut_saying_how_long_it_was() -> None:
    line = "x" * (MAX_MESSAGE + 500)
    assert first_line(f"{line}\nsecond line") == "x" * MAX_MESSAGE + f"… ({MAX_MESSAGE + 500} characters)"


def test_a_failed_manifest_step_raises_its_root_cause_not_dagsters_cyclic_chain(
    tmp_path: Path, restored_environment
) -> None:
    from cssci_platform.lib.synthetic import write_sci_cohort

    manifest = write_sci_cohort(tmp_path / "cohort", n_development=1, n_prospective=0, seed=1)
    folder = tmp_path / "warehouse_folder"
    folder.mkdir()
    os.environ["CSSCI_WAREHOUSE"] = str(folder)
    home.configure_environment(tmp_path / "home", manifest)
    home.activate_study(tmp_path / "home", manifest)
    with dg.DagsterInstance.get() as instance, pytest.raises(dagster_runs.RunFailed) as raised:
        dagster_runs.materialize_manifest(instance)
    assert str(raised.value).startswith(
        f"cohort_manifest_job failed: cohort_manifest: the warehouse {folder} is a folder"
    )
    assert len(list(exception_chain(raised.value))) == 1  # nothing cyclic for a traceback printer to loop on
