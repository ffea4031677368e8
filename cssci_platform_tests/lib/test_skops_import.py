"""skops.io without torch (issue 18, run start-up): skops builds its trusted scikit-learn types at import with
`sklearn.utils.all_estimators()`, whose package walk imports `sklearn.externals.array_api_compat.torch`, i.e. torch
(measured 4-8 s of the 5-10 s import under load), in every process that logs or loads a model: the modeling
forkserver, report and scoring runs, `cssci predict`. Our import skips that package; skops trusts the same types, a
model logged and loaded through MLflow round-trips, and torch imports normally afterwards."""

from __future__ import annotations

import json
import subprocess
import sys

from cssci_platform.defs.models.jobs import FIT_STEP_MODULES

TRUSTED_TYPES = """
import json, sys
{imports}
from skops.io import _trusted_types
wrapper = "sklearn.externals.array_api_compat.torch"
print(json.dumps({{"torch": "torch" in sys.modules, "wrapper_left": wrapper in sys.modules,
                  "trusted": sorted(_trusted_types.SKLEARN_ESTIMATOR_TYPE_NAMES)}}))
"""
ROUND_TRIP = r"""
import sys, numpy as np, pandas as pd
from sklearn.linear_model import LogisticRegression
from cssci_platform.lib.model_tracking import TrackingConfig, log_model_run, load_model
X = pd.DataFrame(np.random.default_rng(0).normal(size=(30, 3)), columns=["a", "b", "c"])
model = LogisticRegression().fit(X, (X["a"] > 0).astype(int))
config = TrackingConfig(sys.argv[1], "skops_import")
logged = log_model_run(config, run_name="m", model=model, input_example=X.head(3))
loaded = load_model(config, logged.model_uri)
assert np.allclose(loaded.predict_proba(X), model.predict_proba(X)), "the loaded model predicts otherwise"
print("torch imported:", "torch" in sys.modules)
import torch  # the real package still imports after our skops import
print("torch ok", torch.__name__)
"""


def _fresh(script: str, *args: str) -> str:
    completed = subprocess.run([sys.executable, "-c", script, *args], capture_output=True, text=True, timeout=300)
    assert completed.returncode == 0, completed.stderr[-3000:]
    return completed.stdout.strip().splitlines()[-1]


def test_skops_imported_our_way_trusts_the_same_types_without_importing_torch() -> None:
    plain = json.loads(_fresh(TRUSTED_TYPES.format(imports="import skops.io")))
    ours = json.loads(_fresh(TRUSTED_TYPES.format(imports="import cssci_platform.lib.model_tracking.skops_io")))
    assert plain["torch"] and not ours["torch"] and not ours["wrapper_left"]
    assert ours["trusted"] == plain["trusted"] and len(ours["trusted"]) > 100


def test_a_model_round_trips_and_torch_still_imports(tmp_path) -> None:
    out = subprocess.run([sys.executable, "-c", ROUND_TRIP, f"sqlite:///{tmp_path / 'mlflow.db'}"], capture_output=True,
                         text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-3000:]
    assert "torch imported: False" in out.stdout and "torch ok torch" in out.stdout


def test_the_modeling_forkserver_imports_skops_our_way() -> None:
    assert "skops.io" not in FIT_STEP_MODULES
    ours = FIT_STEP_MODULES.index("cssci_platform.lib.model_tracking.skops_io")
    assert ours < FIT_STEP_MODULES.index("mlflow.sklearn")
