"""Fixtures for materialization tests: a real temporary Dagster instance, DuckDB file and image store."""

import shutil
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import dagster as dg
import pytest

from cssci_platform.defs.features.assets import preprocessed_channels, radiomics_features
from cssci_platform.defs.features.checks import features_finite, roi_survives_resampling
from cssci_platform.defs.ingest.assets import cohort_manifest, patient_scans
from cssci_platform.defs.ingest.checks import patient_qc
from cssci_platform.defs.partitions import patients_partitions
from cssci_platform.lib.cohort import load_cohort
from cssci_platform.lib.model_tracking import sqlite_tracking_uri
from cssci_platform.lib.synthetic import write_sci_cohort
from cssci_platform.lib.warehouse import table_frame
from cssci_platform.resources.cohort import CohortResource
from cssci_platform.resources.image_store import ImageStoreResource
from cssci_platform.resources.study import StudyResource
from cssci_platform.resources.tracking import TrackingResource
from cssci_platform.resources.warehouse import WarehouseResource
from cssci_platform_tests.study_files import study_resource

PATIENT_ASSETS = [patient_scans, preprocessed_channels, radiomics_features]
PATIENT_CHECKS = [patient_qc, roi_survives_resampling, features_finite]


@pytest.fixture(scope="session")
def synthetic_cohort_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("cohort_template")
    write_sci_cohort(folder, n_development=4, n_prospective=1, seed=3)
    return folder


@dataclass
class Platform:
    """A cohort copy, a warehouse, an image store and a temporary Dagster instance wired together."""

    manifest: Path
    warehouse_path: Path
    instance: dg.DagsterInstance
    resources: dict

    def materialize_manifest(self) -> dg.ExecuteInProcessResult:
        return dg.materialize([cohort_manifest], instance=self.instance, resources=self.resources)

    def register(self) -> list[str]:
        keys = sorted(load_cohort(self.manifest).patients)
        self.instance.add_dynamic_partitions(patients_partitions.name, keys)
        return keys

    def materialize_patient(self, key: str, overrides: list[str] | None = None) -> dg.ExecuteInProcessResult:
        """The patient assets for one partition; `overrides`: study settings for this run
        ("preprocessing.channels=[original]")."""
        return dg.materialize([*PATIENT_ASSETS, *PATIENT_CHECKS, cohort_manifest],
                              selection=[a.key for a in PATIENT_ASSETS],
                              partition_key=key, instance=self.instance, resources=self.with_overrides(overrides),
                              raise_on_error=False)

    def with_overrides(self, overrides: list[str] | None) -> dict:
        """The resources, with per-run study overrides (the launchpad's `resources.study.config.overrides`)."""
        study = self.resources["study"]
        study = StudyResource(path=study.path, overrides=[*study.overrides, *(overrides or [])])
        return {**self.resources, "study": study}

    def query(self, sql: str, parameters: list | None = None):
        return table_frame(self.warehouse_path, sql, parameters)


@pytest.fixture
def platform(synthetic_cohort_template: Path, tmp_path: Path) -> Iterator[Platform]:
    cohort_dir = tmp_path / "cohort"
    shutil.copytree(synthetic_cohort_template, cohort_dir)
    warehouse = tmp_path / "warehouse.duckdb"
    resources = {
        "cohort": CohortResource(manifest_path=str(cohort_dir / "cohort.yaml")),
        "warehouse": WarehouseResource(path=str(warehouse)),
        "image_store": ImageStoreResource(root=str(tmp_path / "store")),
        "study": study_resource(tmp_path, cohort_dir / "cohort.yaml"),
    }
    with dg.instance_for_test() as instance:
        yield Platform(cohort_dir / "cohort.yaml", warehouse, instance, resources)


def check_results(result: dg.ExecuteInProcessResult) -> dict[str, bool]:
    return {e.check_name: e.passed for e in result.get_asset_check_evaluations()}


@contextmanager
def modeling_platform(manifest: Path, folder: Path, seed_features: Callable[[Path], None]) -> Iterator[dict]:
    """The manifest materialized on a temporary instance, with warehouse, image store and MLflow store in `folder`;
    `seed_features(warehouse)` writes the feature rows the modeling assets read (no images are processed)."""
    warehouse = folder / "w.duckdb"
    resources = {"cohort": CohortResource(manifest_path=str(manifest)),
                 "warehouse": WarehouseResource(path=str(warehouse)),
                 "image_store": ImageStoreResource(root=str(folder / "store")),
                 "tracking": TrackingResource(tracking_uri=sqlite_tracking_uri(folder / "mlflow.db")),
                 "study": study_resource(folder, manifest)}
    with dg.instance_for_test() as instance:
        assert dg.materialize([cohort_manifest], instance=instance, resources=resources).success
        seed_features(warehouse)
        yield {"instance": instance, "resources": resources, "warehouse": warehouse, "mlflow": folder / "mlflow.db"}


def materialize_assets(assets: list, platform: dict, selection: list,
                       config: dict | None = None) -> dg.ExecuteInProcessResult:
    """Materialize `selection` out of `assets` on a `modeling_platform`, with `config` as the ops run config."""
    return dg.materialize(assets, selection=selection, instance=platform["instance"], resources=platform["resources"],
                          run_config={"ops": config or {}}, raise_on_error=False)
