"""A fork server's preload must leave nothing a forked child would wait on (issue 18: the run workers of a command's
code server are forked from one that preloaded `cssci_platform.run_worker_preload`)."""

from __future__ import annotations

import subprocess
import sys
import textwrap


def _python(code: str, timeout: float = 120) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", textwrap.dedent(code)], capture_output=True, text=True,
                          timeout=timeout)


def test_a_child_forked_after_a_polars_operation_waits_for_ever_and_the_check_refuses_that_process() -> None:
    # what the check guards against (Polars 2.1): the child's first parallel operation never returns
    forked = _python("""
        import os, sys, time
        import polars as pl
        pl.DataFrame({"a": list(range(100_000))}).select(pl.col("a").sum())
        from cssci_platform.lib.fork_safety import fork_unsafe_threads
        print("unsafe:", fork_unsafe_threads(), flush=True)
        child = os.fork()
        if child == 0:
            frame = pl.DataFrame({"a": list(range(100_000)), "b": list(range(100_000))})
            frame.select(pl.col("a").sum(), pl.col("b").mean())
            os._exit(0)
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline and os.waitpid(child, os.WNOHANG) == (0, 0):
            time.sleep(0.05)
        finished = os.waitpid(child, os.WNOHANG) != (0, 0)
        if not finished:
            os.kill(child, 9)
            os.waitpid(child, 0)
        print("child finished:", finished)
        """)
    assert "unsafe: ['polars-0'" in forked.stdout, forked.stdout + forked.stderr
    assert "child finished: False" in forked.stdout, forked.stdout + forked.stderr


def test_importing_polars_alone_leaves_the_process_safe_to_fork_and_an_operation_does_not() -> None:
    checked = _python("""
        import polars as pl
        from cssci_platform.lib.fork_safety import ForkUnsafe, refuse_unsafe_fork
        refuse_unsafe_fork("importing polars")
        pl.DataFrame({"a": list(range(100_000))}).select(pl.col("a").sum())
        try:
            refuse_unsafe_fork("a Polars operation")
        except ForkUnsafe as refused:
            print(refused)
        """)
    assert checked.returncode == 0, checked.stderr
    assert checked.stdout.startswith("a Polars operation started threads polars-0"), checked.stdout


def test_the_run_worker_preload_loads_the_definitions_and_leaves_its_process_safe_to_fork() -> None:
    preloaded = _python("""
        import sys
        import cssci_platform.run_worker_preload
        from cssci_platform.lib.fork_safety import fork_unsafe_threads
        print(fork_unsafe_threads(), "cssci_platform.defs.batch_runs" in sys.modules, "radiomics" in sys.modules)
        """)
    assert preloaded.returncode == 0, preloaded.stderr[-3000:]
    assert preloaded.stdout.split() == ["[]", "True", "True"], preloaded.stdout
