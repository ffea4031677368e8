"""Jobs whose launchpad config is the active experiment config (`CSSCI_EXPERIMENT_CONFIG`, set by `cssci run` /
`cssci ui --config`): the Dagster UI shows and runs the same settings as the command line, and sensors'
runs (new patients) get them too. Without the variable the jobs use the assets' own defaults."""

import os
from functools import cache

import dagster as dg

from cssci_platform.lib.study_config import EXPERIMENT_ENV, StudyConfig, load_config, run_config


@cache
def active_experiment() -> StudyConfig | None:
    path = os.environ.get(EXPERIMENT_ENV)
    return load_config(path) if path else None


def experiment_job(name: str, selection: list[str], description: str, defaults_from_experiment: bool = True, **kwargs):
    """`define_asset_job` with the active experiment's blocks as launchpad defaults. Jobs with a required
    per-run value (a follow-up file) opt out: Dagster checks defaults as a complete config."""
    config = active_experiment() if defaults_from_experiment else None
    defaults = run_config(config, selection) if config else None
    return dg.define_asset_job(name, selection=selection, description=description,
                               config=defaults if defaults and defaults["ops"] else None, **kwargs)


def with_experiment_config(assets: list[str], extra: dict) -> dict:
    """`extra` run config plus the active experiment's blocks for `assets` (a run config given to a run request
    replaces the job's defaults, so the experiment's blocks must travel with it)."""
    config = active_experiment()
    ops = run_config(config, assets)["ops"] if config else {}
    return {**extra, "ops": {**ops, **extra.get("ops", {})}}
