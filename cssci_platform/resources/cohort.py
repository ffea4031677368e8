from pathlib import Path

import dagster as dg

from cssci_platform.lib.cohort import Cohort, PatientRecord, load_cohort


class CohortResource(dg.ConfigurableResource):
    """The cohort manifest (`CSSCI_MANIFEST`: path of cohort.yaml)."""

    manifest_path: str

    def load(self) -> Cohort:
        return load_cohort(Path(self.manifest_path))

    def patient(self, patient_key: str) -> tuple[Cohort, PatientRecord]:
        cohort = self.load()
        if patient_key not in cohort.patients:
            raise dg.Failure(
                f"patient '{patient_key}' is not in {cohort.manifest_path}: it was removed or renamed. "
                "Restore the row, or delete the partition in the Dagster UI (Partitions tab)."
            )
        return cohort, cohort.patients[patient_key]
