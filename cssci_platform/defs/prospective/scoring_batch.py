"""Several already processed patients scored by the champions in one run: what `cssci run` / `demo` submit for a
study's prospective patients after modelling, instead of a `champion_scoring_job` run per patient (each paid ~4 s of
process start and the imports of scoring before its first patient). Each patient is scored by the same function as
`prospective_predictions` and recorded as that asset's materialization for its partition (`defs/batch_runs.py`)."""

from collections.abc import Iterator

import dagster as dg

from cssci_platform.defs.batch_runs import materialize_each
from cssci_platform.defs.prospective.assets import prospective_predictions, score_prospective_patient
from cssci_platform.resources.cohort import CohortResource
from cssci_platform.resources.study import StudyResource
from cssci_platform.resources.tracking import TrackingResource
from cssci_platform.resources.warehouse import WarehouseResource


class ScoringBatchConfig(dg.Config):
    patients: list[str]


@dg.op(out={}, description="Each patient of the batch scored by the champions, recorded per patient partition of "
                            "prospective_predictions.")
def score_patient_batch(context: dg.OpExecutionContext, config: ScoringBatchConfig, study: StudyResource,
                        cohort: CohortResource, warehouse: WarehouseResource,
                        tracking: TrackingResource) -> Iterator[dg.AssetMaterialization]:
    yield from materialize_each(context, prospective_predictions.key, config.patients,
                                lambda key: score_prospective_patient(study, cohort, warehouse, tracking, key),
                                "patients")


@dg.job(executor_def=dg.in_process_executor,
        description="Score several already processed patients with the current champions in one run (what the CLI "
                    "submits for a study's prospective patients), recorded per patient partition.")
def champion_scoring_batch_job() -> None:
    score_patient_batch()
