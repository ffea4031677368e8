"""The modeling forkserver loads, once, what each fit step process would otherwise load on its first model (issue 18):
MLflow's SQL store modules and the two maps of modules to installed distributions (ours for pinning requirements,
MLflow's for checking them). A process that imported `step_preload` logs a model without scanning the installed
packages again."""

import subprocess
import sys
from pathlib import Path

from cssci_platform.defs.models.jobs import FIT_STEP_MODULES

SCRIPT = r"""
import importlib.metadata, sys
import importlib_metadata
import numpy as np, pandas as pd
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import StandardScaler

import cssci_platform.lib.model_tracking.step_preload  # what the forkserver imports before forking a step

def no_scan(*args, **kwargs):
    raise AssertionError("the installed packages were scanned again after the preload")

importlib.metadata.packages_distributions = no_scan
importlib_metadata.packages_distributions = no_scan
assert "mlflow.store.tracking.sqlalchemy_store" in sys.modules

from cssci_platform.lib.model_tracking import TrackingConfig, log_model_run

rng = np.random.default_rng(0)
X = pd.DataFrame(rng.normal(size=(30, 4)), columns=[f"f{i}" for i in range(4)])
y = (X["f0"] > 0).astype(int)
model = Pipeline([("scale", StandardScaler()), ("clf", LogisticRegression())]).fit(X, y)
config = TrackingConfig(tracking_uri=sys.argv[1], experiment_name="preload")
logged = log_model_run(config, run_name="LR", model=model, input_example=X.head(3))
print("logged", logged.model_uri)
"""


def test_a_process_forked_after_the_preload_logs_a_model_without_scanning_the_installed_packages(
    tmp_path: Path,
) -> None:
    assert "cssci_platform.lib.model_tracking.step_preload" in FIT_STEP_MODULES  # the forkserver imports it
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    done = subprocess.run([sys.executable, "-c", SCRIPT, uri], capture_output=True, text=True, timeout=300,
                          cwd=tmp_path)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert "logged models:/" in done.stdout
    assert "scanned again" not in done.stderr, done.stderr[-3000:]  # MLflow's check logs what it caught as a warning
