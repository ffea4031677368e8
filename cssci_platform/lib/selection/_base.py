"""Plumbing shared by the selection steps: the per-step report, input checks and the selector base class."""

from __future__ import annotations

import warnings
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any, Literal, Self

import numpy as np
import pandas as pd
from sklearn.base import BaseEstimator
from sklearn.feature_selection import SelectorMixin
from sklearn.utils.multiclass import type_of_target
from sklearn.utils.validation import check_is_fitted, validate_data

from cssci_platform.lib.compact_state import CompactNames

OnConstant = Literal["error", "drop"]
OnEmpty = Literal["keep_best", "raise"]

_LISTED = 8  # how many offending feature names an error message spells out


class EmptySelectionWarning(UserWarning):
    """A step kept no feature and fell back to keeping the single best one (``on_empty="keep_best"``)."""


@dataclass(frozen=True)
class SelectionReport(CompactNames):
    """What one fitted step kept, for logging (MLflow params/artifacts) and for the run's report.

    ``statistic`` holds the step's statistic for every input feature where it is defined (p-value, ICC,
    |coefficient|, ...); ``kept`` lists the surviving features in output order; ``notes`` are the
    human-readable decisions the step took (features dropped as constant, caps, fallbacks); ``details``
    holds step-specific extras (chosen C, drop order, explained variance).
    """

    step: str
    n_in: int
    n_out: int
    kept: tuple[str, ...]
    statistic_name: str
    statistic: dict[str, float]
    notes: tuple[str, ...] = ()
    details: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def to_frame(self) -> pd.DataFrame:
        """One row per input feature with its statistic and whether it was kept."""
        kept = set(self.kept)
        rows = [(name, value, name in kept) for name, value in self.statistic.items()]
        return pd.DataFrame(rows, columns=["feature", self.statistic_name, "kept"])


def pipeline_reports(estimator: Any) -> list[SelectionReport]:
    """The ``report_`` of every fitted step of a (possibly nested) Pipeline, in pipeline order."""
    steps = getattr(estimator, "steps", None)
    if steps is None:
        report = getattr(estimator, "report_", None)
        return [report] if isinstance(report, SelectionReport) else []
    return [report for _, step in steps for report in pipeline_reports(step)]


def listed(names: Iterable[str]) -> str:
    """'a, b, c (+12 more)' for error messages."""
    names = list(names)
    head = ", ".join(map(str, names[:_LISTED]))
    return head + (f" (+{len(names) - _LISTED} more)" if len(names) > _LISTED else "")


def require_finite(X: np.ndarray, names: Sequence[str] | np.ndarray, step: str) -> None:
    bad = ~np.isfinite(X).all(axis=0)
    if bad.any():
        raise ValueError(
            f"{step}: {int(bad.sum())} feature(s) hold NaN or infinite values: {listed(np.asarray(names)[bad])}; "
            "impute or drop them before selection"
        )


def constant_mask(X: np.ndarray) -> np.ndarray:
    return np.ptp(X, axis=0) == 0


def single_valued_columns(frame: pd.DataFrame, dropna: bool = False) -> np.ndarray:
    """Mask of the columns holding at most one distinct value: ``frame.nunique(dropna=dropna) <= 1``, computed at once
    for a float frame (min == max per column; ``dropna=False`` counts NaN as a value) and by pandas otherwise."""
    if not all(isinstance(dtype, np.dtype) and dtype.kind == "f" for dtype in set(frame.dtypes)) or frame.shape[0] == 0:
        return (frame.nunique(dropna=dropna) <= 1).to_numpy()
    values = frame.to_numpy(dtype=np.float64)
    low, high = np.fmin.reduce(values, axis=0), np.fmax.reduce(values, axis=0)  # NaN only where all are NaN
    all_missing = np.isnan(low)
    if dropna:
        return all_missing | (low == high)
    return all_missing | ((low == high) & ~np.isnan(values).any(axis=0))


def plain(value: Any) -> Any:
    """numpy scalar -> Python scalar, so messages read 'good', not np.str_('good')."""
    return value.item() if isinstance(value, np.generic) else value


def class_codes(y: Any, n_samples: int, step: str) -> tuple[np.ndarray, np.ndarray]:
    """Integer codes 0..C-1 and the class labels of a classification target, with precise errors."""
    if y is None:
        raise ValueError(f"{step}: this step is supervised; pass the outcome y to fit")
    labels = pd.Series(np.asarray(y).ravel() if not isinstance(y, pd.Series) else y.to_numpy())
    if len(labels) != n_samples:
        raise ValueError(f"{step}: y has {len(labels)} values but X has {n_samples} rows")
    if labels.isna().any():
        raise ValueError(f"{step}: y has {int(labels.isna().sum())} missing value(s); drop those patients first")
    target_type = type_of_target(labels.to_numpy())
    if target_type not in ("binary", "multiclass"):
        raise ValueError(f"{step}: y must hold class labels (binary or multiclass), got a {target_type} target")
    classes, codes = np.unique(labels.to_numpy(), return_inverse=True)
    if len(classes) < 2:
        raise ValueError(
            f"{step}: y has a single class ({plain(classes[0])!r}); selection needs at least two outcome classes"
        )
    return codes, classes


class ReportingSelector(CompactNames, SelectorMixin, BaseEstimator):
    """A feature selector that validates its input, keeps a boolean ``support_`` and a ``report_``.

    Subclasses implement ``fit`` with ``_validated`` / ``_usable_columns`` / ``_finish``. Fitted selectors
    transform pandas or numpy input; ``set_output(transform="pandas")`` keeps column names.
    """

    step_name: str = "selector"
    supervised: bool = False

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.target_tags.required = self.supervised
        return tags

    def _validated(self, X: Any) -> tuple[np.ndarray, np.ndarray]:
        """(float matrix, feature names) of the training data; names are x0, x1, ... for numpy input."""
        X_arr = validate_data(self, X, dtype=np.float64, ensure_all_finite=False, reset=True)
        names = getattr(self, "feature_names_in_", None)
        if names is None:
            names = np.asarray([f"x{i}" for i in range(X_arr.shape[1])], dtype=object)
        require_finite(X_arr, names, self.step_name)
        return X_arr, np.asarray(names, dtype=object)

    def _usable_columns(
        self, X: np.ndarray, names: np.ndarray, on_constant: OnConstant
    ) -> tuple[np.ndarray, list[str]]:
        """Mask of non-constant columns; constant ones raise or are dropped with a note."""
        constant = constant_mask(X)
        if not constant.any():
            return ~constant, []
        if constant.all():
            raise ValueError(f"{self.step_name}: all {len(names)} features are constant on the training rows")
        if on_constant == "error":
            raise ValueError(
                f"{self.step_name}: {int(constant.sum())} feature(s) are constant on the training rows: "
                f"{listed(names[constant])}; drop them first (e.g. sklearn VarianceThreshold) "
                "or construct the step with on_constant='drop'"
            )
        return ~constant, [f"dropped {int(constant.sum())} constant feature(s): {listed(names[constant])}"]

    def _keep_best_if_empty(
        self, support: np.ndarray, best_index: int, names: np.ndarray, on_empty: OnEmpty, why: str
    ) -> list[str]:
        """Never return an empty selection silently: raise, or keep ``best_index`` with a warning + note."""
        if support.any():
            return []
        if on_empty == "raise":
            raise ValueError(f"{self.step_name}: no feature survived ({why})")
        support[best_index] = True
        note = f"no feature survived ({why}); kept the single best feature {names[best_index]!r}"
        warnings.warn(f"{self.step_name}: {note}", EmptySelectionWarning, stacklevel=3)
        return [note]

    def _finish(
        self,
        names: np.ndarray,
        support: np.ndarray,
        statistic_name: str,
        statistic: dict[str, float],
        notes: Sequence[str] = (),
        details: dict[str, Any] | None = None,
    ) -> Self:
        self.support_ = np.asarray(support, dtype=bool)
        kept = tuple(names[self.support_])
        self.report_ = SelectionReport(
            step=self.step_name,
            n_in=len(names),
            n_out=int(self.support_.sum()),
            kept=tuple(map(str, kept)),
            statistic_name=statistic_name,
            statistic={str(k): float(v) for k, v in statistic.items()},
            notes=tuple(notes),
            details=details or {},
        )
        return self

    def _get_support_mask(self) -> np.ndarray:
        check_is_fitted(self, "support_")
        return self.support_
