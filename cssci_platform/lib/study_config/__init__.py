"""Typed experiment configs (`cssci run --config`): model, loading and checks, Dagster run config."""

from cssci_platform.lib.study_config.loading import (
    EXPERIMENT_ENV,
    ConfigError,
    cohort_problems,
    cohort_spec,
    config_notes,
    dump_config,
    experiment_file,
    load_config,
    parse_config,
    resolve_config_path,
    resource_problems,
    shipped_configs,
)
from cssci_platform.lib.study_config.model import StudyConfig
from cssci_platform.lib.study_config.run_config import asset_configs, first_fold, run_config, split_name

__all__ = ["EXPERIMENT_ENV", "ConfigError", "StudyConfig", "asset_configs", "cohort_problems", "cohort_spec", "config_notes", "dump_config", "experiment_file", "first_fold", "load_config",
           "parse_config", "resolve_config_path", "resource_problems", "run_config", "shipped_configs", "split_name"]
