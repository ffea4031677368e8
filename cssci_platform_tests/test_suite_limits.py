"""The test suite cannot hang: every test has a time limit, and no code forks a (threaded) process."""

from __future__ import annotations

import ast
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
SOURCES = [*sorted((ROOT / "cssci_platform").rglob("*.py")), *sorted((ROOT / "cssci_platform_tests").rglob("*.py"))]


def test_every_test_runs_under_a_time_limit_that_dumps_stacks(pytestconfig: pytest.Config) -> None:
    assert float(pytestconfig.getini("timeout")) == 600
    assert pytestconfig.getini("timeout_method") == "thread"  # a hang prints every thread's stack, then fails


def _call_name(node: ast.Call) -> str:
    func = node.func
    return func.attr if isinstance(func, ast.Attribute) else func.id if isinstance(func, ast.Name) else ""


# A new interpreter per process, or forks of a fork server: a process of its own, started as a new interpreter, that
# only imports (its preload is checked by lib.fork_safety) and forks itself, never a threaded parent.
SAFE_START_METHODS = ("spawn", "forkserver")


def _is_safe_context(node: ast.AST) -> bool:
    return (
        isinstance(node, ast.Call)
        and _call_name(node) == "get_context"
        and len(node.args) == 1
        and isinstance(node.args[0], ast.Constant)
        and node.args[0].value in SAFE_START_METHODS
    )


def process_start_problems(source: str) -> list[str]:
    """Calls that would fork: a non-spawn context, a pool without a spawn context."""
    problems = []
    for node in ast.walk(ast.parse(source)):
        if not isinstance(node, ast.Call):
            continue
        name = _call_name(node)
        if name == "get_context" and not _is_safe_context(node):
            problems.append(f"line {node.lineno}: get_context other than 'spawn' or 'forkserver'")
        elif name == "ProcessPoolExecutor" and not any(
            k.arg == "mp_context" and _is_safe_context(k.value) for k in node.keywords
        ):
            problems.append(f"line {node.lineno}: ProcessPoolExecutor without mp_context=get_context('spawn')")
        elif name in ("Pool", "Process") and not (
            isinstance(node.func, ast.Attribute) and _is_safe_context(node.func.value)
        ):
            problems.append(f"line {node.lineno}: multiprocessing.{name} outside get_context('spawn')")
    return problems


def test_the_process_start_rule_catches_forks() -> None:
    assert process_start_problems("import multiprocessing\nmultiprocessing.get_context('fork').Pool(3)")
    assert process_start_problems("from concurrent.futures import ProcessPoolExecutor\nProcessPoolExecutor(2)")
    assert process_start_problems("import multiprocessing\nmultiprocessing.Pool(2)")
    assert not process_start_problems("import multiprocessing as mp\nmp.get_context('spawn').Pool(2)")
    assert not process_start_problems("import multiprocessing as mp\nmp.get_context('forkserver').Process()")
    assert process_start_problems("import multiprocessing as mp\nmp.get_context('fork').Process()")
    assert not process_start_problems("ProcessPoolExecutor(max_workers=2, mp_context=get_context('spawn'))")


def test_no_code_or_test_forks_a_process() -> None:
    # pytest-xdist workers and Dagster run threads; a forked child can inherit a held lock and wait for ever.
    problems = {
        str(path.relative_to(ROOT)): found
        for path in SOURCES
        if (found := process_start_problems(path.read_text(encoding="utf-8")))
    }
    assert not problems


GROUPED_MODULE = '''
import os
import pytest

pytestmark = [pytest.mark.xdist_group("shared"), pytest.mark.long_running]


@pytest.fixture(scope="module")
def costly():
    with open(os.environ["SETUPS"], "a") as log:
        log.write(f"{os.getpid()}\\n")
    return 1


@pytest.mark.parametrize("n", range(6))
def test_grouped(costly, n):
    pass
'''


def test_loadgroup_keeps_a_groups_tests_on_one_worker_so_its_module_fixture_is_built_once(tmp_path: Path) -> None:
    """`make test` runs `-n 2 --dist loadgroup`; the modules that train a study once (test_patient_scoring,
    test_prospective) rely on their `xdist_group` to build it once. pytest 9.2 silently broke that grouping
    (pytest-xdist#1386: xdist writes the group into `item._nodeid`, which pytest 9.2 no longer reads): each module
    then trained its study on both workers, ~250 s of a 50-minute suite. Runs our conftest's hooks on a small
    module of six tests in one group; pyproject pins pytest below 9.2 until xdist is fixed."""
    (tmp_path / "test_grouped.py").write_text(GROUPED_MODULE, encoding="utf-8")
    (tmp_path / "test_other.py").write_text("def test_a():\n    pass\n\n\ndef test_b():\n    pass\n", encoding="utf-8")
    (tmp_path / "conftest.py").write_text((Path(__file__).parent / "conftest.py").read_text(), encoding="utf-8")
    setups = tmp_path / "setups.txt"
    completed = subprocess.run(
        [sys.executable, "-m", "pytest", "-n", "2", "--dist", "loadgroup", "-q", "-p", "no:cacheprovider",
         "-o", "markers=long_running", str(tmp_path)],
        cwd=tmp_path, env={**os.environ, "SETUPS": str(setups)}, capture_output=True, text=True, timeout=300,
    )
    assert completed.returncode == 0, completed.stdout[-3000:] + completed.stderr[-3000:]
    assert len(setups.read_text().split()) == 1, "the group's module fixture was built on more than one worker"
