"""`ComBat`: a scikit-learn transformer that harmonizes features across centers with stored estimates.

Input is one pandas DataFrame per call holding the feature columns, the batch column (`batch_col`, e.g.
`center`) and the covariate columns to preserve; output is the harmonized features only, in
`feature_cols_` order (a numpy array, or a DataFrame with the input's index after
`set_output(transform="pandas")`). The batch and covariate columns are consumed, not passed on, so
`ComBat` goes first in a `Pipeline` and the steps after it see features only. Other columns are ignored
when `feature_cols` names the features, otherwise every non-batch, non-covariate column is a feature.

`fit` estimates the grand mean, pooled variance, covariate effects and each center's gamma*/delta*;
`transform` applies them, row by row, to any patients of known centers without refitting (on the fit
data it reproduces `neuroCombat.neuroCombat()`). Rows of the reference batch (`ref_batch`) are returned
unchanged, as in neuroCombat. Covariates are needed at transform time too: never use the outcome or
another label as a covariate in a predictive pipeline, since test patients' covariates enter `transform`.

Deliberate differences from neuroCombat 0.2.12: a feature with zero residual variance, a batch with fewer
than 2 samples, a covariate collinear with the batch, a missing value or an unknown `ref_batch` is a
`ValueError` (neuroCombat substitutes a placeholder variance, returns NaN, or falls back silently);
the non-parametric prior is computed in log space (finite where neuroCombat's densities underflow);
new patients are standardized with their own covariates (`neuroCombatFromTraining` uses the training
cohort's mean covariate effect for everyone).

Degenerate inputs are decided, logged and listed in `decisions_` (and the step's `report_`), not raised:
a single harmonized feature with `eb=True` is fitted without empirical Bayes (`single_feature_eb="fallback"`;
"error" refuses it); columns of `unharmonized_classes` (radiomics feature classes, e.g. shape) pass through
unchanged; centers with fewer than `min_center_size` fit rows follow `small_center` (`pool`, `unseen`, `error`:
see `scope.py`); when a small-center decision leaves fewer than 2 batches, or no feature is left to harmonize,
the step passes every feature through unchanged.

A center not seen at fit follows `unseen_center_policy`; each occurrence is appended to
`unseen_center_log_` and summarized in one warning per transform call (identical repeats at debug level):

- `none` (default): no batch adjustment: gamma* = 0, delta* = 1, which returns the rows' features
  unchanged (with a reference batch: the center is taken to be on the reference scale already).
- `refit_site`: estimate that center's gamma*/delta* from its rows in this `transform` call (features and
  covariates only, never labels) with the frozen grand mean, pooled variance and covariate effects, using
  the fit's eb/parametric/mean_only settings; at least `refit_site_min_samples` rows, else a `ValueError`.
  Nothing is stored: pass all of a new center's patients in one call.
- `reference`: use the estimates of the known center `unseen_center_reference`.
- `error`: raise a `ValueError`.
"""

from __future__ import annotations

import logging
from collections.abc import Hashable, Sequence
from typing import Any, Literal

import numpy as np
import numpy.typing as npt
import pandas as pd
from sklearn.base import BaseEstimator, TransformerMixin
from sklearn.utils.validation import check_is_fitted

from cssci_platform.lib.compact_state import CompactNames
from cssci_platform.lib.harmonization.estimation import (
    BatchEffect,
    EmpiricalBayesSettings,
    FloatArray,
    IntArray,
    StandardizationModel,
    estimate_batch_effect,
    fit_standardization,
    reference_batch_effect,
)
from cssci_platform.lib.harmonization.frame import (
    CovariateEncoder,
    batch_labels,
    feature_matrix,
    require_frame,
    resolve_feature_columns,
    sorted_levels,
    undersized_batches,
)
from cssci_platform.lib.harmonization.scope import (
    POOLED_BATCH,
    columns_of_classes,
    small_center_error,
    small_centers,
)
from cssci_platform.lib.harmonization.settings import MIN_BATCH_SIZE, SMALL_CENTER_POLICIES, SmallCenterPolicy
from cssci_platform.lib.harmonization.unseen import UNSEEN_CENTER_POLICIES, UnseenCenterEvent, UnseenCenterPolicy
from cssci_platform.lib.selection import SelectionReport

ObjectArray = npt.NDArray[np.object_]
_LOG = logging.getLogger(__name__)
_WARNED_UNSEEN: set[tuple] = set()  # unseen-center summaries already logged at warning level in this process


def forget_unseen_center_warnings() -> None:
    """Log the next unseen-center summary at warning level again (a new study in the same process)."""
    _WARNED_UNSEEN.clear()


class ComBat(CompactNames, TransformerMixin, BaseEstimator):
    """ComBat harmonization (Johnson et al. 2007; Fortin et al. 2017) fitted once, applied to new patients.

    Parameters mirror `neuroCombat.neuroCombat()`: `eb`, `parametric`, `mean_only`, `ref_batch`,
    `categorical_cols`, `continuous_cols`. See the module docstring for inputs, outputs and policies.
    Fitted attributes: `batches_`, `batch_sizes_`, `feature_cols_`, `grand_mean_`, `pooled_variance_`,
    `covariate_betas_` (rows named by `covariate_terms_`), `gamma_hat_`, `delta_hat_`, `gamma_star_`,
    `delta_star_` (batches x features), `batch_effects_` and `unseen_center_log_`.
    """

    def __init__(
        self,
        batch_col: str = "center",
        *,
        categorical_cols: Sequence[str] = (),
        continuous_cols: Sequence[str] = (),
        feature_cols: Sequence[str] | None = None,
        eb: bool = True,
        parametric: bool = True,
        mean_only: bool = False,
        ref_batch: Hashable | None = None,
        unseen_center_policy: UnseenCenterPolicy = "none",
        unseen_center_reference: Hashable | None = None,
        refit_site_min_samples: int = 5,
        single_feature_eb: Literal["fallback", "error"] = "fallback",
        small_center: SmallCenterPolicy = "error",
        min_center_size: int = MIN_BATCH_SIZE,
        unharmonized_classes: Sequence[str] = (),
    ) -> None:
        self.batch_col = batch_col
        self.categorical_cols = categorical_cols
        self.continuous_cols = continuous_cols
        self.feature_cols = feature_cols
        self.eb = eb
        self.parametric = parametric
        self.mean_only = mean_only
        self.ref_batch = ref_batch
        self.unseen_center_policy = unseen_center_policy
        self.unseen_center_reference = unseen_center_reference
        self.refit_site_min_samples = refit_site_min_samples
        self.single_feature_eb = single_feature_eb
        self.small_center = small_center
        self.min_center_size = min_center_size
        self.unharmonized_classes = unharmonized_classes

    def fit(self, X: pd.DataFrame, y: Any = None) -> ComBat:
        """Estimate the standardization and every center's batch effect from `X` (labels `y` are ignored)."""
        frame = require_frame(X, self._design_columns())
        self._check_parameters()
        self.feature_names_in_ = np.asarray(frame.columns, dtype=object)
        self.n_features_in_ = frame.shape[1]
        self.feature_cols_ = resolve_feature_columns(frame, self.feature_cols, set(self._design_columns()))
        self.unharmonized_cols_ = columns_of_classes(self.feature_cols_, self.unharmonized_classes)
        unharmonized = set(self.unharmonized_cols_)
        self.harmonized_cols_ = [c for c in self.feature_cols_ if c not in unharmonized]
        self.decisions_: list[str] = []
        self.unseen_center_log_: list[UnseenCenterEvent] = []
        if self.unharmonized_cols_:
            self._decide(f"{len(self.unharmonized_cols_)} feature(s) of classes {list(self.unharmonized_classes)} left "
                         "unharmonized (passed through)")
        labels, fit_rows = self._fit_batch_labels(batch_labels(frame, self.batch_col))
        batches, codes = sorted_levels(labels[fit_rows], self.batch_col)
        if not self.harmonized_cols_ or self._too_few_batches_after_decisions(batches):
            return self._fit_passthrough()
        self._check_batches(batches, labels[fit_rows])
        frame = frame.loc[fit_rows]
        features = feature_matrix(frame, self.harmonized_cols_)
        self.covariate_encoder_ = CovariateEncoder.fit(frame, self.categorical_cols, self.continuous_cols)
        covariates = self.covariate_encoder_.transform(frame)
        reference_code = None if self.ref_batch is None else batches.index(self.ref_batch)
        self._check_design(codes, len(batches), covariates)
        standardization = fit_standardization(features, codes, covariates, len(batches), reference_code)
        self.standardization_: StandardizationModel | None = standardization  # None: every feature passes through
        self._check_pooled_variance(features, standardization.pooled_variance)
        standardized = standardization.standardize(features, covariates)
        self.batch_effects_ = {
            batch: self._fit_batch_effect(standardized[codes == code], is_reference=code == reference_code)
            for code, batch in enumerate(batches)
        }
        self._expose_estimates(batches, codes, standardization)
        self.report_ = self._report()
        return self

    def _decide(self, decision: str) -> None:
        """A decision taken on degenerate input: logged and kept in `decisions_` (and the step report)."""
        _LOG.info("ComBat: %s", decision)
        self.decisions_.append(decision)

    def _fit_batch_labels(self, labels: ObjectArray) -> tuple[ObjectArray, npt.NDArray[np.bool_]]:
        """Batch labels after the small-center policy, and which rows enter the fit."""
        small = small_centers(labels, self.min_center_size)
        self.pooled_centers_: list[Hashable] = []
        self.excluded_centers_: list[Hashable] = []
        fit_rows = np.ones(len(labels), dtype=bool)
        if not small or self.small_center == "error":
            return labels, fit_rows
        if self.small_center == "pool" and sum(small.values()) >= MIN_BATCH_SIZE:
            self.pooled_centers_ = list(small)
            self._decide(f"small centers {small} (< {self.min_center_size} fit rows) pooled into one batch "
                         f"{POOLED_BATCH!r}")
            return self._pooled(labels), fit_rows
        self.excluded_centers_ = list(small)
        why = "pooled they still have fewer than 2 rows, so " if self.small_center == "pool" else ""
        self._decide(f"small centers {small} (< {self.min_center_size} fit rows): {why}left out of the fit; their rows "
                     f"follow unseen_center_policy {self.unseen_center_policy!r}")
        return labels, ~np.isin(labels, np.asarray(self.excluded_centers_, dtype=object))

    def _pooled(self, labels: npt.NDArray[np.object_]) -> npt.NDArray[np.object_]:
        if not getattr(self, "pooled_centers_", None):
            return labels
        pooled = np.isin(labels, np.asarray(self.pooled_centers_, dtype=object))
        return np.where(pooled, POOLED_BATCH, labels).astype(object)

    def _too_few_batches_after_decisions(self, batches: list[Hashable]) -> bool:
        changed = bool(self.pooled_centers_ or self.excluded_centers_)
        return changed and len(batches) < 2 and self.ref_batch is None

    def _fit_passthrough(self) -> ComBat:
        """Nothing to estimate (no feature to harmonize, or one batch left): every feature passes unchanged."""
        self._decide("no ComBat adjustment: " + ("no feature left to harmonize" if not self.harmonized_cols_ else
                                                 "fewer than 2 centers left after the small-center policy"))
        self.standardization_ = None
        self.batch_effects_ = {}
        self.batches_ = np.asarray([], dtype=object)
        self.batch_sizes_: dict[Hashable, int] = {}
        self.report_ = self._report()
        return self

    def _report(self) -> SelectionReport:
        harmonized = set(self.harmonized_cols_)
        return SelectionReport(
            step="combat", n_in=len(self.feature_cols_), n_out=len(self.feature_cols_), kept=tuple(self.feature_cols_),
            statistic_name="harmonized",
            statistic={c: float(c in harmonized) for c in self.feature_cols_},
            notes=tuple(self.decisions_),
            details={"harmonized": len(self.harmonized_cols_) if self.standardization_ is not None else 0,
                     "unharmonized_classes": list(self.unharmonized_classes),
                     "pooled_centers": [str(c) for c in self.pooled_centers_],
                     "centers_left_out": [str(c) for c in self.excluded_centers_],
                     "empirical_bayes": bool(getattr(self, "eb_used_", self.eb))})

    def transform(self, X: pd.DataFrame) -> FloatArray:
        """Harmonized features (rows x `feature_cols_`) with the fitted estimates; see unseen centers above."""
        check_is_fitted(self, "standardization_")
        frame = require_frame(X, [*self._design_columns(), *self.feature_cols_])
        output = feature_matrix(frame, self.feature_cols_)
        if self.standardization_ is None:
            return output
        if not hasattr(self, "harmonized_cols_"):  # fitted before feature classes could be left out: all harmonized
            self.harmonized_cols_ = list(self.feature_cols_)
        features = feature_matrix(frame, self.harmonized_cols_)
        covariates = self.covariate_encoder_.transform(frame)
        labels = self._pooled(batch_labels(frame, self.batch_col))
        standardized = self.standardization_.standardize(features, covariates)
        harmonized = features.copy()
        events_before = len(self.unseen_center_log_)
        for center in pd.unique(labels):
            rows = labels == center
            effect = self._effect_for(center, standardized[rows])
            if effect is not None:
                adjusted = effect.remove(standardized[rows])
                harmonized[rows] = self.standardization_.unstandardize(adjusted, covariates[rows])
        self._warn_unseen_once(self.unseen_center_log_[events_before:])
        position = {column: index for index, column in enumerate(self.feature_cols_)}
        output[:, [position[c] for c in self.harmonized_cols_]] = harmonized
        return output

    @staticmethod
    def _warn_unseen_once(events: list[UnseenCenterEvent]) -> None:
        """One warning per call naming every unseen center with its row count; an identical repeat (the same centers
        and policy, e.g. every CV fold or one prospective patient at a time) is logged at debug level."""
        if not events:
            return
        centers = ", ".join(f"{event.center!r} ({event.n_rows} rows)" for event in events)
        message = (f"ComBat: {len(events)} center(s) {centers} unseen at fit; policy {events[0].policy!r}: "
                   f"{events[0].action}")
        key = (events[0].policy, tuple(str(event.center) for event in events))
        level = logging.DEBUG if key in _WARNED_UNSEEN else logging.WARNING
        _WARNED_UNSEEN.add(key)
        _LOG.log(level, message)

    def get_feature_names_out(self, input_features: Sequence[str] | None = None) -> npt.NDArray[np.object_]:
        check_is_fitted(self, "feature_cols_")
        return np.asarray(self.feature_cols_, dtype=object)

    # -- fitting helpers -------------------------------------------------------------------------------

    def _design_columns(self) -> list[str]:
        return [self.batch_col, *self.categorical_cols, *self.continuous_cols]

    def _settings(self) -> EmpiricalBayesSettings:
        eb = getattr(self, "eb_used_", self.eb)
        return EmpiricalBayesSettings(eb=eb, parametric=self.parametric, mean_only=self.mean_only)

    def _check_parameters(self) -> None:
        if self.unseen_center_policy not in UNSEEN_CENTER_POLICIES:
            raise ValueError(
                f"unseen_center_policy must be one of {UNSEEN_CENTER_POLICIES}, got {self.unseen_center_policy!r}"
            )
        if self.unseen_center_policy == "refit_site" and self.refit_site_min_samples < MIN_BATCH_SIZE:
            raise ValueError(f"refit_site_min_samples must be at least {MIN_BATCH_SIZE} (a variance needs 2 rows)")
        if self.unseen_center_policy == "reference" and self.unseen_center_reference is None:
            raise ValueError("unseen_center_policy='reference' needs unseen_center_reference= (a known center)")
        if self.small_center not in SMALL_CENTER_POLICIES:
            raise ValueError(f"small_center must be one of {SMALL_CENTER_POLICIES}, got {self.small_center!r}")
        if self.single_feature_eb not in ("fallback", "error"):
            raise ValueError(f"single_feature_eb must be 'fallback' or 'error', got {self.single_feature_eb!r}")
        columns = self._design_columns()
        if len(set(columns)) != len(columns):
            raise ValueError(f"batch and covariate columns overlap: {columns}")

    def _check_batches(self, batches: list[Hashable], labels: npt.NDArray[np.object_]) -> None:
        undersized = undersized_batches(labels, max(MIN_BATCH_SIZE, self.min_center_size))
        if undersized:
            raise ValueError(small_center_error(undersized, max(MIN_BATCH_SIZE, self.min_center_size), self.batch_col))
        if len(batches) < 2 and self.ref_batch is None:
            raise ValueError(f"only one batch ({batches}) in {self.batch_col!r}: nothing to harmonize")
        if self.ref_batch is not None and self.ref_batch not in batches:
            raise ValueError(f"ref_batch {self.ref_batch!r} is not among the batches {batches}")
        if self.unseen_center_policy == "reference" and self.unseen_center_reference not in batches:
            raise ValueError(
                f"unseen_center_reference {self.unseen_center_reference!r} is not among the batches {batches}"
            )
        self.eb_used_ = self.eb
        if self.eb and len(self.harmonized_cols_) < 2:
            if self.single_feature_eb == "error":
                raise ValueError("empirical Bayes pools information across features and needs at least 2; use eb=False")
            self.eb_used_ = False
            self._decide(f"1 feature to harmonize ({self.harmonized_cols_[0]}): empirical Bayes needs at least 2, "
                         "fitted without it (eb=False: each center's own location/scale estimates)")

    def _check_design(self, codes: IntArray, n_batches: int, covariates: FloatArray) -> None:
        design = np.hstack([np.eye(n_batches)[codes], covariates])
        if np.linalg.matrix_rank(design) < design.shape[1]:
            terms = self.covariate_encoder_.term_names
            raise ValueError(
                f"the covariates {terms} are collinear with the batch indicators or with each other (e.g. a level "
                "present in one center only, or a constant covariate); their effects and the center effects "
                "cannot be told apart. Drop or merge the offending covariate or level"
            )

    def _check_pooled_variance(self, features: FloatArray, pooled_variance: FloatArray) -> None:
        """A feature with no residual variance cannot be standardized: say which, instead of dividing by 0."""
        scale = np.maximum(np.abs(features).max(axis=0), np.finfo(float).tiny)
        degenerate = pooled_variance <= (1e-12 * scale) ** 2
        if degenerate.any():
            names = [self.harmonized_cols_[index] for index in np.flatnonzero(degenerate)]
            where = f"the reference batch {self.ref_batch!r}" if self.ref_batch is not None else "the fit data"
            raise ValueError(
                f"features {names[:10]}{' ...' if len(names) > 10 else ''} ({len(names)}) have zero residual "
                f"variance in {where} (constant, or fully explained by batch and covariates); "
                "leave them out of feature_cols or drop them before harmonization"
            )

    def _fit_batch_effect(self, standardized: FloatArray, *, is_reference: bool) -> BatchEffect:
        if is_reference:
            return reference_batch_effect(standardized)
        effect = estimate_batch_effect(standardized, self._settings())
        if not (np.isfinite(effect.gamma_star).all() and np.isfinite(effect.delta_star).all()):
            raise ValueError("ComBat produced non-finite batch estimates; try parametric=False or eb=False")
        return effect

    def _expose_estimates(
        self, batches: list[Hashable], codes: IntArray, standardization: StandardizationModel
    ) -> None:
        self.batches_ = np.asarray(batches, dtype=object)
        self.batch_sizes_ = dict(zip(batches, np.bincount(codes).tolist(), strict=True))
        self.grand_mean_ = standardization.grand_mean
        self.pooled_variance_ = standardization.pooled_variance
        self.covariate_betas_ = standardization.covariate_betas
        self.covariate_terms_ = self.covariate_encoder_.term_names
        effects = [self.batch_effects_[batch] for batch in batches]
        self.gamma_hat_ = np.vstack([effect.gamma_hat for effect in effects])
        self.delta_hat_ = np.vstack([effect.delta_hat for effect in effects])
        self.gamma_star_ = np.vstack([effect.gamma_star for effect in effects])
        self.delta_star_ = np.vstack([effect.delta_star for effect in effects])

    # -- transform helpers -----------------------------------------------------------------------------

    def _effect_for(self, center: Hashable, standardized: FloatArray) -> BatchEffect | None:
        """The estimates for a center's rows; None means the rows pass through unchanged."""
        if center in self.batch_effects_:
            return None if center == self.ref_batch else self.batch_effects_[center]
        return self._unseen_center_effect(center, standardized)

    def _unseen_center_effect(self, center: Hashable, standardized: FloatArray) -> BatchEffect | None:
        n_rows = standardized.shape[0]
        known = list(self.batches_)
        policy = self.unseen_center_policy
        if policy == "error":
            raise ValueError(
                f"center {center!r} ({n_rows} rows) was not seen at fit (known: {known}) and "
                "unseen_center_policy='error'; refit with its patients or choose another policy"
            )
        if policy == "reference":
            reference = self.unseen_center_reference
            effect = self._effect_for(reference, standardized)
            action = f"harmonized with the estimates of known center {reference!r}"
        elif policy == "refit_site":
            effect = self._refit_site(center, standardized)
            action = f"location/scale estimated from its {n_rows} rows with the frozen standardization"
        else:
            effect = None
            action = "left unharmonized (no batch adjustment: gamma*=0, delta*=1)"
        self.unseen_center_log_.append(UnseenCenterEvent(center, n_rows, policy, action, effect))
        return effect

    def _refit_site(self, center: Hashable, standardized: FloatArray) -> BatchEffect:
        n_rows = standardized.shape[0]
        if n_rows < self.refit_site_min_samples:
            raise ValueError(
                f"unseen center {center!r} has {n_rows} rows in this call; unseen_center_policy='refit_site' needs "
                f"at least refit_site_min_samples={self.refit_site_min_samples}. Fix: transform its patients "
                "together once enough are available, or use unseen_center_policy='reference' or 'none'"
            )
        return self._fit_batch_effect(standardized, is_reference=False)

