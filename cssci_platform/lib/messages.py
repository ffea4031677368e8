"""Values quoted in messages (QC issues, inbox events, the console), bounded so one huge cell cannot flood them."""

from __future__ import annotations

QUOTE_LIMIT = 80


def quote_value(value: object, limit: int = QUOTE_LIMIT) -> str:
    """`repr` of `value`, cut to its first `limit` characters with the original length when longer.

    `quote_value("abc")` is `'abc'`; a 10 MB string gives its first 80 characters quoted, then
    `… (10485760 characters)`. Line breaks and control characters are escaped, as `repr` does.
    """
    if isinstance(value, str):
        if len(value) <= limit:
            return repr(value)
        return f"{value[:limit]!r}… ({len(value)} characters)"
    text = repr(value)
    if len(text) <= limit:
        return text
    return f"{text[:limit]}… ({len(text)} characters)"
