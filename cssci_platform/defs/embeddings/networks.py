"""Fine-tuning one backbone x channel for `fine_tuned_backbones`: data selection by split, storage, metadata."""

import base64
import json
from dataclasses import asdict, dataclass
from datetime import datetime

import dagster as dg
import polars as pl
from sklearn.metrics import roc_auc_score

from cssci_platform.defs.embeddings.config import FineTuningConfig
from cssci_platform.defs.splits.assets import split_name
from cssci_platform.lib.cohort import CohortSpec
from cssci_platform.lib.deep import BackboneWeightsError, InferenceSettings, load_backbone, save_fine_tuned
from cssci_platform.lib.deep.cohort_networks import probability_rows, readable_slices, train_channel_network, write_grad_cams
from cssci_platform.lib.warehouse import replace_rows
from cssci_platform.resources.image_store import ImageStoreResource
from cssci_platform.resources.warehouse import WarehouseResource


@dataclass(frozen=True)
class ChannelResult:
    network_id: str
    train_patients: int
    final_loss: float
    test_auc: str
    gradcam_folder: str
    gradcam_preview: str


def fine_tune_channel(context: dg.AssetExecutionContext, config: FineTuningConfig, spec: CohortSpec,
                      warehouse: WarehouseResource, image_store: ImageStoreResource, backbone_name: str,
                      channel: str) -> ChannelResult:
    split = split_name(warehouse, config.split)
    slices = warehouse.frame(
        "SELECT s.patient_key, s.sequence, s.slice_path, p.cohort, sp.role, o.value AS label FROM roi_slices s "
        "JOIN patients p USING (patient_key) JOIN splits sp ON sp.patient_key = s.patient_key AND sp.split = ? AND sp.fold = ? "
        "LEFT JOIN outcomes o ON o.patient_key = s.patient_key AND o.outcome = sp.outcome "
        "WHERE s.channel = ? AND NOT EXISTS (SELECT 1 FROM qc_issues q WHERE q.patient_key = s.patient_key "
        "AND q.severity = 'error')", [split, config.fold, channel])
    slices, _ = readable_slices(slices)
    outcome = warehouse.frame("SELECT any_value(outcome) AS o FROM splits WHERE split = ?", [split])["o"][0]
    classes = _classes(spec, outcome)
    try:
        backbone = load_backbone(backbone_name, config.weights, seed=config.seed)
    except BackboneWeightsError as error:
        raise dg.Failure(f"{error.message}. Fix: {error.fix}") from error
    train = slices.filter(pl.col("role") == "train").select("patient_key", "slice_path", "label")
    context.log.info(f"fine-tuning {backbone_name} on channel {channel}: {train.height} training patients of split {split}")
    trained = train_channel_network(train, classes, backbone, config.fine_tune_config())
    network_id = f"{backbone_name}__{slices['sequence'][0]}__{channel}__{trained.network.backbone.weights_id.split(':')[-1]}"
    checkpoint = image_store.folder("networks") / f"{network_id}.pt"
    sha256 = save_fine_tuned(trained.network, checkpoint)
    probabilities = probability_rows(trained, slices, InferenceSettings(device=config.device, seed=config.seed))
    _store(warehouse, network_id, backbone_name, channel, split, config, outcome, trained, checkpoint, sha256, slices, probabilities)
    folder = image_store.folder("gradcam") / network_id
    cams = write_grad_cams(trained, slices, folder) if config.gradcam else {}
    return ChannelResult(network_id, trained.train_patients, trained.network.loss_history[-1],
                         _test_auc(probabilities, slices, classes), str(folder) if cams else "-", _preview(cams))


def _classes(spec: CohortSpec, outcome: str) -> list[str]:
    variable = spec.outcomes[outcome]
    return list(variable.levels) if variable.levels else ["0", "1"]


def _store(warehouse: WarehouseResource, network_id: str, backbone: str, channel: str, split: str, config: FineTuningConfig,
           outcome: str, trained, checkpoint, sha256: str, slices: pl.DataFrame, probabilities: pl.DataFrame) -> None:
    now = datetime.now()
    network_row = {
        "network_id": network_id, "backbone": backbone, "sequence": slices["sequence"][0], "channel": channel,
        "weights_id": trained.network.backbone.weights_id, "parent_weights_id": trained.network.parent_weights_id,
        "split": split, "fold": config.fold, "outcome": outcome, "classes": trained.classes,
        "train_patients": trained.train_patients, "final_loss": trained.network.loss_history[-1],
        "checkpoint_path": str(checkpoint), "checkpoint_sha256": sha256,
        "config_json": json.dumps(asdict(trained.network.config)), "created_at": now,
    }
    predictions = probabilities.join(slices.select("patient_key", "cohort", "role"), on="patient_key").with_columns(
        signature=pl.lit("CNN"), classifier=pl.lit(f"{backbone.replace('resnet', 'ResNet')}_{channel}"),
        mode=pl.lit("leakage_safe"), split=pl.lit(split), fold=pl.lit(config.fold), model_name=pl.lit(network_id),
        model_version=pl.lit(trained.network.backbone.weights_id), created_at=pl.lit(now))
    with warehouse.connect() as con:
        replace_rows(con, "networks", {"backbone": backbone, "channel": channel}, [network_row])
        replace_rows(con, "predictions", {"signature": "CNN", "classifier": predictions["classifier"][0] if predictions.height
                                          else backbone}, predictions)


def _test_auc(probabilities: pl.DataFrame, slices: pl.DataFrame, classes: list[str]) -> str:
    test = slices.filter((pl.col("role") == "test") & pl.col("label").is_not_null())
    if len(classes) != 2 or test["label"].n_unique() < 2:
        return "-"
    scores = probabilities.filter(pl.col("class_label") == classes[1]).join(test, on="patient_key")
    return f"{roc_auc_score((scores['label'] == classes[1]).to_numpy(), scores['probability'].to_numpy()):.3f}"


def _preview(cams: dict) -> str:
    if not cams:
        return "Grad-CAM disabled"
    key, path = next(iter(cams.items()))
    encoded = base64.b64encode(path.read_bytes()).decode()
    return f"Grad-CAM, patient {key}, predicted class:\n\n![{key}](data:image/png;base64,{encoded})"
