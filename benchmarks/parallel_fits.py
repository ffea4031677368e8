r"""Issue 18: the zoo's fit steps run side by side vs the same run step after step, identical results; where each
step's time goes; and where one model's MLflow logging spends its time.

Parts (``--parts``):

- ``zoo``: `trained_models` (plan -> fit steps, longest first -> register_zoo) on a copy of a finished home's
  warehouse (default the demo home /tmp/demo_home, read-only: its feature_matrix, splits and ICC are reused), each
  side in its own subprocess with a fresh Dagster instance and a fresh sqlite MLflow store. Sides (``--order``, in
  that order, repeats allowed, e.g. ``serial,parallel,parallel,serial``):
  ``serial`` = `dg.materialize` (in-process executor, one step after another);
  ``parallel`` = `dg.execute_job(reconstructable(...))` under modeling_job's executor as configured by default
  (only ``--processes`` given as max_concurrent); ``spawn`` / ``forkserver`` = the same with that start method.
  Per side: wall seconds, and per step (from the run's event log) when its worker was asked for, started and ended,
  and the seconds it spent fitting and logging (the fit steps' output metadata). Then the zoo's tables (run ids and
  timestamps aside), MLflow params and selected features per model and the champions of every side are compared
  with the first serial side's.
- ``logging``: one fitted model (the home's first signature, LR, leakage_safe) logged ``--log-rounds`` times with
  `log_model_run` under cProfile: seconds per model and the top cumulative entries.

``--config <shipped protocol>`` (e.g. cervical_sci_upper_limb) times that protocol's own zoo instead of the demo
home's: its home is prepared once under ``benchmarks/_work/parallel_fits/<config>_home`` by `cssci run` with the
cheapest zoo (Clinical only), no report and untrained networks, and reused; the sides then fit the config's models
section on copies of its warehouse (only modeling is timed).

    python benchmarks/parallel_fits.py --parts zoo --order serial,parallel,parallel,serial --processes 2
    python benchmarks/parallel_fits.py --config cervical_sci_upper_limb --parts zoo \
        --order serial,parallel,parallel,serial
    python benchmarks/parallel_fits.py --home /tmp/demo_home --parts logging

Figures go to ``benchmarks/_work/parallel_fits/parallel_fits.json`` (``--out``) with `uptime` at start, after each
side and at the end: the machine may be shared, so say so with the figures.
"""

from __future__ import annotations

import argparse
import cProfile
import io
import json
import os
import pstats
import shutil
import subprocess
import sys
import time
from pathlib import Path

import yaml

REPO_ROOT = Path(__file__).resolve().parents[1]
WORK = REPO_ROOT / "benchmarks" / "_work" / "parallel_fits"
ENV_KEYS = ("CSSCI_WAREHOUSE", "CSSCI_MANIFEST", "CSSCI_MLFLOW_URI", "CSSCI_EXPERIMENT_CONFIG")


def _uptime() -> str:
    return subprocess.run(["uptime"], capture_output=True, text=True).stdout.strip()


def prepare_side(home: Path, side: str, classifiers: list[str] | None, models: dict | None = None) -> dict[str, str]:
    """A copy of the home's warehouse and study file under WORK/side, a fresh MLflow store and Dagster home;
    `models`: a models section replacing the home's (a protocol's own zoo), then `classifiers` if given."""
    folder = WORK / side
    shutil.rmtree(folder, ignore_errors=True)
    (folder / "dagster_home").mkdir(parents=True)
    shutil.copy(home / "warehouse.duckdb", folder / "warehouse.duckdb")
    manifest = (home / "current_manifest").read_text().strip()
    document = yaml.safe_load((home / "experiment.yaml").read_text())
    document["cohort"] = {**document["cohort"], "manifest": manifest, "synthetic": None}
    if models is not None:
        document["models"] = models
    if classifiers:
        document["models"]["classifiers"] = classifiers
    (folder / "experiment.yaml").write_text(yaml.safe_dump(document))
    if os.environ.get("PARALLEL_FITS_MLFLOW_WAL"):  # --mlflow-wal: the store's sqlite file in write-ahead-log mode
        import sqlite3

        with sqlite3.connect(folder / "mlflow.db") as con:
            con.execute("PRAGMA journal_mode=WAL")
            con.execute("CREATE TABLE wal_probe (x)")  # a first write makes the mode stick in the new file
            con.execute("DROP TABLE wal_probe")
    return {
        "CSSCI_WAREHOUSE": str(folder / "warehouse.duckdb"),
        "CSSCI_MANIFEST": manifest,
        "CSSCI_MLFLOW_URI": f"sqlite:///{folder / 'mlflow.db'}",
        "CSSCI_EXPERIMENT_CONFIG": str(folder / "experiment.yaml"),
        "DAGSTER_HOME": str(folder / "dagster_home"),
    }


def zoo_job():
    """trained_models alone under modeling_job's executor, resources from the environment (reconstructable)."""
    import dagster as dg

    from cssci_platform.defs.models.jobs import MODELING_EXECUTOR
    from cssci_platform.defs.models.training import trained_models

    return dg.Definitions(
        assets=[trained_models],
        jobs=[dg.define_asset_job("zoo", selection=[trained_models], executor_def=MODELING_EXECUTOR)],
        resources=_resources(),
    ).resolve_job_def("zoo")


def _resources() -> dict:
    from cssci_platform.resources.cohort import CohortResource
    from cssci_platform.resources.study import StudyResource
    from cssci_platform.resources.tracking import TrackingResource
    from cssci_platform.resources.warehouse import WarehouseResource

    return {
        "warehouse": WarehouseResource(path=os.environ["CSSCI_WAREHOUSE"]),
        "cohort": CohortResource(manifest_path=os.environ["CSSCI_MANIFEST"]),
        "tracking": TrackingResource(tracking_uri=os.environ["CSSCI_MLFLOW_URI"]),
        "study": StudyResource(path=os.environ["CSSCI_EXPERIMENT_CONFIG"]),
    }


def side_execution(side: str, processes: int) -> dict | None:
    """The executor config of a side: None for serial (in-process); `parallel`: the job's executor as configured by
    default (only max_concurrent given); `spawn` / `forkserver`: that start method (forkserver preloads the fit step's
    modules)."""
    if side == "serial":
        return None
    execution: dict = {"max_concurrent": processes}
    if side in ("spawn", "forkserver"):
        execution["start_method"] = side
    return execution


def worker_zoo(side: str, processes: int) -> dict:
    """Run trained_models on this side's copy (environment prepared by the parent): wall seconds, step pids and the
    step timeline read from the run's event log."""
    import dagster as dg

    from cssci_platform.defs.models.training import trained_models

    quiet = {"loggers": {"console": {"config": {"log_level": "CRITICAL"}}}}
    execution = side_execution(side, processes)
    started = time.perf_counter()
    with dg.DagsterInstance.get() as instance:
        if execution is None:
            result = dg.materialize([trained_models], instance=instance, resources=_resources(), run_config=quiet,
                                    raise_on_error=False)
            success, events, run_id = result.success, result.all_events, result.run_id
        else:
            run_config = {**quiet, "execution": {"config": execution}}
            with dg.execute_job(dg.reconstructable(zoo_job), instance=instance, run_config=run_config,
                                raise_on_error=False) as result:
                success, events, run_id = result.success, result.all_events, result.run_id
        seconds = time.perf_counter() - started
        timeline = step_timeline(instance, run_id)
    steps = {e.step_key: e.pid for e in events if e.event_type_value == "STEP_START"}
    return {"side": side, "success": success, "seconds": seconds, "steps": len(steps),
            "step_processes": len(set(steps.values())), "timeline": timeline}


def step_timeline(instance, run_id: str) -> list[dict]:
    """Per step, seconds from the run's first event: when its worker was asked for (STEP_WORKER_STARTING, multiprocess
    only), when the step started and ended (STEP_START, STEP_SUCCESS / STEP_FAILURE / STEP_SKIPPED), and the timers
    the step wrote as output metadata (seconds_fitting, seconds_logging, seconds_cpu)."""
    logs = [entry for entry in instance.all_logs(run_id) if entry.dagster_event is not None]
    origin = min(entry.timestamp for entry in logs)
    steps: dict[str, dict] = {}
    for entry in logs:
        event, key = entry.dagster_event, entry.dagster_event.step_key
        if key is None:
            continue
        step = steps.setdefault(key, {"step": key})
        at = round(entry.timestamp - origin, 2)
        kind = event.event_type_value
        if kind == "STEP_WORKER_STARTING":
            step["worker_asked"] = at
        elif kind == "STEP_START":
            step["started"] = at
        elif kind in ("STEP_SUCCESS", "STEP_FAILURE", "STEP_SKIPPED"):
            step["ended"], step["outcome"] = at, kind
        elif kind == "STEP_OUTPUT":
            for name, value in event.step_output_data.metadata.items():
                if name.startswith("seconds_"):
                    step[name] = value.value
    for step in steps.values():
        if "started" in step and "ended" in step:
            step["step_seconds"] = round(step["ended"] - step["started"], 2)
        if "worker_asked" in step and "started" in step:
            step["start_up_seconds"] = round(step["started"] - step["worker_asked"], 2)
    return sorted(steps.values(), key=lambda s: s.get("started", float("inf")))


def snapshot(env: dict[str, str]) -> dict:
    """The zoo's rows without run ids / timestamps (predictions keyed by model), MLflow params + selected features."""
    import mlflow
    import polars as pl

    from cssci_platform.lib.warehouse import table_frame

    warehouse = Path(env["CSSCI_WAREHOUSE"])
    models = table_frame(warehouse, "SELECT * FROM trained_models")
    name = {r: f"{n} {m} {f}" for r, n, m, f in models.select("run_id", "result_name", "mode", "fold").rows()}
    drop = {"run_id", "model_uri", "created_at", "model_version"}
    out: dict = {}
    for table, key in {"trained_models": ["result_name", "mode", "fold"],
                       "model_results": ["result_name", "mode", "fold", "role", "metric"],
                       "predictions": ["model_name", "patient_key", "class_label"]}.items():
        where = "signature <> 'CNN'" if table == "predictions" else "true"  # the zoo's rows, not fine-tuned CNNs'
        frame = table_frame(warehouse, f"SELECT * FROM {table} WHERE {where}")
        if table == "predictions":
            frame = frame.with_columns(pl.col("model_name").replace_strict(name))
        out[table] = frame.drop([c for c in frame.columns if c in drop]).sort(key, nulls_last=True).to_dicts()
    client = mlflow.MlflowClient(env["CSSCI_MLFLOW_URI"])
    runs = {}
    for run_id, model in name.items():
        params = client.get_run(run_id).data.params
        artifacts = [a.path for a in client.list_artifacts(run_id, "selection")]
        features = (json.loads(Path(client.download_artifacts(run_id, "selection/selected_features.json")).read_text())
                    if "selection/selected_features.json" in artifacts else [])
        runs[model] = {"params": params, "features": features}
    out["runs"] = runs
    out["champions"] = sorted(models.filter(pl.col("champion"))["result_name"].to_list())
    return out


def worker_logging(rounds: int) -> dict:
    """One trained model (first signature, LR, leakage_safe) logged `rounds` times under cProfile."""
    import logging
    import warnings

    warnings.filterwarnings("ignore")
    logging.disable(logging.WARNING)
    from cssci_platform.defs.splits.assets import study_split_folds
    from cssci_platform.lib.cohort import load_cohort
    from cssci_platform.lib.model_tracking import TrackingConfig, log_model_run
    from cssci_platform.lib.modeling.chains import ChainSettings
    from cssci_platform.lib.modeling.results import final_features, run_metrics, run_params, warning_tags
    from cssci_platform.lib.modeling.zoo import fit_units, outcome_classes, train_unit
    from cssci_platform.lib.queries import modeling as queries

    resources = _resources()
    config = resources["study"].config()
    models = config.models.model_copy(update={"classifiers": ["LR"]})
    split, folds = study_split_folds(resources["warehouse"], config)
    with resources["warehouse"].connect() as con:
        matrix = queries.stored_feature_matrix(con).to_pandas().set_index("patient_key")
        outcome = queries.modelled_outcome(con, split)
    classes = outcome_classes(load_cohort(Path(os.environ["CSSCI_MANIFEST"])).spec, outcome)
    chain = ChainSettings(config.harmonization, config.selection, None, config.models.cv_folds, config.models.seed)
    unit = fit_units(matrix, folds, models, ["leakage_safe"])[0]
    fit = train_unit(matrix, folds, classes, models, unit, chain)[0]
    model = fit.model
    tracking = TrackingConfig(tracking_uri=os.environ["CSSCI_MLFLOW_URI"], experiment_name="logging_profile")
    example = matrix.loc[fit.roles.reindex(matrix.index) == "train"].head(3).drop(columns=["cohort", "label"])
    import pandas as pd

    split_table = pd.DataFrame({"patient_key": fit.roles.index, "role": fit.roles.to_numpy(), "fold": fit.fold})

    def log_once() -> None:
        log_model_run(tracking, run_name=model.spec.name, model=model.pipeline, input_example=example,
                      params=run_params(model, models.grid, models.cv_folds, models.seed), metrics=run_metrics(model),
                      selected_features=final_features(model), tags=warning_tags(model),
                      selection_reports=model.selection, split_table=split_table)

    log_once()  # first run: experiment creation, imports
    profile = cProfile.Profile()
    seconds = []
    for _ in range(rounds):
        started = time.perf_counter()
        profile.enable()
        log_once()
        profile.disable()
        seconds.append(time.perf_counter() - started)
    text = io.StringIO()
    pstats.Stats(profile, stream=text).sort_stats("cumulative").print_stats(45)
    return {"model": model.spec.name, "rounds": rounds, "seconds": seconds,
            "seconds_per_model": sum(seconds) / rounds, "profile": text.getvalue()}


def _in_subprocess(env: dict[str, str], *args: str, tag: str = "") -> dict:
    out = WORK / f"result_{tag}{'_'.join(args)}.json"
    command = [sys.executable, __file__, "--worker", *args, "--worker-out", str(out)]
    subprocess.run(command, env={**os.environ, **env, "PYTHONPATH": str(REPO_ROOT)}, check=True, cwd=REPO_ROOT)
    return json.loads(out.read_text())


def prepare_config_home(config: str, home: Path) -> Path:
    """A home for a shipped protocol with its feature matrix, split and ICC ready and no zoo to time: `cssci run`
    of the config (synthetic cohort, patients, embeddings, outcome, split, feature matrix) with the cheapest zoo
    (signature Clinical only) and no report, untrained networks (no weights are downloaded). Reused when its
    warehouse exists. The sides then fit the config's own zoo (`prepare_side` puts back its models section)."""
    if (home / "warehouse.duckdb").exists():
        return home
    shutil.rmtree(home, ignore_errors=True)
    home.parent.mkdir(parents=True, exist_ok=True)
    env = {key: value for key, value in os.environ.items() if not key.startswith(("CSSCI_", "DAGSTER_HOME"))}
    command = [sys.executable, "-m", "cssci_platform.cli.main", "run", "--config", config, "--home", str(home),
               "--set", "deep.weights=none", "--set", "models.signatures=[Clinical]", "--set", "report.enabled=false"]
    print("preparing", home, ":", " ".join(command[2:]), flush=True)
    started = time.perf_counter()
    subprocess.run(command, env={**env, "COLUMNS": "200"}, check=True, cwd=REPO_ROOT)
    print(f"prepared in {time.perf_counter() - started:.0f} s", flush=True)
    return home


def shipped_models(config: str) -> dict:
    """The `models` section of a shipped config as its study resolves it (defaults filled in)."""
    from cssci_platform.lib.study_config import load_config

    return load_config(config).models.model_dump(mode="json")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--home", type=Path, default=Path("/tmp/demo_home"))
    parser.add_argument("--config", default="", help="a shipped protocol (e.g. cervical_sci_upper_limb): its home is "
                        "prepared once under benchmarks/_work/parallel_fits/<config>_home and its own zoo is timed")
    parser.add_argument("--parts", default="logging,zoo")
    parser.add_argument("--processes", type=int, default=2)
    parser.add_argument("--classifiers", default="", help="comma list overriding the study's (default: the study's)")
    parser.add_argument("--log-rounds", type=int, default=5)
    parser.add_argument("--order", default="serial,parallel", help="sides in this order, repeats allowed: serial, "
                        "parallel (the job's default executor), spawn, forkserver")
    parser.add_argument("--out", type=Path, default=WORK / "parallel_fits.json")
    parser.add_argument("--mlflow-wal", action="store_true", help="each side's fresh MLflow sqlite store in WAL mode "
                        "(commits without the rollback journal's fsyncs; what the tracking store could do)")
    parser.add_argument("--worker", nargs="*")
    parser.add_argument("--worker-out", type=Path)
    args = parser.parse_args()
    if args.worker:
        kind, *rest = args.worker
        result = worker_zoo(rest[0], int(rest[1])) if kind == "zoo" else worker_logging(int(rest[0]))
        if kind == "zoo":
            result["snapshot"] = snapshot({k: os.environ[k] for k in ENV_KEYS})
        args.worker_out.write_text(json.dumps(result, default=str))
        return
    WORK.mkdir(parents=True, exist_ok=True)
    if args.mlflow_wal:
        os.environ["PARALLEL_FITS_MLFLOW_WAL"] = "1"
    models = None
    if args.config:
        args.home = prepare_config_home(args.config, WORK / f"{args.config}_home")
        models = shipped_models(args.config)
    classifiers = [c for c in args.classifiers.split(",") if c] or None
    report: dict = {"uptime_start": _uptime(), "home": str(args.home), "config": args.config or None,
                    "mlflow_wal": args.mlflow_wal,
                    "classifiers": classifiers, "processes": args.processes, "cpu_count": os.cpu_count()}
    parts = args.parts.split(",")
    if "logging" in parts:
        env = prepare_side(args.home, "logging", classifiers, models)
        report["logging"] = _in_subprocess(env, "logging", str(args.log_rounds))
        print(f"logging: {report['logging']['seconds_per_model']:.2f} s per model", flush=True)
    if "zoo" in parts:
        runs, snapshots = [], {}
        for index, side in enumerate(args.order.split(",")):
            env = prepare_side(args.home, f"{index}_{side}", classifiers, models)
            result = _in_subprocess(env, "zoo", side, str(args.processes), tag=f"{index}_")
            snapshots[index] = result.pop("snapshot")
            result["uptime_after"] = _uptime()
            runs.append(result)
            print(f"{index} {side}: {result['seconds']:.1f} s, {result['steps']} steps in {result['step_processes']} "
                  f"processes, success {result['success']} | {result['uptime_after']}", flush=True)
        report["zoo"] = runs
        reference = next((i for i, r in enumerate(runs) if r["side"] == "serial"), 0)
        report["models"] = len(snapshots[reference]["trained_models"])
        report["identical_to_run"] = reference
        report["identical"] = {i: {part: snapshots[i][part] == snapshots[reference][part] for part in snapshots[i]}
                               for i in snapshots if i != reference}
        for side in {r["side"] for r in runs}:
            seconds = [r["seconds"] for r in runs if r["side"] == side]
            report.setdefault("mean_seconds", {})[side] = sum(seconds) / len(seconds)
        if "serial" in report["mean_seconds"]:
            report["serial_over"] = {side: report["mean_seconds"]["serial"] / s
                                     for side, s in report["mean_seconds"].items() if side != "serial"}
        print(f"identical: {report['identical']}; mean s {report['mean_seconds']}; "
              f"serial / side {report.get('serial_over')}")
    report["uptime_end"] = _uptime()
    args.out.write_text(json.dumps(report, indent=1, default=str))
    print(report["uptime_start"], "|", report["uptime_end"])


if __name__ == "__main__":
    main()
