"""Fine-tuning one backbone x channel for `fine_tuned_backbones`: data selection by split, storage, metadata."""

import base64
import json
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

import dagster as dg
import polars as pl

from cssci_platform.lib.cohort import CohortSpec
from cssci_platform.lib.deep.cohort_networks import (
    TrainedChannel,
    cnn_prediction_rows,
    held_out_auc,
    network_name,
    outcome_classes,
    probability_rows,
    readable_slices,
    train_channel_network,
    write_grad_cams,
)
from cssci_platform.lib.deep.errors import BackboneWeightsError
from cssci_platform.lib.queries import patients as queries
from cssci_platform.lib.queries.modeling import modelled_outcome, stored_splits
from cssci_platform.lib.study_config import StudyConfig
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


def fine_tune_channel(context: dg.AssetExecutionContext, study: StudyConfig, spec: CohortSpec,
                      warehouse: WarehouseResource, image_store: ImageStoreResource, backbone_name: str,
                      channel: str) -> ChannelResult:
    from cssci_platform.lib.deep import load_backbone  # torch: only in the step that trains

    tuning, split, fold = study.deep.fine_tuning, study.split.stored_name, study.split.first_fold
    assert tuning is not None  # the asset runs only with a fine_tuning section
    with warehouse.connect() as con:
        if split not in stored_splits(con):
            raise dg.Failure(f"the study's split '{split}' is not stored (the splits table holds "
                             f"{stored_splits(con) or 'none'}): materialize patient_splits first")
        slices, _ = readable_slices(queries.channel_slices_for_networks(con, split, fold, channel))
        outcome = modelled_outcome(con, split)
    classes = outcome_classes(spec, outcome)
    try:
        backbone = load_backbone(backbone_name, study.deep.weights, seed=tuning.seed)
    except BackboneWeightsError as error:
        raise dg.Failure(f"{error.message}. Fix: {error.fix}") from error
    train = slices.filter(pl.col("role") == "train").select("patient_key", "slice_path", "label")
    context.log.info(f"fine-tuning {backbone_name} on channel {channel}: {train.height} training patients of split "
                     f"{split}")
    trained = train_channel_network(train, classes, backbone, tuning)
    network_id = network_name(backbone_name, slices["sequence"][0], channel, trained)
    checkpoint = image_store.folder("networks") / f"{network_id}.pt"
    probabilities = probability_rows(trained, slices, study.deep.inference())
    _store(warehouse, network_id, backbone_name, channel, split, fold, outcome, trained, checkpoint, slices,
           probabilities)
    folder = image_store.folder("gradcam") / network_id
    cams = write_grad_cams(trained, slices, folder) if tuning.gradcam else {}
    auc = held_out_auc(probabilities, slices, classes)
    return ChannelResult(network_id, trained.train_patients, trained.network.loss_history[-1],
                         "-" if auc is None else f"{auc:.3f}", str(folder) if cams else "-", _preview(cams))


def _store(warehouse: WarehouseResource, network_id: str, backbone: str, channel: str, split: str, fold: str,
           outcome: str, trained: TrainedChannel, checkpoint: Path, slices: pl.DataFrame,
           probabilities: pl.DataFrame) -> None:
    from cssci_platform.lib.deep import save_fine_tuned

    now = datetime.now()
    network_row = {
        "network_id": network_id, "backbone": backbone, "sequence": slices["sequence"][0], "channel": channel,
        "weights_id": trained.network.backbone.weights_id, "parent_weights_id": trained.network.parent_weights_id,
        "split": split, "fold": fold, "outcome": outcome, "classes": trained.classes,
        "train_patients": trained.train_patients, "final_loss": trained.network.loss_history[-1],
        "checkpoint_path": str(checkpoint), "checkpoint_sha256": save_fine_tuned(trained.network, checkpoint),
        "config_json": json.dumps(trained.network.config.model_dump()), "created_at": now,
    }
    predictions = cnn_prediction_rows(probabilities, slices, network_id, backbone, channel, split, fold, trained, now)
    with warehouse.connect() as con:
        replace_rows(con, "networks", {"backbone": backbone, "channel": channel}, [network_row])
        classifier = predictions["classifier"][0] if predictions.height else backbone
        replace_rows(con, "predictions", {"signature": "CNN", "classifier": classifier}, predictions)


def _preview(cams: dict) -> str:
    if not cams:
        return "Grad-CAM disabled"
    key, path = next(iter(cams.items()))
    encoded = base64.b64encode(path.read_bytes()).decode()
    return f"Grad-CAM, patient {key}, predicted class:\n\n![{key}](data:image/png;base64,{encoded})"
