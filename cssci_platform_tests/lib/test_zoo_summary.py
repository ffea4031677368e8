"""The zoo's metadata tables (trained_models / model_results materializations) read as the values they show."""

import pandas as pd

from cssci_platform.lib.modeling.signatures import parse_signature
from cssci_platform.lib.modeling.training import ModelSpec, TrainedModel
from cssci_platform.lib.modeling.zoo_summary import fold_summary


def trained(classifier: str, mode: str, test_auc: float) -> TrainedModel:
    return TrainedModel(ModelSpec(parse_signature("Rad"), classifier, mode), pipeline=None, classes=["0", "1"],
                        best_params={}, cv_score_mean=0.7, cv_score_sd=0.1, threshold=0.5,
                        predictions=pd.DataFrame(), metrics={"test": {"auc": test_auc}})


def test_the_across_folds_table_names_each_mode_and_averages_its_folds() -> None:
    fits = [("r0f0", trained("LR", "leakage_safe", 0.6)), ("r0f1", trained("LR", "leakage_safe", 0.8)),
            ("r0f0", trained("LR", "paper_faithful", 0.9))]
    table = fold_summary(fits)
    assert "bound method" not in table  # issue 16 bug 1: `row.mode` is pandas' Series.mode, not the column
    rows = [line.split(" | ") for line in table.splitlines()[2:]]
    assert [(r[1], r[2], r[3]) for r in rows] == [("leakage_safe", "2", "0.700"), ("paper_faithful", "1", "0.900")]
