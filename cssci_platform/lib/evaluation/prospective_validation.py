"""Each champion version on the validation cohort (the prospective patients whose outcome has arrived), against its
own test interval.

One definition everywhere: the scores are `queries.prospective.validation_cohort_scores` and the numbers
`validation_performance` (AUC with its interval, `auc_interval`: logit-DeLong, Newcombe's score at AUC 0/1; Brier
score; the threshold metrics at `cohort_threshold`, the champion's frozen training threshold in leakage_safe).
`validation_metrics` and the report's validation table (`lib/report/validation`) both call them, so a champion's
validation AUC, n and interval are one number. The drift flag: the validation AUC below the lower bound of the same
interval on the champion's held-out test patients.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import datetime

import duckdb
import numpy as np
import polars as pl
from sklearn.metrics import brier_score_loss

from cssci_platform.lib.evaluation.delong import auc_interval
from cssci_platform.lib.evaluation.performance import threshold_metrics
from cssci_platform.lib.modeling.training import cohort_threshold
from cssci_platform.lib.queries.prospective import champion_test_predictions, validation_cohort_scores


@dataclass(frozen=True)
class ChampionValidation:
    signature: str
    registered_model: str
    model_version: str
    n_patients: int
    metrics: dict[str, float]
    test_auc_low: float

    @property
    def below_test_interval(self) -> bool:
        auc = self.metrics.get("auc", math.nan)
        return not math.isnan(auc) and not math.isnan(self.test_auc_low) and auc < self.test_auc_low

    @property
    def flag(self) -> str | None:
        if not self.below_test_interval:
            return None
        return (
            f"{self.signature} v{self.model_version}: validation AUC {self.metrics['auc']:.3f} < test CI low "
            f"{self.test_auc_low:.3f}"
        )

    def finite_metrics(self) -> dict[str, float]:
        """The metrics MLflow can plot (NaN left out)."""
        return {k: v for k, v in self.metrics.items() if math.isfinite(v)}

    def rows(self, computed_at: datetime) -> list[dict]:
        """`validation_metrics` rows, one per metric."""
        return [
            {
                "registered_model": self.registered_model,
                "model_version": self.model_version,
                "signature": self.signature,
                "n_patients": self.n_patients,
                "metric": name,
                "value": value,
                "test_auc_low": self.test_auc_low,
                "below_test_ci": self.below_test_interval,
                "computed_at": computed_at,
            }
            for name, value in self.metrics.items()
        ]


def champion_validations(con: duckdb.DuckDBPyConnection, outcome: str) -> list[ChampionValidation]:
    """Each champion on the validation cohort (`validation_cohort_scores`) with its test interval's lower bound: what
    `validation_metrics` stores."""
    scores = validation_cohort_scores(con, outcome).filter(pl.col("champion"))
    tests = {run: champion_test_predictions(con, run, outcome) for run in scores["train_run"].unique()}
    return validate_champions(scores, tests)


def validate_champions(scored: pl.DataFrame, test_predictions: dict[str, pl.DataFrame]) -> list[ChampionValidation]:
    """`scored`: positive-class validation-cohort scores with outcome, threshold and train_run (one group per champion
    version; optional `mode`, leakage_safe when absent); `test_predictions`: train_run -> its test patients'
    probability, class_label and outcome value."""
    validations = []
    for (signature, name, version), group in scored.group_by(
        "signature", "registered_model", "model_version", maintain_order=True
    ):
        test = test_predictions[group["train_run"][0]]
        low = lower_test_bound(is_class(test["value"], test["class_label"]), test["probability"].to_numpy())
        metrics = validation_performance(
            is_class(group["outcome"], group["class_label"]),
            group["probability"].to_numpy(),
            group["threshold"][0],
            str(group["mode"][0]) if "mode" in group.columns else "leakage_safe",
        )
        validations.append(ChampionValidation(signature, name, str(version), group.height, metrics, low))
    return validations


def is_class(values: pl.Series, class_label: pl.Series) -> np.ndarray:
    """1 where the outcome value is the scored class, else 0."""
    return (values == class_label).to_numpy().astype(int)


def validation_performance(
    y: np.ndarray, probability: np.ndarray, threshold: float | None, mode: str = "leakage_safe"
) -> dict[str, float]:
    """One model on the validation cohort: n, prevalence, Brier; the AUC and its interval with both classes; the
    operating threshold (`cohort_threshold`: the frozen training threshold, re-picked on the cohort in paper_faithful)
    and the threshold metrics at it, when it is finite."""
    y, probability = np.asarray(y, dtype=int), np.asarray(probability, dtype=float)
    metrics = {"n": float(len(y)), "prevalence": float(y.mean()), "brier": float(brier_score_loss(y, probability))}
    if len(np.unique(y)) == 2:
        interval = auc_interval(y, probability)
        metrics |= {"auc": interval.auc, "auc_low": interval.low, "auc_high": interval.high}
    frozen = math.nan if threshold is None else float(threshold)
    cut = cohort_threshold(mode, y, probability, frozen)
    if math.isfinite(cut):
        metrics |= {"threshold": float(cut), **threshold_metrics(y, probability, cut)}
    return metrics


def prospective_metrics(y: np.ndarray, probability: np.ndarray, threshold: float | None) -> dict[str, float]:
    """`validation_performance` at the frozen threshold (leakage_safe)."""
    return validation_performance(y, probability, threshold)


def lower_test_bound(y: np.ndarray, probability: np.ndarray) -> float:
    """The drift flag's bar: the lower bound of `auc_interval` on the test patients (never the degenerate DeLong
    bound of 1 at a test AUC of 1); NaN without both classes."""
    return auc_interval(y, probability).low if len(np.unique(y)) == 2 else math.nan
