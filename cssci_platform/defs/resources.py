import dagster as dg

from cssci_platform.lib.study_config import EXPERIMENT_ENV
from cssci_platform.resources.cohort import CohortResource
from cssci_platform.resources.image_store import ImageStoreResource
from cssci_platform.resources.inbox import InboxResource
from cssci_platform.resources.study import StudyResource
from cssci_platform.resources.tracking import TrackingResource
from cssci_platform.resources.warehouse import WarehouseResource


@dg.definitions
def resources() -> dg.Definitions:
    return dg.Definitions(
        resources={
            "warehouse": WarehouseResource(path=dg.EnvVar("CSSCI_WAREHOUSE")),
            "cohort": CohortResource(manifest_path=dg.EnvVar("CSSCI_MANIFEST")),
            "image_store": ImageStoreResource(root=dg.EnvVar("CSSCI_IMAGE_STORE")),
            "tracking": TrackingResource(tracking_uri=dg.EnvVar("CSSCI_MLFLOW_URI")),
            "inbox": InboxResource(),
            "study": StudyResource(path=dg.EnvVar(EXPERIMENT_ENV)),
        }
    )
