"""What the zoo predicts (`outcome_classes`) and which fold its champions come from (`champions_fold`)."""

import pandas as pd

from cssci_platform.lib.cohort import CohortSpec
from cssci_platform.lib.modeling.training import FailedFit
from cssci_platform.lib.modeling.zoo import NO_TRAINED_FOLD, ZooFit, champions_fold, outcome_classes

SPEC = CohortSpec(
    manifest_version=1, name="c", table="t.csv", centers=["A"], sequences=["sag_T2"], rois=["lesion"],
    outcomes={"primary_site": {"type": "multiclass", "levels": ["lung", "breast", "prostate"]},
              "walks": {"type": "binary"}},
)


def test_a_multiclass_outcome_predicts_its_levels_in_manifest_order_and_every_other_outcome_zero_one():
    assert outcome_classes(SPEC, "primary_site") == ["lung", "breast", "prostate"]
    assert outcome_classes(SPEC, "walks") == ["0", "1"]
    assert outcome_classes(SPEC, "ianr_improved") == ["0", "1"]  # derived by a rule: not in the manifest
    assert outcome_classes(SPEC, None) == ["0", "1"]


def _fit(fold: str, failed: bool) -> ZooFit:
    model = FailedFit(spec=None, stage="classifier", reason="boom") if failed else object()  # type: ignore[arg-type]
    return ZooFit(fold, pd.Series(dtype=object), pd.Series(dtype=object), None, model)  # type: ignore[arg-type]


def test_champions_come_from_the_first_fold_with_a_fit_that_did_not_fail():
    fits = [_fit("center_A", True), _fit("center_B", False), _fit("center_A", False), _fit("center_C", False)]
    assert champions_fold(fits) == "center_B"
    assert champions_fold(iter(fits)) == "center_B"  # a generator does as well
    assert champions_fold([_fit("holdout", True)]) == NO_TRAINED_FOLD == champions_fold([])
