"""Logging one fitted model (issue 18, tracking cost): old code vs new, side by side, with what it writes.

One synthetic Rad+DL-wide matrix (``--columns`` feature columns, three centers, ``--patients`` rows; names shaped as
the platform names radiomics columns), the Rad chain of `build_pipeline` with logistic regression fitted on it, then
in the same process: skops `dumps` and `loads` of the model (best of 3), and ``--models`` calls of `log_model_run`
into a fresh sqlite MLflow store (the fit step's logging: params, metrics, selection reports, the skops model with
its signature, input example and requirements). Each side runs in its own processes with its package first on
PYTHONPATH (the old side: a checkout of the baseline commit, ``git worktree add /tmp/base <rev>``), the same
environment, sides alternating which goes first per round. Results must agree: the old and new model predict the
same probabilities for the matrix (checked through the digest each side prints).

    python benchmarks/model_logging.py --baseline /tmp/base --rounds 3
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]
SIDE = """
import hashlib, io, json, statistics, sys, time, zipfile, warnings
warnings.simplefilter("ignore")
import numpy as np, pandas as pd
from sklearn.linear_model import LogisticRegression
from cssci_platform.lib.model_tracking import TrackingConfig, log_model_run, sqlite_tracking_uri
from cssci_platform.lib.model_tracking.skops_io import skops_io
from cssci_platform.lib.modeling.chains import ChainSettings, build_pipeline
from cssci_platform.lib.modeling.signatures import Signature
from cssci_platform.lib.selection import pipeline_reports

columns, patients, models, store = int(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3]), sys.argv[4]
rng = np.random.default_rng(0)
names = [f"rad__original__glcm_feature{i:05d}__lesion" for i in range(columns)]
X = pd.DataFrame(rng.normal(size=(patients, columns)), columns=names)
X[names[:20]] = 1.0
X["center"] = np.repeat(["A", "B", "C"], -(-patients // 3))[:patients]
y = pd.Series((X[names[30]] + rng.normal(scale=0.7, size=patients) > 0).astype(int))
model = build_pipeline(Signature("rad"), names, LogisticRegression(max_iter=5000), ChainSettings(lasso_cv=3)).fit(X, y)
dumps, loads = [], []
for _ in range(3):
    started = time.perf_counter(); data = skops_io.dumps(model); dumps.append(time.perf_counter() - started)
trusted = skops_io.get_untrusted_types(data=data)
for _ in range(3):
    started = time.perf_counter(); skops_io.loads(data, trusted=trusted); loads.append(time.perf_counter() - started)
schema = zipfile.ZipFile(io.BytesIO(data)).read("schema.json")
config = TrackingConfig(sqlite_tracking_uri(store), "model_logging")
log_model_run(config, run_name="warm-up", model=model, input_example=X.head(3))  # the store's first migration
seconds = []
for index in range(models):
    started = time.perf_counter()
    log_model_run(config, run_name=f"model {index}", model=model, input_example=X.head(3),
                  metrics={"cv_auc": 0.7}, selection_reports=pipeline_reports(model))
    seconds.append(time.perf_counter() - started)
probabilities = model.predict_proba(X)
print(json.dumps({"source": sys.modules["cssci_platform"].__file__, "skops_mb": len(data) / 1e6,
                  "schema_mb": len(schema) / 1e6, "dumps_s": min(dumps), "loads_s": min(loads),
                  "log_s": statistics.median(seconds),
                  "probabilities": hashlib.sha256(np.round(probabilities, 12).tobytes()).hexdigest()}))
"""


def side_env(source: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("CSSCI_", "DAGSTER_", "MLFLOW_"))}
    return {**env, "PYTHONPATH": f"{source}{os.pathsep}{env.get('PYTHONPATH', '')}".rstrip(os.pathsep)}


def measure(source: Path, columns: int, patients: int, models: int) -> dict:
    with tempfile.TemporaryDirectory() as folder:
        completed = subprocess.run(
            [sys.executable, "-c", SIDE, str(columns), str(patients), str(models),
             str(Path(folder) / "mlflow.db")],
            env=side_env(source), capture_output=True, text=True, check=False, cwd=folder,
        )
    if completed.returncode != 0:
        raise SystemExit(f"{source}: {completed.stderr[-3000:]}")
    result = json.loads(completed.stdout.strip().splitlines()[-1])
    if not result["source"].startswith(str(source)):
        raise SystemExit(f"expected the package under {source}, imported {result['source']}")
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--baseline", type=Path, required=True, help="checkout of the old commit")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--columns", type=int, default=2700)
    parser.add_argument("--patients", type=int, default=60)
    parser.add_argument("--models", type=int, default=5)
    args = parser.parse_args()
    sides = {"old": args.baseline.resolve(), "new": REPO_ROOT}
    results: dict[str, list[dict]] = {"old": [], "new": []}
    for round_index in range(args.rounds):
        for side in (("old", "new") if round_index % 2 == 0 else ("new", "old")):
            results[side].append(measure(sides[side], args.columns, args.patients, args.models))
            print(side, json.dumps({k: v for k, v in results[side][-1].items() if k != "source"}), flush=True)
    digests = {side: {r["probabilities"] for r in rounds} for side, rounds in results.items()}
    if len(digests["old"] | digests["new"]) != 1:
        raise SystemExit(f"the two sides' models predict differently: {digests}")
    print(f"\n{args.columns} columns, {args.patients} patients; medians over {args.rounds} rounds (same predictions)")
    print(f"{'':22s}{'old':>10s}{'new':>10s}{'old/new':>10s}")
    for key in ("skops_mb", "schema_mb", "dumps_s", "loads_s", "log_s"):
        old, new = (statistics.median(r[key] for r in results[side]) for side in ("old", "new"))
        print(f"{key:22s}{old:10.3f}{new:10.3f}{old / new:10.1f}")
    print(f"load: {os.getloadavg()}")


if __name__ == "__main__":
    main()
