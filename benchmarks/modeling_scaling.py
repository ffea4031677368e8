"""Modeling benchmark: the classifier zoo x signatures x modes on a demo-sized cohort, and growth with patients.

Part ``demo``: `train_signature` for every requested signature (default Rad, DL_resnet18, Rad+DL_resnet18,
Clinical, Combined) x mode (leakage_safe, paper_faithful) x classifier (default: the whole zoo, 11; Clinical
and Combined are always one logistic regression, as in `train_signature`), "fast" grid preset, stratified
``--cv-folds``-fold CV, on a demo-sized cohort: 40 development + 10 prospective patients, 3 centers, holdout 8:2
(seed 42, as the demo's `patient_splits`), ChainSettings as `modeling_job` builds it from the demo study config
(the `harmonization` and `selection` defaults: ComBat on, rank test 0.05, Spearman 0.9, mRMR 20, LASSO with
``--cv-folds`` folds, PCA 32 per deep channel; seed 42).

Part ``scaling``: ``--scaling-signatures`` x ``--scaling-modes`` (default Rad, leakage_safe) with
``--classifiers`` (default LR + RandomForest + LightGBM; ``all`` for the zoo) for each of ``--sizes``
development patients (holdout 8:2, no prospective patients, only the feature blocks the signatures need), plus
a one-fit breakdown of the leakage-safe chain per step (each step fitted once on all training rows).

Part ``micro``: the costs behind the bottlenecks listed in RESULTS.md (LassoSelector vs the same liblinear
path with a numpy log-loss, ConstantFeatureDropper's pandas nunique vs a numpy test, PCA full vs
covariance_eigh), best of 5 (3) runs.

Every `train_signature` call is split into: the chain fitted on the k CV training folds + all training rows
(`fit_chain_folds`), the grid search of each classifier on those folds (`tune_on_folds`), the paper_faithful
prefilter (`paper_faithful_columns`) and the rest (scoring every patient, metrics). The split is measured by
wrapping those three functions as imported into `cssci_platform.lib.modeling.training` (no library edits).

Features only, no images. The matrix has the demo's shape and column names: radiomics
``rad__{sag_T1,sag_T2}__{lesion,cord}__{5 channels}__<107 features>`` (2140), deep
``dl__resnet18__<channel>__<i>`` (5 x 512 = 2560), 9 clinical columns; patients, centers, cohorts, clinical
values and outcomes come from `sample_sci_patients` (the demo cohort's generator, seed 7), the radiomics and
deep values are synthetic: clustered (redundant) features driven by the patient's planted lesion length, T2
mean and heterogeneity plus nuisance factors, with per-center additive and multiplicative shifts.
``--matrix-duckdb`` instead reads the real demo's ``feature_matrix`` table (demo part only).

    python benchmarks/modeling_scaling.py --parts demo,scaling --cv-folds 5 --sizes 100,400,1600 --repeats 3
    python benchmarks/modeling_scaling.py --parts scaling --classifiers all \
        --scaling-signatures Rad,DL_resnet18,Rad+DL_resnet18,Clinical,Combined \
        --scaling-modes leakage_safe,paper_faithful

Figures go to ``benchmarks/_work/modeling_scaling/modeling_scaling.json`` (``--out``); `uptime` is recorded at
start and end: on a shared 2-core machine only a quiet run gives meaningful numbers.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import statistics
import subprocess
import sys
import time
import warnings
from collections import defaultdict
from pathlib import Path

import numpy as np
import pandas as pd
import polars as pl
from sklearn.base import clone

import cssci_platform.lib.modeling.training as training
from cssci_platform.lib.classifiers import CLASSIFIER_NAMES
from cssci_platform.lib.harmonization.settings import HarmonizationSettings
from cssci_platform.lib.imaging import CHANNELS
from cssci_platform.lib.modeling.chains import ChainSettings, build_pipeline
from cssci_platform.lib.modeling.signatures import parse_signature
from cssci_platform.lib.modeling.training import MODES, train_signature
from cssci_platform.lib.selection.settings import SelectionSettings
from cssci_platform.lib.splits import PRESETS, SplitSpec, assign_splits
from cssci_platform.lib.synthetic import SCI_STANDARDIZATION, sample_sci_patients

REPO_ROOT = Path(__file__).resolve().parents[1]
WORK = REPO_ROOT / "benchmarks" / "_work" / "modeling_scaling"
SEQUENCES, ROIS, N_RADIOMICS, DL_DIM = ("sag_T1", "sag_T2"), ("lesion", "cord"), 107, 512
DEMO_SIGNATURES = "Rad,DL_resnet18,Rad+DL_resnet18,Clinical,Combined"
CLASSES = ["0", "1"]
SPLIT_SEED = 42  # the demo's split.seed and models.seed (both default 42)


# ------------------------------------------------------------------------------------------------ synthetic matrix
def synthetic_matrix(
    n_development: int,
    n_prospective: int,
    seed: int = 7,
    backbone: str = "resnet18",
    deep: bool = True,
    clinical: bool = True,
) -> pd.DataFrame:
    """Demo-shaped feature matrix (index patient_key; center, cohort, label; rad__, dl__, clin__ columns)."""
    patients = sample_sci_patients(n_development, n_prospective, seed)
    n = len(patients)
    rng = np.random.default_rng([seed, 2024])
    imaging = np.column_stack(
        [
            (np.log([p.lesion_length_mm for p in patients]) - np.log(SCI_STANDARDIZATION["lesion_length_mm"][0])) / 0.4,
            *[
                (np.array([getattr(p, k) for p in patients]) - SCI_STANDARDIZATION[k][0]) / SCI_STANDARDIZATION[k][1]
                for k in ("lesion_t2_mean", "lesion_heterogeneity")
            ],
        ]
    )
    latent = np.column_stack([imaging, rng.normal(size=(n, 12))])  # 3 planted + 12 nuisance factors
    center_codes = np.unique([p.center.name for p in patients], return_inverse=True)[1]
    rad_names = [
        f"rad__{s}__{r}__{c}__f{i:03d}" for s in SEQUENCES for r in ROIS for c in CHANNELS for i in range(N_RADIOMICS)
    ]
    blocks = [
        pd.DataFrame(_clustered_features(rng, latent, center_codes, len(rad_names), clusters=240), columns=rad_names)
    ]
    if deep:
        dl = [
            np.logaddexp(0, _clustered_features(rng, latent, center_codes, DL_DIM, clusters=128, unit_scale=False))
            for _ in CHANNELS
        ]  # softplus: pooled ReLU activations are non-negative
        names = [f"dl__{backbone}__{c}__{i:04d}" for c in CHANNELS for i in range(DL_DIM)]
        blocks.append(pd.DataFrame(np.hstack(dl), columns=names))
    if clinical:
        blocks.append(
            pd.DataFrame(
                {
                    "clin__age": [float(p.age) for p in patients],
                    "clin__sex__M": [float(p.sex == "M") for p in patients],
                    "clin__diabetes": [float(p.diabetes) for p in patients],
                    "clin__hypertension": [float(p.hypertension) for p in patients],
                    "clin__smoking": [float(p.smoking) for p in patients],
                    "clin__treatment__conservative": [float(p.treatment == "conservative") for p in patients],
                    **{f"clin__asia_grade__{g}": [float(p.asia_grade == g) for p in patients] for g in ("B", "C", "D")},
                }
            )
        )
    meta = pd.DataFrame(
        {
            "center": [p.center.name for p in patients],
            "cohort": [p.cohort for p in patients],
            "label": [str(p.good_outcome) for p in patients],
        }
    )
    matrix = pd.concat([meta, *blocks], axis=1)
    matrix.index = pd.Index([p.patient_id for p in patients], name="patient_key")
    return matrix.sort_index()


def _clustered_features(
    rng: np.random.Generator, latent: np.ndarray, centers: np.ndarray, p: int, clusters: int, unit_scale: bool = True
) -> np.ndarray:
    """Features in redundant clusters, center location/scale shifts (mostly shared within a cluster).

    Calibrated on the real demo matrix (40 + 10 patients, seed 7): there 88 % of radiomics and 86 % of deep
    training columns have a partner with Spearman |rho| > 0.9 and ~120 / ~65 pass the U-test at 0.05."""
    n_centers = centers.max() + 1
    loadings = rng.normal(size=(latent.shape[1], clusters)) * (rng.random((latent.shape[1], clusters)) < 0.3)
    signal = latent @ loadings + rng.normal(scale=0.5, size=(latent.shape[0], clusters))
    signal = signal + rng.normal(0, 0.6, size=(n_centers, clusters))[centers]
    signal = (signal - signal.mean(0)) / signal.std(0)
    member = rng.integers(0, clusters, size=p)
    values = signal[:, member] * rng.choice([-1.0, 1.0], size=p) + rng.normal(size=(latent.shape[0], p)) * rng.uniform(
        0.05, 0.45, size=p
    )
    shift, scale = rng.normal(0, 0.2, size=(n_centers, p)), np.exp(rng.normal(0, 0.1, size=(n_centers, p)))
    values = values * scale[centers] + shift[centers]
    if unit_scale:  # radiomics units span orders of magnitude
        values = values * 10.0 ** rng.uniform(-2, 4, size=p) + rng.normal(0, 5, size=p)
    return values


def demo_duckdb_matrix(path: Path) -> pd.DataFrame:
    import duckdb

    with duckdb.connect(str(path), read_only=True) as con:
        return con.execute("SELECT * FROM feature_matrix").df().set_index("patient_key").sort_index()


def holdout_roles(matrix: pd.DataFrame, seed: int = SPLIT_SEED) -> pd.Series:
    preset = PRESETS["holdout_8_2"]
    patients = pl.DataFrame(
        {
            "patient_key": list(matrix.index),
            "center": list(matrix["center"]),
            "cohort": list(matrix["cohort"]),
            "label": [None if pd.isna(v) else str(v) for v in matrix["label"]],
        },
        schema={"patient_key": pl.String, "center": pl.String, "cohort": pl.String, "label": pl.String},
    )
    splits = assign_splits(patients, SplitSpec(preset.strategy, preset.test_fraction, seed))
    return pd.Series(dict(splits.select("patient_key", "role").iter_rows()))


def chain_settings(cv_folds: int) -> ChainSettings:
    """As `modeling_job` builds it for the demo study (demo.yaml keeps the `harmonization` and `selection` defaults:
    ComBat on, rank test 0.05, Spearman 0.9, mRMR 20, LASSO, PCA 32; LASSO's CV folds = models.cv_folds; seed 42)."""
    selection = SelectionSettings(rank_alpha=0.05, spearman_threshold=0.9, mrmr_k=20, lasso=True, pca_components=32)
    return ChainSettings(HarmonizationSettings(enabled=True), selection, lasso_cv=cv_folds, seed=SPLIT_SEED)


# ------------------------------------------------------------------------------------------------------- timing
class Timings:
    """Wall seconds of fit_chain_folds / tune_on_folds (per classifier) / paper_faithful_columns in one call."""

    def __init__(self) -> None:
        self.chain = 0.0
        self.prefilter = 0.0
        self.tune: dict[str, float] = defaultdict(float)

    @contextlib.contextmanager
    def installed(self):
        originals = training.fit_chain_folds, training.tune_on_folds, training.paper_faithful_columns

        def fit_chain_folds(*args, **kwargs):
            started = time.perf_counter()
            try:
                return originals[0](*args, **kwargs)
            finally:
                self.chain += time.perf_counter() - started

        def tune_on_folds(folds, estimator, name, *args, **kwargs):
            started = time.perf_counter()
            try:
                return originals[1](folds, estimator, name, *args, **kwargs)
            finally:
                self.tune[name] += time.perf_counter() - started

        def paper_faithful_columns(*args, **kwargs):
            started = time.perf_counter()
            try:
                return originals[2](*args, **kwargs)
            finally:
                self.prefilter += time.perf_counter() - started

        training.fit_chain_folds, training.tune_on_folds, training.paper_faithful_columns = (
            fit_chain_folds,
            tune_on_folds,
            paper_faithful_columns,
        )
        try:
            yield self
        finally:
            training.fit_chain_folds, training.tune_on_folds, training.paper_faithful_columns = originals


def timed_train(
    matrix: pd.DataFrame,
    roles: pd.Series,
    signature: str,
    classifiers: list[str],
    mode: str,
    settings: ChainSettings,
    cv_folds: int,
) -> dict:
    timings = Timings()
    with timings.installed():
        started, cpu_started = time.perf_counter(), time.process_time()
        models = train_signature(
            matrix,
            roles,
            parse_signature(signature),
            classifiers,
            mode,  # type: ignore[arg-type]
            CLASSES,
            settings,
            "fast",
            cv_folds,
        )
        total, cpu = time.perf_counter() - started, time.process_time() - cpu_started
    tune_total = sum(timings.tune.values())
    first = models[0]
    lasso = next((r for r in first.selection if r.get("step") == "lasso"), None)
    return {
        "signature": signature,
        "mode": mode,
        "load1_after": os.getloadavg()[0],
        "total_s": total,
        "cpu_s": cpu,
        "chain_s": timings.chain,
        "tune_s": tune_total,
        "prefilter_s": timings.prefilter,
        "other_s": total - timings.chain - tune_total - timings.prefilter,
        "tune_by_classifier_s": dict(timings.tune),
        "n_models": len(models),
        "n_input_columns": len(first.input_columns),
        "n_lasso_kept": len(lasso["kept"]) if lasso else None,
        "models": {
            m.spec.classifier: {
                "cv_auc": m.cv_score_mean,
                "test_auc": m.metrics.get("test", {}).get("auc"),
                "validation_auc": m.metrics.get("validation", {}).get("auc"),
            }
            for m in models
        },
    }


def chain_step_breakdown(
    matrix: pd.DataFrame, roles: pd.Series, signature: str, settings: ChainSettings
) -> dict[str, float]:
    """Each chain step fitted once on all training rows (one of the k+1 chain fits of `fit_chain_folds`)."""
    sig = parse_signature(signature)
    template = build_pipeline(sig, sig.columns(matrix), None, settings)
    train = matrix[roles.reindex(matrix.index) == "train"]
    X, y, seconds = train, train["label"].astype(str), {}
    for name, step in template.steps[:-1]:
        fitted = clone(step)
        if hasattr(fitted, "set_output"):
            fitted.set_output(transform="pandas")
        started = time.perf_counter()
        X = fitted.fit_transform(X, y)
        seconds[name] = time.perf_counter() - started
        seconds[f"{name}__out_columns"] = int(X.shape[1])
    return seconds


# ------------------------------------------------------------------------------------------------------- parts
def run_demo(args: argparse.Namespace) -> dict:
    if args.matrix_duckdb:
        matrix, source = demo_duckdb_matrix(Path(args.matrix_duckdb)), f"duckdb:{args.matrix_duckdb}"
    else:
        matrix, source = synthetic_matrix(args.demo_development, args.demo_prospective, args.cohort_seed), "synthetic"
    roles = holdout_roles(matrix)
    settings, classifiers = chain_settings(args.cv_folds), _names(args.demo_classifiers)
    runs = []
    for repeat in range(args.repeats):
        started = time.perf_counter()
        for signature in args.signatures.split(","):
            for mode in args.modes.split(","):
                run = timed_train(matrix, roles, signature, classifiers, mode, settings, args.cv_folds)
                runs.append({"repeat": repeat, **run})
                print(
                    f"  demo r{repeat} {signature:>16} {mode:>14}: {run['total_s']:7.1f} s "
                    f"(chain {run['chain_s']:.1f}, tune {run['tune_s']:.1f}, prefilter {run['prefilter_s']:.1f}, "
                    f"other {run['other_s']:.1f}; {run['n_models']} models)",
                    flush=True,
                )
        print(f"  demo repeat {repeat}: {time.perf_counter() - started:.1f} s", flush=True)
    return {
        "source": source,
        "shape": _shape(matrix, roles),
        "classifiers": classifiers,
        "cv_folds": args.cv_folds,
        "runs": runs,
        "totals_s": [sum(r["total_s"] for r in runs if r["repeat"] == k) for k in range(args.repeats)],
    }


def run_scaling(args: argparse.Namespace) -> dict:
    classifiers, settings, sizes = _names(args.classifiers), chain_settings(args.cv_folds), []
    signatures, modes = args.scaling_signatures.split(","), args.scaling_modes.split(",")
    for size in [int(s) for s in args.sizes.split(",") if s]:
        matrix = synthetic_matrix(
            size,
            0,
            args.cohort_seed,
            deep=any("DL_" in s for s in signatures),
            clinical=any(s in ("Clinical", "Combined") for s in signatures),
        )
        roles = holdout_roles(matrix)
        runs, steps = [], {}
        for repeat in range(args.repeats):
            for signature in signatures:
                for mode in modes:
                    run = timed_train(matrix, roles, signature, classifiers, mode, settings, args.cv_folds)
                    runs.append({"repeat": repeat, **run})
                    tuned = ", ".join(f"{k} {v:.1f}" for k, v in run["tune_by_classifier_s"].items())
                    print(
                        f"  scaling n={size:>5} r{repeat} {signature} {mode}: {run['total_s']:7.1f} s "
                        f"(chain {run['chain_s']:.1f}, tune {run['tune_s']:.1f} = {tuned}; "
                        f"prefilter {run['prefilter_s']:.1f}, other {run['other_s']:.1f})",
                        flush=True,
                    )
        for signature in signatures if args.step_breakdown else []:
            if signature in ("Clinical", "Combined"):
                continue
            steps[signature] = chain_step_breakdown(matrix, roles, signature, settings)
            fits = steps[signature]
            print(
                f"  scaling n={size:>5} {signature} one chain fit: "
                + ", ".join(f"{k} {v:.2f}s->{fits[k + '__out_columns']}" for k, v in fits.items() if "__" not in k),
                flush=True,
            )
        totals = [sum(r["total_s"] for r in runs if r["repeat"] == k) for k in range(args.repeats)]
        sizes.append(
            {
                "patients": size,
                "shape": _shape(matrix, roles),
                "runs": runs,
                "chain_steps_one_fit": steps,
                "totals_s": totals,
                "median_total_s": statistics.median(totals),
            }
        )
    return {
        "signatures": signatures,
        "modes": modes,
        "classifiers": classifiers,
        "cv_folds": args.cv_folds,
        "sizes": sizes,
    }


def run_micro(args: argparse.Namespace) -> dict:
    """Costs behind the bottlenecks named in RESULTS.md, each against a leaner equivalent (best of 5 runs)."""
    from sklearn.decomposition import PCA
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import StratifiedKFold
    from sklearn.svm import l1_min_c

    from cssci_platform.lib.modeling.chains import ConstantFeatureDropper
    from cssci_platform.lib.selection import LassoSelector

    def best_ms(fn, rounds: int = 5) -> float:
        times = []
        for _ in range(rounds):
            started = time.perf_counter()
            fn()
            times.append(time.perf_counter() - started)
        return 1000 * min(times)

    def lean_lasso(X: np.ndarray, y: np.ndarray) -> None:  # the same 20 C x 5 folds liblinear fits, numpy log-loss
        Cs = l1_min_c(X, y, loss="log") * np.logspace(0, 3, 20)
        for train, valid in StratifiedKFold(5, shuffle=True, random_state=0).split(X, y):
            for C in Cs:
                model = LogisticRegression(
                    C=C, l1_ratio=1.0, solver="liblinear", intercept_scaling=10.0, random_state=0, max_iter=10_000
                ).fit(X[train], y[train])
                p = 1 / (1 + np.exp(-(X[valid] @ model.coef_[0] + model.intercept_[0])))
                _ = -np.mean(np.log(np.clip(np.where(y[valid] == 1, p, 1 - p), 1e-15, 1)))

    rng, out = np.random.default_rng(0), {}
    for n in (26, 1024):
        X = rng.normal(size=(n, 20))
        y = (X[:, 0] + rng.normal(size=n) > 0).astype(int)
        frame = pd.DataFrame(X, columns=[f"f{i}" for i in range(20)])
        out[f"lasso_selector_cv5_{n}x20_ms"] = best_ms(
            lambda frame=frame, y=y: LassoSelector(cv=5, random_state=0).fit(frame, y)
        )
        out[f"lean_l1_path_cv5_{n}x20_ms"] = best_ms(lambda X=X, y=y: lean_lasso(X, y))
    for n, p in ((26, 2140), (26, 4700), (1280, 2140), (1280, 4700)):
        frame = pd.DataFrame(rng.normal(size=(n, p)), columns=[f"rad__{i}" for i in range(p)]).assign(center="A")
        out[f"constant_dropper_nunique_{n}x{p}_ms"] = best_ms(
            lambda frame=frame: ConstantFeatureDropper().fit(frame), 3
        )
        out[f"constant_numpy_{n}x{p}_ms"] = best_ms(
            lambda frame=frame: _constant_columns(frame.drop(columns=["center"])), 3
        )
    for n in (26, 1280):
        X = rng.normal(size=(n, DL_DIM))
        for solver in ("full", "covariance_eigh"):
            out[f"pca32_{solver}_{n}x{DL_DIM}_ms"] = best_ms(
                lambda n=n, solver=solver, X=X: PCA(min(32, n), svd_solver=solver).fit(X)
            )
    for key, value in out.items():
        print(f"  micro {key}: {value:.1f}", flush=True)
    return out


def _constant_columns(frame: pd.DataFrame) -> np.ndarray:
    values = frame.to_numpy()
    return (values == values[0]).all(axis=0)


def _names(text: str) -> list[str]:
    names = list(CLASSIFIER_NAMES) if text == "all" else [c.strip() for c in text.split(",") if c.strip()]
    unknown = sorted(set(names) - set(CLASSIFIER_NAMES))
    if unknown:
        raise SystemExit(f"unknown classifiers {unknown}; choose from {list(CLASSIFIER_NAMES)}")
    return names


def _shape(matrix: pd.DataFrame, roles: pd.Series) -> dict:
    counts = roles.reindex(matrix.index).value_counts().to_dict()
    return {
        "patients": len(matrix),
        "roles": {k: int(v) for k, v in counts.items()},
        "centers": sorted(set(matrix["center"])),
        **{
            f"{prefix}columns": sum(c.startswith(prefix) for c in matrix.columns)
            for prefix in ("rad__", "dl__", "clin__")
        },
    }


def _machine() -> dict:
    from threadpoolctl import threadpool_info

    cpu = next(
        (
            line.split(":", 1)[1].strip()
            for line in Path("/proc/cpuinfo").read_text(encoding="utf-8").splitlines()
            if line.startswith("model name")
        ),
        platform.processor(),
    )
    import lightgbm
    import sklearn
    import xgboost

    return {
        "nproc": os.cpu_count(),
        "cpu": cpu,
        "kernel": platform.release(),
        "python": platform.python_version(),
        "numpy": np.__version__,
        "pandas": pd.__version__,
        "scikit-learn": sklearn.__version__,
        "lightgbm": lightgbm.__version__,
        "xgboost": xgboost.__version__,
        "threadpools": [{k: p.get(k) for k in ("user_api", "internal_api", "num_threads")} for p in threadpool_info()],
    }


def _uptime() -> str:
    return subprocess.run(["uptime"], capture_output=True, text=True).stdout.strip()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--parts", default="demo,scaling", help="comma-separated: demo, scaling, micro")
    parser.add_argument(
        "--cv-folds", type=int, default=5, help="grid-search CV folds (and LASSO CV folds, as the demo)"
    )
    parser.add_argument("--signatures", default=DEMO_SIGNATURES, help="demo part: signatures")
    parser.add_argument("--modes", default=",".join(MODES), help="demo part: modes")
    parser.add_argument("--demo-classifiers", default="all", help="demo part: zoo members or 'all'")
    parser.add_argument("--demo-development", type=int, default=40)
    parser.add_argument("--demo-prospective", type=int, default=10)
    parser.add_argument("--matrix-duckdb", default=None, help="demo part: read feature_matrix from this DuckDB file")
    parser.add_argument("--sizes", default="100,400,1600", help="scaling part: development patients per size")
    parser.add_argument("--classifiers", default="LR,RandomForest,LightGBM", help="scaling part: zoo members or 'all'")
    parser.add_argument("--scaling-signatures", default="Rad", help="scaling part: signatures")
    parser.add_argument("--scaling-modes", default="leakage_safe", help="scaling part: modes")
    parser.add_argument(
        "--no-step-breakdown",
        dest="step_breakdown",
        action="store_false",
        help="scaling part: skip the one-fit per-step chain timing",
    )
    parser.add_argument("--repeats", type=int, default=1)
    parser.add_argument("--cohort-seed", type=int, default=7, help="sample_sci_patients seed (the demo's is 7)")
    parser.add_argument("--out", type=Path, default=WORK / "modeling_scaling.json")
    args = parser.parse_args(argv)

    warnings.simplefilter("ignore")  # EmptySelectionWarning (kept in reports), convergence warnings of tiny folds
    parts = [p.strip() for p in args.parts.split(",") if p.strip()]
    result: dict = {
        "command": " ".join([Path(sys.argv[0]).name, *(argv if argv is not None else sys.argv[1:])]),
        "machine": _machine(),
        "uptime_start": _uptime(),
    }
    print(f"{result['uptime_start']}\n{result['machine']['threadpools']}", flush=True)
    started = time.perf_counter()
    if "demo" in parts:
        result["demo"] = run_demo(args)
        result["uptime_after_demo"] = _uptime()
        print(result["uptime_after_demo"], flush=True)
    if "scaling" in parts:
        result["scaling"] = run_scaling(args)
    if "micro" in parts:
        result["micro"] = run_micro(args)
    result["uptime_end"], result["wall_s"] = _uptime(), time.perf_counter() - started
    print(f"{result['uptime_end']}\nwall {result['wall_s']:.1f} s", flush=True)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=1, default=float), encoding="utf-8")
    print(f"written {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
