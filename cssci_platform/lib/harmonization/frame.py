"""Reading ComBat's inputs out of one pandas DataFrame: features, the batch (center) and covariates.

Every problem is a `ValueError` naming the column, the rows or values at fault and the fix; nothing is
imputed or dropped silently.
"""

from __future__ import annotations

from collections.abc import Hashable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt
import pandas as pd

from cssci_platform.lib.harmonization.estimation import FloatArray
from cssci_platform.lib.harmonization.settings import MIN_BATCH_SIZE

# How a study turns ComBat off: the study config key (HarmonizationSettings.enabled, lib/harmonization/settings.py)
HARMONIZATION_OFF = "harmonization.enabled: false (cssci run --set harmonization.enabled=false)"
_SHOWN = 5  # how many offending names or rows a message lists


def require_frame(data: Any, columns: Sequence[str]) -> pd.DataFrame:
    """`data` as a DataFrame that has every column in `columns`."""
    if not isinstance(data, pd.DataFrame):
        raise ValueError(
            f"ComBat needs a pandas DataFrame holding the feature columns and {list(columns)}, "
            f"got {type(data).__name__}; put the batch and covariate columns beside the features"
        )
    if data.columns.has_duplicates:
        raise ValueError(f"duplicate column names: {_listed(data.columns[data.columns.duplicated()])}")
    missing = [column for column in columns if column not in data.columns]
    if missing:
        raise ValueError(f"columns {missing} are missing from the data (columns: {_listed(data.columns)})")
    return data


def resolve_feature_columns(frame: pd.DataFrame, requested: Sequence[str] | None, reserved: set[str]) -> list[str]:
    """The requested feature columns, or every column that is neither batch nor covariate; all numeric."""
    if requested is not None:
        columns = list(requested)
        clashing = [column for column in columns if column in reserved]
        if clashing:
            raise ValueError(f"feature_cols {clashing} are also the batch or covariate columns")
    else:
        columns = [column for column in frame.columns if column not in reserved]
    if not columns:
        raise ValueError("no feature columns: the data hold only the batch and covariate columns")
    not_numeric = non_numeric_columns(frame, columns)
    if not_numeric:
        raise ValueError(
            f"feature columns {_listed(not_numeric)} are not numeric; name the features in feature_cols= "
            "or drop the other columns before harmonization"
        )
    return columns


def non_numeric_columns(frame: pd.DataFrame, columns: Sequence[str]) -> list[str]:
    """The `columns` of `frame` whose dtype is not numeric; each distinct dtype is tested once (a wide matrix holds
    thousands of columns but a handful of dtypes)."""
    dtypes = frame.dtypes.loc[list(columns)]
    numeric = {dtype: pd.api.types.is_numeric_dtype(dtype) for dtype in set(dtypes)}
    return [column for column, dtype in zip(columns, dtypes, strict=True) if not numeric[dtype]]


def feature_matrix(frame: pd.DataFrame, columns: Sequence[str]) -> FloatArray:
    """The features as float64, refusing NaN or infinite values (ComBat has no missing-value model)."""
    values = frame.loc[:, list(columns)].to_numpy(dtype=np.float64)
    bad = ~np.isfinite(values)
    if bad.any():
        bad_columns = [columns[int(index)] for index in np.flatnonzero(bad.any(axis=0))]
        bad_rows = frame.index[bad.any(axis=1)]
        raise ValueError(
            f"{int(bad.sum())} NaN or infinite feature values in columns {_listed(bad_columns)} "
            f"(rows {_listed(bad_rows)}); impute or drop them before harmonization"
        )
    return values


def batch_labels(frame: pd.DataFrame, batch_col: str) -> npt.NDArray[np.object_]:
    """The batch label of every row; a missing label is an error."""
    labels = frame[batch_col].to_numpy(dtype=object)
    missing = pd.isna(labels)
    if missing.any():
        raise ValueError(f"batch column {batch_col!r} is missing in rows {_listed(frame.index[missing])}")
    return labels


def sorted_levels(values: npt.NDArray[np.object_], column: str) -> tuple[list[Hashable], npt.NDArray[np.intp]]:
    """Distinct values in sorted order (neuroCombat's level order) and each row's index into them."""
    try:
        levels, codes = np.unique(values, return_inverse=True)
    except TypeError as error:
        raise ValueError(f"column {column!r} mixes value types ({error}); use one type") from error
    return list(levels), codes.astype(np.intp)


def undersized_batches(
    labels: Sequence[Hashable] | npt.NDArray[np.object_], min_size: int = MIN_BATCH_SIZE
) -> dict[Hashable, int]:
    """Batches with fewer than `min_size` samples and their sizes (for blocking checks before a fit)."""
    counts = pd.Series(np.asarray(labels, dtype=object)).value_counts(sort=False)
    return {label: int(count) for label, count in counts.items() if count < min_size}


@dataclass(frozen=True)
class CovariateEncoder:
    """The covariate part of the ComBat design, fixed at fit time.

    Categorical columns are one-hot coded with their first sorted level as the baseline (neuroCombat's
    coding); continuous columns enter as they are.
    """

    categorical_levels: dict[str, tuple[Hashable, ...]]
    continuous_cols: tuple[str, ...]

    @classmethod
    def fit(
        cls, frame: pd.DataFrame, categorical_cols: Sequence[str], continuous_cols: Sequence[str]
    ) -> CovariateEncoder:
        levels = {column: tuple(sorted_levels(_categories(frame, column), column)[0]) for column in categorical_cols}
        return cls(levels, tuple(continuous_cols))

    @property
    def term_names(self) -> list[str]:
        """One name per design column, e.g. `sex=M` or `age`."""
        dummies = [f"{column}={level}" for column, levels in self.categorical_levels.items() for level in levels[1:]]
        return dummies + list(self.continuous_cols)

    def transform(self, frame: pd.DataFrame) -> FloatArray:
        blocks = [self._dummies(frame, column, levels) for column, levels in self.categorical_levels.items()]
        blocks += [_continuous(frame, column) for column in self.continuous_cols]
        return np.hstack(blocks) if blocks else np.zeros((len(frame), 0))

    @staticmethod
    def _dummies(frame: pd.DataFrame, column: str, levels: tuple[Hashable, ...]) -> FloatArray:
        values = _categories(frame, column)
        unknown = sorted({value for value in values if value not in levels}, key=repr)
        if unknown:
            raise ValueError(
                f"categorical covariate {column!r} has levels {_listed(unknown)} not seen at fit "
                f"(known: {list(levels)}); its effect was never estimated, so these rows cannot be harmonized"
            )
        return np.column_stack([values == level for level in levels[1:]]).astype(np.float64).reshape(len(values), -1)


def _categories(frame: pd.DataFrame, column: str) -> npt.NDArray[np.object_]:
    values = frame[column].to_numpy(dtype=object)
    missing = pd.isna(values)
    if missing.any():
        raise ValueError(f"categorical covariate {column!r} is missing in rows {_listed(frame.index[missing])}")
    return values


def _continuous(frame: pd.DataFrame, column: str) -> FloatArray:
    if not pd.api.types.is_numeric_dtype(frame[column]):
        raise ValueError(f"continuous covariate {column!r} is not numeric (dtype {frame[column].dtype})")
    values = frame[column].to_numpy(dtype=np.float64)
    bad = ~np.isfinite(values)
    if bad.any():
        raise ValueError(f"continuous covariate {column!r} is NaN or infinite in rows {_listed(frame.index[bad])}")
    return values.reshape(-1, 1)


def _listed(items: Any) -> str:
    """The first few items, and how many more."""
    items = list(items)
    shown = ", ".join(repr(item) for item in items[:_SHOWN])
    return f"[{shown}{f', ... ({len(items) - _SHOWN} more)' if len(items) > _SHOWN else ''}]"


def center_mean_spread(frame: pd.DataFrame, columns: list[str], batch_col: str = "center") -> float:
    """How far centers sit apart: the median over features of the SD of per-center means, in units of the feature's
    overall SD (0: no center effect left)."""
    values = frame[columns]
    scaled = (values - values.mean()) / values.std(ddof=0).replace(0, 1)
    return float(scaled.groupby(frame[batch_col]).mean().std(ddof=0).median())


def as_pipeline_input(features: pd.DataFrame, covariates: pd.DataFrame) -> pd.DataFrame:
    """Features and the batch/covariate columns side by side (same index), the input `ComBat` expects."""
    if not features.index.equals(covariates.index):
        raise ValueError("features and covariates must share one index (the same patients in the same order)")
    clashing = sorted(set(features.columns) & set(covariates.columns))
    if clashing:
        raise ValueError(f"columns {clashing} are in both the features and the covariates")
    return pd.concat([features, covariates], axis=1)
