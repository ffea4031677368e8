"""The selection chain's settings (study config section `selection`), read by `lib/modeling/chains.py`."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, PositiveInt

from cssci_platform.lib.settings import Section


class SelectionSettings(Section):
    """The chain, in this order: [ICC] -> z-score -> [rank test] -> [Spearman] -> [mRMR] -> [LASSO]; deep features
    are first reduced by per-channel PCA (`pca_components`).

    - `icc_threshold`: keep radiomics features whose ICC(3,1) between repeat segmentations is at least this
      (None: no ICC filter; needs `feature_reliability`).
    - `rank_alpha`: Mann-Whitney U / Kruskal-Wallis p-value below which a feature is kept (`rank_test`).
    - `spearman_threshold`: |rho| above which the less relevant of two features is dropped (None: off).
    - `lasso_rule`: glmnet's lambda.min, as the studies; `1se` is sparser but empties small cohorts.
    """

    icc_threshold: float | None = Field(None, ge=0, le=1)
    rank_test: bool = True
    rank_alpha: float = Field(0.05, gt=0, le=1)
    spearman_threshold: float | None = Field(0.9, gt=0, le=1)
    mrmr_k: PositiveInt | None = 20
    lasso: bool = True
    lasso_rule: Literal["min", "1se"] = "min"
    pca_components: PositiveInt = 32

    def without_cohort_prefilter(self) -> SelectionSettings:
        """The training pipeline's chain in `paper_faithful` mode: the rank test and Spearman filter already ran
        on the whole development cohort (the published order), so they are not repeated."""
        return self.model_copy(update={"rank_test": False, "spearman_threshold": None})
