"""Typed study configs (`cssci run --config`): the model (composed of each module's settings section), loading,
overrides and checks. Dagster reads them through the `study` resource (resources/study.py)."""

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

__all__ = ["EXPERIMENT_ENV", "ConfigError", "StudyConfig", "cohort_problems", "cohort_spec", "config_notes",
           "dump_config", "experiment_file", "load_config", "parse_config", "resolve_config_path", "resource_problems",
           "shipped_configs"]
