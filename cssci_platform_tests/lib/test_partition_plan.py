"""Which patients of a manifest are new or changed since the sensor's last look."""

from __future__ import annotations

import json

from cssci_platform.lib.partition_plan import ManifestSnapshot, plan_partitions, record_digest
from cssci_platform_tests.lib.conftest import base_row, base_spec, default_rows, write_csv

KEYS = {"P001", "P002", "P003"}


def test_first_look_runs_everyone(tiny_cohort):
    cohort = tiny_cohort(write_files=False).load()
    plan = plan_partitions(cohort, ManifestSnapshot.from_cursor(None), set(), set())
    assert plan.manifest_changed
    assert plan.new_patients == KEYS
    assert set(plan.patients_to_run) == KEYS
    assert plan.new_centers == {"center_A"}
    assert plan.patients_to_run == {k: record_digest(r) for k, r in cohort.patients.items()}
    assert plan.snapshot == ManifestSnapshot(cohort.manifest_sha256, plan.patients_to_run)
    assert all(len(d) == 16 for d in plan.patients_to_run.values())


def test_unchanged_manifest_runs_nothing(tiny_cohort):
    cohort = tiny_cohort(write_files=False).load()
    first = plan_partitions(cohort, ManifestSnapshot(), set(), set())
    again = plan_partitions(cohort, first.snapshot, KEYS, {"center_A"})
    reloaded = plan_partitions(tiny_cohort(write_files=False).load(), first.snapshot, KEYS, {"center_A"})
    for plan in (again, reloaded):
        assert not plan.manifest_changed
        assert plan.patients_to_run == {} and plan.new_patients == set() and plan.new_centers == set()
        assert plan.snapshot == first.snapshot


def test_one_changed_row_runs_only_that_patient(tiny_cohort):
    built = tiny_cohort(write_files=False)
    first = plan_partitions(built.load(), ManifestSnapshot(), set(), set())
    rows = default_rows()
    rows[1]["age"] = "71"
    write_csv(built.table, rows)
    plan = plan_partitions(built.load(), first.snapshot, KEYS, {"center_A"})
    assert plan.manifest_changed
    assert set(plan.patients_to_run) == {"P002"}
    assert plan.patients_to_run["P002"] != first.snapshot.patient_digests["P002"]
    assert plan.new_patients == set() and plan.new_centers == set()


def test_a_changed_path_or_new_issue_changes_the_digest(tiny_cohort):
    built = tiny_cohort(write_files=False)
    before = built.load().patients
    rows = default_rows()
    rows[0]["image__sag_T2"] = "images/other.nii.gz"
    rows[2]["diabetes"] = "yes"  # becomes an issue
    write_csv(built.table, rows)
    after = built.load().patients
    assert record_digest(after["P001"]) != record_digest(before["P001"])
    assert record_digest(after["P002"]) == record_digest(before["P002"])
    assert record_digest(after["P003"]) != record_digest(before["P003"])


def test_added_patient_and_new_center(tiny_cohort):
    built = tiny_cohort(write_files=False)
    first = plan_partitions(built.load(), ManifestSnapshot(), set(), set())
    rows = default_rows() + [base_row("P004", center="center_B")]
    write_csv(built.table, rows)
    plan = plan_partitions(built.load(), first.snapshot, KEYS, {"center_A"})
    assert plan.new_patients == {"P004"}
    assert set(plan.patients_to_run) == {"P004"}
    assert plan.new_centers == {"center_B"}


def test_a_center_declared_in_the_yaml_later(tiny_cohort):
    built = tiny_cohort(write_files=False)
    first = plan_partitions(built.load(), ManifestSnapshot(), set(), set())
    rows = default_rows() + [base_row("P004", center="center_C")]
    write_csv(built.table, rows)
    undeclared = plan_partitions(built.load(), first.snapshot, KEYS, {"center_A"})
    assert undeclared.new_centers == set()  # an undeclared center is an issue of the row, not a new center
    assert set(undeclared.patients_to_run) == {"P004"}
    spec = base_spec(centers=["center_A", "center_B", "center_C"])
    built.manifest.write_text(json.dumps(spec), encoding="utf-8")  # JSON is YAML
    declared = plan_partitions(built.load(), undeclared.snapshot, KEYS | {"P004"}, {"center_A"})
    assert declared.new_centers == {"center_C"}
    assert set(declared.patients_to_run) == {"P004"}  # its unknown_center issue went away


def test_removed_patient_is_not_run(tiny_cohort):
    built = tiny_cohort(write_files=False)
    first = plan_partitions(built.load(), ManifestSnapshot(), set(), set())
    write_csv(built.table, default_rows()[:2])
    plan = plan_partitions(built.load(), first.snapshot, KEYS, {"center_A"})
    assert plan.patients_to_run == {} and set(plan.snapshot.patient_digests) == {"P001", "P002"}


def test_cursor_round_trip(tiny_cohort):
    plan = plan_partitions(tiny_cohort(write_files=False).load(), ManifestSnapshot(), set(), set())
    cursor = plan.snapshot.to_cursor()
    assert isinstance(cursor, str) and json.loads(cursor)["manifest_sha256"] == plan.snapshot.manifest_sha256
    assert ManifestSnapshot.from_cursor(cursor) == plan.snapshot
    assert ManifestSnapshot.from_cursor(None) == ManifestSnapshot() == ManifestSnapshot.from_cursor("")
    assert ManifestSnapshot().to_cursor() == '{"manifest_sha256": "", "patient_digests": {}}'
