"""Prospective operations end to end: inbox arrivals, the sensor, champion scoring, outcomes, validation."""

import os
import shutil
import time
from collections.abc import Iterator
from pathlib import Path

import dagster as dg
import polars as pl
import pytest
import yaml

from cssci_platform.definitions import defs
from cssci_platform.defs.prospective.sensors import new_patient_sensor
from cssci_platform.lib.cohort import load_cohort
from cssci_platform.lib.model_tracking import TrackingConfig, sqlite_tracking_uri
from cssci_platform.lib.study_config import load_config
from cssci_platform.lib.synthetic import write_sci_cohort
from cssci_platform.lib.warehouse import table_frame
from cssci_platform.resources.cohort import CohortResource
from cssci_platform.resources.image_store import ImageStoreResource
from cssci_platform.resources.inbox import InboxResource
from cssci_platform.resources.tracking import TrackingResource
from cssci_platform.resources.warehouse import WarehouseResource
from cssci_platform_tests.study_files import write_study

pytestmark = pytest.mark.xdist_group("hospital")  # one trained study per worker (make test uses --dist loadgroup)

STUDY_SECTIONS = {  # one channel, small slices, random-init backbone: a small study, trained once per worker
    "preprocessing": {"channels": ["original"]},
    "deep": {"channels": ["original"], "weights": "none", "slice": {"output_size": 32}},
    "selection": {"mrmr_k": 5},
    "models": {"classifiers": ["LR"], "cv_folds": 3, "signatures": ["Rad", "DL_resnet18", "Clinical"]},
    "modes": ["leakage_safe"],
}
STUDY = "hospital"  # the study's name: its MLflow experiment


def _arrival_row(source: Path, patient_id: str, new_id: str) -> dict:
    """A source cohort row turned into an inbox row: new id, paths relative to the patient's folder."""
    table = pl.read_csv(source / "patients.csv", infer_schema=False).filter(pl.col("patient_id") == patient_id)
    row = table.row(0, named=True)
    row = {k: (Path(v).name if k.startswith(("image__", "mask__")) and v else v) for k, v in row.items()}
    return {**row, "patient_id": new_id, "good_outcome": None, "outcome_date": None}


def drop_arrival(
    inbox: Path, source: Path, patient_id: str, new_id: str, ready: bool = True, row: dict | None = None
) -> Path:
    folder = inbox / new_id
    shutil.copytree(source / "images" / patient_id, folder)
    values = row or _arrival_row(source, patient_id, new_id)
    pl.DataFrame([values], schema={k: pl.String for k in values}).write_csv(folder / "patient.csv")
    if ready:
        (folder / "READY").touch()
    return folder


class Hospital:
    def __init__(self, root: Path, instance: dg.DagsterInstance) -> None:
        self.cohort_dir, self.instance = root / "cohort", instance
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
        self.study_file = write_study(root / "study", self.cohort_dir / "cohort.yaml", STUDY_SECTIONS, name=STUDY)
        self.environment = {
            "CSSCI_MANIFEST": str(self.cohort_dir / "cohort.yaml"),
            "CSSCI_WAREHOUSE": str(self.warehouse),
            "CSSCI_IMAGE_STORE": str(root / "store"),
            "CSSCI_MLFLOW_URI": self.mlflow,
            "CSSCI_EXPERIMENT_CONFIG": str(self.study_file),
        }
        with pytest.MonkeyPatch.context() as patch:  # the project's own resource wiring, pointed at this study
            for name, value in self.environment.items():
                patch.setenv(name, value)
            self.definitions = defs()
            self.definitions.resolve_all_job_defs()

    def run(
        self, job: str, ops: dict | None = None, partition: str | None = None, tags: dict | None = None
    ) -> dg.ExecuteInProcessResult:
        """`ops`: per-run values only (a follow-up file); the study's settings come from its config file."""
        with pytest.MonkeyPatch.context() as patch:
            for name, value in self.environment.items():
                patch.setenv(name, value)
            return self.definitions.resolve_job_def(job).execute_in_process(
                run_config={"ops": ops or {}},
                partition_key=partition,
                instance=self.instance,
                raise_on_error=False,
                tags=tags,
            )

    def tick(self, cursor: str | None) -> dg.SensorResult:
        context = dg.build_sensor_context(
            instance=self.instance,
            cursor=cursor,
            resources={k: self.resources[k] for k in ("cohort", "inbox", "warehouse")},
        )
        return new_patient_sensor(context)

    def query(self, sql: str) -> pl.DataFrame:
        return table_frame(self.warehouse, sql)


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Hospital]:
    """A small study trained once: 24 development patients, features, embeddings, champions in MLflow."""
    root = tmp_path_factory.mktemp("hospital")
    write_sci_cohort(root / "cohort", n_development=24, n_prospective=0, seed=13, second_rater_fraction=0)
    spec = yaml.safe_load((root / "cohort" / "cohort.yaml").read_text(encoding="utf-8"))
    (root / "cohort" / "cohort.yaml").write_text(
        yaml.safe_dump({**spec, "inbox": "inbox"}, sort_keys=False), encoding="utf-8"
    )
    write_sci_cohort(root / "source", n_development=1, n_prospective=3, seed=14)
    with dg.instance_for_test() as instance:
        hospital = Hospital(root, instance)
        assert hospital.run("cohort_manifest_job").success
        cohort = load_cohort(hospital.cohort_dir / "cohort.yaml")
        instance.add_dynamic_partitions("patients", sorted(cohort.patients))
        instance.add_dynamic_partitions("centers", sorted({p.center for p in cohort.patients.values()}))
        for key in sorted(cohort.patients):
            assert hospital.run("patient_features_job", partition=key).success, key
        for center in instance.get_dynamic_partitions("centers"):
            assert hospital.run("center_embeddings_job", partition=center).success
        assert hospital.run("modeling_job").success
        yield hospital


def test_a_complete_arrival_is_scored_by_every_champion_and_its_outcome_updates_validation(trained: Hospital) -> None:
    source = trained.cohort_dir.parent / "source"
    arrival = sorted(load_cohort(source / "cohort.yaml").patients)[0]  # any source patient: renamed on arrival
    drop_arrival(trained.inbox, source, arrival, "NEW-0001")
    first = trained.tick(None)
    assert [r.partition_key for r in first.run_requests] == ["NEW-0001"]
    added = {r.partitions_def_name: list(r.partition_keys) for r in first.dynamic_partitions_requests}
    assert added["patients"] == ["NEW-0001"]
    for request in first.dynamic_partitions_requests:
        trained.instance.add_dynamic_partitions(request.partitions_def_name, list(request.partition_keys))
    assert trained.tick(first.cursor).run_requests == []  # seen: nothing twice

    result = trained.run("prospective_patient_job", partition="NEW-0001", tags=first.run_requests[0].tags)
    assert result.success
    predictions = trained.query("SELECT * FROM prospective_predictions WHERE patient_key = 'NEW-0001'")
    champions = trained.query("SELECT signature, registered_model, model_version FROM trained_models WHERE champion")
    assert set(predictions["signature"]) == set(champions["signature"]) == {"Rad", "DL_resnet18", "Clinical"}
    assert set(zip(predictions["registered_model"], predictions["model_version"])) == set(
        zip(champions["registered_model"], champions["model_version"])
    )
    thresholds = dict(trained.query("SELECT signature, threshold FROM trained_models WHERE champion").iter_rows())
    for signature, group in predictions.select("signature", "risk_group").unique().iter_rows():
        # the class, the direction and the champion's frozen threshold are named (issue 16 bug 6)
        assert group in {f"{side} P(good_outcome=1): {sign} {thresholds[signature]:.3f}"
                         for side, sign in (("high", ">="), ("low", "<"))}, group

    followup = trained.inbox / "followup"
    followup.mkdir()
    pl.DataFrame(
        {
            "patient_id": ["NEW-0001", "NOBODY"],
            "outcome": ["good_outcome", "good_outcome"],
            "value": ["1", "0"],
            "outcome_date": ["2026-06-01", "2026-06-01"],
        }
    ).write_csv(followup / "june.csv")
    tick = trained.tick(first.cursor)
    [request] = tick.run_requests
    assert trained.run("followup_job", request.run_config["ops"]).success
    assert trained.query("SELECT value FROM outcomes WHERE patient_key = 'NEW-0001'")["value"].to_list() == ["1"]
    rejected = trained.query("SELECT reason FROM inbox_events WHERE status = 'rejected'")["reason"].to_list()
    assert any("NOBODY" in r and "not in the cohort" in r for r in rejected)

    assert trained.run("validation_job").success
    validation = trained.query("SELECT * FROM validation_metrics")
    assert set(validation["signature"]) == {"Rad", "DL_resnet18", "Clinical"}
    assert validation.filter(pl.col("metric") == "n")["value"].to_list() == [1.0, 1.0, 1.0]
    client = TrackingConfig(trained.mlflow, STUDY).client()
    name = champions["registered_model"][0]
    version = client.get_model_version(name, champions["model_version"][0])
    history = client.get_metric_history(version.tags["validation_run_id"], "validation_n")
    assert [m.value for m in history] == [1.0]


def test_incomplete_malformed_and_duplicate_arrivals_get_reasons_and_do_not_block_others(trained: Hospital) -> None:
    source = trained.cohort_dir.parent / "source"
    keys = sorted(load_cohort(source / "cohort.yaml").patients)
    half = drop_arrival(trained.inbox, source, keys[1], "HALF-0001", ready=False)  # just copied: not stable yet
    bad = _arrival_row(source, keys[2], "BAD-0001") | {"age": "old"}
    drop_arrival(trained.inbox, source, keys[2], "BAD-0001", row=bad)
    unknown = _arrival_row(source, keys[2], "FAR-0001") | {"center": "center_Z"}
    drop_arrival(trained.inbox, source, keys[2], "FAR-0001", row=unknown)
    existing = sorted(
        k for k, p in load_cohort(trained.cohort_dir / "cohort.yaml").patients.items() if p.cohort == "development"
    )[0]
    drop_arrival(trained.inbox, source, keys[2], existing, row=_arrival_row(source, keys[2], existing))
    good = drop_arrival(trained.inbox, source, keys[2], "GOOD-0002")

    result = trained.tick(None)
    requested = {r.partition_key for r in result.run_requests if r.partition_key}
    assert "GOOD-0002" in requested and not {"HALF-0001", "BAD-0001", "FAR-0001", existing} & requested
    events = dict(
        trained.query(
            "SELECT patient_key, status || ': ' || coalesce(reason, '') FROM inbox_events WHERE source = 'arrival'"
        ).iter_rows()
    )
    assert events["HALF-0001"].startswith("incomplete") and "stable" in events["HALF-0001"]
    assert events["BAD-0001"].startswith("malformed") and "age" in events["BAD-0001"]
    assert events["FAR-0001"].startswith("malformed") and "center_Z" in events["FAR-0001"]
    assert events[existing].startswith("duplicate") and "already exists" in events[existing]

    past = time.time() - 120  # the copy finished two minutes ago: now it is complete
    for path in [half, *half.iterdir()]:
        os.utime(path, (past, past))
    later = trained.tick(result.cursor)
    assert [r.partition_key for r in later.run_requests if r.partition_key] == ["HALF-0001"]
    restarted = trained.tick(None)  # a daemon restart loses the cursor: run keys still deduplicate
    arrival_keys = lambda requests: {r.run_key for r in requests if r.run_key.startswith("arrival:")}  # noqa: E731
    assert arrival_keys(restarted.run_requests) <= arrival_keys(result.run_requests + later.run_requests)
    assert good.exists()


def test_cssci_predict_scores_one_patient_folder_outside_dagster(trained: Hospital, tmp_path: Path) -> None:
    from cssci_platform.cli.predict import PredictionError, predict_patient_dir

    source = trained.cohort_dir.parent / "source"
    folder = drop_arrival(tmp_path, source, sorted(load_cohort(source / "cohort.yaml").patients)[1], "WALKIN-01")
    config = load_config(trained.study_file)
    result = predict_patient_dir(
        folder, config, trained.cohort_dir / "cohort.yaml", trained.warehouse, trained.mlflow, tmp_path / "out"
    )
    champions = dict(trained.query("SELECT signature, model_version FROM trained_models WHERE champion").iter_rows())
    assert {score.signature: version for score, _, version in result.scores} == champions
    assert all(abs(sum(score.probabilities.values()) - 1) < 1e-9 for score, _, _ in result.scores)
    assert result.gradcams == [] and "no fine-tuned network" in result.notes[0]
    (folder / "patient.csv").write_text("patient_id,center\nWALKIN-01,center_A\n", encoding="utf-8")
    with pytest.raises(PredictionError, match="required column"):
        predict_patient_dir(
            folder, config, trained.cohort_dir / "cohort.yaml", trained.warehouse, trained.mlflow, tmp_path / "out"
        )


def test_a_corrected_arrival_is_rescored_on_its_corrected_values_with_an_audit_row(trained: Hospital) -> None:
    source = trained.cohort_dir.parent / "source"
    arrival = sorted(load_cohort(source / "cohort.yaml").patients)[0]
    row = _arrival_row(source, arrival, "FIX-0001") | {"age": "29"}
    folder = drop_arrival(trained.inbox, source, arrival, "FIX-0001", row=row)
    first = trained.tick(None)
    [request] = [r for r in first.run_requests if r.partition_key == "FIX-0001"]
    for added in first.dynamic_partitions_requests:
        trained.instance.add_dynamic_partitions(added.partitions_def_name, list(added.partition_keys))
    assert trained.run("prospective_patient_job", partition="FIX-0001", tags=request.tags).success
    before = dict(
        trained.query(
            "SELECT signature, probability FROM prospective_predictions WHERE patient_key = 'FIX-0001' "
            "AND class_label = '1'"
        ).iter_rows()
    )

    pl.DataFrame([row | {"age": "77"}], schema={k: pl.String for k in row}).write_csv(folder / "patient.csv")  # the fix
    corrected = trained.tick(first.cursor)
    [rerun] = [r for r in corrected.run_requests if r.partition_key == "FIX-0001"]
    assert rerun.run_key != request.run_key
    audit = trained.query(
        "SELECT column_name, old_value, new_value FROM admission_changes WHERE patient_key = 'FIX-0001'"
    )
    assert audit.rows() == [("age", "29", "77")]
    assert load_cohort(trained.cohort_dir / "cohort.yaml").patients["FIX-0001"].clinical["age"] == 77
    assert trained.run("prospective_patient_job", partition="FIX-0001", tags=rerun.tags).success
    assert (
        trained.query("SELECT value_number FROM clinical WHERE patient_key = 'FIX-0001' AND variable = 'age'").item()
        == 77
    )
    after = dict(
        trained.query(
            "SELECT signature, probability FROM prospective_predictions WHERE patient_key = 'FIX-0001' "
            "AND class_label = '1'"
        ).iter_rows()
    )
    assert after["Clinical"] != before["Clinical"]  # the clinical model saw the corrected age
    assert trained.tick(corrected.cursor).run_requests == []  # and nothing runs twice
