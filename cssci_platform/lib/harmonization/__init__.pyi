# The package's names, imported from their module on first use (lazy_loader.attach_stub reads this file; type
# checkers read it instead of __init__.py).
from .combat import ComBat, forget_unseen_center_warnings
from .estimation import BatchEffect, EmpiricalBayesSettings, StandardizationModel
from .frame import HARMONIZATION_OFF, as_pipeline_input, undersized_batches
from .settings import MIN_BATCH_SIZE
from .unseen import UNSEEN_CENTER_POLICIES, UnseenCenterEvent, UnseenCenterPolicy

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
