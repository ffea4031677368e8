"""ComBat's study settings (config section `harmonization`): one type for the config, the models and the report.

Light on purpose: the study config (and so every run's definitions) imports it, so ComBat and pandas are imported
only when a ComBat is made."""

from __future__ import annotations

from typing import TYPE_CHECKING, Literal, get_args

from pydantic import Field

from cssci_platform.lib.harmonization.unseen import UnseenCenterPolicy
from cssci_platform.lib.settings import Section

if TYPE_CHECKING:
    from cssci_platform.lib.harmonization.combat import ComBat

MIN_BATCH_SIZE = 2  # a batch's scale (delta^2) is a sample variance: undefined for a single sample
DEFAULT_UNHARMONIZED_CLASSES: tuple[str, ...] = ("shape",)

SmallCenterPolicy = Literal["error", "pool", "unseen"]
SMALL_CENTER_POLICIES: tuple[str, ...] = get_args(SmallCenterPolicy)
RadiomicsFeatureClass = Literal["shape", "shape2D", "firstorder", "glcm", "glrlm", "glszm", "gldm", "ngtdm"]


class HarmonizationSettings(Section):
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
    unseen_center_policy: UnseenCenterPolicy = "none"
    small_center: SmallCenterPolicy = "pool"
    min_center_size: int = Field(MIN_BATCH_SIZE, ge=MIN_BATCH_SIZE)
    unharmonized_feature_classes: list[RadiomicsFeatureClass] = list(DEFAULT_UNHARMONIZED_CLASSES)  # type: ignore[arg-type]

    def combat(
        self,
        batch_col: str,
        feature_cols: list[str] | None = None,
        unseen_center_policy: UnseenCenterPolicy | None = None,
    ) -> ComBat:
        """An unfitted ComBat with these settings (`unseen_center_policy` overrides the setting, e.g. 'none' for a
        table fitted and applied on known centers only)."""
        from cssci_platform.lib.harmonization.combat import ComBat

        return ComBat(
            batch_col=batch_col,
            feature_cols=feature_cols,
            unseen_center_policy=unseen_center_policy or self.unseen_center_policy,
            small_center=self.small_center,
            min_center_size=self.min_center_size,
            unharmonized_classes=tuple(self.unharmonized_feature_classes),
        )
