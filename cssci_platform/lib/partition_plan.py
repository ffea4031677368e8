"""The partition plan of a manifest: which patients (and centers) are new or changed since the last look, to
register as Dagster partitions and run once each (pure logic behind `cohort_manifest_sensor`)."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Collection
from dataclasses import asdict, dataclass, field

from cssci_platform.lib.cohort import Cohort, PatientRecord


def record_digest(record: PatientRecord) -> str:
    """Changes when the patient's row content or its manifest issues change, not when rows move in the table."""
    content = {k: v for k, v in asdict(record).items() if k not in ("line", "issues")}
    content["issues"] = sorted((i.code, i.column, i.message) for i in record.issues if i.code != "duplicate_patient_id")
    payload = json.dumps(content, sort_keys=True, default=str)
    return hashlib.sha256(payload.encode()).hexdigest()[:16]


@dataclass
class ManifestSnapshot:
    manifest_sha256: str = ""
    patient_digests: dict[str, str] = field(default_factory=dict)

    @classmethod
    def from_cursor(cls, cursor: str | None) -> ManifestSnapshot:
        return cls(**json.loads(cursor)) if cursor else cls()

    def to_cursor(self) -> str:
        return json.dumps(asdict(self), sort_keys=True)


@dataclass
class PartitionPlan:
    snapshot: ManifestSnapshot
    manifest_changed: bool
    new_patients: set[str]
    new_centers: set[str]
    patients_to_run: dict[str, str]  # patient key -> row digest (part of the run key)


def plan_partitions(cohort: Cohort, previous: ManifestSnapshot, known_patients: set[str], known_centers: set[str],
                    processed_elsewhere: Collection[str] = frozenset()) -> PartitionPlan:
    """`processed_elsewhere`: patients another sensor runs (inbox arrivals): registered, never run from here, so
    one arrival is one processing run."""
    digests = {key: record_digest(record) for key, record in cohort.patients.items()}
    to_run = {key: d for key, d in digests.items()
              if previous.patient_digests.get(key) != d and key not in processed_elsewhere}
    centers = {r.center for r in cohort.patients.values() if r.center in cohort.spec.centers}
    return PartitionPlan(
        snapshot=ManifestSnapshot(cohort.manifest_sha256, digests),
        manifest_changed=cohort.manifest_sha256 != previous.manifest_sha256,
        new_patients=set(digests) - known_patients,
        new_centers=centers - known_centers,
        patients_to_run=to_run,
    )
