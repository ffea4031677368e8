"""The ROI-slice settings of an experiment config reach the roi_slices asset; unset ones come from the manifest."""

import pytest

from cssci_platform.defs.embeddings.config import RoiSlicesConfig
from cssci_platform.lib.cohort import CohortSpec
from cssci_platform.lib.study_config import asset_configs, load_config, parse_config

MINIMAL = {"name": "x", "cohort": {"synthetic": {"protocol": "demo"}}, "outcome": {"name": "good_outcome"}}
AX_T1_ONLY = CohortSpec(manifest_version=1, name="c", table="t.csv", centers=["A"], sequences=["ax_T1"], rois=["tumour"])


def test_clip_to_slice_is_on_by_default_and_settable_in_the_experiment_config():
    assert asset_configs(load_config("demo"))["roi_slices"]["clip_to_slice"] is True
    strict = parse_config({**MINIMAL, "deep": {"slice": {"clip_to_slice": False}}})
    block = asset_configs(strict)["roi_slices"]
    assert block["clip_to_slice"] is False
    assert RoiSlicesConfig(**block).request(AX_T1_ONLY).settings.clip_to_slice is False


def test_the_asset_config_left_unset_takes_sequence_roi_and_axis_from_the_manifest():
    request = RoiSlicesConfig().request(AX_T1_ONLY)
    assert (request.sequence, request.roi, request.settings.axis, request.settings.clip_to_slice) == (
        "ax_T1", "tumour", "axial", True)
    assert RoiSlicesConfig(axis="sagittal").request(AX_T1_ONLY).settings.axis == "sagittal"
    with pytest.raises(ValueError, match="unknown slice axis 'oblique'"):
        RoiSlicesConfig(axis="oblique")
