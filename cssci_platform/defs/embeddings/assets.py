import dagster as dg
import polars as pl

from cssci_platform.defs.embeddings.networks import fine_tune_channel
from cssci_platform.defs.executors import GPU_QUEUE_TAGS
from cssci_platform.defs.features.assets import preprocessed_channels
from cssci_platform.defs.partitions import centers_partitions, patients_partitions
from cssci_platform.defs.qc import issues_markdown, quarantine_guard, record_issues
from cssci_platform.defs.splits.assets import patient_splits
from cssci_platform.lib.deep.cohort_networks import embedding_frame, readable_slices
from cssci_platform.lib.deep.errors import BackboneWeightsError
from cssci_platform.lib.deep.patient_slices import STAGE as SLICE_STAGE
from cssci_platform.lib.deep.patient_slices import SliceRequest, cut_patient_slices, masked_pairs
from cssci_platform.lib.deep.settings import EMBEDDING_STAGE, DeepSettings
from cssci_platform.lib.messages import markdown_table
from cssci_platform.lib.qc_montage import FOLDER as MONTAGE_FOLDER
from cssci_platform.lib.qc_montage import dl_rectangle_of, montage_png, patient_montage, png_markdown, write_montage
from cssci_platform.lib.queries import patients as queries
from cssci_platform.lib.warehouse import replace_rows
from cssci_platform.resources.cohort import CohortResource
from cssci_platform.resources.image_store import ImageStoreResource
from cssci_platform.resources.patient import PatientResources, PatientStepResult
from cssci_platform.resources.study import StudyResource
from cssci_platform.resources.warehouse import WarehouseResource

UPSTREAM_STAGES = ("manifest", "scans", "preprocess")


@dg.asset(group_name="deep", partitions_def=patients_partitions, deps=[preprocessed_channels],
          kinds={"pytorch", "duckdb"})
def roi_slices(context: dg.AssetExecutionContext, study: StudyResource, cohort: CohortResource,
               warehouse: WarehouseResource, image_store: ImageStoreResource) -> dg.MaterializeResult:
    """The largest-ROI slice of every channel, cropped to the DL rectangle and resized (one `.npy` each); and the
    patient's QC montage (every sequence's largest-lesion slice with the ROI contours and the DL rectangle, and its
    channels) in the metadata and at `image_store/qc_montages/<patient_key>.png`."""
    resources = PatientResources(study, cohort, warehouse, image_store)
    return dg.MaterializeResult(metadata=cut_patient_roi_slices(resources, context.partition_key).metadata)


def cut_patient_roi_slices(resources: PatientResources, key: str) -> PatientStepResult:
    """`roi_slices` of one patient: slice files and rows, its QC montage, ROI-slice QC issues."""
    study, cohort, warehouse, image_store = resources
    with warehouse.reading() as con:
        quarantine_guard(con, key, UPSTREAM_STAGES)
        channels, masks = queries.preprocessed_channels(con, key), queries.preprocessed_masks(con, key)
    manifest, _ = cohort.patient(key)
    request = study.config().deep.slice.request(manifest.spec, masked_pairs(manifest))
    result = cut_patient_slices(key, channels, masks, request, image_store.folder("roi_slices"))
    montage = _qc_montage(key, channels, masks, request, result.rows, image_store)
    with warehouse.connect() as con:  # last: in a batch the next step reads on this connection (HandOverWarehouse)
        replace_rows(con, "roi_slices", {"patient_key": key}, result.rows)
        record_issues(con, key, SLICE_STAGE, result.qc_issues)
    first = result.rows[0] if result.rows else {}
    return PatientStepResult({
        **montage,
        "slices": len(result.rows), "sequence": request.sequence, "roi": request.roi, "axis": request.settings.axis,
        "slice_index": first.get("slice_index", -1), "roi_area_px": first.get("roi_area_px", 0),
        "crop_rows_cols": str(first.get("crop", [])), "clipped_px": str(first.get("clipped_px", [])),
        "issues": dg.MetadataValue.md(issues_markdown(result.qc_issues)),
    }, list(result.qc_issues))


def _qc_montage(key: str, channels: pl.DataFrame, masks: pl.DataFrame, request: SliceRequest, rows: list[dict],
                image_store: ImageStoreResource) -> dict:
    """The patient's QC montage (`lib/qc_montage`), written to the image store and shown inline."""
    try:
        image = patient_montage(key, channels, masks, request.roi, request.settings.mask_label, dl_rectangle_of(rows))
    except (RuntimeError, OSError) as error:  # unreadable derived files: cut_patient_slices reports them as QC issues
        return {"qc_montage": dg.MetadataValue.md(f"not drawn: {error}")}
    png = montage_png(image)
    path = write_montage(image_store.folder(MONTAGE_FOLDER), key, png)
    return {"qc_montage": dg.MetadataValue.md(png_markdown(png, f"QC montage {key}")),
            "qc_montage_file": dg.MetadataValue.path(str(path))}


@dg.asset(group_name="deep", kinds={"pytorch", "duckdb"}, op_tags=GPU_QUEUE_TAGS,  # the gpu queue on Celery
          deps=[dg.AssetDep(roi_slices, partition_mapping=dg.AllPartitionMapping()), patient_splits])
def fine_tuned_backbones(context: dg.AssetExecutionContext, study: StudyResource, cohort: CohortResource,
                         warehouse: WarehouseResource, image_store: ImageStoreResource) -> dg.MaterializeResult:
    """One network per backbone x channel of the study's `deep.fine_tuning`, fine-tuned on the training patients of
    the study's split only; their CNN probabilities go to `predictions` (signature `CNN`) and Grad-CAM overlays to
    the image store."""
    settings, spec = study.config(), cohort.load().spec
    tuning = settings.deep.fine_tuning
    if tuning is None:
        raise dg.Failure("the study has no deep.fine_tuning section: add one (backbones, channels, ...) to fine-tune")
    results = [fine_tune_channel(context, settings, spec, warehouse, image_store, backbone, channel)
               for backbone in tuning.backbones for channel in tuning.channels]
    networks = markdown_table(["network", "train patients", "final loss", "test AUC", "Grad-CAMs"],
                              [(r.network_id, r.train_patients, f"{r.final_loss:.4f}", r.test_auc, r.gradcam_folder)
                               for r in results])
    return dg.MaterializeResult(metadata={
        "networks": dg.MetadataValue.md(networks),
        "gradcam_example": dg.MetadataValue.md(results[0].gradcam_preview if results else "none"),
    })


@dg.asset(group_name="deep", partitions_def=centers_partitions, pool="gpu", kinds={"pytorch", "duckdb"},
          deps=[dg.AssetDep(roi_slices, partition_mapping=dg.AllPartitionMapping()), fine_tuned_backbones])
def center_embeddings(context: dg.AssetExecutionContext, study: StudyResource,
                      warehouse: WarehouseResource) -> dg.MaterializeResult:
    """Average-pool embeddings of every slice of one center's patients, per backbone and channel, from the networks
    the study's `deep.embedding_network` names (pretrained backbones, or the fine-tuned ones)."""
    return dg.MaterializeResult(metadata=embed_center(study, warehouse, context.partition_key))


def embed_center(study: StudyResource, warehouse: WarehouseResource, center: str) -> dict:
    """`center_embeddings` of one center: its embedding rows per backbone and the embedding QC issues of its
    patients written; the metadata."""
    deep = study.config().deep
    with warehouse.connect() as con:
        stored = queries.center_slices_to_embed(con, center)
    slices, issues = readable_slices(stored.filter(pl.col("channel").is_in(deep.channels)))
    frames = [_embed(slices, backbone, deep, warehouse) for backbone in deep.backbones]
    with warehouse.connect() as con:
        for backbone, frame in zip(deep.backbones, frames):
            where = {"center": center, "backbone": backbone, "network": deep.embedding_network}
            replace_rows(con, "embeddings", where, frame)
        for key in set(stored["patient_key"]):
            record_issues(con, key, EMBEDDING_STAGE, [i for i in issues if i.patient_key == key])
    return {
        "patients": slices["patient_key"].n_unique(), "backbones": ", ".join(deep.backbones),
        "network": deep.embedding_network,
        "weights": frames[0]["weights_id"][0] if frames and frames[0].height else "-",
        "embedding_rows": sum(f.height for f in frames),
        "dims": ", ".join(f"{b}: {len(f['embedding'][0])}" for b, f in zip(deep.backbones, frames) if f.height),
        "issues": dg.MetadataValue.md(issues_markdown(issues)),
    }


def _embed(slices: pl.DataFrame, backbone_name: str, deep: DeepSettings, warehouse: WarehouseResource) -> pl.DataFrame:
    from cssci_platform.lib.deep import load_backbone, load_fine_tuned  # torch: only in the steps that embed

    if deep.embedding_network == "pretrained":
        try:
            backbone = load_backbone(backbone_name, deep.weights, seed=deep.seed)
        except BackboneWeightsError as error:
            raise dg.Failure(f"{error.message}. Fix: {error.fix}") from error
        return embedding_frame(slices, backbone, "pretrained", deep.inference())
    with warehouse.connect() as con:
        networks = queries.fine_tuned_checkpoints(con, backbone_name)
    missing = sorted(set(slices["channel"]) - set(networks["channel"])) or ([] if networks.height else ["all"])
    if missing:
        raise dg.Failure(f"no fine-tuned {backbone_name} for channels {missing}: materialize fine_tuned_backbones "
                         "first, or set deep.embedding_network: pretrained")
    return pl.concat([
        embedding_frame(slices.filter(pl.col("channel") == channel), load_fine_tuned(path).backbone, "fine_tuned",
                        deep.inference())
        for channel, path in networks.iter_rows()
    ])
