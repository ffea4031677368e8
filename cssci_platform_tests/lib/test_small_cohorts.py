"""Issue 19: the modeling chain on what real cohorts contain (one feature left, small centers, shape features,
tiny folds). Each test failed on the code before the fix."""

from __future__ import annotations

import logging

import numpy as np
import pandas as pd
import pytest

from cssci_platform.lib.harmonization import ComBat, forget_unseen_center_warnings

SHAPE = "rad__T1__lesion__original__original_shape_VoxelVolume"
TEXTURE = "rad__T1__lesion__original__original_glcm_Contrast"


def centers_frame(sizes: dict[str, int], seed: int = 0, columns: tuple[str, ...] = (SHAPE, TEXTURE)) -> pd.DataFrame:
    """Rows per center with a center shift of 3 units in every column."""
    rng = np.random.default_rng(seed)
    frames = []
    for shift, (center, n) in enumerate(sizes.items()):
        values = rng.normal(10 + 3 * shift, 1.0, size=(n, len(columns)))
        frames.append(pd.DataFrame(values, columns=list(columns)).assign(center=center))
    frame = pd.concat(frames, ignore_index=True)
    frame.index = [f"p{i:02d}" for i in range(len(frame))]
    return frame


def test_combat_on_one_feature_with_eb_falls_back_to_eb_false_and_says_so() -> None:
    frame = centers_frame({"A": 10, "B": 10}, columns=(TEXTURE,))
    combat = ComBat().set_output(transform="pandas").fit(frame)
    expected = ComBat(eb=False).set_output(transform="pandas").fit_transform(frame)
    pd.testing.assert_frame_equal(combat.transform(frame), expected)
    assert any("empirical Bayes needs at least 2" in note for note in combat.report_.notes)
    assert combat.report_.details["empirical_bayes"] is False


@pytest.mark.parametrize("policy", ["pool", "unseen"])
def test_a_center_with_one_training_patient_completes_under_each_small_center_policy(policy: str) -> None:
    frame = centers_frame({"A": 12, "B": 12, "C": 1})
    combat = ComBat(small_center=policy, unharmonized_classes=()).set_output(transform="pandas")
    harmonized = combat.fit_transform(frame)
    assert np.isfinite(harmonized.to_numpy()).all()
    # one small center cannot be a batch even pooled (1 row): under both policies it is left out of the fit
    assert combat.report_.details["centers_left_out"] == ["C"]
    assert any("small centers {'C': 1}" in note for note in combat.report_.notes)
    assert harmonized.loc[frame["center"] == "C"].equals(frame.loc[frame["center"] == "C", [SHAPE, TEXTURE]])


def test_pooled_small_centers_are_one_batch_when_they_have_two_rows_together() -> None:
    frame = centers_frame({"A": 12, "B": 12, "C": 1, "D": 1})
    combat = ComBat(small_center="pool").fit(frame)
    assert sorted(map(str, combat.batches_)) == ["A", "B", "pooled_small_centers"]


def test_small_center_error_names_the_config_keys_that_fix_it() -> None:
    frame = centers_frame({"A": 12, "B": 12, "C": 1})
    with pytest.raises(ValueError, match=r"'C' has 1 sample.*harmonization\.small_center.*harmonization\.enabled"):
        ComBat().fit(frame)


def test_min_center_size_makes_larger_centers_small() -> None:
    frame = centers_frame({"A": 12, "B": 12, "C": 4})
    assert ComBat(small_center="unseen", min_center_size=5).fit(frame).report_.details["centers_left_out"] == ["C"]


def test_shape_features_pass_through_combat_unchanged_when_excluded() -> None:
    frame = centers_frame({"A": 12, "B": 12})
    harmonized = ComBat(unharmonized_classes=("shape",)).set_output(transform="pandas").fit_transform(frame)
    pd.testing.assert_series_equal(harmonized[SHAPE], frame[SHAPE])
    assert not np.allclose(harmonized[TEXTURE], frame[TEXTURE])


def test_unseen_center_warning_is_logged_once_with_a_count(caplog: pytest.LogCaptureFixture) -> None:
    frame = centers_frame({"A": 12, "B": 12, "Z9": 5})
    combat = ComBat().fit(frame[frame["center"] != "Z9"])
    forget_unseen_center_warnings()
    with caplog.at_level(logging.WARNING, logger="cssci_platform.lib.harmonization.combat"):
        for _ in range(5):
            for patient in frame.index[frame["center"] == "Z9"]:
                combat.transform(frame.loc[[patient]])
    warnings = [r for r in caplog.records if "unseen at fit" in r.getMessage()]
    assert len(warnings) == 1 and "1 center(s) 'Z9' (1 rows)" in warnings[0].getMessage()
