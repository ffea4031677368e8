import dagster as dg

from cssci_platform.defs.ingest.jobs import PATIENT_ASSETS
from cssci_platform.defs.models.jobs import MODELING_ASSETS

prospective_patient_job = dg.define_asset_job(
    "prospective_patient_job", [*PATIENT_ASSETS, "prospective_predictions"],
    description="One newly arrived patient: scans, channels, radiomics, ROI slices, embeddings and champion scores.",
)

champion_scoring_job = dg.define_asset_job(
    "champion_scoring_job", ["prospective_predictions"],
    description="Score one already processed patient with the current champions (the study's prospective cohort "
                "after modeling, or again after a deliberate retraining).",
)

followup_job = dg.define_asset_job(
    "followup_job", ["followup_outcomes", "study_outcome"],
    description="Record the outcomes of one follow-up file from the inbox (and re-derive the study label).",
)

validation_job = dg.define_asset_job("validation_job", ["validation_metrics"],
                                     description="Champion metrics on prospective patients whose outcome is known.")

retraining_job = dg.define_asset_job(
    "retraining_job", ["cohort_manifest", *MODELING_ASSETS],
    description="Deliberate retraining on the current cohort (never triggered by a new patient).",
)
