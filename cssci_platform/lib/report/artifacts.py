"""Numbered report artifacts: a figure or a table with its title and caption, rendered into the HTML page and
exported next to it (figures as PNG and SVG, tables as CSV).

A section of the report returns `ReportFigure` / `ReportTable` objects; the page numbers them in the order
they appear ("Figure 2.", "Table 3.") and the export writes each under its `key` (the file stem).
"""

from __future__ import annotations

import html
import io
import re
from dataclasses import dataclass
from pathlib import Path

import pandas as pd
from matplotlib.figure import Figure

from cssci_platform.lib.report.figures import DPI, figure_png, png_img_tag

KEY_PATTERN = re.compile(r"^[a-z0-9][a-z0-9_\-]*$")


@dataclass(frozen=True)
class ReportFigure:
    """One figure of the report: `key` is its file stem (``roc_test``), `title` the caption's first sentence,
    `caption` one or two sentences saying what is shown and how to read it."""

    key: str
    title: str
    caption: str
    figure: Figure

    def __post_init__(self) -> None:
        _check_key(self.key)


@dataclass(frozen=True)
class ReportTable:
    """One table of the report: `frame` goes to CSV; `html` is the rendered table when the frame's default
    rendering is not wanted (formatted CIs, footnotes)."""

    key: str
    title: str
    caption: str
    frame: pd.DataFrame
    html: str | None = None

    def __post_init__(self) -> None:
        _check_key(self.key)


@dataclass(frozen=True)
class PngFigure:
    """A figure only available as PNG bytes (drawn by a function that returns PNG): exported as PNG only."""

    key: str
    title: str
    caption: str
    png: bytes

    def __post_init__(self) -> None:
        _check_key(self.key)


AnyFigure = ReportFigure | PngFigure


def _check_key(key: str) -> None:
    if not KEY_PATTERN.match(key):
        raise ValueError(f"report artifact key {key!r}: use lower-case letters, digits, '_' and '-' only "
                         "(it becomes a file name)")


def figure_png_bytes(item: AnyFigure) -> bytes:
    """The figure as PNG bytes at the report's resolution (the figure stays open)."""
    return item.png if isinstance(item, PngFigure) else figure_png(item.figure)


def figure_svg_bytes(item: ReportFigure) -> bytes:
    """The figure as SVG bytes (the figure stays open)."""
    buffer = io.BytesIO()
    item.figure.savefig(buffer, format="svg", dpi=DPI, metadata={"Date": None})
    return buffer.getvalue()


def caption_text(label: str, title: str, caption: str) -> str:
    """'Figure 2. Title. Caption' as plain text (title and caption with their final period)."""
    title = title.strip().rstrip(".")
    caption = caption.strip()
    return f"{label}. {title}." + (f" {caption}" if caption else "")


def _caption_html(label: str, title: str, caption: str) -> str:
    title = title.strip().rstrip(".")
    caption = caption.strip()
    tail = f" {html.escape(caption)}" if caption else ""
    return f"<b>{html.escape(label)}.</b> {html.escape(title)}.{tail}"


def figure_html(item: AnyFigure, number: int, png: bytes | None = None) -> str:
    """The figure as an HTML ``<figure>`` block: the PNG embedded as a data URI and its numbered caption.
    Pass `png` when the bytes were already rendered (no second rendering)."""
    png = figure_png_bytes(item) if png is None else png
    label = f"Figure {number}"
    image = png_img_tag(png, alt=f"{label}. {item.title}")
    return (f'<figure class="report-figure" id="figure-{html.escape(item.key)}">{image}'
            f"<figcaption>{_caption_html(label, item.title, item.caption)}</figcaption></figure>")


def table_html(item: ReportTable, number: int) -> str:
    """The table as an HTML block with its numbered caption above it (tables are captioned on top)."""
    label = f"Table {number}"
    body = item.html if item.html is not None else item.frame.to_html(index=False, border=0, na_rep="")
    return (f'<div class="report-table" id="table-{html.escape(item.key)}">'
            f'<p class="table-caption">{_caption_html(label, item.title, item.caption)}</p>{body}</div>')


def write_figure_files(item: AnyFigure, folder: Path, close: bool = True, png: bytes | None = None) -> list[Path]:
    """Write ``<folder>/<key>.png`` and ``<folder>/<key>.svg`` (a `PngFigure`: the PNG only); close the figure
    afterwards unless `close` is False. Pass `png` when the figure was already rendered (the page's bytes).
    Returns the paths written."""
    folder.mkdir(parents=True, exist_ok=True)
    png_path = folder / f"{item.key}.png"
    png_path.write_bytes(figure_png_bytes(item) if png is None else png)
    if isinstance(item, PngFigure):
        return [png_path]
    svg_path = folder / f"{item.key}.svg"
    svg_path.write_bytes(figure_svg_bytes(item))
    if close:
        close_figure(item.figure)
    return [png_path, svg_path]


def write_table_file(item: ReportTable, folder: Path) -> Path:
    """Write ``<folder>/<key>.csv`` (the frame, without its index) and return the path."""
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{item.key}.csv"
    item.frame.to_csv(path, index=False)
    return path


def close_figure(figure: Figure) -> None:
    """Free the figure's memory (figures on the Agg canvas are not tracked by pyplot; clearing drops artists)."""
    figure.clear()


def inline_figure(item: ReportFigure, alt: str) -> str:
    """A figure as an unnumbered <img> (a page built without a document); its Figure is freed afterwards."""
    tag = png_img_tag(figure_png_bytes(item), alt)
    close_figure(item.figure)
    return tag
