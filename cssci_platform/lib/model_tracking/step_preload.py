"""What every model-logging process would otherwise load on its first model, loaded once before it is forked.

The modeling executor's forkserver imports this module (`defs.models.jobs.FIT_STEP_MODULES`), and every fit step
process forked from it inherits the result instead of paying it again (measured per step on the 30-patient demo:
~0.9 s importing MLflow's SQL store, ~0.7 s for our requirement pinning's map of modules to distributions and
~1.1 s for MLflow's own copy of that map, which it builds to check the pinned requirements; see
benchmarks/RESULTS.md). Both maps are scans of the installed distributions' metadata; neither changes while a run
lasts. Importing this module opens no file or connection that a forked process could share.
"""

import mlflow.pyfunc  # noqa: F401  (imported by MLflow's model logging on first use)
import mlflow.store.model_registry.sqlalchemy_store  # noqa: F401  (imported when the first client opens the store)
import mlflow.store.tracking.sqlalchemy_store  # noqa: F401
from mlflow.utils import requirements_utils

from cssci_platform.lib.model_tracking.model_format import packages_distributions

packages_distributions()
# MLflow's map of modules to packages (private, cached globally). Looked up, not called blindly: a forkserver whose
# preload raised would take every fit step down, while a missing warm-up only costs each step its own scan (and
# test_step_preload fails, naming it).
_warm_mlflow_map = getattr(requirements_utils, "_init_packages_to_modules_map", None)
if _warm_mlflow_map is not None:
    _warm_mlflow_map()
