"""Why a command failed, in one sentence: the root cause of an exception chain, and what storage errors mean.

Dagster wraps a step's error (`DagsterExecutionStepExecutionError` -> the `IOException` raised in the step) and,
with `raise_on_error=True`, re-raises the inner error with the wrapper as its context: the chain is cyclic.
`exception_chain` walks it once; `root_cause` skips framework wrappers; `storage_problem` turns the texts of a
full disk, a read-only or missing folder and a held lock into a message that says what to do.
"""

from __future__ import annotations

import errno
import re
from collections.abc import Iterator

from cssci_platform.lib.messages import shorten

DISK_FULL = ("no space left on device", "database or disk is full", "disk is full", f"[errno {errno.ENOSPC}]")
READ_ONLY = ("read-only file system", "readonly database", f"[errno {errno.EROFS}]")
NO_PERMISSION = ("permission denied", f"[errno {errno.EACCES}]", f"[errno {errno.EPERM}]")
IS_FOLDER = ("is a directory", f"[errno {errno.EISDIR}]")
NOT_FOLDER = ("not a directory", f"[errno {errno.ENOTDIR}]")
LOCK_HOLDER = re.compile(r"Conflicting lock is held in (?P<program>.+?) \(PID (?P<pid>\d+)\)")
FRAMEWORK_MODULES = ("dagster.", "dagster_shared.", "click.", "typer.")
MAX_MESSAGE = 2000  # characters of an error quoted in a message


class ExplainedError(Exception):
    """An error whose message is already written for the user (what, where, what to do): shown as it is."""


class UserError(ExplainedError):
    """The user's input is wrong (a file, a path, an option): `cssci` exits with code 2 before any work starts."""


def exception_chain(error: BaseException) -> Iterator[BaseException]:
    """`error`, then its cause (or unsuppressed context), and so on, each exception once (chains can be cyclic)."""
    seen: set[int] = set()
    current: BaseException | None = error
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        yield current
        current = current.__cause__ or (None if current.__suppress_context__ else current.__context__)


def root_cause(error: BaseException) -> BaseException:
    """The innermost exception of the chain that is not a framework wrapper (else the innermost one)."""
    chain = list(exception_chain(error))
    own = [e for e in chain if not type(e).__module__.startswith(FRAMEWORK_MODULES)]
    return (own or chain)[-1]


def first_line(text: str) -> str:
    lines = [line.strip() for line in text.strip().splitlines() if line.strip()]
    return shorten(lines[0], MAX_MESSAGE) if lines else ""


def storage_problem(text: str, where: str = "") -> str | None:
    """What a storage error text means and how to fix it, or None when it is not a storage error.
    `where`: the file or folder being written, when known."""
    lowered = text.lower()
    place = f" {where}" if where else ""
    detail = first_line(text)
    if any(marker in lowered for marker in DISK_FULL):
        return (f"the disk is full: cannot write{place} ({detail}). Free space on that disk (or move CSSCI_HOME to a "
                "larger one) and run the command again; the step that failed wrote nothing (its rows were rolled "
                "back).")
    if holder := LOCK_HOLDER.search(text):
        return (f"the warehouse{place} is locked by another process: {holder['program']} (PID {holder['pid']}). "
                "Close that DuckDB session (or wait for that command to finish) and run the command again; set "
                "CSSCI_LOCK_WAIT_SECONDS to wait longer for it.")
    if "could not set lock" in lowered:
        return (f"the warehouse{place} is locked by another process ({detail}). Close the other DuckDB session or wait "
                "for it, then run the command again.")
    if any(marker in lowered for marker in READ_ONLY):
        return (f"cannot write{place}: the file system is read-only ({detail}). Remount it read-write or point "
                "CSSCI_HOME (or CSSCI_WAREHOUSE / CSSCI_IMAGE_STORE) at a writable folder.")
    if any(marker in lowered for marker in NO_PERMISSION):
        return (f"cannot write{place}: permission denied ({detail}). Give this user write access to it or point "
                "CSSCI_HOME (or CSSCI_WAREHOUSE / CSSCI_IMAGE_STORE) at a writable folder.")
    if any(marker in lowered for marker in IS_FOLDER):
        return (f"{where or 'a path'} is a folder, but a file is expected there ({detail}). Remove or rename that "
                "folder, or point CSSCI_HOME (or CSSCI_WAREHOUSE) elsewhere.")
    if "disk i/o error" in lowered:
        return (f"a disk write failed{place} ({detail}): the disk may be full or failing. Check free space (df -h) and "
                "the system log, then run the command again.")
    if any(marker in lowered for marker in NOT_FOLDER):
        return (f"a file stands where a folder is expected on the path{place} ({detail}). Move that file away or "
                "choose another CSSCI_HOME (or CSSCI_WAREHOUSE / CSSCI_IMAGE_STORE / DAGSTER_HOME).")
    return None


def describe(error: BaseException) -> str:
    """One sentence for the user: the root cause, explained when it is a storage problem."""
    cause = root_cause(error)
    if isinstance(cause, ExplainedError):
        return str(cause)
    text = f"{type(cause).__name__}: {cause}"
    where = str(cause.filename) if isinstance(cause, OSError) and cause.filename else ""
    return storage_problem(text, where) or first_line(text)
