import dagster as dg

MODELING_ASSETS = ["study_outcome", "patient_splits", "feature_matrix", "feature_reliability", "harmonized_features",
                   "trained_models", "model_results", "predictions"]

modeling_job = dg.define_asset_job(
    "modeling_job", MODELING_ASSETS,
    description="Cohort-level: study outcome, split, feature matrix, ICC, ComBat view, the classifier zoo per "
                "signature and mode, MLflow.",
)
