"""ComBat harmonization across centers: our own fit/transform implementation (scikit-learn compatible).

`ComBat` is the transformer (see `combat.py` for inputs, outputs and the unseen-center policies);
`estimation.py` holds the statistics on plain arrays, `frame.py` the DataFrame validation.
`undersized_batches` lets a blocking check find too-small centers before a fit; `scope.py` decides what ComBat
harmonizes (feature classes left out, e.g. shape) and what it does with small centers (pool, unseen, error).
"""

from cssci_platform.lib.harmonization.combat import ComBat, forget_unseen_center_warnings
from cssci_platform.lib.harmonization.estimation import BatchEffect, EmpiricalBayesSettings, StandardizationModel
from cssci_platform.lib.harmonization.frame import (
    HARMONIZATION_OFF,
    MIN_BATCH_SIZE,
    as_pipeline_input,
    undersized_batches,
)
from cssci_platform.lib.harmonization.unseen import UNSEEN_CENTER_POLICIES, UnseenCenterEvent, UnseenCenterPolicy

__all__ = [
    "HARMONIZATION_OFF",
    "MIN_BATCH_SIZE",
    "UNSEEN_CENTER_POLICIES",
    "BatchEffect",
    "ComBat",
    "EmpiricalBayesSettings",
    "StandardizationModel",
    "UnseenCenterEvent",
    "UnseenCenterPolicy",
    "as_pipeline_input",
    "forget_unseen_center_warnings",
    "undersized_batches",
]
