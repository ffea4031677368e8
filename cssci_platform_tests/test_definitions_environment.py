"""One route into Dagster (issue 14): the definitions load and validate without any CSSCI_* variable, never read the
environment at import time, and a job's settings come only from the `study` resource (no launchpad defaults computed
from the environment when the module was imported)."""

from __future__ import annotations

import ast
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

import cssci_platform

PACKAGE = Path(cssci_platform.__file__).parent
PROJECT_ROOT = PACKAGE.parent


def _module_level_statements(tree: ast.Module) -> list[ast.stmt]:
    """Statements that run when the module is imported (function and class bodies run later; a class body's
    statements run at import too, so they are included)."""
    found: list[ast.stmt] = []
    pending: list[ast.stmt] = list(tree.body)
    while pending:
        node = pending.pop()
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            found.extend(node.decorator_list)  # type: ignore[arg-type]  # decorators run at import
            found.extend(d for d in node.args.defaults + node.args.kw_defaults if d is not None)  # type: ignore[misc]
            continue
        if isinstance(node, ast.ClassDef):
            pending.extend(node.body)
            continue
        found.append(node)
    return found


def _reads_environment(node: ast.AST) -> bool:
    for child in ast.walk(node):
        if isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda)):
            continue
        if isinstance(child, ast.Attribute) and child.attr in ("environ", "getenv", "environb") and \
                isinstance(child.value, ast.Name) and child.value.id == "os":
            return True
    return False


def import_time_environment_reads(root: Path) -> list[str]:
    """'path:line' of each statement under `root` that reads os.environ / os.getenv when its module is imported."""
    reads = []
    for path in sorted(root.rglob("*.py")):
        tree = ast.parse(path.read_text(encoding="utf-8"), str(path))
        for statement in _module_level_statements(tree):
            if _reads_environment(statement):
                reads.append(f"{path.relative_to(root.parent)}:{statement.lineno}")
    return reads


def test_the_check_finds_a_module_level_read(tmp_path: Path) -> None:
    (tmp_path / "pkg").mkdir()
    bad = "import os\nPATH = os.environ.get('X')\n\ndef f():\n    return os.getenv('Y')\n"
    (tmp_path / "pkg" / "bad.py").write_text(bad)
    (tmp_path / "pkg" / "good.py").write_text("import os\n\ndef f(default=None):\n    return os.environ['Y']\n")
    assert import_time_environment_reads(tmp_path / "pkg") == ["pkg/bad.py:2"]


def test_no_module_reads_the_environment_at_import_time() -> None:
    assert import_time_environment_reads(PACKAGE) == []


def _clean_environment() -> dict[str, str]:
    return {name: value for name, value in os.environ.items() if not name.startswith(("CSSCI_", "DAGSTER_"))}


PROBE = """
import json
from cssci_platform.definitions import defs
jobs = {}
for job in defs().resolve_all_job_defs():
    ops = job.run_config_schema.config_type.fields.get("ops")
    jobs[job.name] = ops.default_value if ops is not None and ops.default_provided else None
print(json.dumps(jobs, sort_keys=True, default=str))
"""


def _job_defaults(environment: dict[str, str]) -> subprocess.CompletedProcess:
    """The launchpad defaults of every job, as a fresh process importing the definitions sees them."""
    return subprocess.run([sys.executable, "-c", PROBE], env={**_clean_environment(), **environment}, cwd=PROJECT_ROOT,
                          capture_output=True, text=True, encoding="utf-8", timeout=300)


def test_importing_the_definitions_does_not_read_the_study_config(tmp_path: Path) -> None:
    # Before: defs/experiment_jobs.py parsed CSSCI_EXPERIMENT_CONFIG while the job modules were imported; a stale or
    # broken file there failed every import of the definitions (the UI, the sensors, every worker process).
    broken = tmp_path / "experiment.yaml"
    broken.write_text("name: [not, a, name]\n", encoding="utf-8")
    completed = _job_defaults({"CSSCI_EXPERIMENT_CONFIG": str(broken)})
    assert completed.returncode == 0, completed.stderr[-3000:]


def test_jobs_carry_no_launchpad_defaults_from_the_environment(tmp_path: Path) -> None:
    # Before: with CSSCI_EXPERIMENT_CONFIG set at import, every job's `ops` config defaulted to that file's values (a
    # third route beside the run config and the environment of the workers); the study resource is now the only one.
    study = tmp_path / "study.yaml"
    study.write_text("name: probe\ncohort: {synthetic: {protocol: demo}}\noutcome: {name: good_outcome}\n"
                     "models: {classifiers: [LR], cv_folds: 3}\nradiomics: {params: default}\n", encoding="utf-8")
    with_study, without = _job_defaults({"CSSCI_EXPERIMENT_CONFIG": str(study)}), _job_defaults({})
    assert with_study.returncode == 0 and without.returncode == 0, (with_study.stderr + without.stderr)[-3000:]
    assert json.loads(with_study.stdout.splitlines()[-1]) == json.loads(without.stdout.splitlines()[-1])


@pytest.mark.timeout(300)
def test_dagster_definitions_validate_without_cssci_variables() -> None:
    completed = subprocess.run([sys.executable, "-m", "dagster", "definitions", "validate", "-w", "workspace.yaml"],
                               env=_clean_environment(), cwd=PROJECT_ROOT, capture_output=True, text=True,
                               encoding="utf-8", timeout=280)
    assert completed.returncode == 0, (completed.stdout + completed.stderr)[-4000:]
