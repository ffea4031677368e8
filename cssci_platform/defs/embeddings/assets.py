import dagster as dg
import polars as pl

from cssci_platform.defs.embeddings.config import EmbeddingsConfig, FineTuningConfig, RoiSlicesConfig
from cssci_platform.defs.embeddings.networks import fine_tune_channel
from cssci_platform.defs.features.assets import preprocessed_channels
from cssci_platform.defs.partitions import centers_partitions, patients_partitions
from cssci_platform.defs.qc import issues_markdown, quarantine_guard, record_issues
from cssci_platform.defs.splits.assets import patient_splits
from cssci_platform.lib.deep import BackboneWeightsError, InferenceSettings, load_backbone, load_fine_tuned
from cssci_platform.lib.deep.cohort_networks import EMBEDDING_STAGE, embedding_frame, readable_slices
from cssci_platform.lib.deep.patient_slices import STAGE as SLICE_STAGE
from cssci_platform.lib.deep.patient_slices import cut_patient_slices, masked_pairs
from cssci_platform.lib.warehouse import replace_rows
from cssci_platform.resources.cohort import CohortResource
from cssci_platform.resources.image_store import ImageStoreResource
from cssci_platform.resources.warehouse import WarehouseResource

UPSTREAM_STAGES = ("manifest", "scans", "preprocess")


@dg.asset(group_name="deep", partitions_def=patients_partitions, deps=[preprocessed_channels], kinds={"pytorch", "duckdb"})
def roi_slices(context: dg.AssetExecutionContext, config: RoiSlicesConfig, cohort: CohortResource,
               warehouse: WarehouseResource, image_store: ImageStoreResource) -> dg.MaterializeResult:
    """The largest-ROI slice of every channel, cropped to the DL rectangle and resized (one `.npy` each)."""
    key = context.partition_key
    quarantine_guard(warehouse, key, UPSTREAM_STAGES)
    manifest, _ = cohort.patient(key)
    channels = warehouse.frame("SELECT * FROM preprocessed_channels WHERE patient_key = ?", [key])
    masks = warehouse.frame("SELECT * FROM preprocessed_masks WHERE patient_key = ?", [key])
    request = config.request(manifest.spec, masked_pairs(manifest))
    result = cut_patient_slices(key, channels, masks, request, image_store.folder("roi_slices"))
    with warehouse.connect() as con:
        replace_rows(con, "roi_slices", {"patient_key": key}, result.rows)
    record_issues(warehouse, key, SLICE_STAGE, result.qc_issues)
    first = result.rows[0] if result.rows else {}
    return dg.MaterializeResult(metadata={
        "slices": len(result.rows), "sequence": request.sequence, "roi": request.roi, "axis": request.settings.axis,
        "slice_index": first.get("slice_index", -1), "roi_area_px": first.get("roi_area_px", 0),
        "crop_rows_cols": str(first.get("crop", [])), "clipped_px": str(first.get("clipped_px", [])),
        "issues": dg.MetadataValue.md(issues_markdown(result.qc_issues)),
    })


@dg.asset(group_name="deep", kinds={"pytorch", "duckdb"},
          deps=[dg.AssetDep(roi_slices, partition_mapping=dg.AllPartitionMapping()), patient_splits])
def fine_tuned_backbones(context: dg.AssetExecutionContext, config: FineTuningConfig, cohort: CohortResource,
                         warehouse: WarehouseResource, image_store: ImageStoreResource) -> dg.MaterializeResult:
    """One network per backbone x channel, fine-tuned on the training patients of a stored split only;
    their CNN probabilities go to `predictions` (signature `CNN`) and Grad-CAM overlays to the image store."""
    spec = cohort.load().spec
    results = [fine_tune_channel(context, config, spec, warehouse, image_store, backbone, channel)
               for backbone in config.backbones for channel in config.channels]
    lines = ["| network | train patients | final loss | test AUC | Grad-CAMs |", "|---|---|---|---|---|"]
    lines += [f"| {r.network_id} | {r.train_patients} | {r.final_loss:.4f} | {r.test_auc} | {r.gradcam_folder} |" for r in results]
    return dg.MaterializeResult(metadata={
        "networks": dg.MetadataValue.md("\n".join(lines)),
        "gradcam_example": dg.MetadataValue.md(results[0].gradcam_preview if results else "none"),
    })


@dg.asset(group_name="deep", partitions_def=centers_partitions, pool="gpu", kinds={"pytorch", "duckdb"},
          deps=[dg.AssetDep(roi_slices, partition_mapping=dg.AllPartitionMapping()), fine_tuned_backbones])
def center_embeddings(context: dg.AssetExecutionContext, config: EmbeddingsConfig, warehouse: WarehouseResource) -> dg.MaterializeResult:
    """Average-pool embeddings of every slice of one center's patients, per backbone and channel."""
    center = context.partition_key
    slices, issues = readable_slices(_center_slices(warehouse, center).filter(pl.col("channel").is_in(config.channels)))
    settings = InferenceSettings(batch_size=config.batch_size, device=config.device, seed=config.seed)
    frames = [_embed(slices, backbone, config, settings, warehouse) for backbone in config.backbones]
    with warehouse.connect() as con:
        for backbone, frame in zip(config.backbones, frames):
            replace_rows(con, "embeddings", {"center": center, "backbone": backbone, "network": config.network}, frame)
    for key in set(_center_slices(warehouse, center)["patient_key"]):
        record_issues(warehouse, key, EMBEDDING_STAGE, [i for i in issues if i.patient_key == key])
    return dg.MaterializeResult(metadata={
        "patients": slices["patient_key"].n_unique(), "backbones": ", ".join(config.backbones),
        "network": config.network, "weights": frames[0]["weights_id"][0] if frames and frames[0].height else "-",
        "embedding_rows": sum(f.height for f in frames),
        "dims": ", ".join(f"{b}: {len(f['embedding'][0])}" for b, f in zip(config.backbones, frames) if f.height),
        "issues": dg.MetadataValue.md(issues_markdown(issues)),
    })


def _center_slices(warehouse: WarehouseResource, center: str) -> pl.DataFrame:
    """Slices of the center's patients that passed every QC stage up to and including roi_slices."""
    return warehouse.frame(
        "SELECT s.*, p.center FROM roi_slices s JOIN patients p USING (patient_key) WHERE p.center = ? "
        "AND NOT EXISTS (SELECT 1 FROM qc_issues q WHERE q.patient_key = s.patient_key AND q.severity = 'error' "
        "AND q.stage <> ?)", [center, EMBEDDING_STAGE])


def _embed(slices: pl.DataFrame, backbone_name: str, config: EmbeddingsConfig, settings: InferenceSettings,
           warehouse: WarehouseResource) -> pl.DataFrame:
    if config.network == "pretrained":
        try:
            backbone = load_backbone(backbone_name, config.weights, seed=config.seed)
        except BackboneWeightsError as error:
            raise dg.Failure(f"{error.message}. Fix: {error.fix}") from error
        return embedding_frame(slices, backbone, "pretrained", settings)
    networks = warehouse.frame("SELECT channel, checkpoint_path FROM networks WHERE backbone = ?", [backbone_name])
    missing = sorted(set(slices["channel"]) - set(networks["channel"])) or ([] if networks.height else ["all"])
    if missing:
        raise dg.Failure(f"no fine-tuned {backbone_name} for channels {missing}: materialize fine_tuned_backbones "
                         "first, or set network: pretrained")
    return pl.concat([
        embedding_frame(slices.filter(pl.col("channel") == channel), load_fine_tuned(path).backbone, "fine_tuned", settings)
        for channel, path in networks.iter_rows()
    ])
