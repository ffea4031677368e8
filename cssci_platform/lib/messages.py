"""Text shown to people (QC issues, inbox events, errors on the console, Dagster metadata): values bounded so one
huge cell cannot flood a message, and markdown tables."""

from __future__ import annotations

from collections.abc import Iterable, Sequence

QUOTE_LIMIT = 80
PATH_LIMIT = 255  # paths shown in messages; the full path stays in the issue's `file` column


def quote_value(value: object, limit: int = QUOTE_LIMIT) -> str:
    """`repr` of `value`, cut to its first `limit` characters with the original length when longer.

    `quote_value("abc")` is `'abc'`; a 10 MB string gives its first 80 characters quoted, then
    `… (10485760 characters)`. Line breaks and control characters are escaped, as `repr` does.
    """
    if isinstance(value, str):
        return repr(value) if len(value) <= limit else f"{value[:limit]!r}{_cut_note(value)}"
    return shorten(repr(value), limit)


def shorten(text: str, limit: int = PATH_LIMIT) -> str:
    """`text` itself (unquoted, e.g. a path or an error) when at most `limit` characters, else its start and its length.

    `shorten("d" * 1000, limit=10)` is `dddddddddd… (1000 characters)`.
    """
    return text if len(text) <= limit else f"{text[:limit]}{_cut_note(text)}"


def markdown_table(headers: Sequence[str], rows: Iterable[Sequence[object]]) -> str:
    """A markdown table; each cell is `str(cell)` on one line with its '|' escaped, so no text breaks the table.

    Numbers are formatted by the caller (`f"{auc:.3f}"`); a row must have as many cells as there are headers.
    """
    lines = [_table_line(headers), "|" + "---|" * len(headers)]
    for number, row in enumerate(rows):
        if len(row) != len(headers):
            raise ValueError(f"row {number} has {len(row)} cells for {len(headers)} headers {list(headers)}: "
                             f"{list(row)}")
        lines.append(_table_line(row))
    return "\n".join(lines)


def _table_line(cells: Sequence[object]) -> str:
    return "| " + " | ".join(_table_cell(cell) for cell in cells) + " |"


def _table_cell(cell: object) -> str:
    return " ".join(str(cell).splitlines()).replace("|", "\\|")


def _cut_note(text: str) -> str:
    return f"… ({len(text)} characters)"
