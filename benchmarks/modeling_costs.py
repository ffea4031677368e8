"""Old vs new, side by side: the avoidable modeling costs of issue 18 removed, with identical results.

The old code is the package as it was at ``--base`` (a git commit; default the commit before the change), the new
code the package at ``--new`` (default HEAD), each extracted with ``git archive`` into
``benchmarks/_work/modeling_costs/tree_<commit>/`` (committed code only: a shared working tree may hold colleagues'
unfinished edits). Each
measurement runs in its own subprocess whose ``PYTHONPATH`` puts one of the two packages first (the subprocess
checks and records which ``cssci_platform`` it imported), old and new alternating which goes first in each round.

Parts (``--parts``):

- ``micro``: one step at a time, best of ``--micro-rounds`` calls: `LassoSelector(cv=5).fit` (26 x 20, 1024 x 20),
  `ConstantFeatureDropper.fit` (26 x 2140, 1280 x 4700), ComBat fit + transform as the chain runs it (32 x 2140,
  1280 x 4700 columns, 3 centers, the default `HarmonizationSettings`), `ChannelPCA(32).fit` (32 x 512 and 1280 x 512
  per channel, 5 channels), the `harmonized_table` column check (`varying_feature_columns`, 40 and 1600 patients).
- ``zoo``: `train_signature` for every signature x mode x classifier of the demo's zoo ("fast" grid, 5-fold CV,
  ChainSettings as `modeling_job` builds them for the demo; `benchmarks/modeling_scaling.py`'s synthetic matrix of
  the demo's shape) on ``--zoo-sizes`` development patients (40 + 10 prospective at "demo" size). Records wall time
  and every model's predicted probabilities, CV AUC, chosen hyper-parameters and kept features, and compares old
  with new: equal features and parameters, probabilities to 1e-12.

    python benchmarks/modeling_costs.py --parts micro,zoo --rounds 3

Figures go to ``benchmarks/_work/modeling_costs/modeling_costs.json`` (``--out``) with `uptime` at start and end:
the machine may be shared, so say so with the figures.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import statistics
import subprocess
import sys
import tarfile
import time
import warnings
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]
WORK = REPO_ROOT / "benchmarks" / "_work" / "modeling_costs"
DEFAULT_BASE = "fc20970"  # main just before the issue-18 cost fixes (065dcfc)
ZOO_SIGNATURES = "Rad,DL_resnet18,Rad+DL_resnet18,Clinical,Combined"
LARGE_SIGNATURES = "Rad,DL_resnet18,Rad+DL_resnet18,Combined"
LARGE_CLASSIFIERS = "LR,NaiveBayes,KNN,SVM,LightGBM"


# ------------------------------------------------------------------------------------------------------ workers
def _best_ms(fn, rounds: int) -> float:
    times = []
    for _ in range(rounds):
        started = time.perf_counter()
        fn()
        times.append(time.perf_counter() - started)
    return 1000 * min(times)


def worker_micro(rounds: int) -> dict:
    import numpy as np
    import pandas as pd

    from cssci_platform.lib.harmonization.settings import HarmonizationSettings
    from cssci_platform.lib.harmonization.study_table import varying_feature_columns
    from cssci_platform.lib.modeling.chains import ConstantFeatureDropper
    from cssci_platform.lib.selection import ChannelPCA, LassoSelector

    rng, out = np.random.default_rng(0), {}
    for n in (26, 1024):
        X = rng.normal(size=(n, 20))
        y = (X[:, 0] + rng.normal(size=n) > 0).astype(int)
        frame = pd.DataFrame(X, columns=[f"f{i}" for i in range(20)])
        out[f"lasso_cv5_{n}x20"] = _best_ms(
            lambda frame=frame, y=y: LassoSelector(cv=5, random_state=0).fit(frame, y), rounds
        )
    for n, p in ((26, 2140), (1280, 4700)):
        values = rng.normal(size=(n, p))
        values[:, : p // 20] = 1.0  # some constant columns
        frame = pd.DataFrame(values, columns=[f"rad__{i}" for i in range(p)]).assign(center="A")
        out[f"constant_dropper_{n}x{p}"] = _best_ms(lambda frame=frame: ConstantFeatureDropper().fit(frame), rounds)
    for n, p in ((32, 2140), (1280, 4700)):
        classes = ("shape", "firstorder", "glcm", "glrlm", "glszm")
        names = [f"rad__sag_T2__lesion__original__original_{classes[i % 5]}_F{i}" for i in range(p)]
        frame = pd.DataFrame(rng.normal(size=(n, p)), columns=names).assign(center=[f"C{i % 3}" for i in range(n)])

        def combat(frame=frame) -> None:
            fitted = HarmonizationSettings().combat("center").set_output(transform="pandas").fit(frame)
            fitted.transform(frame)

        out[f"combat_fit_transform_{n}x{p}"] = _best_ms(combat, rounds)
    for n in (32, 1280):
        latent = rng.normal(size=(n, 10))
        blocks = {
            f"dl__resnet18__ch{c}__{i:04d}": v
            for c in range(5)
            for i, v in enumerate(np.logaddexp(0, latent @ rng.normal(size=(10, 512)) + rng.normal(size=(n, 512))).T)
        }
        frame = pd.DataFrame(blocks)
        out[f"channel_pca32_{n}x5x512"] = _best_ms(lambda frame=frame: ChannelPCA(32).fit(frame), rounds)
    for n in (40, 1600):
        matrix = pd.DataFrame(rng.normal(size=(n, 4700)), columns=[f"rad__{i}" for i in range(4700)])
        train = pd.Series(np.arange(n) % 5 != 0, index=matrix.index)
        out[f"varying_feature_columns_{n}x4700"] = _best_ms(
            lambda matrix=matrix, train=train: varying_feature_columns(matrix, train), rounds
        )
    return out


def worker_zoo(size: str, signatures: str, classifiers: str, modes: str, cv_folds: int) -> dict:
    sys.path.insert(0, str(REPO_ROOT / "benchmarks"))
    from modeling_scaling import CLASSES, chain_settings, demo_duckdb_matrix, holdout_roles, synthetic_matrix

    from cssci_platform.lib.classifiers import CLASSIFIER_NAMES
    from cssci_platform.lib.modeling.signatures import parse_signature
    from cssci_platform.lib.modeling.training import train_signature

    if size.startswith("duckdb:"):  # a finished study's feature_matrix (read-only copy of its warehouse)
        matrix = demo_duckdb_matrix(Path(size.removeprefix("duckdb:")))
    else:
        development, prospective = (40, 10) if size == "demo" else (int(size), 0)
        matrix = synthetic_matrix(
            development,
            prospective,
            7,
            deep="DL" in signatures,
            clinical="Combined" in signatures or "Clinical" in signatures,
        )
    roles = holdout_roles(matrix)
    settings = chain_settings(cv_folds)
    names = list(CLASSIFIER_NAMES) if classifiers == "all" else classifiers.split(",")
    models, calls = {}, []
    started_all = time.perf_counter()
    for signature in signatures.split(","):
        for mode in modes.split(","):
            started = time.perf_counter()
            trained = train_signature(
                matrix, roles, parse_signature(signature), names, mode, CLASSES, settings, "fast", cv_folds
            )
            calls.append(
                {"signature": signature, "mode": mode, "seconds": time.perf_counter() - started, "models": len(trained)}
            )
            for model in trained:
                predictions = model.predictions.sort_values(["patient_key", "class_label"])
                models[f"{signature}|{mode}|{model.spec.classifier}"] = {
                    "probabilities": predictions["probability"].tolist(),
                    "cv_auc": model.cv_score_mean,
                    "params": json.dumps(model.best_params, sort_keys=True, default=str),
                    "kept": [list(r["kept"]) for r in model.selection],
                }
    return {
        "wall_s": time.perf_counter() - started_all,
        "calls": calls,
        "models": models,
        "shape": [int(x) for x in matrix.shape],
        "train_rows": int((roles == "train").sum()),
    }


def worker_main(argv: list[str]) -> int:
    warnings.simplefilter("ignore")
    import cssci_platform

    kind, out = argv[0], Path(argv[1])
    result = {"package": cssci_platform.__file__, "load1_before": os.getloadavg()[0]}
    if kind == "micro":
        result["micro_ms"] = worker_micro(int(argv[2]))
    else:
        result["zoo"] = worker_zoo(*argv[2:6], int(argv[6]))
    result["load1_after"] = os.getloadavg()[0]
    out.write_text(json.dumps(result))
    return 0


# ------------------------------------------------------------------------------------------------------ driver
def package_tree(base: str) -> Path:
    """The package as it was at commit `base`, extracted once."""
    commit = subprocess.run(
        ["git", "rev-parse", "--short", base], cwd=REPO_ROOT, capture_output=True, text=True, check=True
    ).stdout.strip()
    target = WORK / f"tree_{commit}"
    if not (target / "cssci_platform").is_dir():
        archive = subprocess.run(
            ["git", "archive", commit, "cssci_platform"], cwd=REPO_ROOT, capture_output=True, check=True
        ).stdout
        target.mkdir(parents=True, exist_ok=True)
        with tarfile.open(fileobj=io.BytesIO(archive)) as tar:
            tar.extractall(target, filter="data")
    return target


def run_side(side: str, source: Path, worker_args: list[str], out: Path) -> dict:
    env = {**os.environ, "PYTHONPATH": str(source)}
    subprocess.run(
        [sys.executable, __file__, "--worker", worker_args[0], str(out), *worker_args[1:]], env=env, check=True
    )
    result = json.loads(out.read_text())
    expected = (source / "cssci_platform" / "__init__.py").resolve()
    if Path(result["package"]).resolve() != expected:
        raise SystemExit(f"{side}: imported {result['package']}, expected {expected}")
    return result


def side_by_side(sources: dict[str, Path], worker_args: list[str], rounds: int, label: str) -> list[dict]:
    runs = []
    for round_ in range(rounds):
        order = ["old", "new"] if round_ % 2 == 0 else ["new", "old"]
        pair = {}
        for side in order:
            pair[side] = run_side(side, sources[side], worker_args, WORK / f"{label}_{side}.json")
            print(f"  {label} round {round_ + 1} {side}: {_headline(pair[side])}", flush=True)
        runs.append(pair)
    return runs


def _headline(result: dict) -> str:
    if "micro_ms" in result:
        return ", ".join(f"{k} {v:.1f} ms" for k, v in result["micro_ms"].items())
    return f"{result['zoo']['wall_s']:.1f} s (load {result['load1_before']:.2f} -> {result['load1_after']:.2f})"


def compare_models(old: dict, new: dict) -> dict:
    """Same models, parameters and kept features; the largest probability and CV AUC differences."""
    assert old.keys() == new.keys(), "different model sets"
    worst_p, worst_cv, differing = 0.0, 0.0, []
    for key in old:
        a, b = old[key], new[key]
        if a["params"] != b["params"] or a["kept"] != b["kept"] or len(a["probabilities"]) != len(b["probabilities"]):
            differing.append(key)
            continue
        worst_p = max([worst_p, *(abs(x - y) for x, y in zip(a["probabilities"], b["probabilities"], strict=True))])
        worst_cv = max(worst_cv, abs(a["cv_auc"] - b["cv_auc"]))
    return {
        "models": len(old),
        "differing_params_or_features": differing,
        "max_abs_probability_difference": worst_p,
        "max_abs_cv_auc_difference": worst_cv,
    }


def main(argv: list[str]) -> int:
    if argv and argv[0] == "--worker":
        return worker_main(argv[1:])
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--parts", default="micro,zoo")
    parser.add_argument("--base", default=DEFAULT_BASE, help="git commit of the old code")
    parser.add_argument("--new", default="HEAD", help="git commit of the new code")
    parser.add_argument("--rounds", type=int, default=3, help="old/new pairs per measurement")
    parser.add_argument("--large-rounds", type=int, default=1, help="old/new pairs at the non-demo sizes")
    parser.add_argument("--micro-rounds", type=int, default=5, help="calls per micro measurement (best is kept)")
    parser.add_argument(
        "--zoo-sizes",
        default="demo,1600",
        help="'demo' (40 + 10), development patients, or duckdb:<warehouse copy> (its feature_matrix, the demo zoo)",
    )
    parser.add_argument("--cv-folds", type=int, default=5)
    parser.add_argument("--large-signatures", default=LARGE_SIGNATURES, help="signatures at the non-demo sizes")
    parser.add_argument("--large-classifiers", default=LARGE_CLASSIFIERS, help="classifiers at the non-demo sizes")
    parser.add_argument("--out", type=Path, default=WORK / "modeling_costs.json")
    args = parser.parse_args(argv)
    WORK.mkdir(parents=True, exist_ok=True)
    sources = {"old": package_tree(args.base), "new": package_tree(args.new)}
    uptime = subprocess.run(["uptime"], capture_output=True, text=True).stdout.strip()
    result: dict = {
        "command": " ".join(["python benchmarks/modeling_costs.py", *argv]),
        "base": args.base,
        "new": args.new,
        "nproc": os.cpu_count(),
        "uptime_start": uptime,
    }
    print(uptime, flush=True)
    parts = args.parts.split(",")
    if "micro" in parts:
        runs = side_by_side(sources, ["micro", str(args.micro_rounds)], args.rounds, "micro")
        keys = runs[0]["old"]["micro_ms"].keys()
        result["micro"] = {
            key: {side: statistics.median(r[side]["micro_ms"][key] for r in runs) for side in ("old", "new")}
            for key in keys
        }
        for key, value in result["micro"].items():
            value["old_over_new"] = value["old"] / value["new"]
            print(f"  micro {key}: old {value['old']:.1f} ms, new {value['new']:.1f} ms, {value['old_over_new']:.2f}x")
        _write(args.out, result)
    for size in args.zoo_sizes.split(",") if "zoo" in parts else []:
        signatures, classifiers = (
            (ZOO_SIGNATURES, "all")
            if size == "demo" or size.startswith("duckdb:")
            else (args.large_signatures, args.large_classifiers)
        )
        worker_args = ["zoo", size, signatures, classifiers, "leakage_safe,paper_faithful", str(args.cv_folds)]
        rounds = args.rounds if size == "demo" else args.large_rounds
        label = "real" if size.startswith("duckdb:") else size
        runs = side_by_side(sources, worker_args, rounds, f"zoo_{label}")
        old_s, new_s = [r["old"]["zoo"]["wall_s"] for r in runs], [r["new"]["zoo"]["wall_s"] for r in runs]
        summary = {
            "signatures": signatures,
            "classifiers": classifiers,
            "shape": runs[0]["new"]["zoo"]["shape"],
            "train_rows": runs[0]["new"]["zoo"]["train_rows"],
            "old_s": old_s,
            "new_s": new_s,
            "paired_ratios": [o / n for o, n in zip(old_s, new_s, strict=True)],
            "old_over_new_median": statistics.median(old_s) / statistics.median(new_s),
            "per_call_s": {side: runs[0][side]["zoo"]["calls"] for side in ("old", "new")},
            "identity": compare_models(runs[0]["old"]["zoo"]["models"], runs[0]["new"]["zoo"]["models"]),
            "loads": [[r[s]["load1_before"] for s in ("old", "new")] for r in runs],
        }
        result[f"zoo_{label}"] = summary
        _write(args.out, result)  # each finished part is kept, even if a later one is stopped
        print(
            f"  zoo {size}: old {old_s}, new {new_s}, median ratio {summary['old_over_new_median']:.2f}x; "
            f"identity {summary['identity']}",
            flush=True,
        )
    result["uptime_end"] = subprocess.run(["uptime"], capture_output=True, text=True).stdout.strip()
    print(result["uptime_end"], flush=True)
    _write(args.out, result)
    return 0


def _write(out: Path, result: dict) -> None:
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2))


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
