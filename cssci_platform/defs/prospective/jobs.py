from cssci_platform.defs.experiment_jobs import experiment_job
from cssci_platform.defs.ingest.jobs import PATIENT_ASSETS
from cssci_platform.defs.models.jobs import MODELING_ASSETS

prospective_patient_job = experiment_job(
    "prospective_patient_job", [*PATIENT_ASSETS, "prospective_predictions"],
    "One newly arrived patient: scans, channels, radiomics, ROI slices, embeddings and champion scores.",
)

followup_job = experiment_job("followup_job", ["followup_outcomes", "study_outcome"],
                              "Record the outcomes of one follow-up file from the inbox (and re-derive the study label).",
                              defaults_from_experiment=False)  # the sensor sends the experiment's blocks with the file

validation_job = experiment_job("validation_job", ["validation_metrics"],
                                "Champion metrics on prospective patients whose outcome is known.")

retraining_job = experiment_job(
    "retraining_job", ["cohort_manifest", *MODELING_ASSETS],
    "Deliberate retraining on the current cohort (never triggered by a new patient).",
)
