"""The model zoo of a study: every fold x mode x signature x classifier fitted, and each signature's champion.

This is the method's core loop, free of Dagster and MLflow: `train_zoo` yields each fit as it finishes (a
`ZooFit`, the caller logs and stores it); `choose_champions` picks, per signature, the model the registry
serves. Labels per mode follow the outcome settings: with rule `change_above_mean`, leakage_safe models
re-threshold the change score at each fold's training mean (`labels_for_mode`); paper_faithful models keep the
stored cohort-mean labels, as published.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING

import pandas as pd

from cssci_platform.lib.model_tracking import select_champion
from cssci_platform.lib.modeling.chains import ChainSettings
from cssci_platform.lib.modeling.settings import ModelsSettings
from cssci_platform.lib.modeling.signatures import Signature, study_signatures
from cssci_platform.lib.modeling.training import (
    SINGLE_MODEL_KINDS,
    FailedFit,
    Mode,
    TrainedModel,
    champion_candidates,
    fit_signature,
)
from cssci_platform.lib.outcome_rules import labels_above_training_mean

if TYPE_CHECKING:
    from cssci_platform.lib.cohort import CohortSpec

_LOG = logging.getLogger(__name__)
BINARY_CLASSES = ["0", "1"]  # the labels of a binary outcome and of every derived one
NO_TRAINED_FOLD = "-"
STEPS_PER_WORKER = 2  # fit steps per parallel worker (`fit_steps`)


@dataclass(frozen=True)
class ZooFit:
    """One fit of the zoo: its fold, the fold's roles (named by the split), the labels it was trained and
    evaluated against, the per-fold outcome threshold (None: the stored labels), and the model or the failure."""

    fold: str
    roles: pd.Series
    labels: pd.Series
    outcome_threshold: float | None
    model: TrainedModel | FailedFit

    @property
    def failed(self) -> bool:
        return isinstance(self.model, FailedFit)


def labels_for_mode(
    matrix: pd.DataFrame, roles: pd.Series, scores: pd.Series | None, mode: str
) -> tuple[pd.DataFrame, float | None]:
    """The matrix with this mode's labels and the threshold used: leakage_safe with `scores` (rule
    change_above_mean) thresholds them at the training patients' mean; otherwise the stored labels (None).
    Raises OutcomeRuleError when no training patient has a score."""
    if scores is None or mode != "leakage_safe":
        return matrix, None
    labels, threshold = labels_above_training_mean(scores.reindex(matrix.index), roles.reindex(matrix.index))
    return matrix.assign(label=labels.where(matrix["label"].notna(), None)), threshold


@dataclass(frozen=True)
class FitUnit:
    """One step of the zoo: every classifier of one signature in one mode on one fold (they share the signature's
    selection chain, so a signature is not split further)."""

    fold: str
    mode: Mode
    signature: str

    @property
    def step_key(self) -> str:
        """A name for the unit as a Dagster dynamic output key (letters, digits and underscores)."""
        return "".join(c if c.isalnum() else "_" for c in f"{self.fold}__{self.mode}__{self.signature}")


def fit_units(
    matrix: pd.DataFrame, folds: dict[str, pd.Series], models: ModelsSettings, modes: list[Mode]
) -> list[FitUnit]:
    """Every fold x mode x signature of the zoo, in the serial training order (`train_zoo`'s)."""
    signatures = study_signatures(models.signatures, matrix)
    return [FitUnit(fold, mode, signature.name) for fold in folds for mode in modes for signature in signatures]


@dataclass(frozen=True)
class FitStep:
    """Fit units run one after another in one Dagster step (one process under the multiprocess executor): `units`
    are indices into the serial unit list (`fit_units`), `estimated_work` its units' models x feature columns."""

    units: tuple[int, ...]
    key: str
    estimated_work: int


def fit_steps(units: list[FitUnit], matrix: pd.DataFrame, models: ModelsSettings, workers: int) -> list[FitStep]:
    """The units packed into at most `STEPS_PER_WORKER` x `workers` steps, largest work first.

    A step is a process under the multiprocess executor, and each one pays seconds before its first fit (start-up,
    the MLflow store, its first model's logging): measured on the 30-patient demo's zoo of 10 one-classifier units,
    a step per unit made the parallel run 1.8-2.4x slower than fitting them one after another (benchmarks/RESULTS.md).
    So units are packed longest first onto the least loaded step (LPT scheduling; work is estimated as models x
    feature columns of a unit); two steps per worker leave the executor room to even out wrong estimates. Steps are
    ordered by work, largest first, so the workers start on the long ones. Inside a step the units keep their serial
    order. The packing changes nothing in the fits: each unit is trained by `train_unit` as in `train_zoo`."""
    signatures = {s.name: s for s in study_signatures(models.signatures, matrix)}
    work = [_estimated_work(signatures[u.signature], matrix, models.classifiers) for u in units]
    count = min(len(units), STEPS_PER_WORKER * max(workers, 1))
    groups: list[list[int]] = [[] for _ in range(count)]
    loads = [0] * count
    for index in sorted(range(len(units)), key=lambda i: (-work[i], i)):
        lightest = min(range(count), key=lambda g: (loads[g], g))
        groups[lightest].append(index)
        loads[lightest] += work[index]
    steps = [FitStep(tuple(sorted(g)), _step_key([units[i] for i in sorted(g)]), load)
             for g, load in zip(groups, loads) if g]
    return sorted(steps, key=lambda step: (-step.estimated_work, step.units))


def _model_count(signature: Signature, classifiers: list[str]) -> int:
    return 1 if signature.kind in SINGLE_MODEL_KINDS else len(classifiers)


def _estimated_work(signature: Signature, matrix: pd.DataFrame, classifiers: list[str]) -> int:
    try:
        columns = len(signature.columns(matrix))
    except ValueError:  # no columns: the unit is recorded as failed fits at once
        columns = 0
    return _model_count(signature, classifiers) * max(columns, 1)


def _step_key(units: list[FitUnit]) -> str:
    """The step's name as a dynamic output key: the one unit's `step_key`, or its folds, modes and signatures."""
    if len(units) == 1:
        return units[0].step_key
    folds, modes, signatures = ("_".join(dict.fromkeys(getattr(u, part) for u in units))
                                for part in ("fold", "mode", "signature"))
    return FitUnit(folds, modes, signatures).step_key  # type: ignore[arg-type]


def no_units_reason(signatures: list[str] | None, modes: list[str], folds: list[str]) -> str:
    """Why a zoo has no fit unit, naming the empty setting(s) and how to fill them."""
    empty = [name for name, values in (("models.signatures", signatures), ("modes", modes), ("split.folds", folds))
             if values is not None and not values]
    return (f"no model to fit: {', '.join(empty) or 'models.signatures'} names nothing; leave models.signatures out "
            "for the standard set (Rad, DL_<backbone>, Rad+DL_<backbone>, Clinical, Combined) or list some, and give "
            "at least one mode (leakage_safe, paper_faithful) and one fold")


def train_unit(
    matrix: pd.DataFrame,
    folds: dict[str, pd.Series],
    classes: list[str],
    models: ModelsSettings,
    unit: FitUnit,
    chain: ChainSettings,
    scores: pd.Series | None = None,
) -> list[ZooFit]:
    """The fits of one `FitUnit`, exactly as `train_zoo` makes them (same inputs, same order, same seeds)."""
    roles = folds[unit.fold]
    signature = next(s for s in study_signatures(models.signatures, matrix) if s.name == unit.signature)
    labelled, threshold = labels_for_mode(matrix, roles, scores, unit.mode)
    _LOG.info("training %s (%s, fold %s)", signature.name, unit.mode, unit.fold)
    fitted = fit_signature(
        labelled,
        roles,
        signature,
        list(models.classifiers),
        unit.mode,
        classes,
        chain,
        models.grid,
        models.cv_folds,
    )
    return [ZooFit(unit.fold, roles, labelled["label"], threshold, model) for model in fitted]


def train_zoo(
    matrix: pd.DataFrame,
    folds: dict[str, pd.Series],
    classes: list[str],
    models: ModelsSettings,
    modes: list[Mode],
    chain: ChainSettings,
    scores: pd.Series | None = None,
) -> Iterator[ZooFit]:
    """Fit every signature x classifier of `models` in every mode on every fold (`folds`: fold -> patient roles),
    in that order, one `FitUnit` after another. `scores`: the per-patient change scores when labels are re-derived
    per fold (else None)."""
    for unit in fit_units(matrix, folds, models, modes):
        yield from train_unit(matrix, folds, classes, models, unit, chain, scores)


def choose_champions(models: list[tuple[TrainedModel, str]]) -> dict[str, tuple[TrainedModel, str]]:
    """Per signature name: the (model, key) with the best mean CV AUC among `champion_candidates` (leakage_safe,
    never test data); ties go to the smallest key (e.g. MLflow run id), whatever the order. `models` should hold
    one fold's fits (the first: champions come from it)."""
    champions = {}
    for signature in sorted({m.spec.signature.name for m, _ in models}):
        of_signature = [(m, key) for m, key in models if m.spec.signature.name == signature]
        eligible = {id(m) for m in champion_candidates([m for m, _ in of_signature])}
        candidates = {key: m for m, key in of_signature if id(m) in eligible}
        if candidates:
            best = select_champion([(key, m.cv_score_mean) for key, m in candidates.items()])
            champions[signature] = (candidates[best], best)
    return champions


def outcome_classes(spec: CohortSpec, outcome: str | None) -> list[str]:
    """The classes the zoo predicts: the outcome's manifest levels (a multiclass outcome), else "0" and "1" (a binary
    manifest outcome, or one derived by an outcome rule, which the manifest does not declare)."""
    variable = spec.outcomes.get(outcome) if outcome is not None else None
    return list(variable.levels) if variable is not None and variable.levels else list(BINARY_CLASSES)


def champions_fold(fits: Iterable[ZooFit]) -> str:
    """The fold the champions come from: the first fold (in training order) with a fit that did not fail;
    `NO_TRAINED_FOLD` when every fit failed."""
    return next((fit.fold for fit in fits if not fit.failed), NO_TRAINED_FOLD)
