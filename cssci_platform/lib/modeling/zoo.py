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
SHORT_UNIT_SHARE = 0.25  # a unit with less work than this share of the longest one's is merged with other short ones


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
    are indices into the serial unit list (`fit_units`), `estimated_work` the unit's models x feature columns."""

    units: tuple[int, ...]
    key: str
    estimated_work: int


def fit_steps(units: list[FitUnit], matrix: pd.DataFrame, models: ModelsSettings) -> list[FitStep]:
    """The units grouped into steps worth a process, longest first. Work is estimated as models x feature columns
    of a unit. A short unit (under `SHORT_UNIT_SHARE` of the longest's work: e.g. Clinical and Combined, one
    logistic regression each, beside a signature's whole classifier zoo) joins the other short units of its fold in
    one step, up to that share of work per step; every other unit is a step of its own. Steps are ordered by work,
    largest first, so parallel workers start on the long ones and the short ones fill the end. The grouping changes
    nothing in the fits: each unit is trained by `train_unit` as in `train_zoo`."""
    signatures = {s.name: s for s in study_signatures(models.signatures, matrix)}
    work = [_estimated_work(signatures[u.signature], matrix, models.classifiers) for u in units]
    short_limit = max(work, default=0) * SHORT_UNIT_SHARE
    groups = [[i] for i in range(len(units)) if work[i] >= short_limit]
    for fold in dict.fromkeys(u.fold for u in units):
        group: list[int] = []
        for i in (i for i, u in enumerate(units) if u.fold == fold and work[i] < short_limit):
            if group and sum(work[j] for j in group) + work[i] > short_limit:
                groups.append(group)
                group = []
            group.append(i)
        groups += [group] if group else []
    steps = [FitStep(tuple(g), _step_key([units[i] for i in g]), sum(work[i] for i in g)) for g in groups]
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
    """The step's name as a dynamic output key: the one unit's `step_key`, or fold, modes and signatures."""
    if len(units) == 1:
        return units[0].step_key
    modes = "_".join(dict.fromkeys(u.mode for u in units))
    signatures = "_".join(dict.fromkeys(u.signature for u in units))
    return FitUnit(units[0].fold, modes, signatures).step_key  # type: ignore[arg-type]


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
