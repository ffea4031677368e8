import hashlib
import threading
from pathlib import Path

import dagster as dg

from cssci_platform.lib.cohort import Cohort, PatientRecord, load_cohort

_LOADED: dict[Path, Cohort] = {}  # manifest path -> the cohort last loaded from it
_LOCK = threading.Lock()


class CohortResource(dg.ConfigurableResource):
    """The cohort manifest (`CSSCI_MANIFEST`: path of cohort.yaml).

    Loading validates the whole manifest; the result is kept per manifest path and reused while the manifest, its
    patient table and its admitted table hold the same bytes, so the steps of a run read it once, not once each."""

    manifest_path: str

    def load(self) -> Cohort:
        path = Path(self.manifest_path).resolve()
        with _LOCK:
            cached = _LOADED.get(path)
            if cached is not None and _content_digest(cached) == cached.manifest_sha256:
                return cached
        cohort = load_cohort(path)
        with _LOCK:
            _LOADED[path] = cohort
        return cohort

    def patient(self, patient_key: str) -> tuple[Cohort, PatientRecord]:
        cohort = self.load()
        if patient_key not in cohort.patients:
            raise dg.Failure(
                f"patient '{patient_key}' is not in {cohort.manifest_path}: it was removed or renamed. "
                "Restore the row, or delete the partition in the Dagster UI (Partitions tab)."
            )
        return cohort, cohort.patients[patient_key]


def _content_digest(cohort: Cohort) -> str | None:
    """The digest `load_cohort` gives the files `cohort` was read from, as they are now (None when one is gone)."""
    folder = cohort.manifest_path.parent
    admitted = folder / cohort.spec.admitted_table
    try:
        content = (cohort.manifest_path.read_bytes() + (folder / cohort.spec.table).resolve().read_bytes()
                   + (admitted.read_bytes() if admitted.is_file() else b""))
    except OSError:
        return None
    return hashlib.sha256(content).hexdigest()
