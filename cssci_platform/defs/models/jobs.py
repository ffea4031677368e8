import dagster as dg

modeling_job = dg.define_asset_job(
    "modeling_job",
    selection=["patient_splits", "feature_matrix", "feature_reliability", "harmonized_features", "trained_models",
               "model_results", "predictions"],
    description="Cohort-level: split, feature matrix, ICC, ComBat view, the classifier zoo per signature and mode, MLflow.",
)
