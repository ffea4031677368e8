"""ComBat's statistics on plain arrays (samples x features): the location/scale model and its empirical Bayes.

Notation of Johnson, Li & Rabinovic (2007), Biostatistics 8:118 ("J07"), as used for imaging by Fortin et
al. (2017, NeuroImage 161:149; 2018, NeuroImage 167:104). For feature g, batch i and sample j (J07 eq. 2.1):

    y_ijg = alpha_g + x_ij' beta_g + gamma_ig + delta_ig * eps_ijg

`fit_standardization` estimates alpha (grand mean), beta (covariate effects) and sigma^2 (pooled residual
variance) and standardizes z = (y - alpha - x'beta) / sigma (J07 eq. 2.2 and section 3.1);
`estimate_batch_effect` estimates one batch's gamma and delta^2 on z and shrinks them (J07 eq. 2.3-2.6
parametric, section 3.2 non-parametric). Harmonized data are (z - gamma*) / delta* * sigma + alpha + x'beta
(J07 eq. 2.7). Every step mirrors neuroCombat 0.2.12 (and the R `sva::ComBat` it follows), including its
quirks, so results agree with it to rounding; deliberate differences are named where they are made.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import cast

import numpy as np
import numpy.typing as npt

FloatArray = npt.NDArray[np.float64]
IntArray = npt.NDArray[np.intp]

# Rows of the feature-by-feature likelihood matrix handled at once by the non-parametric prior.
_NONPARAMETRIC_BLOCK_CELLS = 4_000_000


@dataclass(frozen=True)
class EmpiricalBayesSettings:
    """How batch effects are estimated: `eb=False` keeps the per-batch L/S estimates unshrunk."""

    eb: bool = True
    parametric: bool = True
    mean_only: bool = False
    convergence: float = 1e-4  # relative change that stops the parametric iteration (as sva/neuroCombat)
    max_iterations: int = 10_000


@dataclass(frozen=True)
class StandardizationModel:
    """alpha (`grand_mean`, p), sigma^2 (`pooled_variance`, p) and beta (`covariate_betas`, q x p)."""

    grand_mean: FloatArray
    pooled_variance: FloatArray
    covariate_betas: FloatArray

    def expected(self, covariates: FloatArray) -> FloatArray:
        """alpha + x'beta for each sample: the batch-free mean the harmonized data keep."""
        return self.grand_mean + covariates @ self.covariate_betas

    def standardize(self, features: FloatArray, covariates: FloatArray) -> FloatArray:
        return (features - self.expected(covariates)) / np.sqrt(self.pooled_variance)

    def unstandardize(self, standardized: FloatArray, covariates: FloatArray) -> FloatArray:
        return standardized * np.sqrt(self.pooled_variance) + self.expected(covariates)


@dataclass(frozen=True)
class BatchEffect:
    """One batch's location (gamma) and scale (delta^2) per feature: L/S estimates and the adjusted ones."""

    gamma_hat: FloatArray
    delta_hat: FloatArray
    gamma_star: FloatArray
    delta_star: FloatArray

    def remove(self, standardized: FloatArray) -> FloatArray:
        """J07 eq. 2.7 on the standardized scale: (z - gamma*) / sqrt(delta*)."""
        return (standardized - self.gamma_star) / np.sqrt(self.delta_star)


def reference_batch_effect(standardized: FloatArray) -> BatchEffect:
    """The reference batch: L/S estimates kept for inspection, no adjustment (gamma* = 0, delta* = 1)."""
    gamma_hat, delta_hat = location_scale_estimates(standardized, mean_only=False)
    return BatchEffect(gamma_hat, delta_hat, np.zeros_like(gamma_hat), np.ones_like(delta_hat))


def batch_design(batch_codes: IntArray, n_batches: int, reference_code: int | None) -> FloatArray:
    """One indicator column per batch; with a reference batch its column is all ones (the intercept)."""
    design = np.zeros((batch_codes.size, n_batches))
    design[np.arange(batch_codes.size), batch_codes] = 1.0
    if reference_code is not None:
        design[:, reference_code] = 1.0
    return design


def fit_standardization(
    features: FloatArray,
    batch_codes: IntArray,
    covariates: FloatArray,
    n_batches: int,
    reference_code: int | None,
) -> StandardizationModel:
    """OLS of every feature on batch indicators + covariates; alpha, beta and sigma^2 as in sva/neuroCombat.

    alpha is the sample-size-weighted mean of the batch coefficients, or the reference batch's coefficient;
    sigma^2 is the mean squared residual (divided by n, not n - p), over the reference batch only if set.
    """
    design = np.hstack([batch_design(batch_codes, n_batches, reference_code), covariates])
    # numpy's stubs type lstsq's solution as floating[Any]; of float64 inputs it is float64
    coefficients = cast(FloatArray, np.linalg.lstsq(design, features, rcond=None)[0])
    batch_coefficients = coefficients[:n_batches]
    residuals = features - design @ coefficients
    if reference_code is None:
        batch_shares = np.bincount(batch_codes, minlength=n_batches) / batch_codes.size
        grand_mean = batch_shares @ batch_coefficients
        pooled_variance = np.mean(residuals**2, axis=0)
    else:
        grand_mean = batch_coefficients[reference_code]
        pooled_variance = np.mean(residuals[batch_codes == reference_code] ** 2, axis=0)
    return StandardizationModel(grand_mean, pooled_variance, coefficients[n_batches:])


def location_scale_estimates(standardized: FloatArray, *, mean_only: bool) -> tuple[FloatArray, FloatArray]:
    """gamma_hat and delta_hat^2 of one batch (J07 eq. 2.2's L/S step).

    gamma_hat is the batch mean of z: the OLS solution of z on the batch indicators, also with a reference
    batch (whose mean z is exactly 0 there). A zero variance becomes 1, as in neuroCombat's `convert_zeroes`.
    """
    gamma_hat = standardized.mean(axis=0)
    if mean_only:
        return gamma_hat, np.ones_like(gamma_hat)
    delta_hat = standardized.var(axis=0, ddof=1)
    delta_hat[delta_hat == 0] = 1.0
    return gamma_hat, delta_hat


def estimate_batch_effect(standardized: FloatArray, settings: EmpiricalBayesSettings) -> BatchEffect:
    """gamma* and delta* of one batch from its standardized data (n_b samples x p features)."""
    gamma_hat, delta_hat = location_scale_estimates(standardized, mean_only=settings.mean_only)
    if not settings.eb:
        gamma_star, delta_star = gamma_hat, delta_hat
    elif not settings.parametric:
        gamma_star, delta_star = _nonparametric_posterior(standardized, gamma_hat, delta_hat)
    elif settings.mean_only:
        # sva/neuroCombat shrink the mean with n = 1 and delta = 1 when only the location is adjusted.
        gamma_star = _posterior_mean(gamma_hat, gamma_hat.mean(), 1, 1.0, gamma_hat.var(ddof=1))
        delta_star = np.ones_like(delta_hat)
    else:
        gamma_star, delta_star = _parametric_posterior(standardized, gamma_hat, delta_hat, settings)
    return BatchEffect(gamma_hat, delta_hat, np.asarray(gamma_star), np.asarray(delta_star))


def _posterior_mean(
    gamma_hat: FloatArray, gamma_bar: float, n: int, delta: FloatArray | float, tau2: float
) -> FloatArray:
    """J07 eq. 2.5 (gamma*): precision-weighted mix of the batch mean and the prior mean gamma_bar."""
    return (tau2 * n * gamma_hat + delta * gamma_bar) / (tau2 * n + delta)


def _inverse_gamma_prior(delta_hat: FloatArray) -> tuple[float, float]:
    """Method-of-moments hyper-parameters (a, b) of the inverse-gamma prior on delta^2 (J07 section 3.1)."""
    mean, variance = delta_hat.mean(), delta_hat.var(ddof=1)
    return (2 * variance + mean**2) / variance, (mean * variance + mean**3) / variance


def _parametric_posterior(
    standardized: FloatArray, gamma_hat: FloatArray, delta_hat: FloatArray, settings: EmpiricalBayesSettings
) -> tuple[FloatArray, FloatArray]:
    """Iterate J07 eq. 2.5-2.6 to a fixed point, with sva's starting values and stopping rule."""
    n = standardized.shape[0]
    gamma_bar, tau2 = gamma_hat.mean(), gamma_hat.var(ddof=1)
    a, b = _inverse_gamma_prior(delta_hat)
    gamma_old, delta_old = gamma_hat, delta_hat
    for _ in range(settings.max_iterations):
        gamma_new = _posterior_mean(gamma_hat, gamma_bar, n, delta_old, tau2)
        sum_of_squares = ((standardized - gamma_new) ** 2).sum(axis=0)
        delta_new = (0.5 * sum_of_squares + b) / (n / 2.0 + a - 1.0)
        # sva/neuroCombat divide by the signed old value (features with negative gamma hardly count) and
        # stop when the change is not above the tolerance; kept as is so the iterations, hence results, agree.
        with np.errstate(divide="ignore", invalid="ignore"):
            change = max(
                float((np.abs(gamma_new - gamma_old) / gamma_old).max()),
                float((np.abs(delta_new - delta_old) / delta_old).max()),
            )
        gamma_old, delta_old = gamma_new, delta_new
        if not change > settings.convergence:
            return gamma_new, delta_new
    raise ValueError(
        f"parametric empirical Bayes did not converge in {settings.max_iterations} iterations; "
        "try parametric=False or eb=False"
    )


def _nonparametric_posterior(
    standardized: FloatArray, gamma_hat: FloatArray, delta_hat: FloatArray
) -> tuple[FloatArray, FloatArray]:
    """J07 section 3.2: gamma*_g, delta*_g = averages of the other features' (gamma_hat, delta_hat).

    Feature h weighs in with the likelihood of feature g's data under N(gamma_hat_h, delta_hat_h). Unlike
    neuroCombat (which multiplies raw densities and under- or overflows for large batches or tiny
    variances) the weights are formed in log space and rescaled per row: equal in exact arithmetic.
    """
    n, n_features = standardized.shape
    sum_z = standardized.sum(axis=0)
    sum_z2 = (standardized**2).sum(axis=0)
    log_normalizer = -0.5 * n * np.log(2 * np.pi * delta_hat)
    gamma_star = np.empty(n_features)
    delta_star = np.empty(n_features)
    block = max(1, _NONPARAMETRIC_BLOCK_CELLS // n_features)
    for start in range(0, n_features, block):
        rows = np.arange(start, min(start + block, n_features))
        # sum_j (z_gj - gamma_hat_h)^2 for every feature g in the block (rows) and every other feature h.
        squares = sum_z2[rows, None] - 2 * sum_z[rows, None] * gamma_hat + n * gamma_hat**2
        log_likelihood = log_normalizer - squares / (2 * delta_hat)
        log_likelihood[np.arange(rows.size), rows] = -np.inf  # leave feature g itself out
        weights = np.exp(log_likelihood - log_likelihood.max(axis=1, keepdims=True))
        total = weights.sum(axis=1)
        gamma_star[rows] = weights @ gamma_hat / total
        delta_star[rows] = weights @ delta_hat / total
    return gamma_star, delta_star
