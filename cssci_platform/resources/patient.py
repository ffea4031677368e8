"""The resources a patient's steps use, as one value: what the patient assets and the patient batch op pass to the
step functions they share (`defs/ingest/patient_batch.py`)."""

from collections.abc import Iterator
from dataclasses import dataclass

from cssci_platform.resources.cohort import CohortResource
from cssci_platform.resources.image_store import ImageStoreResource
from cssci_platform.resources.study import StudyResource
from cssci_platform.resources.warehouse import WarehouseResource


@dataclass(frozen=True)
class PatientResources:
    study: StudyResource
    cohort: CohortResource
    warehouse: WarehouseResource
    image_store: ImageStoreResource

    def __iter__(self) -> Iterator:
        """Unpacks as `study, cohort, warehouse, image_store = resources`."""
        return iter((self.study, self.cohort, self.warehouse, self.image_store))
