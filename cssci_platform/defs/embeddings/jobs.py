from collections.abc import Iterator

import dagster as dg

from cssci_platform.defs.batch_runs import materialize_each
from cssci_platform.defs.embeddings.assets import center_embeddings, embed_center
from cssci_platform.defs.executors import GPU_QUEUE_TAGS, step_executor
from cssci_platform.resources.study import StudyResource
from cssci_platform.resources.warehouse import WarehouseResource

center_embeddings_job = dg.define_asset_job(
    "center_embeddings_job", ["center_embeddings"],
    description="One center: deep features of every patient's ROI slices (GPU pool).",
)

FINE_TUNING_ASSETS = ["study_outcome", "patient_splits", "fine_tuned_backbones"]

fine_tuning_job = dg.define_asset_job(
    "fine_tuning_job", FINE_TUNING_ASSETS,
    description="Split the cohort and fine-tune one network per backbone x channel on the training patients.",
    executor_def=step_executor(dg.in_process_executor),  # one process (torch imported once); Celery in the cluster
)


class CentersConfig(dg.Config):
    centers: list[str]


@dg.op(out={}, pool="gpu", tags=GPU_QUEUE_TAGS,  # on the `gpu` queue where steps go to Celery workers
       description="Each center's deep features in turn, recorded per center partition of center_embeddings.")
def embed_center_batch(context: dg.OpExecutionContext, config: CentersConfig, study: StudyResource,
                       warehouse: WarehouseResource) -> Iterator[dg.AssetMaterialization]:
    yield from materialize_each(context, center_embeddings.key, config.centers,
                                lambda center: embed_center(study, warehouse, center), "centers")


@dg.job(executor_def=step_executor(dg.in_process_executor),
        description="Several centers' deep features in one run (what the CLI submits; torch imported once), "
                    "recorded per center partition; one GPU step at a time (the `gpu` pool).")
def center_embeddings_batch_job() -> None:
    embed_center_batch()
