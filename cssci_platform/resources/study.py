"""The study's settings, as every asset reads them: one experiment config file plus per-run overrides."""

from functools import lru_cache
from pathlib import Path

import dagster as dg

from cssci_platform.lib.study_config import StudyConfig, load_config


class StudyResource(dg.ConfigurableResource):
    """`path`: the study's config file (`CSSCI_EXPERIMENT_CONFIG`, which `cssci run` / `cssci ingest` / `cssci ui` set
    to the home's resolved `experiment.yaml`; read when a run starts, never at import). `overrides`: 'dotted.key=value'
    strings applied for one run, the grammar of `cssci run --set`. In the launchpad (a run config replaces the whole
    resource config, so the path comes along):
    `resources: {study: {config: {path: {env: CSSCI_EXPERIMENT_CONFIG}, overrides: [selection.mrmr_k=10]}}}`."""

    path: str
    overrides: list[str] = []

    def config(self) -> StudyConfig:
        """Parsed once per file version and override list (each step of a run calls this)."""
        file = Path(self.path)
        return _load(str(file), tuple(self.overrides), file.stat().st_mtime_ns if file.is_file() else 0)


@lru_cache(maxsize=8)
def _load(path: str, overrides: tuple[str, ...], _version: int) -> StudyConfig:
    return load_config(path, list(overrides))
