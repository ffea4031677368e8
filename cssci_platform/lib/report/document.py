"""The report being written: numbers figures and tables in the order they appear and keeps them for the export.

Sections are written in page order; each `figure` / `table` call returns the HTML block with its number
("Figure 3.", "Table 2.") and remembers the artifact, so `StudyReport.figures` / `.tables` hold exactly what the
page shows, under file stems that are unique in the report.
"""

from __future__ import annotations

import html
from dataclasses import dataclass, field, replace
from typing import TypeVar

from cssci_platform.lib.report.artifacts import AnyFigure, ReportTable, figure_html, figure_png_bytes, table_html

Artifact = TypeVar("Artifact", AnyFigure, ReportTable)


@dataclass
class StudyReport:
    """The page and the numbered artifacts it shows (figures in order, tables in order)."""

    html: str
    figures: list[AnyFigure] = field(default_factory=list)
    tables: list[ReportTable] = field(default_factory=list)
    title: str = ""
    pngs: dict[str, bytes] = field(default_factory=dict)  # figure key -> the PNG the page embeds (rendered once)


@dataclass
class ReportDocument:
    """Collects the numbered figures and tables of one report while its sections are written in page order."""

    figures: list[AnyFigure] = field(default_factory=list)
    tables: list[ReportTable] = field(default_factory=list)
    pngs: dict[str, bytes] = field(default_factory=dict)
    _keys: dict[str, set[str]] = field(default_factory=lambda: {"figure": set(), "table": set()})

    def figure(self, item: AnyFigure) -> str:
        """The figure's ``<figure>`` block, numbered next."""
        item = self._unique(item, "figure")
        self.figures.append(item)
        self.pngs[item.key] = figure_png_bytes(item)  # the export writes these bytes, not a second rendering
        return figure_html(item, len(self.figures), self.pngs[item.key])

    def table(self, item: ReportTable) -> str:
        """The table's block with its numbered caption, numbered next."""
        item = self._unique(item, "table")
        self.tables.append(item)
        return table_html(item, len(self.tables))

    def _unique(self, item: Artifact, kind: str) -> Artifact:
        """`item` under a file stem no other artifact of its kind has (figures and tables live in two folders)."""
        taken, key, suffix = self._keys[kind], item.key, 2
        while key in taken:
            key, suffix = f"{item.key}-{suffix}", suffix + 1
        taken.add(key)
        return item if key == item.key else replace(item, key=key)

    def finish(self, page: str, title: str) -> StudyReport:
        return StudyReport(page, self.figures, self.tables, title, self.pngs)


def section(heading: str, body: str, anchor: str | None = None, level: int = 2) -> str:
    """A titled section (`body` is HTML)."""
    ident = f' id="{html.escape(anchor)}"' if anchor else ""
    return f"<h{level}{ident}>{html.escape(heading)}</h{level}>{body}"


def note(text: str) -> str:
    """A paragraph of plain text (escaped)."""
    return f"<p>{html.escape(text)}</p>"
