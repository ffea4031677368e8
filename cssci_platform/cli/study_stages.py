"""`cssci run --config`: one experiment config, the whole graph, one MLflow study run.

Order: cohort (synthetic written on first use) -> config checked against the manifest -> patients (scans,
channels, radiomics, ROI slices; a few patient batch runs) -> follow-up outcomes (when the config says they are
known) -> pretrained embeddings per center -> fine-tuned CNNs -> study outcome, split, feature matrix and the
classifier zoo (one run; its fit units in parallel under the job's multiprocess executor) -> report. Every stage is
a run (or a run per partition) submitted to the home's instance and launched from its run queue, as the UI's
launchpad does (`instance_runs`); its assets read the study from the home's `experiment.yaml` (the config with its
--set overrides resolved, CSSCI_EXPERIMENT_CONFIG), and the runs of the modelling and report stages carry the MLflow
study run as the tag `cssci.study_run`.
"""

from __future__ import annotations

import hashlib
import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from cssci_platform.cli import patient_runs
from cssci_platform.cli.dagster_runs import IN_PROCESS
from cssci_platform.cli.home import check_storage, cluster_mlflow_uri, configure_environment, remember_mlflow_uri
from cssci_platform.defs.models.jobs import FIT_UNITS_METADATA
from cssci_platform.lib.cohort import Cohort
from cssci_platform.lib.model_tracking import TrackingConfig, sqlite_tracking_uri
from cssci_platform.lib.profiles import active_profile
from cssci_platform.lib.study_config import (
    EXPERIMENT_ENV,
    ConfigError,
    StudyConfig,
    cohort_problems,
    dump_config,
    experiment_file,
)
from cssci_platform.lib.study_config.model import SyntheticCohort
from cssci_platform.lib.study_runs import STUDY_TAG, finish_study_run, start_study_run

if TYPE_CHECKING:
    from dagster import DagsterRun

    from cssci_platform.cli.instance_runs import InstanceSession, RunEnded

PROJECT_STORE = Path(".cssci")  # default home root: the shared MLflow store lives here
INPUTS_TAG = "cssci.stage_inputs"  # a stage run's inputs digest (`lib/stage_inputs`): equal on a re-run -> reused


class StudyStepFailed(RuntimeError):
    """A Dagster run of the study failed; the message names the step and the first failure."""


@dataclass
class StudyProgress:
    on_stage: Callable[[str], None] = lambda name: None
    on_patient: Callable[[patient_runs.PatientRunOutcome], None] = lambda outcome: None
    on_message: Callable[[str], None] = lambda text: None
    on_units: Callable[[int, int, int], None] = lambda done, failed, total: None  # the stage's runs / fit units
    on_pending: Callable[[int, int], None] = lambda pending, total: None  # patients to run of the cohort's


@dataclass
class StudyResult:
    home: Path
    manifest: Path
    study_run_id: str
    report: Path | None
    quarantined: list[str] = field(default_factory=list)


def default_home(config: StudyConfig) -> Path:
    return PROJECT_STORE / config.name


def shared_mlflow_uri() -> str:
    """The project's MLflow store (`.cssci/mlflow.db`), which `cssci demo`, `cssci run` and `cssci compare` share;
    the cluster profile's tracking server in that profile."""
    profile = active_profile()
    if profile.servers is not None:
        return cluster_mlflow_uri(profile)
    return os.environ.get("CSSCI_MLFLOW_URI") or sqlite_tracking_uri(PROJECT_STORE / "mlflow.db")


def synthetic_cohort_dir(home: Path, synthetic: SyntheticCohort) -> Path:
    sizes = f"n{synthetic.patients}_p{synthetic.prospective}_s{synthetic.seed}"
    return home.resolve() / f"cohort_{synthetic.protocol}_{sizes}"


def write_synthetic_cohort(synthetic: SyntheticCohort, folder: Path) -> Path:
    from cssci_platform.lib.synthetic import write_metastasis_cohort, write_sci_cohort

    if synthetic.protocol == "metastasis":
        if synthetic.prospective:
            raise ConfigError("cohort.synthetic", ["prospective: the synthetic metastasis cohort has no prospective "
                                                   "patients; set 0"])
        return write_metastasis_cohort(folder, n_patients=synthetic.patients, seed=synthetic.seed)
    return write_sci_cohort(folder, n_development=synthetic.patients, n_prospective=synthetic.prospective,
                            seed=synthetic.seed, protocol=synthetic.protocol)


def prepare_cohort(config: StudyConfig, home: Path, progress: StudyProgress) -> Path:
    if config.cohort.manifest is not None:
        return Path(config.cohort.manifest).resolve()
    folder = synthetic_cohort_dir(home, config.cohort.synthetic)  # type: ignore[arg-type]
    manifest = folder / "cohort.yaml"
    if manifest.exists():
        progress.on_message(f"reusing the synthetic cohort in {folder}")
        return manifest
    progress.on_stage("synthetic cohort")
    return write_synthetic_cohort(config.cohort.synthetic, folder)  # type: ignore[arg-type]


def activate(config: StudyConfig, home: Path, manifest: Path, mlflow_uri: str | None = None) -> Path:
    """Environment for this experiment: home folders, manifest, MLflow store (`mlflow_uri`, else
    CSSCI_MLFLOW_URI, else `<home>/mlflow.db`), and the study every run reads through the `study` resource: the
    resolved config written to the home's `experiment.yaml`, named by CSSCI_EXPERIMENT_CONFIG (spawned patient
    workers and `cssci ui` inherit it)."""
    if mlflow_uri:
        os.environ["CSSCI_MLFLOW_URI"] = mlflow_uri
    configure_environment(home, manifest)
    remember_mlflow_uri(home.resolve(), os.environ["CSSCI_MLFLOW_URI"])  # predict/report/ui find it from the home
    path = experiment_file(home.resolve())
    path.write_text(dump_config(config), encoding="utf-8")
    os.environ[EXPERIMENT_ENV] = str(path)
    return path


def check_cohort(config: StudyConfig, manifest: Path) -> None:
    """What is decidable from the manifest, before any patient: the names the config uses are declared, and some
    patient has a mask for the ROI-slice target (else every patient would be quarantined at roi_slices)."""
    from cssci_platform.lib.cohort import load_cohort

    cohort = load_cohort(manifest)
    problems = cohort_problems(config, cohort.spec)
    if not problems and (problem := slice_target_problem_of(cohort, config)):
        problems.append(f"deep.slice: {problem}")
    if not problems:
        problems += [f"harmonization.small_center: {p.message()}" for p in center_size_findings(config, cohort)
                     if p.stops_the_run]
    if problems:
        raise ConfigError(f"{config.name} (against {manifest})", problems)


def center_size_notes(config: StudyConfig, manifest: Path) -> list[str]:
    """The small centers the harmonization.small_center policy will handle at fit time, one line per center with the
    number of fits (the split's training set, CV folds) it is small in."""
    from cssci_platform.lib.cohort import load_cohort

    findings = [p for p in center_size_findings(config, load_cohort(manifest)) if not p.stops_the_run]
    by_center: dict[str, list] = {}
    for finding in findings:
        by_center.setdefault(finding.center, []).append(finding)
    return [f"small center {center!r}: under harmonization.min_center_size={config.harmonization.min_center_size} "
            f"training patients in {len(found)} fit(s) (fewest: {min(f.training_patients for f in found)}, in "
            f"{min(found, key=lambda f: f.training_patients).where}); {found[0].what_happens}"
            for center, found in sorted(by_center.items())]


def center_size_findings(config: StudyConfig, cohort: Cohort) -> list:
    """`CenterSizeProblem`s of the study (centers under harmonization.min_center_size after the split and inside
    its CV folds), decided from the manifest and the seeds; [] when the labels cannot be split (modeling says why)."""
    from cssci_platform.lib.modeling.center_checks import center_size_problems

    models = config.models
    try:
        return center_size_problems(manifest_labels(config, cohort), config.split.spec(), models.cv_folds, models.seed,
                                    config.harmonization, folds=list(config.split.folds))
    except ValueError:
        return []


def manifest_labels(config: StudyConfig, cohort: Cohort):
    """patient_key, center, cohort and the study label (the outcome rule on the manifest's values) of every patient
    whose manifest row is valid: what `patient_splits` will split."""
    import pandas as pd
    import polars as pl

    from cssci_platform.lib.outcome_rules import derive_labels

    outcome = config.outcome
    records = [r for r in cohort.patients.values() if not r.quarantined]
    keys = [r.patient_key for r in records]
    values = pd.Series([r.outcomes.get(outcome.source_outcome) for r in records], index=keys, dtype=object)
    baseline = (pd.Series([r.clinical.get(outcome.baseline) for r in records], index=keys, dtype=object)
                if outcome.baseline else None)
    development = pd.Series([r.cohort == "development" for r in records], index=keys)
    labels = derive_labels(values, outcome.rule, outcome.threshold, baseline, development)["label"]
    return pl.DataFrame({"patient_key": keys, "center": [r.center for r in records],
                         "cohort": [r.cohort for r in records],
                         "label": [None if label is None or pd.isna(label) else str(label) for label in labels]},
                        schema={"patient_key": pl.String, "center": pl.String, "cohort": pl.String, "label": pl.String})


def slice_target_problem_of(cohort: Cohort, config: StudyConfig | None) -> str | None:
    """Why no patient of `cohort` could get an ROI slice (naming the config keys), None when some can: the target is
    the config's deep.slice.sequence/roi/axis, or without a config what the manifest declares."""
    from cssci_platform.lib.deep.patient_slices import masked_pairs, slice_target, slice_target_problem

    chosen, masked = (config.deep.slice if config else None), masked_pairs(cohort)
    target = slice_target(cohort.spec, chosen and chosen.sequence, chosen and chosen.roi, chosen and chosen.axis,
                          masked)
    return slice_target_problem(target, masked)


def run_study(config: StudyConfig, home: Path, workers: int | None = None, progress: StudyProgress | None = None,
              mlflow_uri: str | None = None) -> StudyResult:
    """The whole study, every stage a run (or a run per patient batch / center) submitted to the home's instance through
    one `InstanceSession`: `workers` runs at a time (the run queue's max_concurrent_runs; default the core count)."""
    import dagster as dg

    from cssci_platform.cli.instance_runs import instance_session, write_run_queue_limit

    progress = progress or StudyProgress()
    home = home.resolve()
    manifest = prepare_cohort(config, home, progress)
    check_cohort(config, manifest)
    for note in center_size_notes(config, manifest):
        progress.on_message(note)
    config_yaml = activate(config, home, manifest, mlflow_uri).read_text(encoding="utf-8")
    check_storage()  # a full disk, an unwritable or long-locked warehouse: refused before any patient
    write_run_queue_limit(Path(os.environ["DAGSTER_HOME"]), workers or default_workers())
    tracking = TrackingConfig(os.environ["CSSCI_MLFLOW_URI"], config.name)
    study = StudyRun(lambda: start_study_run(tracking, config_yaml, _flat(config.model_dump(mode="json")), {
        "config_name": config.name, "config_sha256": hashlib.sha256(config_yaml.encode()).hexdigest(),
        "home": str(home), "manifest": str(manifest)}))
    report = None
    try:
        with dg.DagsterInstance.get() as instance, instance_session(instance) as session:
            stages = StudyStages(session, progress, study, config.model_dump(mode="json"), stage_runtime())
            quarantined = stages.patients(manifest, workers or default_workers())
            stages.followups(config, manifest)
            stages.note_source_rows(config)
            stages.deep(config, manifest)
            stages.modeling()
            stages.score_prospective(manifest, quarantined)
            if config.report.enabled:
                report = stages.report()
    except BaseException:
        if study.started_here:
            finish_study_run(tracking, study.run_id, success=False)
        raise
    finish_study_run(tracking, study.current(), success=True, report=report)
    return StudyResult(home, manifest, study.current(), report, quarantined)


def stage_runtime() -> dict[str, str]:
    """What a reused stage must share with this command besides the study settings: the MLflow store its models are
    in, and the platform's version (a release that computes anything differently bumps it)."""
    from importlib.metadata import version

    return {"mlflow_uri": os.environ["CSSCI_MLFLOW_URI"], "platform": version("cssci-platform")}


@dataclass
class StudyRun:
    """The MLflow study run of this command: started when the first stage that logs to it runs, or the earlier
    command's run when that stage's last run is reused (its models and report stay where they were logged)."""

    start: Callable[[], str]
    run_id: str = ""
    started_here: bool = False

    def current(self) -> str:
        if not self.run_id:
            self.run_id, self.started_here = self.start(), True
        return self.run_id

    def adopt(self, run_id: str) -> None:
        if not self.run_id and run_id:
            self.run_id = run_id


def default_workers() -> int:
    """Runs at a time when --workers is not given: the cores this process may use."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)


@dataclass
class StudyStages:
    """The stages of `cssci run` after the patients' scans are known, each a run (or runs) submitted through the
    command's instance session; the modelling and report runs carry the MLflow study run (`STUDY_TAG`).

    A stage whose inputs (`lib/stage_inputs`: settings, source rows, upstream runs, run config) equal those of its job's
    last run, and that run succeeded, is not run again: a second `cssci run` of a finished study goes from the
    patients it finds done straight to the report it already has."""

    session: InstanceSession
    progress: StudyProgress
    study: StudyRun
    settings: dict  # the resolved study config (`StudyConfig.model_dump(mode="json")`)
    runtime: dict  # `stage_runtime()`
    source: str = ""  # digest of the patient-level source rows (`note_source_rows`)
    upstream: list[str] = field(default_factory=list)  # the stage runs of this command so far (run or reused)

    def patients(self, manifest: Path, workers: int) -> list[str]:
        self.progress.on_stage("manifest, scans, channels, radiomics, ROI slices")
        started = time.perf_counter()
        outcomes = patient_runs.ingest_cohort(manifest, workers, self.progress.on_patient, self.session,
                                              self.progress.on_pending)
        self.progress.on_message(f"{len(outcomes)} patients processed in {time.perf_counter() - started:.1f} s")
        if failed := patient_runs.outside_qc_failures(outcomes):  # a broken disk or program, not a quarantined one
            raise StudyStepFailed(patient_runs.failure_summary(failed, len(outcomes)))
        return [o.patient_key for o in outcomes if not o.success]

    def followups(self, config: StudyConfig, manifest: Path) -> None:
        synthetic = config.cohort.synthetic
        if synthetic is None or not synthetic.followup_known:
            return
        self.progress.on_stage("follow-up outcomes of the prospective patients")
        for path in sorted((manifest.parent / "followup").glob("*.csv")):
            self.execute("followup_job", run_config={**IN_PROCESS,  # applied once per file content (its ledger)
                                                    "ops": {"followup_outcomes": {"config": {"file": str(path)}}}},
                         stage=False)
            self.progress.on_message(f"recorded {path.name}")

    def note_source_rows(self, config: StudyConfig) -> None:
        """The digest of what every later stage is computed from (after the patients and follow-up outcomes)."""
        from cssci_platform.lib.outcome_rules import derived_outcome_names
        from cssci_platform.lib.stage_inputs import source_digest, source_rows
        from cssci_platform.lib.warehouse import connect

        derived = derived_outcome_names(config.outcome.name, config.outcome.source_outcome)
        with connect(Path(os.environ["CSSCI_WAREHOUSE"])) as con:
            self.source = source_digest(con, source_rows(derived))

    def deep(self, config: StudyConfig, manifest: Path) -> None:
        from cssci_platform.lib.cohort import load_cohort

        if config.deep.backbones:
            backbones = ", ".join(config.deep.backbones)
            self.progress.on_stage(f"deep features per center ({backbones}, weights {config.deep.weights})")
            cohort = load_cohort(manifest)
            centers = sorted({p.center for p in cohort.patients.values() if p.center in cohort.spec.centers})
            self.execute("center_embeddings_batch_job",  # one run, torch imported once; its op takes the `gpu` pool
                         run_config={"ops": {"embed_center_batch": {"config": {"centers": centers}}}})
        if config.deep.fine_tuning is not None:
            self.progress.on_stage(f"fine-tuned CNN classifiers ({', '.join(config.deep.fine_tuning.backbones)})")
            self.execute("fine_tuning_job")  # in one process (its executor), on the cluster's gpu queue

    def modeling(self) -> None:
        self.progress.on_stage("study outcome, split, feature matrix, classifiers x signatures x modes (MLflow)")
        counter = FitUnitCounter(self.progress.on_units)
        self.execute("modeling_job", study_run=True, on_event=counter.on_event)

    def score_prospective(self, manifest: Path, quarantined: list[str]) -> None:
        """The manifest's prospective patients scored by the champions just registered, into
        prospective_predictions, in one run (arrivals through the inbox are scored by their own runs)."""
        from cssci_platform.lib.cohort import load_cohort

        cohort = load_cohort(manifest)
        keys = sorted(k for k, p in cohort.patients.items() if p.cohort == "prospective" and k not in quarantined)
        if not keys:
            return
        self.progress.on_stage(f"prospective patients scored by the champions ({len(keys)})")
        self.execute("champion_scoring_batch_job",  # one run: scoring a patient takes less than a run's start-up
                     run_config={"ops": {"score_patient_batch": {"config": {"patients": keys}}}})

    def report(self) -> Path:
        self.progress.on_stage("study report")
        instance = self.session.instance
        ended = self.execute("report_job", run_config=IN_PROCESS, study_run=True,  # a deleted report is written again
                             still_valid=lambda run_id: Path(report_path_of(instance, run_id)).exists())
        return Path(report_path_of(instance, ended.run_id))

    def execute(self, job_name: str, run_config: dict | None = None, study_run: bool = False,
                on_event: Callable | None = None, stage: bool = True,
                still_valid: Callable[[str], bool] = lambda run_id: True) -> RunEnded:
        """Run `job_name`; a study `stage` (not a follow-up file) reuses its job's last run when that succeeded with the
        same inputs and what it made is `still_valid`."""
        from cssci_platform.lib.stage_inputs import stage_digest

        settings = self.settings if job_name == "report_job" else {k: v for k, v in self.settings.items()
                                                                    if k != "report"}
        settings = {**settings, "runtime": self.runtime}
        inputs = stage_digest(job_name, run_config, settings, self.source, self.upstream)
        if stage and (current := self._current_run(job_name, inputs, still_valid)) is not None:
            from cssci_platform.cli.instance_runs import RunEnded

            if study_run:
                self.study.adopt(current.tags.get(STUDY_TAG, ""))
            self.upstream.append(current.run_id)
            return RunEnded(current.run_id, job_name, None, True)
        tags = {INPUTS_TAG: inputs} if stage else {}
        if study_run:
            tags[STUDY_TAG] = self.study.current()
        ended = self.session.run(job_name, run_config=run_config, tags=tags, on_event=on_event)
        if not ended.success:
            raise StudyStepFailed(f"{ended.subject} failed: {ended.failure}")
        if stage:
            self.upstream.append(ended.run_id)
        return ended

    def _current_run(self, job_name: str, inputs: str, still_valid: Callable[[str], bool]) -> DagsterRun | None:
        """The job's last run when it succeeded with these inputs (nothing ran it since with other inputs)."""
        import dagster as dg

        runs = self.session.instance.get_runs(filters=dg.RunsFilter(job_name=job_name), limit=1)
        if not self.source or not runs or runs[0].status != dg.DagsterRunStatus.SUCCESS \
                or runs[0].tags.get(INPUTS_TAG) != inputs or not still_valid(runs[0].run_id):
            return None
        self.progress.on_message(f"{job_name}: inputs unchanged since run {runs[0].run_id[:8]}, reused")
        return runs[0]


class FitUnitCounter:
    """The modelling run's fit units from its events: planned (the units of the plan step's dynamic outputs, one per
    fit step), done and failed (the units of the fit steps that succeeded / failed), passed on as they change."""

    def __init__(self, on_units: Callable[[int, int, int], None]) -> None:
        self.on_units = on_units
        self.units_of_step: dict[str, int] = {}  # mapping key -> units
        self.done = self.failed = 0

    def on_event(self, entry) -> None:
        event = entry.dagster_event
        if event is None:
            return
        step = event.step_key or ""
        if "plan_fit_units" in step and event.event_type_value == "STEP_OUTPUT":
            output = event.event_specific_data
            units = output.metadata.get(FIT_UNITS_METADATA)
            self.units_of_step[output.mapping_key] = int(units.value) if units is not None else 1
        elif "fit_unit[" in step and event.event_type_value in ("STEP_SUCCESS", "STEP_FAILURE"):
            units = self.units_of_step.get(step[step.index("[") + 1:-1], 1)
            self.done += units if event.event_type_value == "STEP_SUCCESS" else 0
            self.failed += units if event.event_type_value == "STEP_FAILURE" else 0
        else:
            return
        planned = sum(self.units_of_step.values())
        self.on_units(self.done + self.failed, self.failed, max(planned, self.done + self.failed))


def report_path_of(instance, run_id: str) -> str:
    """The report file a report run materialized (its materialization's `report` metadata)."""
    import dagster as dg

    for entry in instance.all_logs(run_id, of_type=dg.DagsterEventType.ASSET_MATERIALIZATION):
        metadata = entry.dagster_event.event_specific_data.materialization.metadata
        if "report" in metadata:
            return str(metadata["report"].value)
    raise StudyStepFailed(f"report_job ({run_id}) materialized no report: see the run in the Dagster UI")


def _flat(document: dict, prefix: str = "") -> dict[str, object]:
    flat: dict[str, object] = {}
    for key, value in document.items():
        if isinstance(value, dict):
            flat |= _flat(value, f"{prefix}{key}.")
        else:
            flat[f"{prefix}{key}"] = value
    return flat
