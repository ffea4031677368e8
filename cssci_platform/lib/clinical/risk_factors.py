"""`independent_risk_factors`: univariable screening (``predictor_p < p_enter``), then one multivariable model of
the entered predictors; independent risk factors are those with ``predictor_p < p_independent`` in it. No
stepwise elimination is done.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from cssci_platform.lib.clinical.logistic import LogisticFit, multivariable_logistic, univariable_logistic


@dataclass(frozen=True)
class RiskFactorAnalysis:
    """Univariable screening, the multivariable model of the entered predictors, and the independent ones."""

    univariable: pd.DataFrame
    entered: list[str]
    multivariable: LogisticFit | None
    independent: list[str]
    p_enter: float
    p_independent: float

    def summary(self, digits: int = 2) -> pd.DataFrame:
        """The papers' table: per term, univariable and multivariable OR (95% CI) and p."""
        table = self.univariable[["predictor", "term"]].copy()
        table["univariable OR (95% CI)"] = [_or_text(r, digits) for r in self.univariable.itertuples()]
        table["univariable p"] = self.univariable["p"].to_numpy()
        multi = self.multivariable.table.set_index("term") if self.multivariable is not None else None
        table["multivariable OR (95% CI)"] = [
            _or_text(multi.loc[t], digits) if multi is not None and t in multi.index else "" for t in table["term"]]
        table["multivariable p"] = [multi.loc[t, "p"] if multi is not None and t in multi.index else ""
                                    for t in table["term"]]
        table["independent"] = table["predictor"].isin(self.independent)
        return table


def _or_text(row: Any, digits: int) -> str:
    if not np.isfinite(row.odds_ratio):
        return ""
    return f"{row.odds_ratio:.{digits}f} ({row.ci_low:.{digits}f}-{row.ci_high:.{digits}f})"


def independent_risk_factors(
    frame: pd.DataFrame,
    outcome: str,
    candidates: Sequence[str],
    p_enter: float = 0.05,
    p_independent: float = 0.05,
    *,
    positive: Any = None,
    categorical: Sequence[str] = (),
    reference: Mapping[str, Any] | None = None,
) -> RiskFactorAnalysis:
    """Univariable ``predictor_p < p_enter`` -> multivariable; independent where ``predictor_p < p_independent``."""
    options = {"positive": positive, "categorical": categorical, "reference": reference}
    univariable = univariable_logistic(frame, outcome, candidates, **options)
    screened = univariable.groupby("predictor", sort=False)["predictor_p"].first()
    entered = [p for p in candidates if screened[p] < p_enter]
    if not entered:
        return RiskFactorAnalysis(univariable, [], None, [], p_enter, p_independent)
    multivariable = multivariable_logistic(frame, outcome, entered, **options)
    joint = multivariable.table.groupby("predictor", sort=False)["predictor_p"].first()
    independent = [p for p in entered if joint[p] < p_independent]
    return RiskFactorAnalysis(univariable, entered, multivariable, independent, p_enter, p_independent)
