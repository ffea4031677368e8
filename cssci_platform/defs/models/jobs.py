"""modeling_job and its executor: the zoo's fit steps (its units, two steps per worker) run side by side, one process
each."""

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import dagster as dg

from cssci_platform.defs.executors import step_executor

MODELING_ASSETS = ["study_outcome", "patient_splits", "feature_matrix", "feature_reliability", "harmonized_features",
                   "trained_models", "model_results", "predictions"]

# What a fit step imports: loaded once by the forkserver with the definitions' modules, every step process is forked
# from it with them in memory instead of importing them again (measured in benchmarks/RESULTS.md, "Parallel model
# fits").
FIT_STEP_MODULES = (
    "cssci_platform.lib.model_tracking.skops_io",  # first: skops.io without torch, before MLflow imports it
    "cssci_platform.defs.models.training",
    "cssci_platform.lib.modeling.zoo",
    "cssci_platform.lib.modeling.results",
    "cssci_platform.lib.model_tracking.runs",
    "cssci_platform.lib.model_tracking.model_format",
    "cssci_platform.lib.model_tracking.step_preload",
    "mlflow.sklearn",
    "lightgbm",
    "xgboost",
)
START_METHODS = ("forkserver", "spawn")
# Threads of each native pool (BLAS, OpenMP) while a fit step fits and logs, in process or in a step process of its
# own. One: N steps at once then use N cores without their BLAS threads spinning against each other (two steps with
# two threads each on 2 cores: the upper-limb zoo in parallel took 158 s, with one thread each 128 s), and a study's
# numbers do not depend on how many steps ran at once or on the machine's core count (BLAS sums in another order with
# more threads: thresholds moved by up to 2e-14 between one and two threads). Measured in benchmarks/RESULTS.md.
FIT_NATIVE_THREADS = 1
FIT_UNITS_METADATA = "fit units"  # on each of plan_fit_units' outputs: how many units its fit step runs


def available_cores() -> int:
    """The cores this process may run on (its CPU affinity; a container's limit, not the host's count)."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


def modeling_workers(executor_config: Mapping[str, Any]) -> int:
    """Steps the modeling executor runs at once: its `max_concurrent`, 0 or absent meaning the available cores."""
    return int(executor_config.get("max_concurrent") or 0) or available_cores()


def definition_modules() -> list[str]:
    """Every module of cssci_platform.defs (named from the files, nothing imported): what a step process imports to
    find its job when the run was launched from the code location (workspace.yaml)."""
    root = Path(__file__).resolve().parents[1]
    names = (path.relative_to(root.parent.parent).with_suffix("").parts for path in sorted(root.rglob("*.py")))
    return [".".join(parts[:-1] if parts[-1] == "__init__" else parts) for parts in names]


def _multiprocess_config(config: dict) -> dict:
    """The modeling executor's settings as Dagster's multiprocess executor takes them."""
    start: dict = {"spawn": {}} if config["start_method"] == "spawn" else {
        "forkserver": {"preload_modules": [*FIT_STEP_MODULES, *definition_modules()]}}
    return {"max_concurrent": modeling_workers(config), "start_method": start}


# The one setting of how modeling runs in parallel, in the run config (launchpad, `dagster job launch --config`,
# execute_job): `execution: {config: {max_concurrent: N, start_method: forkserver | spawn}}`. max_concurrent: steps at
# once (default 0 = the cores this process may use); start_method: forkserver (default: step processes are forked
# from one that imported FIT_STEP_MODULES once) or spawn (each step process imports everything itself).
# `execute_in_process` ignores it and runs the steps one after another in its own process (the serial path).
MODELING_EXECUTOR = dg.multiprocess_executor.configured(
    _multiprocess_config,
    name="modeling_multiprocess",
    config_schema={
        "max_concurrent": dg.Field(int, default_value=0, description="Steps at once; 0: the available cores"),
        "start_method": dg.Field(
            dg.Enum("ModelingStartMethod", [dg.EnumValue(m) for m in START_METHODS]),
            default_value="forkserver",
            description="forkserver: step processes forked from one that imported the fit step's modules once; "
            "spawn: each step process imports everything itself",
        ),
    },
)

modeling_job = dg.define_asset_job(
    "modeling_job", MODELING_ASSETS,
    executor_def=step_executor(MODELING_EXECUTOR),
    description="Cohort-level: study outcome, split, feature matrix, ICC, ComBat view, the classifier zoo per "
                "signature and mode (fit units as parallel steps under the multiprocess executor: "
                "execution.config.max_concurrent, default the available cores), MLflow.",
)
