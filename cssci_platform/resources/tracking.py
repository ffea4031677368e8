import dagster as dg

from cssci_platform.lib.model_tracking import TrackingConfig, model_run_tags


class TrackingResource(dg.ConfigurableResource):
    """MLflow tracking + model registry (`CSSCI_MLFLOW_URI`, e.g. `sqlite:////data/cssci/mlflow.db`).

    `artifact_root` defaults to `mlflow-artifacts` beside the sqlite file; `registry_uri` to the tracking URI.
    The resource only builds a `TrackingConfig`; all MLflow calls live in `cssci_platform.lib.model_tracking`.
    """

    tracking_uri: str
    registry_uri: str | None = None
    artifact_root: str | None = None

    def config(self, experiment_name: str) -> TrackingConfig:
        """`experiment_name`: the study's name (`study.config().name`), the one MLflow experiment of a study."""
        return TrackingConfig(
            tracking_uri=self.tracking_uri,
            experiment_name=experiment_name,
            artifact_root=self.artifact_root,
            registry_uri=self.registry_uri,
        )

    @staticmethod
    def run_tags(
        context: dg.AssetExecutionContext,
        *,
        signature: str,
        classifier: str,
        mode: str,
        manifest_hash: str | None = None,
    ) -> dict[str, str]:
        """Our MLflow run tags, with the Dagster run id, the asset key(s) and the partition of `context`."""
        assets = ",".join(sorted(key.to_user_string() for key in context.selected_asset_keys))
        return model_run_tags(
            signature=signature,
            classifier=classifier,
            mode=mode,
            manifest_hash=manifest_hash,
            dagster_run_id=context.run.run_id,
            dagster_asset=assets or None,
            dagster_partition=context.partition_key if context.has_partition_key else None,
        )
