import dagster as dg
import polars as pl

from cssci_platform.defs.ingest.sensors import cohort_manifest_sensor
from cssci_platform_tests.defs.conftest import Platform


def _tick(platform: Platform, cursor: str | None) -> dg.SensorResult:
    context = dg.build_sensor_context(
        instance=platform.instance, cursor=cursor, resources={"cohort": platform.resources["cohort"]}
    )
    return cohort_manifest_sensor(context)


def _apply_partition_requests(platform: Platform, result: dg.SensorResult) -> None:
    for request in result.dynamic_partitions_requests or []:
        platform.instance.add_dynamic_partitions(request.partitions_def_name, list(request.partition_keys))


def test_first_tick_registers_patients_and_centers_and_requests_one_run_each(platform: Platform) -> None:
    result = _tick(platform, None)
    added = {r.partitions_def_name: set(r.partition_keys) for r in result.dynamic_partitions_requests}
    assert len(added["patients"]) == 5
    assert added["centers"] <= {"center_A", "center_B", "center_C"} and added["centers"]
    jobs = [r.job_name for r in result.run_requests]
    assert jobs[0] == "cohort_manifest_job" and jobs.count("patient_features_job") == 5
    assert {r.partition_key for r in result.run_requests[1:]} == added["patients"]
    assert len({r.run_key for r in result.run_requests}) == len(result.run_requests)


def test_unchanged_manifest_requests_nothing_and_a_changed_row_reruns_only_that_patient(platform: Platform) -> None:
    first = _tick(platform, None)
    _apply_partition_requests(platform, first)
    second = _tick(platform, first.cursor)
    assert second.run_requests == [] and all(not r.partition_keys for r in second.dynamic_partitions_requests)

    table_path = platform.manifest.parent / "patients.csv"
    table = pl.read_csv(table_path, infer_schema=False)
    changed_key = table["patient_id"][1]
    table.with_columns(
        pl.when(pl.col("patient_id") == changed_key).then(pl.lit("71")).otherwise(pl.col("age")).alias("age")
    ).write_csv(table_path)
    third = _tick(platform, second.cursor)
    patient_runs = [r for r in third.run_requests if r.job_name == "patient_features_job"]
    assert [r.partition_key for r in patient_runs] == [changed_key]
    assert any(r.job_name == "cohort_manifest_job" for r in third.run_requests)
    assert patient_runs[0].run_key not in {r.run_key for r in first.run_requests}


def test_a_new_center_in_the_manifest_becomes_a_new_centers_partition(platform: Platform) -> None:
    import yaml

    first = _tick(platform, None)
    _apply_partition_requests(platform, first)
    spec_path = platform.manifest
    spec = yaml.safe_load(spec_path.read_text(encoding="utf-8"))
    spec["centers"].append("center_D")
    spec_path.write_text(yaml.safe_dump(spec, sort_keys=False), encoding="utf-8")
    table_path = platform.manifest.parent / "patients.csv"
    table = pl.read_csv(table_path, infer_schema=False)
    newcomer = table.head(1).with_columns(patient_id=pl.lit("SCI-D-0001"), center=pl.lit("center_D"))
    pl.concat([table, newcomer]).write_csv(table_path)

    second = _tick(platform, first.cursor)
    added = {r.partitions_def_name: set(r.partition_keys) for r in second.dynamic_partitions_requests}
    assert added.get("centers") == {"center_D"} and added.get("patients") == {"SCI-D-0001"}
    assert [r.partition_key for r in second.run_requests if r.job_name == "patient_features_job"] == ["SCI-D-0001"]
