"""The cohort overview a study team reads every morning (`cssci status`, `cohort_manifest` metadata), and the
prospective monitoring read (`validation_metrics`' asset check).

Patients by center, cohort, QC status and the furthest stage reached; inbox arrivals not admitted yet; outcomes
known per cohort; each signature's champion with its age and latest validation. Every read answers on a warehouse
where the step that writes its table has not run yet (schema created, no rows).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

import duckdb

from cssci_platform.lib.messages import markdown_table
from cssci_platform.lib.queries.catalog import table_names

STAGES = ("registered", "scanned", "preprocessed", "radiomics", "roi_slices", "embedded", "scored")
PATIENT_STAGES = """
SELECT p.center, p.cohort,
       CASE WHEN s.errors > 0 THEN 'quarantined' WHEN s.warnings > 0 THEN 'warnings' ELSE 'ok' END AS qc,
       CASE WHEN EXISTS (SELECT 1 FROM prospective_predictions x WHERE x.patient_key = p.patient_key) THEN 'scored'
            WHEN EXISTS (SELECT 1 FROM embeddings x WHERE x.patient_key = p.patient_key) THEN 'embedded'
            WHEN EXISTS (SELECT 1 FROM roi_slices x WHERE x.patient_key = p.patient_key) THEN 'roi_slices'
            WHEN EXISTS (SELECT 1 FROM radiomics_features x WHERE x.patient_key = p.patient_key) THEN 'radiomics'
            WHEN EXISTS (SELECT 1 FROM preprocessed_channels x WHERE x.patient_key = p.patient_key) THEN 'preprocessed'
            WHEN EXISTS (SELECT 1 FROM scans x WHERE x.patient_key = p.patient_key) THEN 'scanned'
            ELSE 'registered' END AS stage,
       count(*) AS patients
FROM patients p JOIN patient_status s USING (patient_key)
GROUP BY ALL ORDER BY p.center, p.cohort, qc, stage
"""
WAITING_ARRIVALS = """
SELECT status, count(*) AS arrivals, string_agg(patient_key || coalesce(' (' || reason || ')', ''), '; '
                                                ORDER BY patient_key) AS which
FROM (SELECT patient_key, status, reason FROM inbox_events WHERE source = 'arrival'
      QUALIFY row_number() OVER (PARTITION BY patient_key ORDER BY seen_at DESC) = 1)
WHERE patient_key NOT IN (SELECT patient_key FROM patients)
GROUP BY status ORDER BY status
"""
OUTCOMES_KNOWN = """
SELECT o.outcome, p.cohort, count(o.value) AS known, count(*) AS patients
FROM patients p JOIN outcomes o USING (patient_key)
GROUP BY ALL ORDER BY o.outcome, p.cohort
"""
CHAMPION_AGES = """
SELECT t.signature, t.registered_model, t.model_version, t.created_at, v.value AS validation_auc, v.n_patients,
       v.test_auc_low, v.below_test_ci, v.computed_at
FROM trained_models t
LEFT JOIN (SELECT * FROM validation_metrics WHERE metric = 'auc'
           QUALIFY row_number() OVER (PARTITION BY registered_model, model_version ORDER BY computed_at DESC) = 1) v
       ON v.registered_model = t.registered_model AND v.model_version = t.model_version
WHERE t.champion ORDER BY t.signature
"""
LATEST_VALIDATION = """
SELECT signature, registered_model, model_version, n_patients, value AS auc, test_auc_low, below_test_ci, computed_at
FROM validation_metrics WHERE metric = 'auc'
QUALIFY row_number() OVER (PARTITION BY registered_model ORDER BY computed_at DESC) = 1
ORDER BY signature, registered_model
"""


@dataclass(frozen=True)
class ChampionValidationRow:
    """The latest validation of one registered model's champion version (`validation_metrics`, metric auc)."""

    signature: str
    registered_model: str
    model_version: str
    n_patients: int
    auc: float | None
    test_auc_low: float | None
    below_test_ci: bool
    computed_at: datetime

    def describe(self) -> str:
        auc = "n/a" if self.auc is None else f"{self.auc:.3f}"
        low = "n/a" if self.test_auc_low is None else f"{self.test_auc_low:.3f}"
        return (f"{self.signature} ({self.registered_model} v{self.model_version}): validation AUC {auc} on "
                f"{self.n_patients} patients, test CI low {low}")


def latest_validations(con: duckdb.DuckDBPyConnection) -> list[ChampionValidationRow]:
    """Each registered model's most recent validation (its champion version at that time), by signature."""
    return [ChampionValidationRow(signature, model, str(version), int(n), auc, low, bool(below), computed_at)
            for signature, model, version, n, auc, low, below, computed_at in con.execute(LATEST_VALIDATION).fetchall()]


@dataclass(frozen=True)
class Section:
    """One table of the overview."""

    title: str
    headers: tuple[str, ...]
    rows: list[tuple]
    empty: str  # what an empty table means

    def markdown(self) -> str:
        body = markdown_table(self.headers, self.rows) if self.rows else self.empty
        return f"**{self.title}**\n\n{body}"


@dataclass(frozen=True)
class CohortOverview:
    sections: list[Section]

    def markdown(self) -> str:
        return "\n\n".join(section.markdown() for section in self.sections)


def cohort_overview(con: duckdb.DuckDBPyConnection, now: datetime | None = None) -> CohortOverview:
    """The four tables of the overview, read from the warehouse; a table whose source tables do not exist yet (a
    warehouse opened read-only before the step that creates them) is empty."""
    now = now or datetime.now()
    return CohortOverview([
        Section("Patients by center, cohort, QC status and stage reached",
                ("center", "cohort", "QC", "stage", "patients"), _rows(con, PATIENT_STAGES, STAGE_TABLES),
                "no patients registered: materialize cohort_manifest (cssci ingest)"),
        Section("Inbox arrivals waiting (not admitted; as the inbox sensor last saw them)",
                ("status", "arrivals", "which"), _rows(con, WAITING_ARRIVALS, ("inbox_events", "patients")), "none"),
        Section("Outcomes known", ("outcome", "cohort", "known", "patients"),
                _rows(con, OUTCOMES_KNOWN, ("patients", "outcomes")), "no outcomes recorded"),
        Section("Champions", ("signature", "model", "version", "registered", "age", "latest validation"),
                [_champion_row(row, now) for row in _rows(con, CHAMPION_AGES, CHAMPION_TABLES)],
                "no champion registered yet: train the models (modeling_job)"),
    ])


CHAMPION_TABLES = ("trained_models", "validation_metrics")
STAGE_TABLES = ("patients", "patient_status", "prospective_predictions", "embeddings", "roi_slices",
                "radiomics_features", "preprocessed_channels", "scans")


def _rows(con: duckdb.DuckDBPyConnection, sql: str, tables: Sequence[str]) -> list[tuple]:
    return con.execute(sql).fetchall() if set(tables) <= table_names(con) else []


def _champion_row(row: Sequence, now: datetime) -> tuple:
    signature, model, version, created, auc, n, low, below, _ = row
    if auc is None and n is None:
        validation = "not validated yet"
    else:
        validation = f"AUC {'n/a' if auc is None else f'{auc:.3f}'} on {n} patients" + (
            f" BELOW the test CI low {low:.3f}" if below else "")
    registered = created.strftime("%Y-%m-%d %H:%M") if created else "?"
    return signature, model, version, registered, age_text(now - created) if created else "?", validation


def age_text(age) -> str:
    """'3 d 4 h', '5 h 12 min', '7 min' (a timedelta, rounded down)."""
    minutes = int(age.total_seconds() // 60)
    days, hours, rest = minutes // 1440, minutes % 1440 // 60, minutes % 60
    if days:
        return f"{days} d {hours} h"
    return f"{hours} h {rest} min" if hours else f"{rest} min"
