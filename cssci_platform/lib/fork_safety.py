"""Whether this process may still be forked: the check a fork server runs after preloading (issue 18).

A child forked from a process gets only the forking thread. Most native pools of the libraries a run loads cope
(jemalloc's background threads, OpenBLAS's workers and Polars' spill clean-up thread are re-made or unused after a
fork), but Polars' compute pool is not: once a Polars operation has run in a process, a child forked from it waits for
ever on its first parallel operation (its pool's threads are gone; test_fork_safety shows it). A fork server that
preloads modules must therefore find no such pool before it serves a fork."""

from __future__ import annotations

import os
import re
from pathlib import Path

# Threads of pools whose forked copy deadlocks: Polars' compute pool (named polars-0, polars-1, ...).
FORK_UNSAFE_THREAD = re.compile(r"polars-\d+")


class ForkUnsafe(RuntimeError):
    """A thread pool that a forked child would wait on for ever is running in this process."""


def thread_names() -> list[str]:
    """The names of this process's threads (Linux: /proc/self/task/*/comm); empty where /proc is absent."""
    tasks = Path("/proc/self/task")
    if not tasks.is_dir():
        return []
    names = []
    for task in tasks.iterdir():
        try:
            names.append((task / "comm").read_text(encoding="utf-8").strip())
        except OSError:  # the thread ended while read
            continue
    return sorted(names)


def fork_unsafe_threads() -> list[str]:
    """The threads of this process whose pools a forked child could not use."""
    return [name for name in thread_names() if FORK_UNSAFE_THREAD.fullmatch(name)]


def refuse_unsafe_fork(what: str) -> None:
    """Raise `ForkUnsafe` when this process may not be forked any more; `what` names what was loaded."""
    if unsafe := fork_unsafe_threads():
        raise ForkUnsafe(f"{what} started threads {', '.join(unsafe)} (Polars' compute pool, pid {os.getpid()}): a "
                         "process forked from this one would wait for ever on its first Polars operation. A module "
                         "imported there ran a Polars operation at import; move it into a function.")
