import dagster as dg

prospective_patient_job = dg.define_asset_job(
    "prospective_patient_job",
    selection=dg.AssetSelection.assets("patient_scans", "preprocessed_channels", "radiomics_features", "roi_slices",
                                       "prospective_predictions"),
    description="One newly arrived patient: scans, channels, radiomics, ROI slices, embeddings and champion scores.",
)

followup_job = dg.define_asset_job("followup_job", selection=["followup_outcomes"],
                                   description="Record the outcomes of one follow-up file from the inbox.")

validation_job = dg.define_asset_job("validation_job", selection=["validation_metrics"],
                                     description="Champion metrics on prospective patients whose outcome is known.")

retraining_job = dg.define_asset_job(
    "retraining_job",
    selection=["cohort_manifest", "patient_splits", "feature_matrix", "feature_reliability", "harmonized_features",
               "trained_models", "model_results", "predictions"],
    description="Deliberate retraining on the current cohort (never triggered by a new patient).",
)
