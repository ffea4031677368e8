"""Table 1: one row per variable (or level), one column per group (outcome group, or cohort: train / test /
validation), the test and its p-value (see `group_tests` for which test is used); HTML and markdown renderings."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd

from cssci_platform.lib.clinical.group_tests import (
    compare_categorical,
    compare_continuous,
    format_p,
    is_normal,
    mean_sd,
    median_iqr,
    ordered_levels,
)
from cssci_platform.lib.messages import markdown_table

TABLE_COLUMNS = ("variable", "level", "summary", "n_missing", "statistical_test", "p_value", "p")


def table_one(
    frame: pd.DataFrame,
    group_col: str,
    continuous: Sequence[str] = (),
    categorical: Sequence[str] = (),
    normality_alpha: float = 0.05,
    *,
    group_order: Sequence[Any] | None = None,
    welch: bool = False,
    yates: bool = False,
    overall: bool = True,
    digits: int | Mapping[str, int] = 2,
    percent_digits: int = 1,
) -> pd.DataFrame:
    """Table 1 by `group_col` (see the module docstring for summaries and tests).

    Columns: ``variable``, ``level``, ``summary`` (how the cells are summarised), one column per group (named
    ``str(group)``), ``Overall`` (when `overall`), ``n_missing``, ``statistical_test``, ``p_value`` (float) and
    ``p`` (text).
    The first row gives each group's n; a categorical variable has a header row (its test and p) followed by
    one row per level.
    """
    groups = _group_labels(frame[group_col], group_order)
    if len(groups) < 2:
        raise ValueError(f"table_one needs at least two groups in '{group_col}', found {groups}")
    data = frame[frame[group_col].isin(groups)]
    names = [str(g) for g in groups]
    clashes = set(names) & {*TABLE_COLUMNS, "Overall"}
    if clashes:
        raise ValueError(f"group labels {sorted(clashes)} clash with Table 1's own column names")
    members = [data[group_col] == g for g in groups]
    rows = [_size_row(names, [int(m.sum()) for m in members], len(data), overall)]
    for column in continuous:
        places = digits if isinstance(digits, int) else digits.get(column, 2)
        rows.append(_continuous_row(data[column], members, names, normality_alpha, welch, places, overall))
    for column in categorical:
        rows.extend(_categorical_rows(data[column], members, names, yates, percent_digits, overall))
    columns = ["variable", "level", "summary", *names, *(["Overall"] if overall else []), "n_missing",
               "statistical_test", "p_value", "p"]
    table = pd.DataFrame(rows, columns=columns)
    table["n_missing"] = table["n_missing"].astype("Int64")
    return table


def _group_labels(values: pd.Series, group_order: Sequence[Any] | None) -> list[Any]:
    present = ordered_levels(values)
    if group_order is None:
        return present
    unknown = [g for g in group_order if g not in present]
    if unknown:
        raise ValueError(f"groups {unknown} are not in the data (present: {present})")
    return list(group_order)


def _size_row(names: list[str], sizes: list[int], total: int, overall: bool) -> dict[str, Any]:
    row: dict[str, Any] = {"variable": "n", "level": "", "summary": "", "n_missing": None,
                           "statistical_test": "", "p_value": math.nan, "p": ""}
    row.update({name: str(size) for name, size in zip(names, sizes, strict=True)})
    if overall:
        row["Overall"] = str(total)
    return row


def _continuous_row(
    values: pd.Series, members: list[pd.Series], names: list[str], alpha: float, welch: bool, digits: int,
    overall: bool,
) -> dict[str, Any]:
    numeric = pd.to_numeric(values, errors="raise").astype(float)
    groups = [numeric[m].dropna().to_numpy() for m in members]
    normal = all(is_normal(g, alpha) for g in groups)
    summarise = mean_sd if normal else median_iqr
    test, p = compare_continuous(groups, normal, welch)
    row: dict[str, Any] = {"variable": values.name, "level": "", "summary": "mean ± SD" if normal else "median [IQR]",
                           "n_missing": int(numeric.isna().sum()), "statistical_test": test, "p_value": p,
                           "p": format_p(p)}
    row.update({name: summarise(g, digits) for name, g in zip(names, groups, strict=True)})
    if overall:
        row["Overall"] = summarise(numeric.dropna().to_numpy(), digits)
    return row


def _categorical_rows(
    values: pd.Series, members: list[pd.Series], names: list[str], yates: bool, percent_digits: int, overall: bool,
) -> list[dict[str, Any]]:
    levels = ordered_levels(values)
    counts = np.array([[int(((values == level) & m).sum()) for m in members] for level in levels], dtype=np.int64)
    test, p = compare_categorical(counts, yates) if levels else ("", math.nan)
    header: dict[str, Any] = {"variable": values.name, "level": "", "summary": "n (%)",
                              "n_missing": int(values.isna().sum()), "statistical_test": test, "p_value": p,
                              "p": format_p(p)}
    header.update({name: "" for name in names})
    if overall:
        header["Overall"] = ""
    rows = [header]
    group_totals = counts.sum(axis=0)
    for level, level_counts in zip(levels, counts, strict=True):
        row: dict[str, Any] = {"variable": values.name, "level": str(level), "summary": "", "n_missing": None,
                               "statistical_test": "", "p_value": math.nan, "p": ""}
        row.update({name: _n_percent(n, total, percent_digits)
                    for name, n, total in zip(names, level_counts, group_totals, strict=True)})
        if overall:
            row["Overall"] = _n_percent(int(level_counts.sum()), int(group_totals.sum()), percent_digits)
        rows.append(row)
    return rows


def _n_percent(n: int, total: int, digits: int) -> str:
    return f"{n} ({100.0 * n / total:.{digits}f}%)" if total else f"{n}"


def table_one_display(table: pd.DataFrame) -> pd.DataFrame:
    """The publishable view: level rows indented under their variable, raw p and bookkeeping columns dropped."""
    shown = table.drop(columns=["p_value"]).copy()
    is_level = shown["level"] != ""
    label = shown["variable"].astype(str) + np.where(shown["summary"] != "", ", " + shown["summary"], "")
    shown.insert(0, "Characteristic", np.where(is_level, "    " + shown["level"], label))
    shown = shown.drop(columns=["variable", "level", "summary"])
    shown["n_missing"] = shown["n_missing"].astype(object).where(shown["n_missing"].notna(), "")
    return shown.rename(columns={"n_missing": "Missing", "statistical_test": "Test"})


def table_one_html(table: pd.DataFrame, caption: str | None = None) -> str:
    """Table 1 as an HTML ``<table>`` (cells escaped)."""
    html = table_one_display(table).to_html(index=False, escape=True, na_rep="", classes="table-one")
    if caption:
        html = html.replace(">\n  <thead>", f">\n  <caption>{_escape(caption)}</caption>\n  <thead>", 1)
    return html


def table_one_markdown(table: pd.DataFrame) -> str:
    """Table 1 as a GitHub-flavoured Markdown table."""
    shown = table_one_display(table).astype(str)
    return markdown_table(list(shown.columns), shown.to_numpy().tolist())


def _escape(text: str) -> str:
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
