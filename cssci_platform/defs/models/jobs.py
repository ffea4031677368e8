import dagster as dg

MODELING_ASSETS = ["study_outcome", "patient_splits", "feature_matrix", "feature_reliability", "harmonized_features",
                   "trained_models", "model_results", "predictions"]

# The zoo's fit units (fold x mode x signature) are separate steps of trained_models: a run launched through the
# instance (UI, `dagster job launch`, execute_job) runs them side by side in processes. The one setting:
# run config `execution: {config: {max_concurrent: N}}` (default None/0 = the machine's core count).
# `execute_in_process` always runs the steps one after another in its own process (the serial path).
MODELING_EXECUTOR = dg.multiprocess_executor

modeling_job = dg.define_asset_job(
    "modeling_job", MODELING_ASSETS,
    executor_def=MODELING_EXECUTOR,
    description="Cohort-level: study outcome, split, feature matrix, ICC, ComBat view, the classifier zoo per "
                "signature and mode (one step per fold x mode x signature, in parallel under the multiprocess "
                "executor: execution.config.max_concurrent, default the core count), MLflow.",
)
