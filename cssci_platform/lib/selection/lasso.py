"""LASSO selection: L1-penalized model with the penalty chosen by seeded stratified k-fold CV; keep non-zeros.

``model="logistic"`` (default): L1 logistic regression - binomial for two classes, multinomial for more (a
feature is kept when any class's coefficient is non-zero); CV score ``neg_log_loss`` (the binomial /
multinomial deviance glmnet uses; `negative_log_loss`: sklearn's scorer without its per-call validation).
``solver="auto"`` uses liblinear for two classes (10-25x faster than saga
at 100-1000 features; it also penalizes the intercept, softened by ``intercept_scaling=10``) and saga (the only
L1 multinomial solver) for more. ``model="linear_on_labels"``: LassoCV on the 0/1 label with CV mean
squared error, as several published radiomics studies did; two classes only.

Penalty grid: ``n_penalties`` values, log-spaced from the smallest penalty that zeroes every coefficient
(``l1_min_c`` / LassoCV's alpha_max) down by ``penalty_ratio``. ``rule="1se"`` (default) takes the strongest
penalty whose mean CV score is within one standard error of the best (glmnet's lambda.1se, a sparser and more
stable signature); ``rule="min"`` takes the best. Features should be z-scored first (the penalty is
scale-dependent). If no coefficient survives, ``on_empty="keep_best"`` keeps the first feature to enter the
path as the penalty weakens (with an EmptySelectionWarning); ``"raise"`` raises.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal, Self

import numpy as np
from sklearn.linear_model import Lasso, LassoCV, LogisticRegression, LogisticRegressionCV
from sklearn.model_selection import StratifiedKFold
from sklearn.svm import l1_min_c

from ._base import OnConstant, OnEmpty, ReportingSelector, class_codes, plain


@dataclass
class _L1Path:
    """Penalties from strongest to weakest, CV scores (folds x penalties, higher is better), a refit function."""

    penalty_name: str
    penalties: np.ndarray
    fold_scores: np.ndarray
    coefficients_at: Callable[[int], np.ndarray]  # (n_outputs, n_features) fitted on all training rows


def choose_penalty(fold_scores: np.ndarray, rule: Literal["1se", "min"]) -> int:
    """Index (strongest penalty first) of the best mean CV score, or of the strongest within one SE of it."""
    mean = fold_scores.mean(axis=0)
    best = int(np.argmax(mean))
    if rule == "min":
        return best
    standard_error = fold_scores[:, best].std(ddof=1) / np.sqrt(fold_scores.shape[0])
    return int(np.flatnonzero(mean >= mean[best] - standard_error)[0])


def negative_log_loss(estimator: Any, X: np.ndarray, y: np.ndarray) -> float:
    """sklearn's ``"neg_log_loss"`` scorer without its per-call input validation (most of a small LASSO fit's time):
    the same ``predict_proba``, clipping to [eps, 1 - eps] and mean of -log p(true class), so the same value.
    `y` holds labels of ``estimator.classes_`` (LogisticRegressionCV's scoring path passes every class)."""
    probabilities = estimator.predict_proba(X)
    eps = np.finfo(probabilities.dtype).eps
    true_class = np.searchsorted(estimator.classes_, y)
    chosen = np.clip(probabilities[np.arange(len(true_class)), true_class], eps, 1 - eps)
    return -float(np.mean(-np.log(chosen)))


class LassoSelector(ReportingSelector):
    """Keep the features with a non-zero coefficient in the CV-tuned L1 model (see module docstring)."""

    step_name = "lasso"
    supervised = True

    def __init__(
        self,
        model: Literal["logistic", "linear_on_labels"] = "logistic",
        cv: int = 10,
        rule: Literal["1se", "min"] = "1se",
        n_penalties: int = 20,
        penalty_ratio: float = 1e3,
        random_state: int = 0,
        solver: Literal["auto", "liblinear", "saga"] = "auto",
        tol: float = 1e-4,
        max_iter: int = 10_000,
        on_constant: OnConstant = "error",
        on_empty: OnEmpty = "keep_best",
        on_small_class: Literal["error", "fewer_folds"] = "error",
    ) -> None:
        self.model = model
        self.cv = cv
        self.rule = rule
        self.n_penalties = n_penalties
        self.penalty_ratio = penalty_ratio
        self.random_state = random_state
        self.solver = solver
        self.tol = tol
        self.max_iter = max_iter
        self.on_constant = on_constant
        self.on_empty = on_empty
        self.on_small_class = on_small_class

    def fit(self, X: Any, y: Any = None) -> Self:
        X_arr, names = self._validated(X)
        codes, classes = class_codes(y, X_arr.shape[0], self.step_name)
        folds_note = self._check_fold_sizes(codes, classes)
        usable, notes = self._usable_columns(X_arr, names, self.on_constant)
        notes = folds_note + notes
        path = self._path(X_arr[:, usable], codes)
        chosen = choose_penalty(path.fold_scores, self.rule)
        coef = path.coefficients_at(chosen)
        support = np.zeros(len(names), dtype=bool)
        support[usable] = np.any(coef != 0, axis=0)
        if not support.any():
            notes += self._first_to_enter(path, chosen, support, usable, names)
        if chosen == len(path.penalties) - 1:
            notes.append("CV chose the weakest penalty on the grid; consider a larger penalty_ratio")
        statistic = dict(zip(names[usable], np.abs(coef).max(axis=0), strict=True))
        details = {
            "model": self.model,
            "rule": self.rule,
            "classes": [str(c) for c in classes],
            path.penalty_name: float(path.penalties[chosen]),
            "penalty_grid": path.penalties.tolist(),
            "mean_cv_score": path.fold_scores.mean(axis=0).tolist(),
        }
        return self._finish(names, support, "abs_coefficient", statistic, notes, details)

    def _check_fold_sizes(self, codes: np.ndarray, classes: np.ndarray) -> list[str]:
        """Sets `n_folds_`; with on_small_class='fewer_folds' a class smaller than `cv` lowers it (to 2 at least) with
        a note, the convention of every other CV here (`classifiers.stratified_folds`)."""
        counts = np.bincount(codes)
        self.n_folds_ = self.cv
        notes = []
        if counts.min() < self.cv and self.on_small_class == "fewer_folds" and counts.min() >= 2:
            self.n_folds_ = int(counts.min())
            notes.append(
                f"{self.n_folds_}-fold CV instead of {self.cv}: the smallest class has {self.n_folds_} training "
                "patients"
            )
        elif counts.min() < self.cv:
            small = ", ".join(f"{plain(c)!r}: {n}" for c, n in zip(classes, counts, strict=True) if n < self.cv)
            raise ValueError(
                f"{self.step_name}: stratified {self.cv}-fold CV needs at least {self.cv} training patients per class; "
                f"got {small}"
            )
        if self.model == "linear_on_labels" and len(classes) > 2:
            raise ValueError(
                f"{self.step_name}: model='linear_on_labels' is for two classes; "
                f"y has {len(classes)} - use model='logistic' (multinomial)"
            )
        return notes

    def _folds(self) -> StratifiedKFold:
        return StratifiedKFold(
            n_splits=getattr(self, "n_folds_", self.cv), shuffle=True, random_state=self.random_state
        )

    def _path(self, X: np.ndarray, codes: np.ndarray) -> _L1Path:
        if self.model == "logistic":
            return self._logistic_path(X, codes)
        if self.model == "linear_on_labels":
            return self._linear_path(X, codes.astype(np.float64))
        raise ValueError(f"{self.step_name}: model must be 'logistic' or 'linear_on_labels', got {self.model!r}")

    def _logistic_path(self, X: np.ndarray, codes: np.ndarray) -> _L1Path:
        Cs = l1_min_c(X, codes, loss="log") * np.logspace(0, np.log10(self.penalty_ratio), self.n_penalties)
        binary = codes.max() == 1
        solver = ("liblinear" if binary else "saga") if self.solver == "auto" else self.solver
        if solver == "liblinear" and not binary:
            raise ValueError(f"{self.step_name}: solver='liblinear' is binary only; use 'saga' or 'auto'")
        shared = dict(
            l1_ratio=1.0,
            solver=solver,
            intercept_scaling=10.0,
            random_state=self.random_state,
            tol=self.tol,
            max_iter=self.max_iter,
        )
        search = LogisticRegressionCV(
            Cs=Cs,
            l1_ratios=(1.0,),
            cv=self._folds(),
            scoring=negative_log_loss,
            refit=False,
            use_legacy_attributes=False,
            **{k: v for k, v in shared.items() if k != "l1_ratio"},
        ).fit(X, codes)

        def coefficients_at(i: int) -> np.ndarray:
            return np.atleast_2d(LogisticRegression(C=Cs[i], **shared).fit(X, codes).coef_)

        return _L1Path("C", Cs, search.scores_[:, 0, :], coefficients_at)

    def _linear_path(self, X: np.ndarray, label: np.ndarray) -> _L1Path:
        search = LassoCV(
            alphas=self.n_penalties,
            eps=1 / self.penalty_ratio,
            cv=self._folds(),
            random_state=self.random_state,
            tol=self.tol,
            max_iter=self.max_iter,
        ).fit(X, label)
        alphas = search.alphas_  # descending: strongest first

        def coefficients_at(i: int) -> np.ndarray:
            model = Lasso(alpha=alphas[i], random_state=self.random_state, tol=self.tol, max_iter=self.max_iter)
            return np.atleast_2d(model.fit(X, label).coef_)

        return _L1Path("alpha", alphas, -search.mse_path_.T, coefficients_at)

    def _first_to_enter(
        self, path: _L1Path, chosen: int, support: np.ndarray, usable: np.ndarray, names: np.ndarray
    ) -> list[str]:
        """Weaken the penalty along the grid until a coefficient appears; that feature is the best single one."""
        why = f"all coefficients are 0 at {path.penalty_name}={path.penalties[chosen]:.4g}"
        if self.on_empty == "raise":
            return self._keep_best_if_empty(support, 0, names, "raise", why)
        for i in range(chosen + 1, len(path.penalties)):
            coef = np.abs(path.coefficients_at(i)).max(axis=0)
            if coef.any():
                best = int(np.flatnonzero(usable)[np.argmax(coef)])
                return self._keep_best_if_empty(support, best, names, self.on_empty, why)
        raise ValueError(f"{self.step_name}: no coefficient is non-zero anywhere on the penalty grid")
