"""ComBat before/after figures: on a cohort with a center shift, the real ComBat table (harmonized_table) brings the
center centroids together and removes center effects, and the figures and table say so; the named queries read the
training rows of one fold from a real DuckDB file."""

from __future__ import annotations

from pathlib import Path

import duckdb
import numpy as np
import pandas as pd
import pytest

from cssci_platform.lib.harmonization.settings import HarmonizationSettings
from cssci_platform.lib.harmonization.study_table import harmonized_table
from cssci_platform.lib.queries.report import harmonized_training_rows, training_feature_rows
from cssci_platform.lib.report.artifacts import ReportFigure, ReportTable, figure_png_bytes
from cssci_platform.lib.report.combat_figures import (
    center_comparison,
    center_effect_pvalues,
    center_effect_table,
    centroid_spread,
    combat_feature_boxes_figure,
    combat_pca_figure,
)
from cssci_platform.lib.warehouse import write_wide_table


def shifted_cohort(n: int = 45, features: int = 12, seed: int = 5) -> tuple[pd.DataFrame, pd.Series]:
    """A feature matrix whose center_B reads every feature 1.5 SD higher and center_C at twice the spread; roles:
    three quarters train, every center in both."""
    rng = np.random.default_rng(seed)
    centers = np.array(["center_A", "center_B", "center_C"])[np.arange(n) % 3]
    values = rng.normal(size=(n, features))
    values[centers == "center_B"] += 1.5
    values[centers == "center_C"] *= 2.0
    matrix = pd.DataFrame(values, columns=[f"rad__sag_T2__lesion__original__firstorder_f{i}" for i in range(features)])
    matrix["rad__sag_T2__lesion__original__original_shape_VoxelVolume"] = values[:, 0] * 2 + 10  # left unharmonized
    matrix.insert(0, "center", centers)
    matrix.insert(1, "cohort", "development")
    matrix.insert(2, "label", rng.integers(0, 2, n).astype(str))
    matrix["clin__age"] = rng.normal(50, 10, n)
    matrix.index = pd.Index([f"P{i:03d}" for i in range(n)], name="patient_key")
    roles = pd.Series(np.where(np.arange(n) % 4 == 3, "test", "train"), index=matrix.index)
    return matrix, roles


def training_comparison():
    matrix, roles = shifted_cohort()
    table, summary = harmonized_table(matrix, roles, HarmonizationSettings())
    assert summary.skipped_because is None
    train = roles[roles == "train"].index
    return center_comparison(matrix.loc[train], table.loc[train]), matrix, roles


def test_combat_brings_the_centers_together_in_the_comparison() -> None:
    comparison, matrix, roles = training_comparison()
    assert len(comparison.centers) == int((roles == "train").sum())
    assert "clin__age" not in comparison.features and len(comparison.features) == 13
    assert comparison.unchanged() == ["rad__sag_T2__lesion__original__original_shape_VoxelVolume"]
    # the z-scale is the raw pooled one: before has mean 0 and SD 1 per feature
    np.testing.assert_allclose(comparison.before.mean(), 0, atol=1e-12)
    before_p = center_effect_pvalues(comparison.before, comparison.centers)
    after_p = center_effect_pvalues(comparison.after, comparison.centers)
    assert (before_p < 0.05).sum() > (after_p < 0.05).sum()
    spread_before = centroid_spread(comparison.before.to_numpy(), comparison.centers)
    spread_after = centroid_spread(comparison.after.to_numpy(), comparison.centers)
    assert spread_after < 0.5 * spread_before


def test_pca_figure_draws_every_center_in_both_panels_and_reports_the_spread() -> None:
    comparison, _, _ = training_comparison()
    item = combat_pca_figure(comparison)
    assert isinstance(item, ReportFigure) and item.key == "combat_pca"
    before_axes, after_axes = item.figure.axes[:2]
    for axes in (before_axes, after_axes):
        assert len(axes.collections) == 2 * 3  # patients and centroid per center
    legend = {text.get_text() for text in before_axes.get_legend().get_texts()}
    assert legend == {f"{c} (n={n})" for c, n in comparison.center_sizes().items()}
    spread = [float(axes.get_title().split("centroid spread ")[1].rstrip(")")) for axes in (before_axes, after_axes)]
    assert spread[1] < spread[0]
    assert f"the {len(comparison.centers)} training patients" in item.caption
    assert figure_png_bytes(item)[:4] == b"\x89PNG"


def test_box_figure_shows_the_strongest_center_effects_before_and_after() -> None:
    comparison, _, _ = training_comparison()
    item = combat_feature_boxes_figure(comparison, n_features=3)
    assert len(item.figure.axes) == 6
    pvalues = center_effect_pvalues(comparison.before, comparison.centers).drop(index=comparison.unchanged())
    strongest = pvalues.sort_values(kind="stable").index[:3]
    titles = [axes.get_title() for axes in item.figure.axes]
    for feature, title in zip(strongest, titles[::2], strict=True):
        assert feature.removeprefix("rad__")[-10:] in title and "before" in title
    assert all("after" in title for title in titles[1::2])


def test_center_effect_table_counts_fewer_center_effects_after() -> None:
    comparison, _, _ = training_comparison()
    table = center_effect_table(comparison)
    assert isinstance(table, ReportTable)
    row = table.frame.iloc[0]
    assert row["Features"] == "radiomics" and row["n"] == 13 and row["Left unharmonized"] == 1
    assert row["Center effect after (p < 0.05)"] < row["Center effect before (p < 0.05)"]


def test_no_harmonization_or_one_center_is_a_one_line_reason() -> None:
    matrix, roles = shifted_cohort()
    table, _ = harmonized_table(matrix, roles, HarmonizationSettings(enabled=False))
    train = roles[roles == "train"].index
    with pytest.raises(ValueError, match="harmonization is off"):
        center_comparison(matrix.loc[train], table.loc[train])
    one_center = matrix.loc[train][matrix.loc[train, "center"] == "center_A"]
    with pytest.raises(ValueError, match="one center"):
        center_comparison(one_center, one_center)


def test_queries_read_the_training_rows_of_one_fold(tmp_path: Path) -> None:
    matrix, roles = shifted_cohort()
    table, _ = harmonized_table(matrix, roles, HarmonizationSettings())
    splits = pd.DataFrame({"split": "holdout", "fold": "holdout", "patient_key": roles.index, "role": roles.values})
    other = splits.assign(fold="other", role="train")
    with duckdb.connect(str(tmp_path / "warehouse.duckdb")) as con:
        assert harmonized_training_rows(con, "holdout", "holdout") is None
        write_wide_table(con, "feature_matrix", matrix.reset_index())
        write_wide_table(con, "harmonized_features", table.reset_index())
        write_wide_table(con, "splits", pd.concat([splits, other]))
        raw = training_feature_rows(con, "holdout", "holdout").to_pandas().set_index("patient_key")
        harmonized = harmonized_training_rows(con, "holdout", "holdout")
        assert harmonized is not None
        harmonized_frame = harmonized.to_pandas().set_index("patient_key")
    assert list(raw.index) == sorted(roles[roles == "train"].index)
    assert list(harmonized_frame.index) == list(raw.index)
    pd.testing.assert_frame_equal(raw[matrix.columns], matrix.loc[raw.index], check_dtype=False)
    comparison = center_comparison(raw, harmonized_frame)
    assert len(comparison.centers) == len(raw)
