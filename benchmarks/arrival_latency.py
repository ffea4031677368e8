"""Arrival-to-prediction latency for one new patient with 50 vs 500 patients already in the warehouse.

What is timed: a complete arrival folder (images, masks, ``patient.csv``, ``READY``) lies in the inbox; the
clock starts, then ``new_patient_sensor`` ticks (``dg.build_sensor_context`` on a real sqlite-backed
``dg.instance_for_test()``, cursor carried between ticks), its dynamic-partition requests are applied to the
instance, ``prospective_patient_job`` runs in process for that partition (scans, the ``original`` channel,
radiomics, ROI slices, the patient's embedding, champion scoring from the MLflow registry), and the clock
stops when the ``prospective_predictions`` row has been read back from DuckDB. Copying the folder into the
inbox is not timed.

Study homes (untimed set-up, one per size in ``--sizes``), built as the end-to-end test's ``Hospital`` does:
the project's own definitions with ``CSSCI_MANIFEST`` / ``CSSCI_WAREHOUSE`` / ``CSSCI_IMAGE_STORE`` /
``CSSCI_MLFLOW_URI`` pointing at the home, ``inbox: inbox`` in ``cohort.yaml``.

* Manifest: N development patients drawn by ``sample_sci_patients(N, 0, seed=7)`` (clinical values and
  outcomes of the demo generator, no images rendered); every row's image/mask paths point at the rendered
  images of one "bank" patient of the same center (``write_sci_cohort(n_development=3, n_prospective=1)``,
  3 patients, one per center). ``cohort_manifest_job`` fills ``patients`` / ``clinical`` / ``outcomes``; the N
  patient partitions and the 3 center partitions are added to the instance, as after a real study.
* Features only, synthetic: the arriving patient's real rows are the template. The bank's prospective patient
  is run once through ``patient_features_job`` and ``center_embeddings_job`` (resnet18, weights ``none``,
  channel ``original``) in a template home; its rows of every per-patient table are copied to each of the N
  patients: ``radiomics_features`` (2 sequences x 2 ROIs x 107 features = 428 rows) and ``embeddings`` (1 row,
  512 values) with multiplicative noise and a label-dependent shift on a tenth of the features (so the
  champion is not degenerate); ``scans``, ``preprocessed_channels``, ``preprocessed_masks``, ``roi_slices`` as
  they are (no images are processed for the N patients). ``refresh_radiomics_wide_view`` is run once after
  seeding, as the last real extraction would have, and the Dagster instance gets one runless materialization
  of ``patient_scans``, ``preprocessed_channels``, ``radiomics_features``, ``roi_slices`` per patient.
* Champions: ``modeling_job`` with LR only, signature Rad, leakage_safe, cv_folds 3, mRMR 5 (not timed).

Every home uses the same reduced study configuration, written as the home's study config file (``STUDY_SECTIONS``;
``CSSCI_EXPERIMENT_CONFIG`` points the ``study`` resource every asset reads at it; no asset run config): channels
``["original"]``, ROI slices 32 px, backbone weights ``none``, and the modelling settings above (the e2e test's).
Each arrival copies the same source patient's files under a fresh id (``ARR-<N>-<i>``). One untimed warm-up
arrival per home, then ``--repeats`` rounds; in each round every size is measured once, alternating the order
(50 then 500, 500 then 50, ...), so load from other processes falls on both sizes alike. Reported: per size the
median end-to-end latency and its parts (sensor tick, partition add, the job, the read-back; each job step
from the run's STEP_START/STEP_SUCCESS events), the ratio of medians (largest / smallest size), and probes of
every operation in the path whose input grows with the cohort (``cohort.load()``, the radiomics wide-view
refresh, the scoring step's named queries (``lib.queries.prospective``), the champion load, the dynamic-partition
lookups), each the median of 7 calls against each home. The same functions are also timed where the arrival path
calls them, during every arrival (their module-level names wrapped with a call counter and timer; no library code
is changed): ``load_cohort`` (behind ``cohort.load()`` / ``cohort.patient()``), the sensor's ``scan_arrivals`` and
``admit``, the radiomics step's ``refresh_radiomics_wide_view``, the scoring step's ``study_embeddings`` and
``load_champion`` (both as ``lib.patient_scoring`` looks them up). The paired ratio of each round (largest /
smallest size) is reported beside the ratio of medians.

    python benchmarks/arrival_latency.py --sizes 50,500 --repeats 9
    python benchmarks/arrival_latency.py --sizes 50,500,2000 --repeats 5 \
        --out benchmarks/_work/arrival_latency/arrival_latency_50_500_2000.json

Figures go to ``benchmarks/_work/arrival_latency/arrival_latency.json`` (``--out``); `uptime` is recorded at
start and end: on a shared 2-core machine only a quiet run gives meaningful numbers.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import dagster as dg
import numpy as np
import polars as pl
import yaml

from cssci_platform.definitions import defs
from cssci_platform.defs.prospective.sensors import new_patient_sensor
from cssci_platform.lib.cohort import load_cohort
from cssci_platform.lib.inbox import scan_arrivals
from cssci_platform.lib.model_tracking import TrackingConfig, load_champion, sqlite_tracking_uri
from cssci_platform.lib.queries import prospective as queries
from cssci_platform.lib.synthetic import (
    SCI_COLUMNS,
    sample_sci_patients,
    sci_manifest,
    sci_table_row,
    write_manifest,
    write_sci_cohort,
)
from cssci_platform.lib.warehouse import append_rows, connect, refresh_radiomics_wide_view, table_frame
from cssci_platform.resources.cohort import CohortResource
from cssci_platform.resources.image_store import ImageStoreResource
from cssci_platform.resources.inbox import InboxResource
from cssci_platform.resources.tracking import TrackingResource
from cssci_platform.resources.warehouse import WarehouseResource

REPO_ROOT = Path(__file__).resolve().parents[1]
WORK = REPO_ROOT / "benchmarks" / "_work" / "arrival_latency"
STUDY_SECTIONS = {  # every home's study config (the `study` resource every asset reads): one channel, 32-px slices,
    # random-init backbone, LR on the Rad signature only; radiomics from both ROIs (every ROI with a mask, as measured)
    "imaging": {"radiomics_rois": ["lesion", "cord"]},
    "preprocessing": {"channels": ["original"]},
    "deep": {"channels": ["original"], "weights": "none", "slice": {"output_size": 32}},
    "selection": {"mrmr_k": 5},
    "models": {"classifiers": ["LR"], "cv_folds": 3, "signatures": ["Rad"]},
    "modes": ["leakage_safe"],
}
QUIET = {"console": {"config": {"log_level": "ERROR"}}}
EXPERIMENT = "arrival_latency"  # the study's name: its MLflow experiment (champions are registered there)


@contextlib.contextmanager
def environment(values: dict[str, str]) -> Iterator[None]:
    saved = {k: os.environ.get(k) for k in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


def write_study(folder: Path, manifest: Path) -> Path:
    """The home's study config file (``CSSCI_EXPERIMENT_CONFIG``): the manifest, its first outcome, STUDY_SECTIONS."""
    document = {
        "name": EXPERIMENT,
        "cohort": {"manifest": str(manifest)},
        "outcome": {"name": next(iter(load_cohort(manifest).spec.outcomes))},
        **STUDY_SECTIONS,
    }
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{EXPERIMENT}.yaml"
    path.write_text(yaml.safe_dump(document, sort_keys=False), encoding="utf-8")
    return path


class Home:
    """One study: cohort folder with inbox, DuckDB warehouse, image store, sqlite MLflow, a Dagster instance
    (the e2e test's ``Hospital``, without pytest)."""

    def __init__(self, root: Path, instance: dg.DagsterInstance) -> None:
        self.root, self.instance = root, instance
        self.cohort_dir = root / "cohort"
        self.inbox = self.cohort_dir / "inbox"
        self.warehouse = root / "w.duckdb"
        self.mlflow = sqlite_tracking_uri(root / "mlflow.db")
        self.resources = {
            "cohort": CohortResource(manifest_path=str(self.cohort_dir / "cohort.yaml")),
            "warehouse": WarehouseResource(path=str(self.warehouse)),
            "image_store": ImageStoreResource(root=str(root / "store")),
            "tracking": TrackingResource(tracking_uri=self.mlflow),
            "inbox": InboxResource(stable_seconds=60),
        }
        self.study_file = write_study(root / "study", self.cohort_dir / "cohort.yaml")
        self.environment = {
            "CSSCI_MANIFEST": str(self.cohort_dir / "cohort.yaml"),
            "CSSCI_WAREHOUSE": str(self.warehouse),
            "CSSCI_IMAGE_STORE": str(root / "store"),
            "CSSCI_MLFLOW_URI": self.mlflow,
            "CSSCI_EXPERIMENT_CONFIG": str(self.study_file),
        }
        with environment(self.environment):
            self.definitions = defs()
            self.definitions.resolve_all_job_defs()
        self.cursor: str | None = None

    def run(self, job: str, partition: str | None = None, tags: dict | None = None) -> dg.ExecuteInProcessResult:
        """The study's settings come from its config file (the `study` resource); no asset run config."""
        with environment(self.environment):
            result = self.definitions.resolve_job_def(job).execute_in_process(
                run_config={"loggers": QUIET},
                partition_key=partition,
                instance=self.instance,
                raise_on_error=False,
                tags=tags,
            )
        if not result.success:
            failures = [e.message for e in result.all_events if e.is_failure]
            raise RuntimeError(f"{job} ({partition}) failed in {self.root}: {failures}")
        return result

    def tick(self) -> dg.SensorResult:
        context = dg.build_sensor_context(
            instance=self.instance,
            cursor=self.cursor,
            resources={k: self.resources[k] for k in ("cohort", "inbox", "warehouse")},
        )
        result = new_patient_sensor(context)
        self.cursor = result.cursor
        return result

    def query(self, sql: str, parameters: list | None = None) -> pl.DataFrame:
        return table_frame(self.warehouse, sql, parameters)


# ------------------------------------------------------------------------------------------------ set-up (untimed)
def build_bank(work: Path) -> tuple[Path, str]:
    """3 development patients (one per center) + 1 prospective patient: the arrival's source."""
    bank = work / "bank"
    write_sci_cohort(bank, n_development=3, n_prospective=1, seed=21, second_rater_fraction=0)
    source = next(k for k, p in load_cohort(bank / "cohort.yaml").patients.items() if p.cohort == "prospective")
    return bank, source


def drop_arrival(inbox: Path, bank: Path, source: str, new_id: str) -> Path:
    """The source patient's files under a new id; patient.csv with paths relative to the folder; READY last."""
    folder = inbox / new_id
    shutil.copytree(bank / "images" / source, folder)
    row = (
        pl.read_csv(bank / "patients.csv", infer_schema=False).filter(pl.col("patient_id") == source).row(0, named=True)
    )
    row = {k: (Path(v).name if k.startswith(("image__", "mask__")) and v else v) for k, v in row.items()}
    row |= {"patient_id": new_id, "cohort": "prospective", "good_outcome": None, "outcome_date": None}
    pl.DataFrame([row], schema={k: pl.String for k in row}).write_csv(folder / "patient.csv")
    (folder / "READY").touch()
    return folder


PER_PATIENT_TABLES = (
    "scans",
    "preprocessed_channels",
    "preprocessed_masks",
    "roi_slices",
    "radiomics_features",
    "embeddings",
)
PATIENT_ASSETS = ("patient_scans", "preprocessed_channels", "radiomics_features", "roi_slices")


def template_rows(work: Path, bank: Path, source: str) -> dict[str, pl.DataFrame]:
    """The arrival source's real rows in every per-patient table (same config as the timed arrivals)."""
    root = work / "template"
    shutil.copytree(bank, root / "cohort")
    with dg.instance_for_test() as instance:
        home = Home(root, instance)
        home.run("cohort_manifest_job")
        center = load_cohort(home.cohort_dir / "cohort.yaml").patients[source].center
        instance.add_dynamic_partitions("patients", [source])
        instance.add_dynamic_partitions("centers", [center])
        home.run("patient_features_job", partition=source)
        home.run("center_embeddings_job", partition=center)
        return {
            table: home.query(f"SELECT * FROM {table} WHERE patient_key = ?", [source]) for table in PER_PATIENT_TABLES
        }


def build_home(
    work: Path, n: int, bank: Path, template: dict[str, pl.DataFrame], instance: dg.DagsterInstance, seed: int = 7
) -> tuple[Home, dict]:
    """N development patients in the manifest and the warehouse (features only), champions trained."""
    started = time.perf_counter()
    root = work / f"home_{n}"
    cohort_dir = root / "cohort"
    bank_cohort = load_cohort(bank / "cohort.yaml")
    by_center = {p.center: p for p in bank_cohort.patients.values() if p.cohort == "development"}
    for donor in by_center.values():  # only the 3 development patients' files; the arrival's source stays out
        shutil.copytree(bank / "images" / donor.patient_key, cohort_dir / "images" / donor.patient_key)
    rows = []
    for patient in sample_sci_patients(n, 0, seed=seed, second_rater_fraction=0):
        row = sci_table_row(patient)
        donor = by_center[patient.center.name]
        paths = {
            "image__sag_T1": donor.images["sag_T1"],
            "image__sag_T2": donor.images["sag_T2"],
            **{m.column: m.path for m in donor.masks},
        }
        rows.append({**row, **{k: paths.get(k) for k in row if k.startswith(("image__", "mask__"))}})
    write_manifest(cohort_dir, {**sci_manifest(), "inbox": "inbox"}, rows, SCI_COLUMNS)
    (cohort_dir / "inbox").mkdir()
    home = Home(root, instance)
    home.run("cohort_manifest_job")
    cohort = load_cohort(cohort_dir / "cohort.yaml")
    instance.add_dynamic_partitions("patients", sorted(cohort.patients))
    instance.add_dynamic_partitions("centers", sorted({p.center for p in cohort.patients.values()}))
    _seed_tables(home, template, seed)
    for key in sorted(cohort.patients):  # the study's per-patient materializations, as the event log would hold them
        for asset in PATIENT_ASSETS:
            instance.report_runless_asset_event(dg.AssetMaterialization(asset, partition=key))
    seeded = time.perf_counter()
    home.run("modeling_job")
    champions = home.query("SELECT signature, registered_model, model_version FROM trained_models WHERE champion")
    if champions.is_empty():
        raise RuntimeError(f"no champion in {root}")
    return home, {
        "patients": len(cohort.patients),
        "seed_s": seeded - started,
        "train_s": time.perf_counter() - seeded,
        "champions": champions.to_dicts(),
    }


def _seed_tables(home: Home, template: dict[str, pl.DataFrame], seed: int) -> None:
    """Every per-patient table gets the template's rows for each of the N patients; feature values get noise."""
    radiomics, embeddings = template["radiomics_features"], template["embeddings"]
    patients = home.query(
        "SELECT p.patient_key, p.center, o.value AS label FROM patients p JOIN outcomes o USING (patient_key) "
        "ORDER BY p.patient_key"
    )
    rng = np.random.default_rng(seed)
    base = radiomics["value"].to_numpy()
    informative = rng.random(base.size) < 0.1
    scale = np.abs(base) + 1e-3
    rad_frames, emb_frames, copies = [], [], {t: [] for t in PER_PATIENT_TABLES[:4]}
    for key, center, label in patients.iter_rows():
        shift = 0.3 * (label == "1") * informative * scale
        values = base * np.exp(rng.normal(0.0, 0.15, base.size)) + rng.normal(0.0, 0.02, base.size) * scale + shift
        rad_frames.append(radiomics.with_columns(patient_key=pl.lit(key), value=pl.Series(values)))
        vectors = [
            list((np.asarray(e) * np.exp(rng.normal(0.0, 0.1, len(e)))).astype(np.float32))
            for e in embeddings["embedding"]
        ]
        emb_frames.append(
            embeddings.with_columns(
                patient_key=pl.lit(key), center=pl.lit(center), embedding=pl.Series(vectors, dtype=pl.List(pl.Float32))
            )
        )
        for table, frames in copies.items():
            frames.append(template[table].with_columns(patient_key=pl.lit(key)))
    with connect(home.warehouse) as con:
        for table, frames in copies.items():
            append_rows(con, table, pl.concat(frames))
        append_rows(con, "radiomics_features", pl.concat(rad_frames))
        append_rows(con, "embeddings", pl.concat(emb_frames))
        refresh_radiomics_wide_view(con)


# ------------------------------------------------------------------------------------------------ timed arrival
INSIDE: dict[str, list[float]] = {}  # label -> [calls, seconds] during the current arrival
WATCHED = {  # (module, attribute) whose work could grow with the cohort, timed where the arrival path calls them
    "load_cohort (cohort.load / cohort.patient)": ("cssci_platform.resources.cohort", "load_cohort"),
    "scan_arrivals (sensor)": ("cssci_platform.defs.prospective.sensors", "scan_arrivals"),
    "admit (sensor)": ("cssci_platform.defs.prospective.sensors", "admit"),
    "refresh_radiomics_wide_view (radiomics step)": (
        "cssci_platform.defs.features.assets",
        "refresh_radiomics_wide_view",
    ),
    "study_embeddings (scoring step)": ("cssci_platform.lib.patient_scoring", "study_embeddings"),
    "load_champion (scoring step)": ("cssci_platform.lib.patient_scoring", "load_champion"),
}


def watch() -> None:
    """Wrap each WATCHED function where it is looked up (module globals) with a call counter and timer."""
    import importlib

    for label, (module_name, attribute) in WATCHED.items():
        module = importlib.import_module(module_name)
        original = getattr(module, attribute)

        def timed(*args, _original=original, _label=label, **kwargs):
            start = time.perf_counter()
            try:
                return _original(*args, **kwargs)
            finally:
                entry = INSIDE.setdefault(_label, [0, 0.0])
                entry[0] += 1
                entry[1] += time.perf_counter() - start

        setattr(module, attribute, timed)


def measure_arrival(home: Home, bank: Path, source: str, new_id: str) -> dict:
    drop_arrival(home.inbox, bank, source, new_id)
    INSIDE.clear()
    t0 = time.perf_counter()
    tick = home.tick()
    t1 = time.perf_counter()
    for request in tick.dynamic_partitions_requests:
        if request.partition_keys:
            home.instance.add_dynamic_partitions(request.partitions_def_name, list(request.partition_keys))
    t2 = time.perf_counter()
    [request] = [r for r in tick.run_requests if r.partition_key == new_id]
    result = home.run("prospective_patient_job", partition=new_id, tags=request.tags)
    t3 = time.perf_counter()
    predictions = home.query(
        "SELECT signature, probability, model_version FROM prospective_predictions WHERE patient_key = ?", [new_id]
    )
    t4 = time.perf_counter()
    if predictions.is_empty():
        raise RuntimeError(f"no prediction row for {new_id}")
    return {
        "patient": new_id,
        "total_s": t4 - t0,
        "tick_s": t1 - t0,
        "add_partitions_s": t2 - t1,
        "job_s": t3 - t2,
        "read_back_s": t4 - t3,
        "steps": _step_seconds(home.instance, result.run_id),
        "probability": predictions["probability"][0],
        "inside": {k: list(v) for k, v in INSIDE.items()},
    }


def _step_seconds(instance: dg.DagsterInstance, run_id: str) -> dict[str, float]:
    starts, seconds = {}, {}
    for entry in instance.all_logs(run_id, of_type={dg.DagsterEventType.STEP_START, dg.DagsterEventType.STEP_SUCCESS}):
        if entry.dagster_event.event_type == dg.DagsterEventType.STEP_START:
            starts[entry.step_key] = entry.timestamp
        else:
            seconds[entry.step_key] = entry.timestamp - starts[entry.step_key]
    return seconds


# ------------------------------------------------------------------------------------------------ probes
def probes(home: Home, patient: str, calls: int = 7) -> dict:
    """Median seconds of each operation on the arrival path whose input grows with the cohort."""
    cohort = home.resources["cohort"]
    tracking = TrackingConfig(home.mlflow, EXPERIMENT)
    champion = home.query("SELECT registered_model FROM trained_models WHERE champion")["registered_model"][0]

    def read(query: Callable[..., pl.DataFrame], *arguments: str) -> pl.DataFrame:
        with connect(home.warehouse, read_only=True) as con:
            return query(con, *arguments)

    def wide_view() -> None:
        with connect(home.warehouse) as con:
            refresh_radiomics_wide_view(con)

    operations: dict[str, Callable[[], object]] = {
        "cohort.load()": cohort.load,
        "cohort.patient(key)": lambda: cohort.patient(patient),
        "scan_arrivals (inbox)": lambda: scan_arrivals(cohort.load(), 60),
        "refresh_radiomics_wide_view": wide_view,
        # the scoring step's warehouse reads, each on a fresh connection (lib.queries.prospective)
        "radiomics rows of the patient": lambda: read(queries.patient_radiomics, patient),
        "embeddings rows of the patient": lambda: read(queries.patient_embeddings, patient),
        "fine-tuned networks": lambda: read(queries.fine_tuned_networks),
        "champions from trained_models": lambda: read(queries.champions),
        "load_champion (MLflow)": lambda: load_champion(tracking, champion),
        "get_dynamic_partitions(patients)": lambda: home.instance.get_dynamic_partitions("patients"),
        "has_dynamic_partition": lambda: home.instance.has_dynamic_partition("patients", patient),
    }
    out = {}
    for name, operation in operations.items():
        times = []
        for _ in range(calls):
            start = time.perf_counter()
            operation()
            times.append(time.perf_counter() - start)
        out[name] = statistics.median(times)
    return out


def sizes(home: Home) -> dict:
    counts = home.query(
        "SELECT (SELECT count(*) FROM patients) AS patients, "
        "(SELECT count(*) FROM radiomics_features) AS radiomics_rows, "
        "(SELECT count(*) FROM embeddings) AS embedding_rows, "
        "(SELECT count(*) FROM prospective_predictions) AS prediction_rows"
    )
    models = sum(f.stat().st_size for f in (home.root / "mlflow-artifacts").rglob("model.skops"))
    return {
        **counts.row(0, named=True),
        "warehouse_bytes": home.warehouse.stat().st_size,
        "manifest_bytes": (home.cohort_dir / "patients.csv").stat().st_size,
        "champion_skops_bytes": models,
        "radiomics_partitions_materialized": len(
            home.instance.get_materialized_partitions(dg.AssetKey("radiomics_features"))
        ),
    }


# ------------------------------------------------------------------------------------------------ report
def machine() -> dict:
    cpu = next(
        (
            line.split(":", 1)[1].strip()
            for line in Path("/proc/cpuinfo").read_text(encoding="utf-8").splitlines()
            if line.startswith("model name")
        ),
        platform.processor(),
    )
    import duckdb
    import mlflow
    import torch

    return {
        "nproc": os.cpu_count(),
        "cpu": cpu,
        "kernel": platform.release(),
        "python": platform.python_version(),
        "dagster": dg.__version__,
        "duckdb": duckdb.__version__,
        "mlflow": mlflow.__version__,
        "torch": torch.__version__,
    }


def uptime() -> str:
    return subprocess.run(["uptime"], capture_output=True, text=True).stdout.strip()


def summarize(measured: dict[int, list[dict]]) -> dict:
    summary = {}
    for n, runs in measured.items():
        steps = sorted({s for r in runs for s in r["steps"]})
        summary[n] = {
            "median_total_s": statistics.median(r["total_s"] for r in runs),
            "totals_s": [round(r["total_s"], 3) for r in runs],
            **{
                f"median_{k}": statistics.median(r[k] for r in runs)
                for k in ("tick_s", "add_partitions_s", "job_s", "read_back_s")
            },
            "median_steps_s": {s: statistics.median(r["steps"].get(s, 0.0) for r in runs) for s in steps},
        }
        summary[n]["median_job_overhead_s"] = statistics.median(r["job_s"] - sum(r["steps"].values()) for r in runs)
        summary[n]["inside"] = {
            label: {
                "calls": statistics.median(r["inside"].get(label, [0, 0.0])[0] for r in runs),
                "median_s": statistics.median(r["inside"].get(label, [0, 0.0])[1] for r in runs),
            }
            for label in WATCHED
        }
    return summary


def print_report(report: dict) -> None:
    ns = sorted(report["summary"], key=int)
    small, large = ns[0], ns[-1]
    s = report["summary"]
    print(f"\nmedian latency (s), {report['repeats']} repeats after 1 warm-up per home:")
    print("| part | " + " | ".join(f"N={n}" for n in ns) + f" | ratio {large}/{small} |")
    print("|---|" + "---:|" * (len(ns) + 1))
    rows = [
        ("end to end", "median_total_s"),
        ("sensor tick", "median_tick_s"),
        ("add partitions", "median_add_partitions_s"),
        ("prospective_patient_job", "median_job_s"),
        ("read back", "median_read_back_s"),
        ("job overhead (no step)", "median_job_overhead_s"),
    ]
    for label, key in rows:
        print(
            f"| {label} | " + " | ".join(f"{s[n][key]:.3f}" for n in ns) + f" | {s[large][key] / s[small][key]:.2f} |"
        )
    for step in s[large]["median_steps_s"]:
        values = [s[n]["median_steps_s"].get(step, float("nan")) for n in ns]
        print(f"| step {step} | " + " | ".join(f"{v:.3f}" for v in values) + f" | {values[-1] / values[0]:.2f} |")
    print("\nall totals (s): " + "; ".join(f"N={n}: {s[n]['totals_s']}" for n in ns))
    print(
        f"paired per-round ratios N={large}/N={small}: {[round(r, 3) for r in report['paired_ratios']]}, "
        f"median {statistics.median(report['paired_ratios']):.3f}"
    )
    print("\ninside the arrival (calls per arrival; median seconds per arrival):")
    print("| function | " + " | ".join(f"N={n}" for n in ns) + " |")
    print("|---|" + "---:|" * len(ns))
    for label in WATCHED:
        print(
            f"| {label} | "
            + " | ".join(f"{s[n]['inside'][label]['calls']:g} x, {s[n]['inside'][label]['median_s']:.3f}" for n in ns)
            + " |"
        )
    print("\nprobes (median of 7 calls, s):")
    print("| operation | " + " | ".join(f"N={n}" for n in ns) + " |")
    print("|---|" + "---:|" * len(ns))
    for name in report["probes"][small]:
        print(f"| {name} | " + " | ".join(f"{report['probes'][n][name]:.4f}" for n in ns) + " |")
    print("\nsizes:", json.dumps(report["sizes"]))
    print(f"\nRATIO (median end to end, N={large} / N={small}): {report['ratio']:.3f}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--sizes", default="50,500", help="comma-separated cohort sizes already in the warehouse")
    parser.add_argument("--repeats", type=int, default=7, help="timed arrivals per size (after one warm-up each)")
    parser.add_argument(
        "--workdir", type=Path, default=None, help="keep the study homes here (default: a temp folder, removed)"
    )
    parser.add_argument("--out", type=Path, default=WORK / "arrival_latency.json")
    args = parser.parse_args(argv)
    ns = [int(x) for x in args.sizes.split(",")]
    report: dict = {
        "command": " ".join([Path(sys.argv[0]).as_posix(), *sys.argv[1:]]),
        "machine": machine(),
        "uptime_start": uptime(),
        "sizes_requested": ns,
        "repeats": args.repeats,
    }
    print(report["uptime_start"], flush=True)
    watch()
    started = time.perf_counter()
    with contextlib.ExitStack() as stack:
        work = args.workdir or Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="arrival_latency_")))
        work.mkdir(parents=True, exist_ok=True)
        bank, source = build_bank(work)
        template = template_rows(work, bank, source)
        report["template_rows"] = {t: f.height for t, f in template.items()}
        print(f"template rows {report['template_rows']} ({time.perf_counter() - started:.1f} s)", flush=True)
        homes, setup = {}, {}
        for n in ns:
            instance = stack.enter_context(dg.instance_for_test())
            homes[n], setup[n] = build_home(work, n, bank, template, instance)
            print(f"home N={n}: seeded {setup[n]['seed_s']:.1f} s, trained {setup[n]['train_s']:.1f} s", flush=True)
        report["setup"] = setup
        report["warmup"] = {n: measure_arrival(homes[n], bank, source, f"ARR-{n}-W") for n in ns}
        print("warm-up: " + ", ".join(f"N={n} {r['total_s']:.2f} s" for n, r in report["warmup"].items()), flush=True)
        measured: dict[int, list[dict]] = {n: [] for n in ns}
        for i in range(args.repeats):
            order = ns if i % 2 == 0 else ns[::-1]
            for n in order:
                measured[n].append(measure_arrival(homes[n], bank, source, f"ARR-{n}-{i:02d}"))
            print(f"round {i}: " + ", ".join(f"N={n} {measured[n][-1]['total_s']:.2f} s" for n in order), flush=True)
        report["arrivals"] = measured
        report["summary"] = summarize(measured)
        report["probes"] = {n: probes(homes[n], f"ARR-{n}-00") for n in ns}
        report["sizes"] = {n: sizes(homes[n]) for n in ns}
    small, large = min(ns), max(ns)
    report["ratio"] = report["summary"][large]["median_total_s"] / report["summary"][small]["median_total_s"]
    report["paired_ratios"] = [
        a["total_s"] / b["total_s"] for a, b in zip(report["arrivals"][large], report["arrivals"][small])
    ]
    report["uptime_end"] = uptime()
    report["wall_s"] = time.perf_counter() - started
    print_report(report)
    print(report["uptime_end"])
    print(f"wall {report['wall_s']:.0f} s")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2, default=str), encoding="utf-8")
    print(f"figures: {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
