"""Deep transfer learning on spine MRI: ROI slices, ResNet backbones, embeddings, fine-tuning, Grad-CAM.

Pure domain code (no Dagster). Typical flow for one patient and channel::

    crop = plan_roi_crop(lesion_mask, settings)              # once per patient: slice + box from the (LPS) mask
    inputs = network_batch([cut_roi_slice(channel_image, crop, settings) for channel_image in ...])
    backbone = load_backbone("resnet18", "imagenet")          # or a checkpoint path, or "none"
    embeddings = embed_images(backbone, inputs)               # frozen-backbone features, (n, 512)
    network = fine_tune(backbone, train_inputs, train_labels) # training split only
    probabilities = predict_probabilities(network, inputs)
    cam = grad_cam(network, inputs[0]); write_cam_overlay_png(slice.pixels, cam.heatmap, path)

Imported lazily (PEP 562): `from cssci_platform.lib.deep import load_backbone` loads torch, but importing the package
or its torch-free parts (`settings`, `patient_slices`, `errors`) does not, so a patient worker that never runs a
network stays small (issue 18, memory).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from cssci_platform.lib.lazy_exports import lazy_attribute

if TYPE_CHECKING:
    from cssci_platform.lib.deep.backbones import (
        Backbone,
        imagenet_checkpoint_path,
        load_backbone,
    )
    from cssci_platform.lib.deep.embeddings import Embeddings, embed_images, pooled_features
    from cssci_platform.lib.deep.errors import BackboneWeightsError, DeepLearningError, RoiSliceError
    from cssci_platform.lib.deep.finetune import (
        FineTunedNetwork,
        fine_tune,
        load_fine_tuned,
        predict_probabilities,
        save_fine_tuned,
        state_dict_sha256,
    )
    from cssci_platform.lib.deep.gradcam import GradCamResult, cam_overlay, grad_cam, write_cam_overlay_png
    from cssci_platform.lib.deep.roi_slices import (
        IMAGENET_MEAN,
        IMAGENET_STD,
        CropBox,
        RoiCrop,
        RoiSlice,
        RoiSliceSettings,
        cut_roi_slice,
        imagenet_normalize,
        network_batch,
        plan_roi_crop,
        plane_obliquity_deg,
        reoriented_to_lps,
        roi_slice,
    )
    from cssci_platform.lib.deep.runtime import resolve_device
    from cssci_platform.lib.deep.settings import FEATURE_DIMS, FineTuneConfig, InferenceSettings

_WHERE = {  # name -> the submodule that defines it
    "Backbone": "backbones",
    "BackboneWeightsError": "errors",
    "CropBox": "roi_slices",
    "DeepLearningError": "errors",
    "Embeddings": "embeddings",
    "FEATURE_DIMS": "settings",
    "FineTuneConfig": "settings",
    "FineTunedNetwork": "finetune",
    "GradCamResult": "gradcam",
    "IMAGENET_MEAN": "roi_slices",
    "IMAGENET_STD": "roi_slices",
    "InferenceSettings": "settings",
    "RoiCrop": "roi_slices",
    "RoiSlice": "roi_slices",
    "RoiSliceError": "errors",
    "RoiSliceSettings": "roi_slices",
    "cam_overlay": "gradcam",
    "cut_roi_slice": "roi_slices",
    "embed_images": "embeddings",
    "fine_tune": "finetune",
    "grad_cam": "gradcam",
    "imagenet_checkpoint_path": "backbones",
    "imagenet_normalize": "roi_slices",
    "load_backbone": "backbones",
    "load_fine_tuned": "finetune",
    "network_batch": "roi_slices",
    "plan_roi_crop": "roi_slices",
    "plane_obliquity_deg": "roi_slices",
    "pooled_features": "embeddings",
    "predict_probabilities": "finetune",
    "reoriented_to_lps": "roi_slices",
    "resolve_device": "runtime",
    "roi_slice": "roi_slices",
    "save_fine_tuned": "finetune",
    "state_dict_sha256": "finetune",
    "write_cam_overlay_png": "gradcam",
}


def __getattr__(name: str) -> Any:
    return lazy_attribute(__name__, _WHERE, globals(), name)


__all__ = [
    "FEATURE_DIMS", "IMAGENET_MEAN", "IMAGENET_STD", "Backbone", "BackboneWeightsError", "CropBox",
    "DeepLearningError", "Embeddings", "FineTuneConfig", "FineTunedNetwork", "GradCamResult", "InferenceSettings",
    "RoiCrop", "RoiSlice", "RoiSliceError", "RoiSliceSettings", "cam_overlay", "cut_roi_slice", "embed_images",
    "fine_tune", "grad_cam", "imagenet_checkpoint_path", "imagenet_normalize", "load_backbone", "load_fine_tuned",
    "network_batch", "plan_roi_crop", "plane_obliquity_deg", "pooled_features", "predict_probabilities",
    "reoriented_to_lps", "resolve_device", "roi_slice",
    "save_fine_tuned", "state_dict_sha256", "write_cam_overlay_png",
]
