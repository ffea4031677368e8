"""Center sizes a study will meet, decided from the cohort and the seeds alone, before any image is processed.

ComBat estimates each center's location and scale from the training patients of every fit: the split's training
patients and, inside them, the training part of every CV fold. Both are fixed by the manifest (centers, cohort
roles, outcomes) and the seeds, so `center_size_problems` finds the centers that will be too small before the
40 minutes of feature extraction, with the config key that fixes each. The CV folds are those of
`lib.modeling.tuning.fit_chain_folds` (seeded stratified k-fold over the training patients in patient_key order,
as the feature matrix holds them); patients that later fail QC change them.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import polars as pl

from cssci_platform.lib.classifiers import stratified_folds
from cssci_platform.lib.harmonization.scope import SMALL_CENTER_KEYS
from cssci_platform.lib.harmonization.settings import HarmonizationSettings
from cssci_platform.lib.splits import SplitSpec, assign_splits

HANDLED = {
    "pool": "pooled with the other small centers (or left out of the fit if still under 2)",
    "unseen": "left out of the ComBat fit; its patients follow harmonization.unseen_center_policy",
}


@dataclass(frozen=True)
class CenterSizeProblem:
    """A center with fewer than `min_center_size` training patients in one fit."""

    center: str
    training_patients: int
    split_fold: str  # the split's fold ("holdout", a held-out center, r<i>f<k>)
    cv_fold: int | None  # 1-based CV fold inside the training patients; None: the split's training set itself
    n_cv_folds: int
    stops_the_run: bool  # harmonization.small_center is 'error' (else the policy handles it at fit time)
    what_happens: str
    fix: str

    @property
    def where(self) -> str:
        split = f"the training patients of split fold {self.split_fold!r}"
        return split if self.cv_fold is None else f"CV fold {self.cv_fold} of {self.n_cv_folds} inside {split}"

    def message(self) -> str:
        return (
            f"center {self.center!r} has {self.training_patients} training patient(s) in {self.where}: "
            f"{self.what_happens}. Fix: {self.fix}"
        )


def center_size_problems(
    patients: pl.DataFrame,
    split: SplitSpec,
    cv_folds: int,
    cv_seed: int,
    harmonization: HarmonizationSettings,
    *,
    folds: list[str] | None = None,
) -> list[CenterSizeProblem]:
    """Every (center, fit) with fewer than `harmonization.min_center_size` training patients.

    `patients`: patient_key, center, cohort (development / prospective), label (null = unknown), as `assign_splits`
    takes them; `split`: the study's split (`SplitSettings.spec()`, lib/splits.py); `cv_folds`,
    `cv_seed`: models.cv_folds and models.seed; `harmonization`: the study's harmonization section (`enabled`,
    `small_center`, `min_center_size`); `folds`: the split folds trained (default: the first; ["all"]: every
    one). Nothing to report when harmonization is off."""
    if not harmonization.enabled:
        return []
    min_center_size = harmonization.min_center_size
    splits = assign_splits(patients, split)
    chosen = sorted(set(splits["fold"])) if folds == ["all"] else (folds or [splits["fold"][0]])
    centers = dict(zip(patients["patient_key"].to_list(), patients["center"].cast(pl.String).to_list(), strict=True))
    labels = dict(zip(patients["patient_key"].to_list(), patients["label"].cast(pl.String).to_list(), strict=True))
    problems = []
    for fold in chosen:
        train = sorted(splits.filter((pl.col("fold") == fold) & (pl.col("role") == "train"))["patient_key"])
        parts = [(None, train)] + _cv_training_parts(train, labels, cv_folds, cv_seed)
        n_cv = len(parts) - 1
        for cv_fold, keys in parts:
            problems += [
                _problem(center, n, fold, cv_fold, n_cv, harmonization.small_center, min_center_size)
                for center, n in _small(keys, centers, min_center_size).items()
            ]
    return problems


def _cv_training_parts(
    train: list[str], labels: dict[str, str], cv_folds: int, seed: int
) -> list[tuple[int, list[str]]]:
    y = np.asarray([labels[key] for key in train], dtype=object).astype(str)
    try:
        splitter = stratified_folds(y, cv_folds, seed)
    except ValueError:
        return []  # the split itself cannot be cross-validated: training says so
    keys = np.asarray(train, dtype=object)
    return [(index + 1, list(keys[part])) for index, (part, _) in enumerate(splitter.split(keys, y))]


def _small(keys: list[str], centers: dict[str, str], min_size: int) -> dict[str, int]:
    values, counts = np.unique(np.asarray([centers[key] for key in keys], dtype=object).astype(str), return_counts=True)
    return {str(center): int(n) for center, n in zip(values, counts, strict=True) if n < min_size}


def _problem(
    center: str, n: int, fold: str, cv_fold: int | None, n_cv: int, policy: str, min_size: int
) -> CenterSizeProblem:
    stops = policy == "error"
    what = (
        f"ComBat needs at least {min_size} per center and harmonization.small_center is 'error', so every model fails"
        if stops
        else f"harmonization.small_center {policy!r}: {HANDLED.get(policy, policy)}"
    )
    fix = SMALL_CENTER_KEYS if stops else "none needed (decided at fit time and stated in the report)"
    return CenterSizeProblem(center, n, fold, cv_fold, n_cv, stops, what, fix)
