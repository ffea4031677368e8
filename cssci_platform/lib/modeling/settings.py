"""The model zoo's settings (study config section `models`): signatures, classifiers, tuning."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, field_validator

from cssci_platform.lib.modeling.signatures import parse_signature
from cssci_platform.lib.settings import Section

# The zoo's classifiers by the names of the studies' tables (`lib/classifiers.CLASSIFIERS` builds each; it refuses to
# import when its names differ from these). Declared here, not there: the study config (and so every run's
# definitions) imports this module, and lib/classifiers imports scikit-learn.
CLASSIFIER_NAMES: tuple[str, ...] = ("LR", "NaiveBayes", "SVM", "KNN", "RandomForest", "ExtraTrees", "XGBoost",
                                     "LightGBM", "GradientBoosting", "AdaBoost", "MLP")
Classifier = Literal[CLASSIFIER_NAMES]  # type: ignore[valid-type]
Mode = Literal["leakage_safe", "paper_faithful"]
MODES: tuple[Mode, ...] = ("leakage_safe", "paper_faithful")


class ModelsSettings(Section):
    """- `signatures`: Rad, DL_<backbone>, Rad+DL_<backbone>, Clinical, Combined; default (None): the standard set
      for the columns the feature matrix has (`lib/modeling/signatures.study_signatures`).
    - `grid`: the hyper-parameter grid, `fast` or `full`; `cv_folds`: the stratified CV folds of tuning and LASSO.
    - `clinical_predictors`: the clinical variables models, Table 1 and the nomogram use (default: all).
    """

    signatures: list[str] | None = None
    classifiers: list[Classifier] = list(CLASSIFIER_NAMES)
    grid: Literal["fast", "full"] = "fast"
    cv_folds: int = Field(10, ge=2)
    clinical_predictors: list[str] | None = None
    seed: int = 42

    @field_validator("signatures")
    @classmethod
    def _known_signatures(cls, names: list[str] | None) -> list[str] | None:
        for name in names or []:
            parse_signature(name)  # ValueError names the allowed forms
        return names
