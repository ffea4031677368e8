"""The resources a patient's steps use, as one value: what the patient assets and the patient batch op pass to the
step functions they share (`defs/ingest/patient_batch.py`)."""

from collections.abc import Iterator
from dataclasses import dataclass, field

from cssci_platform.lib.quality import QcIssue
from cssci_platform.resources.cohort import CohortResource
from cssci_platform.resources.image_store import ImageStoreResource
from cssci_platform.resources.study import StudyResource
from cssci_platform.resources.warehouse import PatientWarehouse


@dataclass(frozen=True)
class PatientResources:
    study: StudyResource
    cohort: CohortResource
    warehouse: PatientWarehouse  # a WarehouseResource, or a batch's HandOverWarehouse
    image_store: ImageStoreResource

    def __iter__(self) -> Iterator:
        """Unpacks as `study, cohort, warehouse, image_store = resources`."""
        return iter((self.study, self.cohort, self.warehouse, self.image_store))


@dataclass(frozen=True)
class PatientStepResult:
    """What one patient step did: the asset's metadata, and the QC issues it recorded (every issue of the stages
    its blocking check reads: the batch op decides the check from them without reading them back)."""

    metadata: dict
    issues: list[QcIssue] = field(default_factory=list)
