"""Feature reliability from repeat segmentations: vectorized single-rater ICCs and the ICC filter.

The ICC table is computed once from the repeat-segmentation data (the same patients' features from rater or
session A, B, ...), which is not the training matrix, and uses no outcome label; ``ICCFilter`` then keeps the
training columns whose ICC passes. Formulas follow Shrout & Fleiss (1979) / McGraw & Wong (1996) from a
two-way ANOVA without replication, exactly as ``pingouin.intraclass_corr`` (0.6 rows ``ICC(C,1)`` = ICC(3,1) and
``ICC(A,1)`` = ICC(2,1); ``ICC3`` / ``ICC2`` in older releases), including its confidence intervals.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, Literal, Self

import numpy as np
import pandas as pd
from scipy import stats

from ._base import OnEmpty, ReportingSelector, listed

ICCKind = Literal["ICC3", "ICC2"]  # ICC(3,1): two-way mixed, consistency; ICC(2,1): two-way random, agreement
ICC_COLUMNS = ["icc", "ci_low", "ci_high", "F", "df1", "df2", "pval"]


def icc(
    ratings: Sequence[pd.DataFrame] | np.ndarray,
    kind: ICCKind = "ICC3",
    confidence: float = 0.95,
    feature_names: Sequence[str] | None = None,
) -> pd.DataFrame:
    """Single-rater ICC of every feature at once.

    ``ratings`` is either one DataFrame per rater/session (rows: subjects, columns: features; all with the
    same subjects and features, aligned by label) or an array of shape (k raters, n subjects, p features).
    Returns one row per feature: ``icc``, its ``ci_low``/``ci_high`` at ``confidence``, and the F test of
    ICC = 0 (``F``, ``df1``, ``df2``, ``pval``). A feature constant over all subjects and raters has an
    undefined ICC (NaN).
    """
    cube, names = _rating_cube(ratings, feature_names)
    k, n, _ = cube.shape
    mean_squares = _two_way_mean_squares(cube)
    if kind == "ICC3":
        values, low, high = _icc3(*mean_squares, n=n, k=k, alpha=1 - confidence)
    elif kind == "ICC2":
        values, low, high = _icc2(*mean_squares, n=n, k=k, alpha=1 - confidence)
    else:
        raise ValueError(f"icc: kind must be 'ICC3' (consistency) or 'ICC2' (absolute agreement), got {kind!r}")
    msr, _, mse = mean_squares
    df1, df2 = n - 1, (n - 1) * (k - 1)
    with np.errstate(divide="ignore", invalid="ignore"):
        f_value = msr / mse
    table = pd.DataFrame(
        {"icc": values, "ci_low": low, "ci_high": high, "F": f_value, "df1": df1, "df2": df2,
         "pval": stats.f.sf(f_value, df1, df2)},
        index=pd.Index(names, name="feature"),
    )
    table.attrs.update(kind=kind, n_subjects=n, n_raters=k, confidence=confidence)
    return table


def ratings_from_long(
    frame: pd.DataFrame, subject: str, rater: str, feature: str, value: str
) -> list[pd.DataFrame]:
    """Long table (one row per subject x rater x feature) -> one wide DataFrame per rater, for `icc`."""
    keys = [subject, rater, feature]
    duplicated = frame.duplicated(keys, keep=False)
    if duplicated.any():
        example = frame.loc[duplicated, keys].iloc[0].to_dict()
        raise ValueError(f"ratings_from_long: {int(duplicated.sum())} rows repeat a {keys} key, e.g. {example}")
    wide = frame.pivot(index=subject, columns=[rater, feature], values=value)
    return [wide[r] for r in wide.columns.get_level_values(0).unique()]


def _rating_cube(
    ratings: Sequence[pd.DataFrame] | np.ndarray, feature_names: Sequence[str] | None
) -> tuple[np.ndarray, np.ndarray]:
    """(k, n, p) float array and the feature names, with precise errors for misaligned or missing data."""
    if isinstance(ratings, np.ndarray):
        cube = np.asarray(ratings, dtype=np.float64)
        if cube.ndim != 3:
            raise ValueError(f"icc: a ratings array must have shape (raters, subjects, features), got {cube.shape}")
        names = np.asarray(feature_names if feature_names is not None else [f"x{i}" for i in range(cube.shape[2])])
    else:
        cube, names = _aligned_frames(list(ratings))
    if len(names) != cube.shape[2]:
        raise ValueError(f"icc: {len(names)} feature names for {cube.shape[2]} features")
    k, n, _ = cube.shape
    if k < 2 or n < 2:
        raise ValueError(f"icc: needs at least 2 raters and 2 subjects, got {k} rater(s) and {n} subject(s)")
    bad = ~np.isfinite(cube).all(axis=(0, 1))
    if bad.any():
        raise ValueError(
            f"icc: {int(bad.sum())} feature(s) have missing or non-finite ratings: {listed(names[bad])}; "
            "ICC needs complete data (every subject rated by every rater)"
        )
    return cube, names


def _aligned_frames(frames: list[pd.DataFrame]) -> tuple[np.ndarray, np.ndarray]:
    if not frames:
        raise ValueError("icc: no ratings given")
    first = frames[0]
    for i, frame in enumerate(frames):
        for axis, labels in (("subjects (index)", frame.index), ("features (columns)", frame.columns)):
            if labels.has_duplicates:
                raise ValueError(f"icc: rater {i} has duplicated {axis}: {listed(labels[labels.duplicated()])}")
        for axis, mine, ref in (("subjects", frame.index, first.index), ("features", frame.columns, first.columns)):
            if set(mine) != set(ref):
                raise ValueError(
                    f"icc: rater {i} and rater 0 differ in {axis}: only in rater {i}: {listed(mine.difference(ref))}; "
                    f"only in rater 0: {listed(ref.difference(mine))}"
                )
    cube = np.stack([frame.loc[first.index, first.columns].to_numpy(dtype=np.float64) for frame in frames])
    return cube, np.asarray(first.columns, dtype=object)


def _two_way_mean_squares(cube: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Mean squares of subjects (MSR), raters (MSC) and residual (MSE), per feature; cube is (k, n, p)."""
    k, n, _ = cube.shape
    grand = cube.mean(axis=(0, 1))
    subject_means = cube.mean(axis=0)  # (n, p)
    rater_means = cube.mean(axis=1)  # (k, p)
    msr = k * ((subject_means - grand) ** 2).sum(axis=0) / (n - 1)
    msc = n * ((rater_means - grand) ** 2).sum(axis=0) / (k - 1)
    # residual computed directly, not as SST - SSR - SSC, to keep precision for near-perfect agreement
    residual = cube - subject_means[None] - rater_means[:, None] + grand
    mse = (residual**2).sum(axis=(0, 1)) / ((n - 1) * (k - 1))
    return msr, msc, mse


def _icc3(msr, msc, mse, *, n: int, k: int, alpha: float):
    """ICC(3,1) = (MSR - MSE) / (MSR + (k-1) MSE), exact F-based CI (Shrout & Fleiss 1979)."""
    df1, df2 = n - 1, (n - 1) * (k - 1)
    with np.errstate(divide="ignore", invalid="ignore"):
        value = (msr - mse) / (msr + (k - 1) * mse)
        f_obs = msr / mse
        f_low = f_obs / stats.f.ppf(1 - alpha / 2, df1, df2)
        f_high = f_obs * stats.f.ppf(1 - alpha / 2, df2, df1)
        low = (f_low - 1) / (f_low + k - 1)
        high = (f_high - 1) / (f_high + k - 1)
    return value, low, high


def _icc2(msr, msc, mse, *, n: int, k: int, alpha: float):
    """ICC(2,1) = (MSR - MSE) / (MSR + (k-1) MSE + k (MSC - MSE) / n); CI with Satterthwaite's df (McGraw & Wong)."""
    df1, df2 = n - 1, (n - 1) * (k - 1)
    with np.errstate(divide="ignore", invalid="ignore"):
        value = (msr - mse) / (msr + (k - 1) * mse + k * (msc - mse) / n)
        f_raters = msc / mse
        v = (df2 * (k * value * f_raters + n * (1 + (k - 1) * value) - k * value) ** 2) / (
            df1 * k**2 * value**2 * f_raters**2 + (n * (1 + (k - 1) * value) - k * value) ** 2
        )
        f_upper = stats.f.ppf(1 - alpha / 2, df1, v)
        f_lower = stats.f.ppf(1 - alpha / 2, v, df1)
        shared = k * msc + (k * n - k - n) * mse
        low = n * (msr - f_upper * mse) / (f_upper * shared + n * msr)
        high = n * (f_lower * msr - mse) / (shared + n * f_lower * msr)
    return value, low, high


class ICCFilter(ReportingSelector):
    """Keep features whose reliability passes: ``icc_table[statistic] >= threshold``.

    ``icc_table`` is the output of `icc` (choose the column with ``statistic``: ``"icc"``, or ``"ci_low"`` for
    the stricter lower-confidence-bound rule), a Series or a plain dict feature -> ICC (the dict form keeps a
    fitted pipeline serializable with skops, which cannot store pandas objects). Needs named input (a DataFrame, or
    ``set_output(transform="pandas")`` upstream). Training columns absent from the table follow ``missing``:
    ``"error"`` (default), ``"keep"`` (e.g. deep or clinical columns that have no repeat segmentation) or
    ``"drop"``. A feature with an undefined (NaN) ICC fails. Uses no label, so it is leakage-free.
    """

    step_name = "icc_filter"

    def __init__(
        self,
        icc_table: pd.DataFrame | pd.Series | Mapping[str, float] | None = None,
        threshold: float = 0.75,
        statistic: str = "icc",
        missing: Literal["error", "keep", "drop"] = "error",
        on_empty: OnEmpty = "keep_best",
    ) -> None:
        self.icc_table = icc_table
        self.threshold = threshold
        self.statistic = statistic
        self.missing = missing
        self.on_empty = on_empty

    @classmethod
    def from_ratings(
        cls, ratings: Sequence[pd.DataFrame] | np.ndarray, kind: ICCKind = "ICC3", **kwargs: Any
    ) -> ICCFilter:
        """Compute the ICC table from repeat-segmentation data and build the filter on it."""
        return cls(icc(ratings, kind=kind), **kwargs)

    def fit(self, X: Any, y: Any = None) -> Self:
        _, names = self._validated(X)
        if not hasattr(self, "feature_names_in_"):
            raise ValueError(f"{self.step_name}: needs named features (a DataFrame) to look up their ICC")
        values = self._icc_values()
        known = np.isin(names, values.index)
        notes = self._missing_notes(names, known)
        icc_of = values.reindex(names).to_numpy(dtype=np.float64)
        support = np.where(known, icc_of >= self.threshold, self.missing == "keep")
        undefined = known & np.isnan(icc_of)
        if undefined.any():
            notes.append(f"{int(undefined.sum())} feature(s) with undefined ICC fail: {listed(names[undefined])}")
        best = int(np.nanargmax(np.where(known, icc_of, -np.inf))) if np.isfinite(icc_of[known]).any() else 0
        notes += self._keep_best_if_empty(support, best, names, self.on_empty, f"no ICC >= {self.threshold}")
        statistic = {n: v for n, v, ok in zip(names, icc_of, known, strict=True) if ok}
        return self._finish(names, support, self.statistic, statistic, notes, {"threshold": self.threshold})

    def _icc_values(self) -> pd.Series:
        table = self.icc_table
        if table is None:
            raise ValueError(f"{self.step_name}: construct it with icc_table (see icc()) or ICCFilter.from_ratings")
        if isinstance(table, pd.DataFrame):
            if self.statistic not in table.columns:
                raise ValueError(f"{self.step_name}: icc_table has no column {self.statistic!r}")
            table = table[self.statistic]
        if isinstance(table, Mapping):
            table = pd.Series(dict(table), dtype=np.float64)
        return table.astype(np.float64)

    def _missing_notes(self, names: np.ndarray, known: np.ndarray) -> list[str]:
        if known.all():
            return []
        absent = names[~known]
        if self.missing == "error":
            raise ValueError(
                f"{self.step_name}: {len(absent)} training feature(s) have no ICC: {listed(absent)}; "
                "compute their ICC, or construct the filter with missing='keep' or 'drop'"
            )
        action = "kept" if self.missing == "keep" else "dropped"
        return [f"{len(absent)} feature(s) without ICC {action}: {listed(absent)}"]


RELIABILITY_COLUMNS = ["kind", "feature", "icc", "ci_low", "ci_high"]
TABLE_KINDS: tuple[ICCKind, ...] = ("ICC3", "ICC2")
RELIABLE_ICC = 0.75  # the conventional "good reliability" bound the summary counts against (Koo & Li 2016)
NO_REPEATS_NOTE = (
    "ICC needs repeat segmentations (mask__<sequence>__<roi>__<rater> columns) of at least 2 patients; "
    "the ICC filter is unavailable"
)


def reliability_table(rows: pd.DataFrame) -> tuple[pd.DataFrame, dict[str, int | float | str]]:
    """The ICC(3,1) and ICC(2,1) of every radiomics feature between repeat segmentations, and a summary of it.

    `rows`: patient_key, segmentation (``primary`` or the rater/session), feature, value (the warehouse's repeat
    segmentation rows). Only features that some non-primary segmentation has enter, rated by patients who have
    every segmentation of that feature. Returns the table (kind ``ICC3``/``ICC2``, feature, icc, ci_low, ci_high)
    and the summary (patients_with_repeats, features, icc3_at_least_0_75, icc3_median); with fewer than 2 patients
    the table is empty and the summary carries a note instead.
    """
    if rows["patient_key"].nunique() < 2:
        empty = pd.DataFrame(
            {column: pd.Series(dtype=str if column in ("kind", "feature") else float) for column in RELIABILITY_COLUMNS}
        )
        summary: dict[str, int | float | str] = {
            "patients_with_repeats": int(rows["patient_key"].nunique()), "features": 0, "note": NO_REPEATS_NOTE
        }
        return empty, summary
    pairs = rows[rows["feature"].isin(rows.loc[rows["segmentation"] != "primary", "feature"])]
    complete = (
        pairs.groupby(["patient_key", "feature"])["segmentation"].transform("nunique")
        == pairs["segmentation"].nunique()
    )
    ratings = ratings_from_long(pairs[complete], "patient_key", "segmentation", "feature", "value")
    table = pd.concat(
        {kind: icc(ratings, kind=kind)[["icc", "ci_low", "ci_high"]] for kind in TABLE_KINDS}, names=["kind"]
    )
    table = table.reset_index().rename(columns={"level_1": "feature"})
    icc3 = table[table["kind"] == "ICC3"]["icc"]
    return table, {
        "patients_with_repeats": int(pairs["patient_key"].nunique()),
        "features": int(icc3.size),
        "icc3_at_least_0_75": int((icc3 >= RELIABLE_ICC).sum()),
        "icc3_median": float(icc3.median()),
    }
