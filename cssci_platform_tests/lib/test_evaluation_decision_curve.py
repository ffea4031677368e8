"""Net benefit (`cssci_platform.lib.evaluation.decision_curve`) against the `dcurves` package's `dca` and
against values counted by hand on the dcurves tutorial data (`dca_vickers/dca.csv`, 750 patients).
Measured over 0.00-0.99: model within 1.8e-15 of dcurves, treat-none equal, treat-all within 1.4e-14
(1.7e-16 relative, at pt = 0.99 where it is about -85)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from cssci_platform.lib.evaluation import DEFAULT_THRESHOLDS, net_benefit
from cssci_platform_tests.refdata import refdata_root

pytestmark = pytest.mark.refdata


@pytest.fixture(scope="module")
def tutorial() -> pd.DataFrame:
    frame = pd.read_csv(refdata_root() / "dca_vickers" / "dca.csv")
    assert len(frame) == 750
    return frame


@pytest.mark.parametrize("model", ["cancerpredmarker", "famhistory"])
def test_net_benefit_matches_dcurves(tutorial: pd.DataFrame, model: str) -> None:
    """famhistory is 0/1: it exercises dcurves' rule that a risk of exactly 0 is never treated."""
    dcurves = pytest.importorskip("dcurves")
    thresholds = np.arange(0, 100) / 100  # dcurves' default grid, 0.00 included
    reference = dcurves.dca(data=tutorial, outcome="cancer", modelnames=[model], thresholds=thresholds)
    curve = net_benefit(tutorial["cancer"], tutorial[model], thresholds)
    for name, ours in [(model, curve.model), ("all", curve.treat_all), ("none", curve.treat_none)]:
        rows = reference[reference["model"] == name].sort_values("threshold")
        assert rows["threshold"].to_numpy() == pytest.approx(thresholds)
        assert ours == pytest.approx(rows["net_benefit"].to_numpy(dtype=float), abs=1e-12, rel=0)
    rows = reference[reference["model"] == model].sort_values("threshold")
    avoided = rows["net_intervention_avoided"].to_numpy(float)
    assert curve.interventions_avoided[1:] == pytest.approx(avoided[1:], abs=1e-12, rel=0)


def test_net_benefit_by_hand(tutorial: pd.DataFrame) -> None:
    y, risk = tutorial["cancer"].to_numpy(), tutorial["cancerpredmarker"].to_numpy()
    curve = net_benefit(y, risk)
    assert curve.thresholds == pytest.approx(DEFAULT_THRESHOLDS) and len(curve.thresholds) == 99
    assert curve.thresholds[0] == 0.01 and curve.thresholds[-1] == 0.99
    at_20 = int(np.flatnonzero(np.isclose(curve.thresholds, 0.2))[0])
    treated = risk >= 0.2
    tp, fp = int((treated & (y == 1)).sum()), int((treated & (y == 0)).sum())
    assert curve.model[at_20] == pytest.approx(tp / 750 - fp / 750 * 0.2 / 0.8, abs=1e-15)
    prevalence = y.mean()
    assert prevalence == pytest.approx(0.14)  # 105 cancers in 750
    assert curve.treat_all[at_20] == pytest.approx(prevalence - (1 - prevalence) * 0.25, abs=1e-15)
    assert (curve.treat_none == 0).all()


def test_harm_is_subtracted_from_the_model_only(tutorial: pd.DataFrame) -> None:
    plain = net_benefit(tutorial["cancer"], tutorial["cancerpredmarker"])
    harmed = net_benefit(tutorial["cancer"], tutorial["cancerpredmarker"], harm=0.01)
    assert harmed.model == pytest.approx(plain.model - 0.01) and (harmed.treat_all == plain.treat_all).all()


def test_threshold_of_one_is_rejected() -> None:
    with pytest.raises(ValueError, match="thresholds"):
        net_benefit(np.array([0, 1]), np.array([0.2, 0.8]), np.array([0.5, 1.0]))
