"""`cssci config list|show|validate`: the shipped protocol configs, a resolved config, checks before a long run."""

from __future__ import annotations

import typer
from rich.markup import escape
from rich.table import Table

from cssci_platform.cli.guards import load_or_exit
from cssci_platform.cli.output import USER_ERROR_EXIT, console, errors

config_app = typer.Typer(help="Experiment configs: list the shipped protocols, show or validate a config.",
                         no_args_is_help=True)


@config_app.command("list")
def config_list() -> None:
    """The shipped protocol configs."""
    from cssci_platform.lib.study_config import load_config, shipped_configs

    table = Table("name", "description", "file")
    for name, path in shipped_configs().items():
        table.add_row(name, load_config(path).description, str(path))
    console.print(table)


@config_app.command("show")
def config_show(
    config: str = typer.Argument(..., help="A shipped config name or a YAML file."),
    overrides: list[str] = typer.Option([], "--set", help="Override one key, e.g. --set models.cv_folds=5."),
    dagster: bool = typer.Option(False, "--dagster", help="Print the launchpad run config that runs one job with this "
                                 "config and overrides (the `study` resource's path and overrides) instead."),
) -> None:
    """Print the resolved config (every default filled in), or the Dagster launchpad config that selects it."""
    import yaml

    from cssci_platform.lib.study_config import dump_config, resolve_config_path

    experiment = load_or_exit(config, overrides)
    if not dagster:
        print(dump_config(experiment), end="")
        return
    study = {"path": str(resolve_config_path(config)), "overrides": list(overrides)}
    print(yaml.safe_dump({"resources": {"study": {"config": study}}}, sort_keys=False, width=120), end="")


@config_app.command("validate")
def config_validate(
    configs: list[str] = typer.Argument(..., help="Shipped config names or YAML files."),
    overrides: list[str] = typer.Option([], "--set", help="Override one key before validating."),
) -> None:
    """Check configs: schema, allowed values, and (for a manifest cohort) the sequences, ROIs and variables it names."""
    from cssci_platform.lib.cohort import ManifestError
    from cssci_platform.lib.study_config import (
        ConfigError,
        cohort_problems,
        cohort_spec,
        config_notes,
        load_config,
        resource_problems,
    )

    failed = 0
    for name in configs:
        try:
            experiment = load_config(name, overrides)
            if problems := resource_problems(experiment):
                raise ConfigError(name, problems)
            problems = cohort_problems(experiment, cohort_spec(experiment))
            if problems:
                raise ConfigError(f"{name} (against its cohort)", problems)
            console.print(f"[green]valid[/] {name} ({experiment.name})")
            for note in config_notes(experiment):
                console.print(f"  [yellow]note[/] {note}")
        except (ConfigError, ManifestError) as error:
            failed += 1
            errors.print(f"[red]{escape(str(error))}[/]", soft_wrap=True)
    raise typer.Exit(USER_ERROR_EXIT if failed else 0)
