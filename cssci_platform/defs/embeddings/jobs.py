from cssci_platform.defs.experiment_jobs import experiment_job

center_embeddings_job = experiment_job(
    "center_embeddings_job", ["center_embeddings"],
    "One center: deep features of every patient's ROI slices (GPU pool).",
)

FINE_TUNING_ASSETS = ["study_outcome", "patient_splits", "fine_tuned_backbones"]

fine_tuning_job = experiment_job(
    "fine_tuning_job", FINE_TUNING_ASSETS,
    "Split the cohort and fine-tune one network per backbone x channel on the training patients.",
)
