"""Patient splits: stratified hold-out (8:2, 7:3 presets), leave-one-center-out, repeated stratified k-fold.

Every strategy works on development patients with a known outcome. Prospective patients are always the
`validation` cohort and development patients without an outcome are `excluded`, in every fold, so no
strategy can put a prospective patient's label into training. A split is a table of
(split, fold, patient_key, role) rows, persisted as is; `fold` is `"holdout"` for a hold-out split, the
held-out center for leave-one-center-out and `r<repeat>f<k>` for repeated k-fold.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import numpy as np
import polars as pl

from cssci_platform.lib.settings import Section

Strategy = Literal["holdout", "leave_one_center_out", "repeated_kfold"]
ROLES = ("train", "test", "validation", "excluded")
SPLIT_COLUMNS = pl.Schema({"split": pl.String, "fold": pl.String, "patient_key": pl.String, "role": pl.String})


class SplitError(ValueError):
    """The cohort cannot be split as asked; the message says why and what to change."""


@dataclass(frozen=True)
class SplitSpec:
    strategy: Strategy = "holdout"
    test_fraction: float = 0.2
    seed: int = 42
    n_splits: int = 10
    n_repeats: int = 1

    @property
    def name(self) -> str:
        if self.strategy == "holdout":
            return f"holdout_{round((1 - self.test_fraction) * 10)}_{round(self.test_fraction * 10)}_seed{self.seed}"
        if self.strategy == "leave_one_center_out":
            return "leave_one_center_out"
        return f"repeated_kfold_{self.n_splits}x{self.n_repeats}_seed{self.seed}"


PRESETS: dict[str, SplitSpec] = {
    "holdout_8_2": SplitSpec("holdout", test_fraction=0.2),
    "holdout_7_3": SplitSpec("holdout", test_fraction=0.3),
    "leave_one_center_out": SplitSpec("leave_one_center_out"),
    "repeated_kfold_10x5": SplitSpec("repeated_kfold", n_splits=10, n_repeats=5),
}


SplitPreset = Literal[tuple(PRESETS)]  # type: ignore[valid-type]


class SplitSettings(Section):
    """The study's split (config section `split`): a preset, its seed, and the folds models are trained on
    (["all"]: every fold of the preset, leave-one-center-out centers or `r<i>f<k>`)."""

    preset: SplitPreset = "holdout_8_2"  # type: ignore[valid-type]
    seed: int = 42
    folds: list[str] = ["holdout"]

    def spec(self) -> SplitSpec:
        preset = PRESETS[self.preset]
        return SplitSpec(preset.strategy, preset.test_fraction, self.seed, preset.n_splits, preset.n_repeats)

    @property
    def stored_name(self) -> str:
        """The name the split's rows carry in the `splits` table (e.g. `holdout_8_2_seed42`)."""
        return self.spec().name

    @property
    def first_fold(self) -> str:
        """The fold champions come from, and the one fold-specific tables (harmonized features, CNNs) use."""
        return "holdout" if self.folds == ["all"] else self.folds[0]

    def trained_folds(self, stored: list[str]) -> list[str]:
        """The folds to train on, given the folds the stored split holds."""
        return sorted(stored) if self.folds == ["all"] else list(self.folds)


def assign_splits(patients: pl.DataFrame, spec: SplitSpec) -> pl.DataFrame:
    """Split rows of `patients` (columns patient_key, center, cohort, label; label null = unknown)."""
    _check_columns(patients)
    patients = patients.sort("patient_key")  # the same cohort gives the same split whatever the row order
    labelled = patients.filter((pl.col("cohort") == "development") & pl.col("label").is_not_null())
    fixed = _fixed_roles(patients)
    if spec.strategy == "holdout":
        folds = {"holdout": _holdout(labelled, spec)}
    elif spec.strategy == "leave_one_center_out":
        folds = _leave_one_center_out(labelled)
    else:
        folds = _repeated_kfold(labelled, spec)
    frames = [pl.concat([roles, fixed]).with_columns(fold=pl.lit(fold)) for fold, roles in folds.items()]
    return pl.concat(frames).with_columns(split=pl.lit(spec.name)).select(list(SPLIT_COLUMNS)).cast(SPLIT_COLUMNS)


def training_patients(splits: pl.DataFrame, fold: str) -> list[str]:
    """The patients whose labels a fit on `fold` may use."""
    rows = splits.filter((pl.col("fold") == fold) & (pl.col("role") == "train"))
    return sorted(rows["patient_key"])


def _check_columns(patients: pl.DataFrame) -> None:
    missing = {"patient_key", "center", "cohort", "label"} - set(patients.columns)
    if missing:
        raise SplitError(f"patient table lacks columns {sorted(missing)}")
    if patients["patient_key"].is_duplicated().any():
        raise SplitError(
            f"duplicate patients: {sorted(set(patients.filter(pl.col('patient_key').is_duplicated())['patient_key']))}"
        )


def _fixed_roles(patients: pl.DataFrame) -> pl.DataFrame:
    role = (
        pl.when(pl.col("cohort") == "prospective")
        .then(pl.lit("validation"))
        .when(pl.col("label").is_null())
        .then(pl.lit("excluded"))
    )
    fixed = patients.filter((pl.col("cohort") == "prospective") | pl.col("label").is_null())
    return fixed.select("patient_key", role.alias("role"))


def _roles(keys: np.ndarray, test_mask: np.ndarray) -> pl.DataFrame:
    return pl.DataFrame({"patient_key": keys, "role": np.where(test_mask, "test", "train")})


def _holdout(labelled: pl.DataFrame, spec: SplitSpec) -> pl.DataFrame:
    from sklearn.model_selection import train_test_split

    if not 0 < spec.test_fraction < 1:
        raise SplitError(f"test_fraction must be between 0 and 1, got {spec.test_fraction}")
    labels = labelled["label"].cast(pl.String).to_numpy()
    _require_per_class(labels, 2, "a stratified hold-out split")
    keys = labelled["patient_key"].to_numpy()
    strata = center_outcome_strata(labelled["center"].cast(pl.String).to_numpy(), labels)
    try:
        _, test_keys = train_test_split(keys, test_size=spec.test_fraction, stratify=strata, random_state=spec.seed)
    except ValueError:  # more center x outcome strata than test patients: outcome only
        _, test_keys = train_test_split(keys, test_size=spec.test_fraction, stratify=labels, random_state=spec.seed)
    return _roles(keys, np.isin(keys, test_keys))


def center_outcome_strata(centers: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """Stratum per patient for a hold-out split: center x outcome where that cell has at least 2 patients (so each
    center's share of training patients is kept, and ComBat keeps its centers), else the outcome alone."""
    joint = np.asarray([f"{center}\x1f{label}" for center, label in zip(centers, labels, strict=True)], dtype=object)
    values, counts = np.unique(joint, return_counts=True)
    large = set(values[counts >= 2])
    strata = np.asarray(
        [j if j in large else f"*\x1f{label}" for j, label in zip(joint, labels, strict=True)], dtype=object
    )
    values, counts = np.unique(strata, return_counts=True)
    if (
        counts < 2
    ).any():  # a leftover outcome cell of one patient: stratify that outcome's leftovers with its largest cell
        lonely = set(values[counts < 2])
        strata = np.asarray(
            [
                _largest_cell(strata, labels, label) if s in lonely else s
                for s, label in zip(strata, labels, strict=True)
            ],
            dtype=object,
        )
    return strata


def _largest_cell(strata: np.ndarray, labels: np.ndarray, label: str) -> str:
    values, counts = np.unique(strata[labels == label], return_counts=True)
    return str(values[np.argmax(counts)])


def _leave_one_center_out(labelled: pl.DataFrame) -> dict[str, pl.DataFrame]:
    centers = sorted(set(labelled["center"]))
    if len(centers) < 2:
        raise SplitError(f"leave-one-center-out needs at least 2 centers with labelled patients, found {centers}")
    keys, held = labelled["patient_key"].to_numpy(), labelled["center"].to_numpy()
    return {center: _roles(keys, held == center) for center in centers}


def _repeated_kfold(labelled: pl.DataFrame, spec: SplitSpec) -> dict[str, pl.DataFrame]:
    from sklearn.model_selection import RepeatedStratifiedKFold

    labels = labelled["label"].cast(pl.String).to_numpy()
    _require_per_class(labels, spec.n_splits, f"{spec.n_splits}-fold stratified cross-validation")
    keys = labelled["patient_key"].to_numpy()
    splitter = RepeatedStratifiedKFold(n_splits=spec.n_splits, n_repeats=spec.n_repeats, random_state=spec.seed)
    folds = {}
    for index, (_, test_index) in enumerate(splitter.split(keys, labels)):
        test_mask = np.zeros(len(keys), dtype=bool)
        test_mask[test_index] = True
        folds[f"r{index // spec.n_splits}f{index % spec.n_splits}"] = _roles(keys, test_mask)
    return folds


def _require_per_class(labels: np.ndarray, minimum: int, purpose: str) -> None:
    values, counts = np.unique(labels, return_counts=True)
    if len(values) < 2:
        raise SplitError(
            f"{purpose} needs at least 2 outcome classes among labelled development patients, found {list(values)}"
        )
    small = {str(v): int(c) for v, c in zip(values, counts) if c < minimum}
    if small:
        raise SplitError(f"{purpose} needs at least {minimum} labelled patients per class; too few in {small}")


def role_counts_table(splits: pl.DataFrame, limit: int = 40) -> str:
    """Patients per fold and role as a markdown table (the first `limit` rows)."""
    counts = splits.group_by("fold", "role").len().sort("fold", "role")
    return "\n".join(
        ["| fold | role | patients |", "|---|---|---|"]
        + [f"| {f} | {r} | {n} |" for f, r, n in counts.head(limit).iter_rows()]
    )
