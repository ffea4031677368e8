"""What the inbox sensor keeps in the warehouse: one event per arrival and content (not per tick), the audit
trail of corrected admissions, and the content-digest cache of inbox files."""

from __future__ import annotations

from datetime import datetime

import duckdb

from cssci_platform.lib.inbox import Arrival, DigestCache
from cssci_platform.lib.warehouse import append_rows

LATEST_ARRIVAL_EVENTS = """
SELECT patient_key, status, digest, reason FROM inbox_events WHERE source = 'arrival'
QUALIFY row_number() OVER (PARTITION BY patient_key ORDER BY seen_at DESC) = 1
"""
ALL_FILE_DIGESTS = "SELECT path, size, mtime_ns, sha256 FROM inbox_file_digests"
UPSERT_FILE_DIGEST = "INSERT OR REPLACE INTO inbox_file_digests VALUES (?, ?, ?, ?)"
DELETE_CORRECTION = "DELETE FROM admission_changes WHERE patient_key = ? AND digest = ?"


def new_events(con: duckdb.DuckDBPyConnection, arrivals: list[Arrival]) -> list[Arrival]:
    """The arrivals whose status, content or reason differ from the last event recorded for them."""
    events = con.execute(LATEST_ARRIVAL_EVENTS).fetchall()
    latest = {key: (status, digest or "", reason) for key, status, digest, reason in events}
    return [a for a in arrivals if latest.get(a.patient_id) != (a.status, a.digest, a.reason)]


def record_events(con: duckdb.DuckDBPyConnection, arrivals: list[Arrival], seen_at: datetime) -> None:
    append_rows(con, "inbox_events", [{"source": "arrival", "patient_key": a.patient_id, "status": a.status,
                                       "reason": a.reason, "digest": a.digest, "seen_at": seen_at} for a in arrivals])


def record_corrections(con: duckdb.DuckDBPyConnection, corrected: list[Arrival], changed_at: datetime) -> None:
    """One audit row per changed column of each corrected admission (idempotent per arrival content)."""
    for arrival in corrected:
        con.execute(DELETE_CORRECTION, [arrival.patient_id, arrival.digest])
        append_rows(con, "admission_changes", [
            {"patient_key": arrival.patient_id, "column_name": c.column, "old_value": c.old, "new_value": c.new,
             "digest": arrival.digest, "changed_at": changed_at} for c in arrival.changes])


def load_digest_cache(con: duckdb.DuckDBPyConnection) -> dict[str, tuple[int, int, str]]:
    return {path: (size, mtime_ns, sha) for path, size, mtime_ns, sha in con.execute(ALL_FILE_DIGESTS).fetchall()}


def save_digest_cache(
    con: duckdb.DuckDBPyConnection, cache: DigestCache, before: dict[str, tuple[int, int, str]]
) -> int:
    """Store the entries computed since `before` was loaded; returns how many."""
    changed = [(path, *entry) for path, entry in cache.items() if before.get(path) != entry]
    if changed:
        con.executemany(UPSERT_FILE_DIGEST, changed)
    return len(changed)
