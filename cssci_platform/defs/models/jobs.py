from cssci_platform.defs.experiment_jobs import experiment_job

MODELING_ASSETS = ["study_outcome", "patient_splits", "feature_matrix", "feature_reliability", "harmonized_features",
                   "trained_models", "model_results", "predictions"]

modeling_job = experiment_job(
    "modeling_job", MODELING_ASSETS,
    "Cohort-level: study outcome, split, feature matrix, ICC, ComBat view, the classifier zoo per signature and mode, MLflow.",
)
