"""Manifest schema v1: whole-manifest errors (`ManifestError`) and per-row issues (`ManifestIssue`)."""

from __future__ import annotations

from pathlib import Path

import polars as pl
import pytest

from cssci_platform.lib.cohort import ManifestError, ManifestIssue, MaskRef, load_cohort
from cssci_platform_tests.lib.conftest import SEQUENCE, base_row, base_spec, default_rows, write_csv

IMAGE_COL = f"image__{SEQUENCE}"
MASK_COL = f"mask__{SEQUENCE}__lesion"
REPEAT_COL = f"mask__{SEQUENCE}__lesion__rater2"


def manifest_error(path) -> ManifestError:
    with pytest.raises(ManifestError) as caught:
        load_cohort(path)
    return caught.value


# ---------------------------------------------------------------- whole-manifest errors


def test_missing_cohort_yaml_names_the_path(tmp_path):
    path = tmp_path / "nowhere" / "cohort.yaml"
    error = manifest_error(path)
    assert error.source == path
    assert len(error.problems) == 1
    assert "cohort manifest not found" in error.problems[0]
    assert "pass the path of your cohort.yaml" in error.problems[0]
    assert str(path) in str(error)


def test_invalid_yaml(tiny_cohort):
    cohort = tiny_cohort(yaml_text="manifest_version: 1\nname: [unclosed\n")
    error = manifest_error(cohort.manifest)
    assert error.source == cohort.manifest
    assert len(error.problems) == 1
    assert error.problems[0].startswith("not valid YAML")
    assert str(cohort.manifest) in str(error)


def test_yaml_that_is_not_a_mapping(tiny_cohort):
    cohort = tiny_cohort(yaml_text="- manifest_version\n- name\n")
    error = manifest_error(cohort.manifest)
    assert error.problems == ["expected a mapping of keys (manifest_version, name, table, ...)"]


@pytest.mark.parametrize("version, shown", [(2, "2"), (0, "0"), ("1", "'1'"), (None, "None")])
def test_wrong_or_missing_manifest_version(tiny_cohort, version, shown):
    cohort = tiny_cohort(spec=base_spec(manifest_version=version))  # None drops the key
    error = manifest_error(cohort.manifest)
    assert error.problems == [f"manifest_version is {shown}; this platform reads version 1"]
    assert str(cohort.manifest) in str(error)


def test_unknown_key_is_named(tiny_cohort):
    spec = base_spec()
    spec["centres"] = ["center_A"]  # British spelling: extra key, forbidden
    cohort = tiny_cohort(spec=spec)
    error = manifest_error(cohort.manifest)
    assert len(error.problems) == 1
    assert error.problems[0].startswith("key 'centres': Extra inputs are not permitted")


def test_unknown_key_inside_a_variable_is_named(tiny_cohort):
    spec = base_spec()
    spec["clinical"]["age"] = {"type": "continuous", "unit": "years"}
    error = manifest_error(tiny_cohort(spec=spec).manifest)
    assert len(error.problems) == 1
    assert error.problems[0].startswith("key 'clinical.age.unit': Extra inputs are not permitted")


@pytest.mark.parametrize("kind", ["categorical", "multiclass"])
def test_categorical_without_levels(tiny_cohort, kind):
    spec = base_spec()
    spec["clinical"]["asia"] = {"type": kind}
    error = manifest_error(tiny_cohort(spec=spec).manifest)
    assert len(error.problems) == 1
    assert error.problems[0].startswith("key 'clinical.asia': ")
    assert f"type '{kind}' needs 'levels' (the allowed values)" in error.problems[0]


def test_levels_on_a_continuous_variable(tiny_cohort):
    spec = base_spec()
    spec["clinical"]["age"] = {"type": "continuous", "levels": ["young", "old"]}
    error = manifest_error(tiny_cohort(spec=spec).manifest)
    assert len(error.problems) == 1
    assert "key 'clinical.age'" in error.problems[0] and "type 'continuous' takes no 'levels'" in error.problems[0]


def test_every_spec_problem_is_listed_at_once(tiny_cohort):
    spec = base_spec(name="has space", centers=[], mask_label=0)
    error = manifest_error(tiny_cohort(spec=spec).manifest)
    keys = sorted(problem.split("'")[1] for problem in error.problems)
    assert keys == ["centers", "mask_label", "name"]


def test_missing_table_file(tiny_cohort):
    cohort = tiny_cohort(spec=base_spec(table="elsewhere.csv"))
    cohort.table.unlink()
    error = manifest_error(cohort.manifest)
    assert error.source == cohort.root / "elsewhere.csv"
    assert error.problems == ["patient table not found; check 'table' in cohort.yaml (relative to it)"]


@pytest.mark.parametrize("column", ["patient_id", "center", "cohort", IMAGE_COL])
def test_missing_required_column(tiny_cohort, column):
    cohort = tiny_cohort(drop_columns=[column])
    error = manifest_error(cohort.manifest)
    assert error.source == cohort.table
    assert error.problems == [f"required column '{column}' is missing"]
    assert str(cohort.table) in str(error)


def test_undeclared_column(tiny_cohort):
    rows = [base_row("P001", bmi="24.1")]
    cohort = tiny_cohort(rows)
    error = manifest_error(cohort.manifest)
    assert error.source == cohort.table
    assert len(error.problems) == 1
    assert error.problems[0].startswith("column 'bmi' is not declared")
    assert "declare it under clinical:/outcomes: in cohort.yaml" in error.problems[0]


def test_image_column_of_undeclared_sequence(tiny_cohort):
    error = manifest_error(tiny_cohort([base_row("P001", image__ax_T1="images/x.nii.gz")]).manifest)
    assert len(error.problems) == 1
    assert error.problems[0].startswith("column 'image__ax_T1' is not declared")


@pytest.mark.parametrize(
    "column, problem",
    [
        (
            "mask__ax_T1__lesion",
            "column 'mask__ax_T1__lesion': sequence 'ax_T1' is not declared (sequences: ['sag_T2'])",
        ),
        (
            f"mask__{SEQUENCE}__tumour",
            f"column 'mask__{SEQUENCE}__tumour': ROI 'tumour' is not declared (rois: ['lesion', 'cord'])",
        ),
        (
            f"mask__{SEQUENCE}__lesion__2nd",
            f"column 'mask__{SEQUENCE}__lesion__2nd': segmentation tag '2nd' must start with a letter and use "
            "letters, digits, '_'",
        ),
    ],
)
def test_mask_column_with_undeclared_parts(tiny_cohort, column, problem):
    error = manifest_error(tiny_cohort([base_row("P001", **{column: "masks/x.nii.gz"})], write_files=False).manifest)
    assert error.problems == [problem]


def test_column_problems_are_listed_together(tiny_cohort):
    cohort = tiny_cohort(
        [base_row("P001", bmi="1", **{"mask__ax__lesion": "m.nii.gz"})], drop_columns=["center"], write_files=False
    )
    error = manifest_error(cohort.manifest)
    assert len(error.problems) == 3
    assert error.problems[0] == "required column 'center' is missing"


@pytest.mark.parametrize("column", ["age", "good_outcome"])
def test_declared_variable_without_column(tiny_cohort, column):
    cohort = tiny_cohort(drop_columns=[column])
    with pytest.raises(ManifestError) as caught:
        load_cohort(cohort.manifest)
    assert any(f"'{column}'" in problem for problem in caught.value.problems)


# ---------------------------------------------------------------- good rows


def test_good_rows_parse_to_typed_records(tiny_cohort):
    cohort = tiny_cohort().load()
    assert list(cohort.patients) == ["P001", "P002", "P003"]
    assert cohort.issues == [] and cohort.unkeyed_issues == []
    record = cohort.patients["P002"]
    assert record.line == 3
    assert record.center == "center_A" and record.cohort == "development"
    assert record.images == {SEQUENCE: "images/P002_sag_T2.nii.gz"}
    assert record.masks == [MaskRef(SEQUENCE, "lesion", "primary", "masks/P002_sag_T2_lesion.nii.gz", MASK_COL)]
    assert record.clinical == {"age": 54.5, "diabetes": 0, "asia": "C"}
    assert isinstance(record.clinical["age"], float) and isinstance(record.clinical["diabetes"], int)
    assert record.outcomes == {"good_outcome": 1}
    assert record.outcome_date == "2024-03-01"
    assert record.issues == [] and not record.quarantined
    assert cohort.resolve(record.images[SEQUENCE]).is_file()
    assert cohort.data_root == (cohort.manifest_path.parent / "data").resolve()
    assert len(cohort.manifest_sha256) == 64


def test_cells_are_stripped_and_backslashes_normalized(tiny_cohort):
    rows = [
        base_row(
            " P001 ",
            center=" center_B ",
            age=" 61 ",
            **{IMAGE_COL: "images\\P001_sag_T2.nii.gz", MASK_COL: "masks/./P001_sag_T2_lesion.nii.gz"},
        )
    ]
    record = tiny_cohort(rows, write_files=False).load().patients["P001"]
    assert record.issues == []
    assert record.center == "center_B" and record.clinical["age"] == 61.0
    assert record.images[SEQUENCE] == "images/P001_sag_T2.nii.gz"
    assert record.masks[0].path == "masks/P001_sag_T2_lesion.nii.gz"


def test_sixty_four_character_id_is_valid(tiny_cohort):
    key = "P" + "x" * 63
    cohort = tiny_cohort([base_row(key)], write_files=False).load()
    assert list(cohort.patients) == [key] and cohort.issues == []


def test_manifest_digest_follows_the_table(tiny_cohort):
    cohort = tiny_cohort()
    before = cohort.load().manifest_sha256
    assert cohort.load().manifest_sha256 == before
    write_csv(cohort.table, [base_row("P001", age="70")] + default_rows()[1:])
    assert cohort.load().manifest_sha256 != before


def test_excel_byte_order_mark_is_accepted(tiny_cohort):
    cohort = tiny_cohort()
    cohort.table.write_bytes(b"\xef\xbb\xbf" + cohort.table.read_bytes())
    loaded = cohort.load()
    assert list(loaded.patients) == ["P001", "P002", "P003"] and loaded.issues == []


# ---------------------------------------------------------------- patient ids


@pytest.mark.parametrize("bad_id", ["", "P 1", "-P1", "P/1", "P\u00e91", "x" * 65])
def test_invalid_patient_id_becomes_an_unkeyed_issue(tiny_cohort, bad_id):
    rows = default_rows()
    rows[1]["patient_id"] = bad_id
    cohort = tiny_cohort(rows, write_files=False).load()
    assert list(cohort.patients) == ["P001", "P003"]
    assert cohort.patients["P001"].issues == [] and cohort.patients["P003"].issues == []
    assert len(cohort.unkeyed_issues) == 1
    issue = cohort.unkeyed_issues[0]
    assert (issue.patient_key, issue.line, issue.column, issue.code, issue.severity) == (
        "<line 3>",
        3,
        "patient_id",
        "invalid_patient_id",
        "error",
    )
    assert repr(bad_id or None) in issue.message
    assert "unique id" in issue.fix
    assert issue.describe().startswith("line 3, column 'patient_id': ")
    assert cohort.issues == [issue]


def test_duplicate_patient_id_is_flagged_on_the_first_record(tiny_cohort):
    rows = default_rows() + [base_row("P001", age="99")]
    cohort = tiny_cohort(rows, write_files=False).load()
    assert list(cohort.patients) == ["P001", "P002", "P003"]
    first = cohort.patients["P001"]
    assert first.line == 2 and first.clinical["age"] == 54.5  # the first row's values are kept
    assert len(first.issues) == 1
    issue = first.issues[0]
    assert (issue.patient_key, issue.line, issue.column, issue.code, issue.severity) == (
        "P001",
        5,
        "patient_id",
        "duplicate_patient_id",
        "error",
    )
    assert issue.message == "patient_id 'P001' appears on lines 2 and 5"
    assert "one row per patient" in issue.fix
    assert first.quarantined
    assert cohort.patients["P002"].issues == [] and cohort.patients["P003"].issues == []


# ---------------------------------------------------------------- row-level issues


ROW_CASES = [
    # column, bad value, code, text in message, text in fix
    ("center", "center_Z", "unknown_center", "center 'center_Z' is not declared", "['center_A', 'center_B']"),
    ("center", None, "unknown_center", "center None is not declared", "declare it under centers:"),
    (
        "cohort",
        "training",
        "bad_cohort_role",
        "cohort 'training' is not a cohort role",
        "['development', 'prospective']",
    ),
    (IMAGE_COL, None, "missing_path", "no file given", "relative to data_root"),
    (MASK_COL, None, "missing_path", "no file given", "relative to data_root"),
    (
        IMAGE_COL,
        "/scans/P002.nii.gz",
        "absolute_path",
        "path '/scans/P002.nii.gz' is absolute",
        "relative to data_root",
    ),
    (IMAGE_COL, "C:\\scans\\P002.nii.gz", "absolute_path", "is absolute", "relative to data_root"),
    (
        MASK_COL,
        "../outside/P002.nii.gz",
        "path_escapes_root",
        "path '../outside/P002.nii.gz' leaves data_root",
        "under data_root",
    ),
    (IMAGE_COL, "images/../../P002.nii.gz", "path_escapes_root", "leaves data_root", "under data_root"),
    ("age", "fifty", "bad_value", "'fifty' is not a finite number", "enter a number"),
    ("age", "54,5", "bad_value", "'54,5' is not a finite number", "'.' as decimal mark"),
    ("age", "nan", "bad_value", "'nan' is not a finite number", "enter a number"),
    ("age", "inf", "bad_value", "'inf' is not a finite number", "enter a number"),
    ("diabetes", "yes", "bad_value", "'yes' is not 0 or 1", "as 1 and no/absent as 0"),
    ("diabetes", "2", "bad_value", "'2' is not 0 or 1", "as 1 and no/absent as 0"),
    ("asia", "E", "bad_value", "'E' is not an allowed level", "['A', 'B', 'C', 'D']"),
    ("asia", "c", "bad_value", "'c' is not an allowed level", "['A', 'B', 'C', 'D']"),
    ("good_outcome", "maybe", "bad_value", "'maybe' is not 0 or 1", "as 1 and no/absent as 0"),
    ("outcome_date", "2024-13-01", "bad_date", "'2024-13-01' is not a date", "YYYY-MM-DD"),
    ("outcome_date", "01/03/2024", "bad_date", "'01/03/2024' is not a date", "YYYY-MM-DD"),
]


@pytest.mark.parametrize("column, value, code, message, fix", ROW_CASES, ids=[f"{c[0]}={c[1]!r}" for c in ROW_CASES])
def test_row_issue(tiny_cohort, column, value, code, message, fix):
    rows = default_rows()
    rows[1][column] = value
    clean = tiny_cohort(folder="clean").load()
    cohort = tiny_cohort(rows).load()
    record = cohort.patients["P002"]
    errors = [i for i in record.issues if i.severity == "error"]
    warnings = [i.code for i in record.issues if i.severity == "warning"]
    assert len(errors) == 1, record.issues
    # an unusable outcome counts as no outcome: a development patient also gets the missing-outcome warning
    assert warnings == (["missing_outcome"] if column == "good_outcome" else [])
    issue = errors[0]
    assert (issue.patient_key, issue.line, issue.column, issue.code, issue.severity) == (
        "P002",
        3,
        column,
        code,
        "error",
    )
    assert message in issue.message
    assert fix in issue.fix
    assert issue.describe() == f"line 3, column '{column}': {issue.message}. Fix: {issue.fix}"
    assert record.quarantined
    # the rest of the cohort is untouched
    assert cohort.unkeyed_issues == []
    for key in ("P001", "P003"):
        assert cohort.patients[key].issues == []
        assert cohort.patients[key].clinical == clean.patients[key].clinical
        assert cohort.patients[key].images == clean.patients[key].images


def test_bad_values_are_dropped_from_the_record(tiny_cohort):
    rows = default_rows()
    rows[1].update(
        {
            "age": "old",
            "diabetes": "yes",
            "asia": "Z",
            IMAGE_COL: "/abs.nii.gz",
            MASK_COL: "../m.nii.gz",
            "outcome_date": "soon",
        }
    )
    record = tiny_cohort(rows).load().patients["P002"]
    assert record.clinical == {"age": None, "diabetes": None, "asia": None}
    assert record.images == {} and record.masks == [] and record.outcome_date is None
    assert sorted(i.column for i in record.issues) == sorted(
        ["age", "diabetes", "asia", IMAGE_COL, MASK_COL, "outcome_date"]
    )


def test_one_bad_row_never_affects_another(tiny_cohort):
    rows = default_rows()
    rows[1].update(
        {
            "center": "nowhere",
            "cohort": "x",
            "age": "?",
            "diabetes": "?",
            "asia": "?",
            "good_outcome": "?",
            "outcome_date": "?",
            IMAGE_COL: "/x",
            MASK_COL: None,
        }
    )
    clean = tiny_cohort(folder="clean").load()
    broken = tiny_cohort(rows, folder="broken").load()
    assert len(broken.patients["P002"].issues) == 9
    assert broken.patients["P001"] == clean.patients["P001"]
    assert broken.patients["P003"] == clean.patients["P003"]


def test_development_patient_without_outcome_is_a_warning(tiny_cohort):
    rows = default_rows()
    rows[0].update({"good_outcome": None, "outcome_date": None})
    record = tiny_cohort(rows).load().patients["P001"]
    assert record.outcomes == {"good_outcome": None} and record.outcome_date is None
    assert [(i.code, i.severity, i.line) for i in record.issues] == [("missing_outcome", "warning", 2)]
    assert "mark the patient prospective" in record.issues[0].fix
    assert not record.quarantined


def test_prospective_patient_without_outcome_is_fine(tiny_cohort):
    rows = default_rows()
    rows[0].update({"cohort": "prospective", "good_outcome": None, "outcome_date": None})
    record = tiny_cohort(rows).load().patients["P001"]
    assert record.cohort == "prospective" and record.issues == [] and record.outcomes == {"good_outcome": None}


def test_empty_clinical_value_is_missing_not_an_issue(tiny_cohort):
    rows = default_rows()
    rows[0].update({"age": None, "asia": None})
    record = tiny_cohort(rows).load().patients["P001"]
    assert record.issues == [] and record.clinical == {"age": None, "diabetes": 0, "asia": None}


def test_repeat_segmentation_column_is_optional(tiny_cohort):
    rows = default_rows()
    rows[0][REPEAT_COL] = None
    rows[1][REPEAT_COL] = "masks/P002_sag_T2_lesion_rater2.nii.gz"
    cohort = tiny_cohort(rows).load()
    assert cohort.issues == []
    assert [m.segmentation for m in cohort.patients["P001"].masks] == ["primary"]
    assert cohort.patients["P002"].masks == [
        MaskRef(SEQUENCE, "lesion", "primary", "masks/P002_sag_T2_lesion.nii.gz", MASK_COL),
        MaskRef(SEQUENCE, "lesion", "rater2", "masks/P002_sag_T2_lesion_rater2.nii.gz", REPEAT_COL),
    ]


def test_repeat_segmentation_path_is_still_checked(tiny_cohort):
    rows = default_rows()
    rows[0][REPEAT_COL] = "/abs/rater2.nii.gz"
    record = tiny_cohort(rows).load().patients["P001"]
    assert [(i.column, i.code) for i in record.issues] == [(REPEAT_COL, "absolute_path")]
    assert [m.segmentation for m in record.masks] == ["primary"]


# ---------------------------------------------------------------- table formats and line numbers


def test_parquet_table_gives_the_same_records(tiny_cohort):
    rows = default_rows()
    rows[1]["asia"] = "Q"
    from_csv = tiny_cohort(rows, folder="csv").load()
    from_parquet = tiny_cohort(rows, folder="parquet", table_format="parquet").load()
    assert from_parquet.spec.table == "patients.parquet"
    assert from_parquet.patients == from_csv.patients


def test_parquet_with_typed_columns(tiny_cohort):
    cohort = tiny_cohort(table_format="parquet")
    frame = pl.read_parquet(cohort.table).with_columns(
        pl.col("age").cast(pl.Float64),
        pl.col("diabetes").cast(pl.Int64),
        pl.col("good_outcome").cast(pl.Int8),
        pl.col("outcome_date").str.to_date(),
    )
    frame.write_parquet(cohort.table)
    loaded = cohort.load()
    assert loaded.issues == []
    record = loaded.patients["P001"]
    assert record.clinical == {"age": 54.5, "diabetes": 0, "asia": "C"}
    assert record.outcomes == {"good_outcome": 1} and record.outcome_date == "2024-03-01"


def test_line_numbers_are_file_lines(tiny_cohort):
    rows = [base_row(f"P{i:03d}") for i in range(1, 7)]
    rows[4]["diabetes"] = "7"  # 5th data row -> file line 6
    cohort = tiny_cohort(rows, write_files=False).load()
    assert [r.line for r in cohort.patients.values()] == [2, 3, 4, 5, 6, 7]
    assert [(i.patient_key, i.line) for i in cohort.issues] == [("P005", 6)]
    header = cohort.manifest_path.parent.joinpath("patients.csv").read_text(encoding="utf-8").splitlines()
    assert header[5].startswith("P005,")


def test_line_numbers_survive_a_blank_line(tiny_cohort):
    cohort = tiny_cohort(write_files=False)
    lines = cohort.table.read_text(encoding="utf-8").splitlines()
    cohort.table.write_text("\n".join(lines[:2] + [""] + lines[2:]) + "\n", encoding="utf-8")  # blank line 3
    loaded = cohort.load()
    assert {k: r.line for k, r in loaded.patients.items()} == {"P001": 2, "P002": 4, "P003": 5}
    assert [(i.line, i.code) for i in loaded.unkeyed_issues] == [(3, "invalid_patient_id")]


def test_issue_is_a_frozen_value():
    issue = ManifestIssue("P1", 2, "age", "bad_value", "m", "f")
    with pytest.raises(AttributeError):
        issue.code = "other"  # type: ignore[misc]


def test_the_shipped_example_manifest_is_valid() -> None:
    example = Path(__file__).resolve().parents[2] / "examples" / "manifest" / "cohort.yaml"
    cohort = load_cohort(example)
    assert sorted(cohort.patients) == ["HX-0001", "HX-0002", "HY-0001"]
    assert not cohort.unkeyed_issues and not any(p.issues for p in cohort.patients.values())
    repeats = [m for m in cohort.patients["HX-0001"].masks if m.segmentation != "primary"]
    assert [(m.sequence, m.roi, m.segmentation) for m in repeats] == [("sag_T2", "lesion", "rater2")]


# ---------------------------------------------------------------- archive roots


def test_archive_roots_are_resolved_relative_to_the_yaml(tiny_cohort, tmp_path):
    (tmp_path / "cohort" / "pacs").mkdir(parents=True)
    (tmp_path / "mnt_archive").mkdir()
    cohort = tiny_cohort(spec=base_spec(archive_roots=["pacs", str(tmp_path / "mnt_archive")])).load()
    assert cohort.archive_roots == ((tmp_path / "cohort" / "pacs").resolve(), (tmp_path / "mnt_archive").resolve())


def test_no_archive_roots_by_default(tiny_cohort):
    assert tiny_cohort().load().archive_roots == ()


def test_an_archive_root_that_does_not_exist_is_a_manifest_error(tiny_cohort, tmp_path):
    cohort = tiny_cohort(spec=base_spec(archive_roots=[str(tmp_path / "not_mounted")]))
    error = manifest_error(cohort.manifest)
    assert len(error.problems) == 1
    assert "archive_roots" in error.problems[0] and str(tmp_path / "not_mounted") in error.problems[0]
    assert "does not exist" in error.problems[0] and "mount the archive" in error.problems[0]


def test_the_file_system_root_is_refused_as_an_archive_root(tiny_cohort):
    error = manifest_error(tiny_cohort(spec=base_spec(archive_roots=["/"])).manifest)
    assert len(error.problems) == 1 and "every file" in error.problems[0]


def test_cohort_resolve_refuses_a_link_leaving_data_root(tiny_cohort, tmp_path):
    from cssci_platform.lib.paths import PathEscapeError

    cohort = tiny_cohort()
    (tmp_path / "elsewhere.nii.gz").write_bytes(b"x")
    cohort.path("images/linked.nii.gz").symlink_to(tmp_path / "elsewhere.nii.gz")
    loaded = cohort.load()
    assert loaded.resolve(f"images/P001_{SEQUENCE}.nii.gz") == cohort.path(f"images/P001_{SEQUENCE}.nii.gz").resolve()
    with pytest.raises(PathEscapeError):
        loaded.resolve("images/linked.nii.gz")


# ---------------------------------------------------------------- huge cells are quoted, not copied

TEN_MB, ONE_MB = 10_485_760, 1_048_576
HUGE_CELLS = [("age", TEN_MB)] + [
    (column, ONE_MB)
    for column in ("diabetes", "asia", "good_outcome", "outcome_date", "center", "cohort", IMAGE_COL, "patient_id")
]


@pytest.mark.parametrize("column, size", HUGE_CELLS)
def test_a_huge_cell_is_quoted_short_with_its_length(tiny_cohort, column, size):
    rows = default_rows()
    rows[1][column] = "7" * size
    cohort = tiny_cohort(rows, write_files=False).load()
    errors = [i for i in cohort.issues if i.severity == "error"]
    assert len(errors) == 1, [i.code for i in errors]
    assert len(errors[0].describe()) < 400
    assert f"({size} characters)" in errors[0].message


def test_a_path_too_long_for_the_file_system_is_a_row_issue(tiny_cohort):
    rows = default_rows()
    rows[1][IMAGE_COL] = "images/" + "a" * 300 + ".nii.gz"
    record = tiny_cohort(rows, write_files=False).load().patients["P002"]
    assert [(i.column, i.code) for i in record.issues] == [(IMAGE_COL, "path_too_long")]
    assert "(314 characters)" in record.issues[0].message and "255" in record.issues[0].fix
    assert SEQUENCE not in record.images


def test_a_ten_megabyte_column_name_is_quoted_short_in_the_manifest_error(tiny_cohort):
    rows = [base_row("P001", **{"x" * TEN_MB: "1"})]
    error = manifest_error(tiny_cohort(rows, write_files=False).manifest)
    assert len(str(error)) < 1000 and f"({TEN_MB} characters)" in str(error)


def test_a_ten_megabyte_yaml_value_is_quoted_short_in_the_manifest_error(tiny_cohort):
    error = manifest_error(tiny_cohort(spec=base_spec(name="1" * TEN_MB), write_files=False).manifest)
    assert len(str(error)) < 1000 and f"({TEN_MB} characters)" in str(error)
