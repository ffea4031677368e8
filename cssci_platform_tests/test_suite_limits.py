"""The test suite cannot hang: every test has a time limit, and no code forks a (threaded) process."""

from __future__ import annotations

import ast
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


def _is_spawn_context(node: ast.AST) -> bool:
    return (
        isinstance(node, ast.Call)
        and _call_name(node) == "get_context"
        and len(node.args) == 1
        and isinstance(node.args[0], ast.Constant)
        and node.args[0].value == "spawn"
    )


def process_start_problems(source: str) -> list[str]:
    """Calls that would fork: a non-spawn context, a pool without a spawn context."""
    problems = []
    for node in ast.walk(ast.parse(source)):
        if not isinstance(node, ast.Call):
            continue
        name = _call_name(node)
        if name == "get_context" and not _is_spawn_context(node):
            problems.append(f"line {node.lineno}: get_context other than 'spawn'")
        elif name == "ProcessPoolExecutor" and not any(
            k.arg == "mp_context" and _is_spawn_context(k.value) for k in node.keywords
        ):
            problems.append(f"line {node.lineno}: ProcessPoolExecutor without mp_context=get_context('spawn')")
        elif name in ("Pool", "Process") and not (
            isinstance(node.func, ast.Attribute) and _is_spawn_context(node.func.value)
        ):
            problems.append(f"line {node.lineno}: multiprocessing.{name} outside get_context('spawn')")
    return problems


def test_the_process_start_rule_catches_forks() -> None:
    assert process_start_problems("import multiprocessing\nmultiprocessing.get_context('fork').Pool(3)")
    assert process_start_problems("from concurrent.futures import ProcessPoolExecutor\nProcessPoolExecutor(2)")
    assert process_start_problems("import multiprocessing\nmultiprocessing.Pool(2)")
    assert not process_start_problems("import multiprocessing as mp\nmp.get_context('spawn').Pool(2)")
    assert not process_start_problems("ProcessPoolExecutor(max_workers=2, mp_context=get_context('spawn'))")


def test_no_code_or_test_forks_a_process() -> None:
    # pytest-xdist workers and Dagster run threads; a forked child can inherit a held lock and wait for ever.
    problems = {
        str(path.relative_to(ROOT)): found
        for path in SOURCES
        if (found := process_start_problems(path.read_text(encoding="utf-8")))
    }
    assert not problems
