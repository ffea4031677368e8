"""The typed experiment config: one YAML file describes a whole study, from cohort to report.

Every section rejects unknown keys; every closed choice (classifiers, backbones, channels, split presets,
ComBat policies, modes) is a Literal built from the registry the pipeline itself uses, so the error lists
the allowed values and a new classifier or backbone is accepted the day it is registered.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field, PositiveInt, model_validator

from cssci_platform.lib.deep.settings import DeepSettings
from cssci_platform.lib.feature_extraction import ImagingSettings, RadiomicsSettings
from cssci_platform.lib.harmonization.settings import HarmonizationSettings
from cssci_platform.lib.modeling.settings import MODES, ModelsSettings
from cssci_platform.lib.modeling.signatures import parse_signature
from cssci_platform.lib.outcome_rules import OutcomeSettings
from cssci_platform.lib.preprocessing import PreprocessingSettings
from cssci_platform.lib.selection.settings import SelectionSettings
from cssci_platform.lib.settings import Section
from cssci_platform.lib.splits import SplitSettings

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
            raise ValueError(
                "give exactly one of 'manifest' (path to cohort.yaml) or 'synthetic' (protocol, patients, ...)"
            )
        return self


class ReportSection(Section):
    enabled: bool = True


class StudyConfig(Section):
    """One study: `cssci run --config FILE` materializes the whole graph for it."""

    name: str = Field(pattern=NAME, description="experiment name: MLflow experiment, registered models, report file")
    description: str = ""
    reference: str = ""  # the publication this protocol follows
    cohort: CohortSection
    outcome: OutcomeSettings
    imaging: ImagingSettings = ImagingSettings()
    preprocessing: PreprocessingSettings = PreprocessingSettings()
    radiomics: RadiomicsSettings = RadiomicsSettings()
    deep: DeepSettings = DeepSettings()
    harmonization: HarmonizationSettings = HarmonizationSettings()
    selection: SelectionSettings = SelectionSettings()
    models: ModelsSettings = ModelsSettings()
    split: SplitSettings = SplitSettings()
    modes: list[Mode] = list(MODES)
    report: ReportSection = ReportSection()

    @model_validator(mode="after")
    def _consistent(self) -> StudyConfig:
        if not self.modes:
            raise ValueError("'modes' is empty; give leakage_safe and/or paper_faithful")
        fine_tuned = set(self.deep.fine_tuning.channels if self.deep.fine_tuning else [])
        missing = fine_tuned - set(self.preprocessing.channels)
        missing |= set(self.deep.channels) - set(self.preprocessing.channels)
        if missing:
            raise ValueError(f"deep channels {sorted(missing)} are not computed: add them to preprocessing.channels")
        for name in self.models.signatures or []:
            signature = parse_signature(name)
            if signature.backbone is not None and signature.backbone not in self.deep.backbones:
                raise ValueError(f"models.signatures: '{name}' needs backbone '{signature.backbone}' in deep.backbones "
                                 f"(now {self.deep.backbones})")
        return self
