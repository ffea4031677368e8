from datetime import datetime

import dagster as dg
import pandas as pd
import polars as pl

from cssci_platform.defs.ingest.assets import cohort_manifest
from cssci_platform.defs.outcomes.assets import study_outcome
from cssci_platform.lib.splits import PRESETS, SplitSpec, assign_splits
from cssci_platform.lib.warehouse import replace_rows
from cssci_platform.resources.cohort import CohortResource
from cssci_platform.resources.warehouse import WarehouseResource


class SplitConfig(dg.Config):
    preset: str = "holdout_8_2"
    seed: int = 42
    outcome: str | None = None  # default: the manifest's first declared outcome

    def spec(self) -> SplitSpec:
        if self.preset not in PRESETS:
            raise dg.Failure(f"unknown split preset '{self.preset}'; choose one of {sorted(PRESETS)}")
        preset = PRESETS[self.preset]
        return SplitSpec(preset.strategy, preset.test_fraction, self.seed, preset.n_splits, preset.n_repeats)


@dg.asset(group_name="modeling", deps=[cohort_manifest, study_outcome], kinds={"duckdb", "scikitlearn"})
def patient_splits(config: SplitConfig, cohort: CohortResource, warehouse: WarehouseResource) -> dg.MaterializeResult:
    """Train / test / validation roles per patient (stratified, seeded); prospective patients are validation."""
    outcome = study_outcome_name(cohort, warehouse, config.outcome)
    patients = warehouse.frame(
        "SELECT p.patient_key, p.center, p.cohort, o.value AS label FROM patients p "
        "LEFT JOIN outcomes o ON o.patient_key = p.patient_key AND o.outcome = ? "
        "WHERE NOT EXISTS (SELECT 1 FROM qc_issues q WHERE q.patient_key = p.patient_key "
        "AND q.stage = 'manifest' AND q.severity = 'error')", [outcome])
    spec = config.spec()
    splits = assign_splits(patients, spec).with_columns(
        outcome=pl.lit(outcome), seed=pl.lit(spec.seed), created_at=pl.lit(datetime.now()))
    with warehouse.connect() as con:
        replace_rows(con, "splits", {"split": spec.name}, splits)
    counts = splits.group_by("fold", "role").len().sort("fold", "role")
    return dg.MaterializeResult(metadata={
        "split": spec.name, "outcome": outcome, "folds": splits["fold"].n_unique(),
        "roles": dg.MetadataValue.md("\n".join(["| fold | role | patients |", "|---|---|---|"] +
                                               [f"| {f} | {r} | {n} |" for f, r, n in counts.head(40).iter_rows()])),
    })


def split_name(warehouse: WarehouseResource, split: str | None) -> str:
    """The configured split, or the only one stored."""
    names = sorted(set(warehouse.frame("SELECT DISTINCT split FROM splits")["split"]))
    chosen = split if split is not None else (names[0] if len(names) == 1 else None)
    if chosen not in names:
        raise dg.Failure(f"choose a stored split (config 'split'); the splits table holds {names or 'none: materialize patient_splits'}")
    return chosen


def split_roles(warehouse: WarehouseResource, split: str | None, fold: str) -> pd.Series:
    """patient_key -> role for one fold of a stored split."""
    chosen = split_name(warehouse, split)
    rows = warehouse.frame("SELECT patient_key, role FROM splits WHERE split = ? AND fold = ?", [chosen, fold])
    if rows.is_empty():
        folds = sorted(set(warehouse.frame("SELECT fold FROM splits WHERE split = ?", [chosen])["fold"]))
        raise dg.Failure(f"split '{chosen}' has no fold '{fold}'; its folds are {folds[:20]}")
    return pd.Series(dict(rows.iter_rows()), name=chosen)


def study_outcome_name(cohort: CohortResource, warehouse: WarehouseResource, configured: str | None) -> str:
    """The configured outcome (a manifest outcome or one derived by `study_outcome`), else the manifest's first."""
    declared = list(cohort.load().spec.outcomes)
    outcome = configured or (declared[0] if declared else None)
    derived = set(warehouse.frame("SELECT DISTINCT outcome FROM outcomes")["outcome"]) - set(declared)
    if outcome not in declared and outcome not in derived:
        raise dg.Failure(f"outcome '{outcome}' is neither declared in the manifest ({declared}) nor derived by study_outcome "
                         f"({sorted(derived) or 'none yet'}); materialize study_outcome with this name or fix the config")
    return outcome
