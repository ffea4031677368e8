"""The harmonized feature table a study shows: ComBat fitted on the training patients only, applied to everyone.

Models re-fit ComBat inside their own pipelines, on their own training folds; this table is for inspecting what
harmonization does to the cohort (how far the centers sit apart before and after).
"""

from __future__ import annotations

from dataclasses import dataclass

import pandas as pd

from cssci_platform.lib.harmonization.frame import HARMONIZATION_OFF, center_mean_spread
from cssci_platform.lib.harmonization.settings import HarmonizationSettings
from cssci_platform.lib.modeling.matrix import DL, RAD, feature_columns
from cssci_platform.lib.selection import single_valued_columns

PASSED_COLUMNS = ["center", "cohort", "label"]
NOTHING_VARIES = "no feature varies among training patients"


@dataclass(frozen=True)
class HarmonizedTableSummary:
    """What `harmonized_table` did: `skipped_because` says why nothing was harmonized (None: ComBat ran)."""

    features: int  # radiomics and deep columns that vary among the training patients
    skipped_because: str | None = None
    centers: tuple[str, ...] = ()  # ComBat's batches
    harmonized_features: int = 0
    passed_through_unharmonized: int = 0
    decisions: tuple[str, ...] = ()  # ComBat's notes (pooled or unseen centers, feature classes left out)
    center_mean_spread_before: float = float("nan")
    center_mean_spread_after: float = float("nan")


def varying_feature_columns(matrix: pd.DataFrame, train: pd.Series) -> list[str]:
    """The radiomics and deep columns of the matrix with more than one value among the `train` rows."""
    columns = feature_columns(matrix, RAD) + feature_columns(matrix, DL)
    single = single_valued_columns(matrix.loc[train, columns], dropna=True)
    return [column for column, constant in zip(columns, single, strict=True) if not constant]


def harmonized_table(
    matrix: pd.DataFrame, roles: pd.Series, settings: HarmonizationSettings
) -> tuple[pd.DataFrame, HarmonizedTableSummary]:
    """center, cohort, label and the varying feature columns (`varying_feature_columns`), ComBat-harmonized across
    centers when `settings.enabled`, fitted on the rows whose role is ``train`` (`roles`: by the matrix's index).

    Nothing is harmonized when harmonization is off or no feature varies among the training patients. A ComBat
    that cannot be fitted raises ValueError naming the config key that turns harmonization off.
    """
    train = roles == "train"
    columns = varying_feature_columns(matrix, train)
    if not settings.enabled or not columns:
        why = "off (config harmonization.enabled: false)" if not settings.enabled else NOTHING_VARIES
        return matrix[[*PASSED_COLUMNS, *columns]], HarmonizedTableSummary(len(columns), skipped_because=why)
    combat = settings.combat("center", columns, unseen_center_policy="none").set_output(transform="pandas")
    try:
        combat.fit(matrix.loc[train, [*columns, "center"]])
    except ValueError as error:
        raise ValueError(f"{error} (or turn harmonization off: {HARMONIZATION_OFF})") from None
    output = pd.concat([matrix[PASSED_COLUMNS], combat.transform(matrix[[*columns, "center"]])], axis=1)
    return output, HarmonizedTableSummary(
        features=len(columns),
        centers=tuple(map(str, combat.batches_)),
        harmonized_features=len(combat.harmonized_cols_) if combat.standardization_ is not None else 0,
        passed_through_unharmonized=len(combat.unharmonized_cols_),
        decisions=tuple(combat.decisions_),
        center_mean_spread_before=center_mean_spread(matrix, columns),
        center_mean_spread_after=center_mean_spread(output, columns),
    )
