"""Values quoted in messages (QC issues, inbox events, the console), bounded so one huge cell cannot flood them."""

from __future__ import annotations

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
    """`text` itself (unquoted, e.g. a path) when at most `limit` characters, else its start and its length."""
    return text if len(text) <= limit else f"{text[:limit]}{_cut_note(text)}"


def _cut_note(text: str) -> str:
    return f"… ({len(text)} characters)"
