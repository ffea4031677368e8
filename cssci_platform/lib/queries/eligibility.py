"""Which patients a stage may use: one explicit rule per stage.

A patient is excluded from a stage by an *error* in `qc_issues` (warnings never exclude). Which QC stages'
errors count differs by stage, on purpose:

| stage            | excluded by an error recorded at | why                                                  |
|------------------|----------------------------------|------------------------------------------------------|
| `splits`         | `manifest` only                  | roles are assigned on the cohort as declared, so     |
|                  |                                  | fixing an image never reshuffles a split             |
| `embeddings`     | any stage except `embeddings`    | its own unreadable-slice errors must not keep a      |
|                  |                                  | patient out of the re-run that clears them           |
| `networks`       | any stage                        | fine-tuning trains only on clean patients            |
| `feature_matrix` | any stage                        | a model sees only patients who passed all QC         |

Every rule starts from the `patients` table (patients of the current manifest).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import duckdb

Stage = Literal["splits", "embeddings", "networks", "feature_matrix"]


@dataclass(frozen=True)
class EligibilityRule:
    """`counted`: the QC stages whose errors exclude (None: every stage); `ignored`: stages whose errors never do."""

    counted: tuple[str, ...] | None
    ignored: tuple[str, ...] = ()


RULES: dict[Stage, EligibilityRule] = {
    "splits": EligibilityRule(counted=("manifest",)),
    "embeddings": EligibilityRule(counted=None, ignored=("embeddings",)),
    "networks": EligibilityRule(counted=None),
    "feature_matrix": EligibilityRule(counted=None),
}

ELIGIBLE_PATIENTS = """
SELECT p.patient_key FROM patients p
WHERE NOT EXISTS (
    SELECT 1 FROM qc_issues q
    WHERE q.patient_key = p.patient_key AND q.severity = 'error'
      AND ($counted IS NULL OR list_contains($counted, q.stage))
      AND NOT list_contains($ignored, q.stage))
ORDER BY p.patient_key
"""


def rule_parameters(stage: Stage) -> dict[str, list[str] | None]:
    """The named parameters (`$counted`, `$ignored`) of `ELIGIBLE_PATIENTS` for `stage`, for queries that embed it."""
    if stage not in RULES:
        raise ValueError(f"unknown stage '{stage}'; eligibility rules exist for {', '.join(RULES)}")
    rule = RULES[stage]
    return {"counted": None if rule.counted is None else list(rule.counted), "ignored": list(rule.ignored)}


def eligible_patients(con: duckdb.DuckDBPyConnection, stage: Stage) -> list[str]:
    """The patient keys `stage` may use, sorted."""
    return [row[0] for row in con.execute(ELIGIBLE_PATIENTS, rule_parameters(stage)).fetchall()]


def eligible_for_splits(con: duckdb.DuckDBPyConnection) -> list[str]:
    return eligible_patients(con, "splits")


def eligible_for_embeddings(con: duckdb.DuckDBPyConnection) -> list[str]:
    return eligible_patients(con, "embeddings")


def eligible_for_networks(con: duckdb.DuckDBPyConnection) -> list[str]:
    return eligible_patients(con, "networks")


def eligible_for_feature_matrix(con: duckdb.DuckDBPyConnection) -> list[str]:
    return eligible_patients(con, "feature_matrix")
