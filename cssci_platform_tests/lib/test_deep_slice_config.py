"""The ROI-slice settings are the study's `deep.slice` section; unset sequence, ROI and axis come from the manifest."""

import pytest

from cssci_platform.lib.cohort import CohortSpec
from cssci_platform.lib.deep.patient_slices import SliceSettings
from cssci_platform.lib.deep.settings import DeepSettings
from cssci_platform.lib.study_config import load_config, parse_config

MINIMAL = {"name": "x", "cohort": {"synthetic": {"protocol": "demo"}}, "outcome": {"name": "good_outcome"}}
AX_T1_ONLY = CohortSpec(manifest_version=1, name="c", table="t.csv", centers=["A"], sequences=["ax_T1"],
                        rois=["tumour"])


def test_clip_to_slice_is_on_by_default_and_settable_in_the_experiment_config():
    assert load_config("demo").deep.slice.clip_to_slice is True
    strict = parse_config({**MINIMAL, "deep": {"slice": {"clip_to_slice": False}}})
    assert strict.deep.slice.request(AX_T1_ONLY).settings.clip_to_slice is False


def test_unset_sequence_roi_and_axis_come_from_the_manifest():
    request = SliceSettings().request(AX_T1_ONLY)
    assert (request.sequence, request.roi, request.settings.axis, request.settings.clip_to_slice) == (
        "ax_T1", "tumour", "axial", True)
    assert SliceSettings(axis="sagittal").request(AX_T1_ONLY).settings.axis == "sagittal"
    with pytest.raises(ValueError, match="unknown slice axis 'oblique'"):
        SliceSettings(axis="oblique")


def test_the_shipped_rectangle_reaches_the_request():
    study = load_config("cervical_sci_ianr")
    spec = CohortSpec(manifest_version=1, name="c", table="t.csv", centers=["A"], sequences=["sag_T2"],
                      rois=["lesion", "dl_rect"])
    request = study.deep.slice.request(spec)
    assert (request.rect_roi, request.settings.rectangle, request.settings.margin) == ("dl_rect", "rect_mask", 0.0)


def test_fine_tuning_runs_with_the_deep_seed_and_device_unless_it_names_its_own():
    inherited = DeepSettings(seed=3, device="cpu", fine_tuning={"backbones": ["resnet18"]})
    assert (inherited.fine_tuning.seed, inherited.fine_tuning.device) == (3, "cpu")
    own = DeepSettings(seed=3, fine_tuning={"backbones": ["resnet18"], "seed": 9})
    assert own.fine_tuning.seed == 9


def test_fine_tuned_embeddings_need_a_fine_tuning_section():
    with pytest.raises(ValueError, match="embedding_network 'fine_tuned' needs a 'fine_tuning' section"):
        DeepSettings(embedding_network="fine_tuned")
