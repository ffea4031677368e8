"""The Kubernetes deployment files (deploy/kubernetes/, docs/kubernetes.md) name only what the platform has: every
CSSCI_* variable is one the package reads, every `cssci <command>` is a command of the CLI, the code location's
module is workspace.yaml's and imports, the files the image copies exist and the CLI's files beside the package are
among them. Nothing here builds the image or talks to Kubernetes (docs/kubernetes.md: not run)."""

from __future__ import annotations

import ast
import importlib
import re
from pathlib import Path

import typer
import yaml

from cssci_platform.cli.code_server import workspace_location
from cssci_platform.cli.main import app

ROOT = Path(__file__).resolve().parent.parent
DEPLOY = ROOT / "deploy" / "kubernetes"
DOCKERFILE = DEPLOY / "Dockerfile"
DOCKERIGNORE = DEPLOY / "Dockerfile.dockerignore"
VALUES = DEPLOY / "values.yaml"
GUIDE = ROOT / "docs" / "kubernetes.md"

VARIABLE = re.compile(r"\bCSSCI_[A-Z][A-Z0-9_]*[A-Z0-9]")
# `cssci run ...` in a shell line (not `--namespace cssci-platform`, not `cssci_platform`), and ["cssci", "run", ...]
SHELL_CALL = re.compile(r"(?<![\w./-])cssci[ \t]+([a-z][a-z0-9-]*)(?:[ \t]+([a-z][a-z0-9-]*))?")
LIST_CALL = re.compile(r"""["']cssci["']\s*,\s*["']([a-z][a-z0-9-]*)["'](?:\s*,\s*["']([a-z][a-z0-9-]*)["'])?""")
FENCED = re.compile(r"^```[^\n]*\n(.*?)^```", re.S | re.M)
INLINE = re.compile(r"`([^`\n]+)`")


def package_variables() -> set[str]:
    """CSSCI_* names in the package's string literals (f-string parts included): what its code reads or sets."""
    names: set[str] = set()
    for path in (ROOT / "cssci_platform").rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Constant) and isinstance(node.value, str):
                names.update(VARIABLE.findall(node.value))
    return names


def markdown_code(text: str) -> str:
    """The code of a markdown text: fenced blocks and inline spans (prose may say 'cssci commands')."""
    blocks = FENCED.findall(text)
    prose = FENCED.sub("", text)
    return "\n".join([*blocks, *INLINE.findall(prose)])


def cssci_calls(text: str) -> list[tuple[str, str]]:
    return [(first, second) for pattern in (SHELL_CALL, LIST_CALL) for first, second in pattern.findall(text)]


def subcommands(command) -> dict:
    """A command group's commands by name ({} for a command); typer builds the groups on its own copy of click."""
    return dict(getattr(command, "commands", None) or {})


def cli_commands():
    """The CLI as typer builds it for `cssci` (cli/main.py's app)."""
    return typer.main.get_command(app)


def unknown_calls(calls: list[tuple[str, str]], cli) -> list[str]:
    """`cssci X [Y]` where X is no command, or X is a group (`config`) and Y none of its commands."""
    unknown = []
    for first, second in calls:
        command = subcommands(cli).get(first)
        if command is None:
            unknown.append(f"cssci {first}")
        elif subcommands(command) and second and second not in subcommands(command):
            unknown.append(f"cssci {first} {second}")
    return unknown


def code_of_deploy_files() -> dict[str, str]:
    """Where commands and variables are named: the whole Dockerfile and values file, the guide's code."""
    return {"Dockerfile": DOCKERFILE.read_text(encoding="utf-8"), "values.yaml": VALUES.read_text(encoding="utf-8"),
            "docs/kubernetes.md": markdown_code(GUIDE.read_text(encoding="utf-8"))}


def dockerfile_instructions() -> list[list[str]]:
    """The Dockerfile's instructions as words, continuation lines joined, comments dropped."""
    lines = [line for line in DOCKERFILE.read_text(encoding="utf-8").splitlines() if not line.lstrip().startswith("#")]
    return [words.split() for words in re.sub(r"\\\n", " ", "\n".join(lines)).splitlines() if words.strip()]


def copied_sources() -> list[str]:
    """The build-context paths the Dockerfile copies (COPY without --from)."""
    sources = []
    for words in dockerfile_instructions():
        if words[0] == "COPY" and not any(word.startswith("--from") for word in words):
            sources.extend(word for word in words[1:-1] if not word.startswith("--"))
    return sources


def served_modules() -> list[str]:
    """The module names the values' user code deployments and the Dockerfile's CMD serve (`--module-name X`)."""
    values = yaml.safe_load(VALUES.read_text(encoding="utf-8"))
    argument_lists = [deployment["dagsterApiGrpcArgs"]
                      for deployment in values["dagster-user-deployments"]["deployments"]]
    [cmd] = [words for words in dockerfile_instructions() if words[0] == "CMD"]
    argument_lists.append(yaml.safe_load(" ".join(cmd[1:])))  # the exec form is a JSON list
    return [arguments[arguments.index("--module-name") + 1] for arguments in argument_lists]


def test_values_file_is_yaml_for_the_charts_k8s_run_launcher_and_an_external_database() -> None:
    values = yaml.safe_load(VALUES.read_text(encoding="utf-8"))
    assert values["runLauncher"]["type"] == "K8sRunLauncher"
    assert values["postgresql"]["enabled"] is False
    assert values["generatePostgresqlPasswordSecret"] is False
    assert values["global"]["postgresqlSecretName"]  # the password comes from a Secret ...
    assert not values["postgresql"]["postgresqlPassword"]  # ... never from this file
    assert values["dagsterDaemon"]["runCoordinator"]["type"] == "QueuedRunCoordinator"


def test_every_cssci_variable_named_is_one_the_platform_reads() -> None:
    known = package_variables()
    assert {"CSSCI_PROFILE", "CSSCI_CLUSTER_FILE", "CSSCI_WAREHOUSE"} <= known  # the scan sees the package
    named = {where: set(VARIABLE.findall(text)) for where, text in code_of_deploy_files().items()}
    named["docs/kubernetes.md"] |= set(VARIABLE.findall(GUIDE.read_text(encoding="utf-8")))  # prose too
    assert named["values.yaml"], "values.yaml names no CSSCI_* variable: the scan is broken"
    assert {where: sorted(names - known) for where, names in named.items() if names - known} == {}


def test_every_cssci_command_named_is_a_command_of_the_cli() -> None:
    cli = cli_commands()
    assert {"run", "ingest", "worker"} <= set(subcommands(cli))  # read from the app, not listed here
    calls = {where: cssci_calls(text) for where, text in code_of_deploy_files().items()}
    assert "run" in {first for first, _ in calls["docs/kubernetes.md"]}, "no `cssci run` found: the scan is broken"
    assert {where: unknown for where, found in calls.items() if (unknown := unknown_calls(found, cli))} == {}


def test_the_command_scan_catches_what_the_cli_lacks() -> None:
    cli = cli_commands()
    code = markdown_code("Run `cssci deploy --all`, then:\n```bash\ncssci config publish\n```\n```yaml\n"
                         'command: ["cssci", "launch"]\n```\nnot `--namespace cssci-platform`, cssci_platform, '
                         "nor prose: the cssci commands below.")
    assert sorted(unknown_calls(cssci_calls(code), cli)) == ["cssci config publish", "cssci deploy", "cssci launch"]
    assert unknown_calls(cssci_calls("cssci config validate x.yaml && cssci worker --home h"), cli) == []


def test_the_served_module_is_the_workspaces_and_imports() -> None:
    modules = served_modules()
    assert set(modules) == {workspace_location().module_name}
    definitions = importlib.import_module(modules[0])
    assert hasattr(definitions, "defs")


def test_the_image_copies_existing_files_that_its_ignore_file_keeps() -> None:
    sources = copied_sources()
    assert "cssci_platform" in sources
    assert [source for source in sources if not (ROOT / source).exists()] == []
    kept = [line[1:].rstrip("/") for line in DOCKERIGNORE.read_text(encoding="utf-8").splitlines()
            if line.startswith("!")]
    assert [source for source in sources if source.rstrip("/") not in kept] == []


def files_beside_the_package() -> set[str]:
    """What the CLI reads from cli/home.PROJECT_ROOT, the folder above the package: site-packages after
    `pip install .`, where the project's files are not."""
    return {name for path in (ROOT / "cssci_platform" / "cli").glob("*.py")
            for name in re.findall(r'PROJECT_ROOT / "([^"]+)"', path.read_text(encoding="utf-8"))}


def test_the_files_the_cli_reads_beside_the_package_are_copied_next_to_the_installed_package() -> None:
    names = files_beside_the_package()
    assert "workspace.yaml" in names or "dagster.yaml" in names, "the scan of cli/ is broken"
    cp_lines = [words for words in dockerfile_instructions() if words[0] == "RUN" and "cp" in words]
    assert {name: (name in copied_sources(), any(name in words for words in cp_lines)) for name in sorted(names)} \
        == dict.fromkeys(sorted(names), (True, True))
