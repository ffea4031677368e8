import dagster as dg

center_embeddings_job = dg.define_asset_job(
    "center_embeddings_job", ["center_embeddings"],
    description="One center: deep features of every patient's ROI slices (GPU pool).",
)

FINE_TUNING_ASSETS = ["study_outcome", "patient_splits", "fine_tuned_backbones"]

fine_tuning_job = dg.define_asset_job(
    "fine_tuning_job", FINE_TUNING_ASSETS,
    description="Split the cohort and fine-tune one network per backbone x channel on the training patients.",
)
