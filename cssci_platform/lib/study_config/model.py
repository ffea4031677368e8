"""The typed experiment config: one YAML file describes a whole study, from cohort to report.

Every section rejects unknown keys; every closed choice (classifiers, backbones, channels, split presets,
ComBat policies, modes) is a Literal built from the registry the pipeline itself uses, so the error lists
the allowed values and a new classifier or backbone is accepted the day it is registered.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field, PositiveInt, field_validator, model_validator

from cssci_platform.lib.classifiers import CLASSIFIER_NAMES
from cssci_platform.lib.deep.cohort_networks import DeepSettings
from cssci_platform.lib.feature_extraction import ImagingSettings, RadiomicsSettings
from cssci_platform.lib.modeling.signatures import parse_signature
from cssci_platform.lib.modeling.training import MODES
from cssci_platform.lib.harmonization import MIN_BATCH_SIZE, UNSEEN_CENTER_POLICIES
from cssci_platform.lib.harmonization.scope import DEFAULT_UNHARMONIZED_CLASSES, SMALL_CENTER_POLICIES
from cssci_platform.lib.preprocessing import PreprocessingSettings
from cssci_platform.lib.settings import Section
from cssci_platform.lib.splits import PRESETS

Classifier = Literal[CLASSIFIER_NAMES]  # type: ignore[valid-type]
SplitPreset = Literal[tuple(PRESETS)]  # type: ignore[valid-type]
UnseenCenterPolicy = Literal[UNSEEN_CENTER_POLICIES]  # type: ignore[valid-type]
SmallCenterPolicy = Literal[SMALL_CENTER_POLICIES]  # type: ignore[valid-type]
RadiomicsFeatureClass = Literal["shape", "shape2D", "firstorder", "glcm", "glrlm", "glszm", "gldm", "ngtdm"]
Mode = Literal[MODES]  # type: ignore[valid-type]
SyntheticProtocol = Literal["demo", "ianr", "upper_limb", "metastasis"]
NAME = r"^[A-Za-z][A-Za-z0-9_\-]*$"


class SyntheticCohort(Section):
    """A synthetic cohort written by `cssci_platform.lib.synthetic` (planted, known ground truth)."""

    protocol: SyntheticProtocol
    patients: PositiveInt = 40
    prospective: int = Field(10, ge=0)
    seed: int = 7
    # record the prospective patients' follow-up outcomes before modelling (a validation cohort with known
    # outcomes); false: they arrive later through the inbox, as in the prospective workflow
    followup_known: bool = False


class CohortSection(Section):
    """Exactly one of `manifest` (your cohort.yaml; relative paths are relative to this config file) or `synthetic`."""

    manifest: Path | None = None
    synthetic: SyntheticCohort | None = None

    @model_validator(mode="after")
    def _exactly_one(self) -> CohortSection:
        if (self.manifest is None) == (self.synthetic is None):
            raise ValueError("give exactly one of 'manifest' (path to cohort.yaml) or 'synthetic' (protocol, patients, ...)")
        return self


class OutcomeSection(Section):
    """How the modelled label is derived from the manifest's outcome columns.

    - `as_is`: the manifest outcome `source` is the label (binary or multiclass).
    - `at_least`: label 1 when the numeric outcome `source` >= `threshold` (e.g. IANR score >= 37).
    - `change_above_mean`: change = `source` - `baseline` (a clinical variable at admission); label 1 when the
      change is above the mean change. In leakage_safe mode the mean is taken over the training patients of
      each fold; in paper_faithful mode over the whole development cohort, as published. The split is
      stratified on the cohort-mean label (stratification only balances the split; no model sees it).
    """

    name: str = Field(pattern=NAME)
    source: str | None = None
    rule: Literal["as_is", "at_least", "change_above_mean"] = "as_is"
    threshold: float | None = None
    baseline: str | None = None

    @model_validator(mode="after")
    def _rule_fields(self) -> OutcomeSection:
        if self.rule == "at_least" and self.threshold is None:
            raise ValueError("rule 'at_least' needs 'threshold' (the lowest score counted as the positive class)")
        if self.rule == "change_above_mean" and self.baseline is None:
            raise ValueError("rule 'change_above_mean' needs 'baseline' (the clinical variable measured at admission)")
        if self.rule != "at_least" and self.threshold is not None:
            raise ValueError(f"'threshold' only applies to rule 'at_least', not '{self.rule}'")
        if self.rule != "change_above_mean" and self.baseline is not None:
            raise ValueError(f"'baseline' only applies to rule 'change_above_mean', not '{self.rule}'")
        if self.rule != "as_is" and self.source is None:
            raise ValueError(f"rule '{self.rule}' needs 'source' (the manifest outcome column it is computed from)")
        return self

    @property
    def source_outcome(self) -> str:
        return self.source or self.name


class HarmonizationSection(Section):
    """ComBat across centers, fitted inside every model's pipeline on its training rows (CV training folds included).

    - `unseen_center_policy`: what a center absent from the fit gets (none, refit_site, reference, error).
    - `small_center`: a center with fewer than `min_center_size` training patients in a fit (ComBat needs 2 to
      estimate a scale): `pool` (default) merges such centers into one batch (left out of the fit, like `unseen`,
      when together they still have fewer than 2), `unseen` leaves them out of the fit so their patients follow
      `unseen_center_policy`, `error` stops the fit naming this key.
    - `unharmonized_feature_classes`: radiomics feature classes passed through unharmonized (shape: ComBat would
      shift lesion size by a chance difference between centers).
    """

    enabled: bool = True
    unseen_center_policy: UnseenCenterPolicy = "none"  # type: ignore[valid-type]
    small_center: SmallCenterPolicy = "pool"  # type: ignore[valid-type]
    min_center_size: int = Field(MIN_BATCH_SIZE, ge=MIN_BATCH_SIZE)
    unharmonized_feature_classes: list[RadiomicsFeatureClass] = list(DEFAULT_UNHARMONIZED_CLASSES)  # type: ignore[assignment]


class SelectionSection(Section):
    """The chain, in this order: [ICC] -> z-score -> [rank test] -> [Spearman] -> [mRMR] -> [LASSO]."""

    icc_threshold: float | None = Field(None, ge=0, le=1)
    rank_test: bool = True
    rank_alpha: float = Field(0.05, gt=0, le=1)
    spearman_threshold: float | None = Field(0.9, gt=0, le=1)
    mrmr_k: PositiveInt | None = 20
    lasso: bool = True
    lasso_rule: Literal["min", "1se"] = "min"
    pca_components: PositiveInt = 32


class ModelsSection(Section):
    signatures: list[str] | None = None  # Rad, DL_<backbone>, Rad+DL_<backbone>, Clinical, Combined; default: all

    @field_validator("signatures")
    @classmethod
    def _known_signatures(cls, names: list[str] | None) -> list[str] | None:
        for name in names or []:
            parse_signature(name)  # ValueError names the allowed forms
        return names
    classifiers: list[Classifier] = list(CLASSIFIER_NAMES)  # type: ignore[valid-type]
    grid: Literal["fast", "full"] = "fast"
    cv_folds: int = Field(10, ge=2)
    clinical_predictors: list[str] | None = None  # default: every clinical variable of the manifest
    seed: int = 42


class SplitSection(Section):
    preset: SplitPreset = "holdout_8_2"  # type: ignore[valid-type]
    seed: int = 42
    folds: list[str] = ["holdout"]  # ["all"]: every fold of the preset (leave-one-center-out, repeated k-fold)


class ReportSection(Section):
    enabled: bool = True


class StudyConfig(Section):
    """One study: `cssci run --config FILE` materializes the whole graph for it."""

    name: str = Field(pattern=NAME, description="experiment name: MLflow experiment, registered models, report file")
    description: str = ""
    reference: str = ""  # the publication this protocol follows
    cohort: CohortSection
    outcome: OutcomeSection
    imaging: ImagingSettings = ImagingSettings()
    preprocessing: PreprocessingSettings = PreprocessingSettings()
    radiomics: RadiomicsSettings = RadiomicsSettings()
    deep: DeepSettings = DeepSettings()
    harmonization: HarmonizationSection = HarmonizationSection()
    selection: SelectionSection = SelectionSection()
    models: ModelsSection = ModelsSection()
    split: SplitSection = SplitSection()
    modes: list[Mode] = list(MODES)  # type: ignore[valid-type]
    report: ReportSection = ReportSection()

    @model_validator(mode="after")
    def _consistent(self) -> StudyConfig:
        if not self.modes:
            raise ValueError("'modes' is empty; give leakage_safe and/or paper_faithful")
        missing = set(self.deep.fine_tuning.channels if self.deep.fine_tuning else []) - set(self.preprocessing.channels)
        missing |= set(self.deep.channels) - set(self.preprocessing.channels)
        if missing:
            raise ValueError(f"deep channels {sorted(missing)} are not computed: add them to preprocessing.channels")
        for name in self.models.signatures or []:
            signature = parse_signature(name)
            if signature.backbone is not None and signature.backbone not in self.deep.backbones:
                raise ValueError(f"models.signatures: '{name}' needs backbone '{signature.backbone}' in deep.backbones "
                                 f"(now {self.deep.backbones})")
        return self
