"""Per-channel PCA of deep features: one PCA per column group (backbone x image channel), fitted on training rows.

Deep feature columns are named ``dl__<backbone>__<channel>__<i>`` (`deep_channel_of` maps a column to its
group ``dl__<backbone>__<channel>``, other columns to None); pass your own ``channel_of`` for another naming.
Each group is reduced to ``min(n_components, n_training_rows - 1, n_group_columns)`` components (centred data of
n rows has rank at most n - 1), and components whose variance is numerical noise (below `NULL_VARIANCE_RATIO` of
the first) are dropped: a null component's z-score would blow noise up to unit variance. Caps and drops are noted
in the report; output columns are ``<group>__pc<j>``. Columns outside any group follow ``remainder``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Literal, Self

import numpy as np
from sklearn.base import BaseEstimator, TransformerMixin
from sklearn.decomposition import PCA
from sklearn.utils.validation import check_is_fitted, validate_data

from cssci_platform.lib.compact_state import CompactNames

from ._base import SelectionReport, listed, require_finite

DEEP_PREFIX = "dl"
NULL_VARIANCE_RATIO = 1e-10  # a component with less variance than this share of the first one is noise
# From this many training rows per column on, the covariance route (eigh of the columns x columns covariance) costs
# a fraction of the SVD of the rows (1280 x 512: ~35 vs ~480 ms) and gives the same components (within ~1e-12);
# with fewer rows (a demo's 32 x 512) the SVD of the small row matrix is the cheaper one.
COVARIANCE_ROWS_PER_COLUMN = 2


def pca_solver(n_rows: int, n_columns: int) -> Literal["full", "covariance_eigh"]:
    """The exact PCA solver that is cheaper for this shape: ``covariance_eigh`` when n >> p, else ``full``."""
    return "covariance_eigh" if n_rows >= COVARIANCE_ROWS_PER_COLUMN * n_columns else "full"


def deep_channel_of(name: str) -> str | None:
    """``dl__resnet34__gaussian__17`` -> ``dl__resnet34__gaussian``; anything else -> None."""
    parts = str(name).split("__")
    if len(parts) == 4 and parts[0] == DEEP_PREFIX and parts[3].isdigit():
        return "__".join(parts[:3])
    return None


class ChannelPCA(CompactNames, TransformerMixin, BaseEstimator):
    """PCA(``n_components``) per channel group; ``remainder`` columns pass through first, in input order."""

    def __init__(
        self,
        n_components: int = 32,
        channel_of: Callable[[str], str | None] = deep_channel_of,
        remainder: Literal["passthrough", "drop", "error"] = "passthrough",
    ) -> None:
        self.n_components = n_components
        self.channel_of = channel_of
        self.remainder = remainder

    def fit(self, X: Any, y: Any = None) -> Self:
        X_arr = validate_data(self, X, dtype=np.float64, ensure_all_finite=False, reset=True)
        names = np.asarray(getattr(self, "feature_names_in_", [f"x{i}" for i in range(X_arr.shape[1])]), dtype=object)
        require_finite(X_arr, names, "channel_pca")
        groups = self._groups(names)
        self.remainder_index_ = np.flatnonzero([self.channel_of(n) is None for n in names])
        self._check_remainder(names)
        notes: list[str] = []
        self.pcas_: dict[str, tuple[np.ndarray, PCA]] = {}
        for group, columns in groups.items():
            self.pcas_[group] = (columns, self._fit_group(group, X_arr[:, columns], notes))
        self.feature_names_out_ = np.asarray(self._output_names(names), dtype=object)
        self.report_ = self._report(names, notes)
        return self

    def _fit_group(self, group: str, values: np.ndarray, notes: list[str]) -> PCA:
        """PCA of one group, capped at rank (n - 1) and without null components."""
        n_rows, n_columns = values.shape
        n_keep = max(1, min(self.n_components, n_rows - 1, n_columns))
        if n_keep < self.n_components:
            notes.append(f"{group}: {n_keep} components instead of {self.n_components} "
                         f"({n_rows} training rows: rank at most {n_rows - 1}; {n_columns} columns)")
        solver = pca_solver(n_rows, n_columns)
        pca = PCA(n_components=n_keep, svd_solver=solver).fit(values)
        variance = pca.explained_variance_
        real = int(np.sum(variance > NULL_VARIANCE_RATIO * max(float(variance[0]), np.finfo(float).tiny)))
        if real < n_keep:
            notes.append(f"{group}: dropped {n_keep - max(real, 1)} null component(s) (variance below "
                         f"{NULL_VARIANCE_RATIO:g} of the first: numerical noise)")
            pca = PCA(n_components=max(real, 1), svd_solver=solver).fit(values)
        return pca

    def transform(self, X: Any) -> np.ndarray:
        check_is_fitted(self, "pcas_")
        X_arr = validate_data(self, X, dtype=np.float64, reset=False)
        blocks = [X_arr[:, self.remainder_index_]] if self.remainder == "passthrough" else []
        blocks += [pca.transform(X_arr[:, columns]) for columns, pca in self.pcas_.values()]
        return np.hstack(blocks)

    def get_feature_names_out(self, input_features: Any = None) -> np.ndarray:
        check_is_fitted(self, "feature_names_out_")
        return self.feature_names_out_

    def _groups(self, names: np.ndarray) -> dict[str, np.ndarray]:
        groups: dict[str, list[int]] = {}
        for i, name in enumerate(names):
            group = self.channel_of(name)
            if group is not None:
                groups.setdefault(group, []).append(i)
        if not groups:
            raise ValueError(
                f"channel_pca: no column belongs to a channel group (first columns: {listed(names)}); "
                "deep columns are named dl__<backbone>__<channel>__<i>, or pass channel_of"
            )
        return {group: np.asarray(columns) for group, columns in groups.items()}

    def _check_remainder(self, names: np.ndarray) -> None:
        if self.remainder == "error" and len(self.remainder_index_):
            raise ValueError(
                f"channel_pca: {len(self.remainder_index_)} column(s) belong to no channel group: "
                f"{listed(names[self.remainder_index_])}"
            )

    def _output_names(self, names: np.ndarray) -> list[str]:
        kept = [str(n) for n in names[self.remainder_index_]] if self.remainder == "passthrough" else []
        for group, (_, pca) in self.pcas_.items():
            kept += [f"{group}__pc{j}" for j in range(pca.n_components_)]
        return kept

    def _report(self, names: np.ndarray, notes: list[str]) -> SelectionReport:
        statistic = {
            f"{group}__pc{j}": float(ratio)
            for group, (_, pca) in self.pcas_.items()
            for j, ratio in enumerate(pca.explained_variance_ratio_)
        }
        details = {
            "groups": {group: len(columns) for group, (columns, _) in self.pcas_.items()},
            "remainder": self.remainder,
        }
        return SelectionReport(
            step="channel_pca",
            n_in=len(names),
            n_out=len(self.feature_names_out_),
            kept=tuple(self.feature_names_out_),
            statistic_name="explained_variance_ratio",
            statistic=statistic,
            notes=tuple(notes),
            details=details,
        )
