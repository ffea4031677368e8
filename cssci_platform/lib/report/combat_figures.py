"""ComBat before and after, per center, on the training patients: what harmonization did to the features.

Inputs are the training patients' rows of the raw feature matrix and of `harmonized_features` (ComBat fitted on those
training patients; `lib/queries/report.py` reads both). Every view puts before and after on one scale: the raw
features z-scored with the training patients' pooled mean and SD, and the harmonized ones with the same mean and SD,
so a shift between centers reads the same in both panels.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
from scipy.stats import kruskal

from cssci_platform.lib.modeling.matrix import DL, RAD
from cssci_platform.lib.report.artifacts import ReportFigure, ReportTable
from cssci_platform.lib.report.figures import new_figure

BATCH = "center"
SIGNIFICANCE = 0.05
BOXED_FEATURES = 4
FAMILIES = {RAD: "radiomics", DL: "deep"}


@dataclass(frozen=True)
class CenterComparison:
    """The same training patients before and after ComBat: `before` and `after` hold the compared feature columns,
    z-scored with the raw features' pooled mean and SD; `centers` is each patient's center."""

    before: pd.DataFrame
    after: pd.DataFrame
    centers: pd.Series

    @property
    def features(self) -> list[str]:
        return list(self.before.columns)

    def unchanged(self) -> list[str]:
        """Features ComBat passed through as they were (e.g. the shape class, `unharmonized_feature_classes`)."""
        same = np.isclose(self.before.to_numpy(), self.after.to_numpy(), equal_nan=True).all(axis=0)
        return [name for name, kept in zip(self.features, same, strict=True) if kept]

    def center_sizes(self) -> dict[str, int]:
        return {str(c): int(n) for c, n in self.centers.value_counts().sort_index().items()}

    def cohort_text(self) -> str:
        sizes = ", ".join(f"{c} {n}" for c, n in self.center_sizes().items())
        return f"the {len(self.centers)} training patients ({sizes})"


def center_comparison(raw: pd.DataFrame, harmonized: pd.DataFrame) -> CenterComparison:
    """Pair the raw and harmonized rows of the training patients (both indexed by patient_key, with a `center`
    column): the radiomics and deep columns present in both and varying among these patients.

    ValueError (one line, for the report) when the two tables share no patient or no feature, when fewer than two
    centers are present, or when nothing changed (harmonization off)."""
    patients = raw.index.intersection(harmonized.index)
    columns = [
        c for c in raw.columns
        if c.startswith(tuple(FAMILIES)) and c in harmonized.columns and raw.loc[patients, c].nunique() > 1
    ]
    if patients.empty or not columns:
        raise ValueError("the raw and harmonized training rows share no patient or no feature column "
                         "(materialize feature_matrix and harmonized_features for the same split)")
    centers = raw.loc[patients, BATCH].astype(str)
    if centers.nunique() < 2:
        raise ValueError(f"the training patients come from one center ({centers.iloc[0]}): nothing to harmonize")
    before = raw.loc[patients, columns].astype(float)
    after = harmonized.loc[patients, columns].astype(float)
    if np.allclose(before.to_numpy(), after.to_numpy(), equal_nan=True):
        raise ValueError("harmonized_features equals the raw features: harmonization is off (harmonization.enabled) "
                         "or left every feature out")
    mean, sd = before.mean(), before.std(ddof=0).replace(0, 1)
    return CenterComparison((before - mean) / sd, (after - mean) / sd, centers)


def center_effect_pvalues(values: pd.DataFrame, centers: pd.Series) -> pd.Series:
    """Kruskal-Wallis p-value per feature for a difference between centers (NaN where every value is tied)."""
    groups = [values[centers == center].to_numpy() for center in sorted(centers.unique())]
    with np.errstate(all="ignore"):
        result = kruskal(*groups, axis=0, nan_policy="omit")
    return pd.Series(np.atleast_1d(result.pvalue), index=values.columns, dtype=float)


def centroid_spread(points: np.ndarray, centers: pd.Series) -> float:
    """Root mean square distance of the center centroids from their mean (0: the centers coincide)."""
    centroids = pd.DataFrame(points, index=centers.index).groupby(centers).mean().to_numpy()
    return float(np.sqrt(((centroids - centroids.mean(axis=0)) ** 2).sum(axis=1).mean()))


def principal_axes(before: pd.DataFrame, components: int = 2) -> tuple[np.ndarray, np.ndarray]:
    """(axes, explained variance ratio) of the PCA of the (z-scored) raw features; rows of `axes` are components."""
    centred = before.to_numpy() - before.to_numpy().mean(axis=0)
    _, singular, vt = np.linalg.svd(centred, full_matrices=False)
    variance = singular**2
    return vt[:components], variance[:components] / variance.sum()


def combat_pca_figure(comparison: CenterComparison, key: str = "combat_pca") -> ReportFigure:
    """Two scatter panels (before, after) of the training patients on the first two principal components of the raw
    features, coloured by center, with each center's centroid; the after panel uses the same axes."""
    axes_pc, ratio = principal_axes(comparison.before)
    mean = comparison.before.to_numpy().mean(axis=0)
    points = {
        "Before ComBat": (comparison.before.to_numpy() - mean) @ axes_pc.T,
        "After ComBat": (comparison.after.to_numpy() - mean) @ axes_pc.T,
    }
    figure = new_figure((9.0, 4.4))
    panels = figure.subplots(1, 2, sharex=True, sharey=True)
    colours = [f"C{i}" for i in range(10)]
    spreads = {}
    for axes, (title, xy) in zip(panels, points.items(), strict=True):
        for index, center in enumerate(sorted(comparison.centers.unique())):
            mask = (comparison.centers == center).to_numpy()
            colour = colours[index % len(colours)]
            axes.scatter(xy[mask, 0], xy[mask, 1], s=18, alpha=0.75, color=colour, label=f"{center} (n={mask.sum()})")
            axes.scatter(*xy[mask, :2].mean(axis=0), s=140, marker="X", color=colour, edgecolor="black")
        spreads[title] = centroid_spread(xy, comparison.centers)
        axes.set(title=f"{title} (centroid spread {spreads[title]:.2f})",
                 xlabel=f"PC1 of the raw features ({ratio[0]:.0%})", ylabel=f"PC2 ({ratio[1]:.0%})")
    panels[0].legend(loc="best", fontsize="x-small")
    caption = (
        f"The {len(comparison.features)} radiomics/deep features of {comparison.cohort_text()} projected on the "
        "first two principal components of the raw (z-scored) features, before (left) and after ComBat (right, "
        "same projection). Dots are patients, crosses the center centroids; centroid spread is the RMS distance of "
        "the centroids from their mean in these two components "
        f"({spreads['Before ComBat']:.2f} before, {spreads['After ComBat']:.2f} after). "
        "Harmonization worked when the centers' clouds overlap after it."
    )
    return ReportFigure(key, "Centers before and after ComBat harmonization (principal components)", caption, figure)


def combat_feature_boxes_figure(comparison: CenterComparison, n_features: int = BOXED_FEATURES,
                                key: str = "combat_features") -> ReportFigure:
    """Box plots per center of the `n_features` harmonized features with the strongest center effect before ComBat
    (smallest Kruskal-Wallis p), before (left) and after (right) on one z-scale."""
    before_p = center_effect_pvalues(comparison.before, comparison.centers)
    after_p = center_effect_pvalues(comparison.after, comparison.centers)
    harmonized = before_p.drop(index=comparison.unchanged())
    shown = (harmonized if len(harmonized) else before_p).sort_values(kind="stable").index[:n_features].tolist()
    centers = sorted(comparison.centers.unique())
    figure = new_figure((9.0, 2.2 * len(shown) + 0.6))
    grid = figure.subplots(len(shown), 2, squeeze=False, sharey="row")
    for row, feature in enumerate(shown):
        for column, (stage, frame, p) in enumerate(
            (("before", comparison.before, before_p), ("after", comparison.after, after_p))
        ):
            axes = grid[row, column]
            data = [frame.loc[(comparison.centers == c).to_numpy(), feature].dropna().to_numpy() for c in centers]
            axes.boxplot(data, tick_labels=centers, widths=0.6)
            axes.set_title(f"{_short(feature)}, {stage} (Kruskal-Wallis p = {p[feature]:.2g})", fontsize="x-small")
            axes.tick_params(labelsize="x-small")
            if column == 0:
                axes.set_ylabel("z (raw pooled)", fontsize="x-small")
    caption = (
        f"The {len(shown)} features with the strongest difference between centers before ComBat (smallest "
        f"Kruskal-Wallis p over the {len(harmonized) or len(before_p)} harmonized features) in "
        f"{comparison.cohort_text()}: per center, "
        "before (left) and after harmonization (right), both in units of the raw feature's pooled SD. Boxes show "
        "the median and quartiles; after ComBat the boxes should line up and p rise."
    )
    return ReportFigure(key, "Features with the largest center effect, before and after ComBat", caption, figure)


def center_effect_table(comparison: CenterComparison, key: str = "combat_center_effect") -> ReportTable:
    """Per feature family: how many features differ between centers (Kruskal-Wallis p < 0.05) before and after."""
    before_p = center_effect_pvalues(comparison.before, comparison.centers)
    after_p = center_effect_pvalues(comparison.after, comparison.centers)
    rows = []
    unchanged = set(comparison.unchanged())
    for prefix, family in FAMILIES.items():
        columns = [c for c in comparison.features if c.startswith(prefix)]
        if not columns:
            continue
        rows.append(
            {
                "Features": family,
                "n": len(columns),
                "Left unharmonized": len(set(columns) & unchanged),
                "Center effect before (p < 0.05)": int((before_p[columns] < SIGNIFICANCE).sum()),
                "Center effect after (p < 0.05)": int((after_p[columns] < SIGNIFICANCE).sum()),
                "Median p before": float(before_p[columns].median()),
                "Median p after": float(after_p[columns].median()),
            }
        )
    frame = pd.DataFrame(rows)
    caption = (
        "Features whose distribution differs between centers (Kruskal-Wallis test, "
        f"p < {SIGNIFICANCE}, no multiplicity correction) among {comparison.cohort_text()}, before and after ComBat. "
        "Fewer after means ComBat removed "
        "center effects; it cannot remove a difference in case mix between centers, which may also show here. "
        "Features left unharmonized (harmonization.unharmonized_feature_classes, e.g. shape) keep their center "
        "effects by design."
    )
    return ReportTable(key, "Center effects before and after ComBat", caption, frame)


def _short(name: str, limit: int = 44) -> str:
    text = name.removeprefix(RAD)
    return text if len(text) <= limit else text[: limit // 2 - 1] + "…" + text[-(limit // 2) :]
