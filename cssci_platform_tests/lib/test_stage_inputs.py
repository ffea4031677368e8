"""The inputs digest of a study stage (`lib/stage_inputs`): equal exactly when what a stage reads is equal."""

from pathlib import Path

from cssci_platform.lib.outcome_rules import derived_outcome_names
from cssci_platform.lib.stage_inputs import source_digest, source_rows, stage_digest
from cssci_platform.lib.warehouse import connect, replace_rows


def _feature(key: str, value: float) -> dict:
    return {"patient_key": key, "sequence": "sag_T2", "roi": "lesion", "segmentation": "primary",
            "channel": "original", "feature": "firstorder_Mean", "value": value}


def _issue(key: str, stage: str) -> dict:
    return {"patient_key": key, "stage": stage, "code": "c", "message": "m", "fix": "f", "file": "",
            "severity": "error"}


def test_the_source_digest_follows_content_not_row_order_or_timestamps(tmp_path: Path) -> None:
    with connect(tmp_path / "a.duckdb") as a, connect(tmp_path / "b.duckdb") as b:
        for key, value in (("P1", 0.5), ("P2", 0.7)):
            replace_rows(a, "radiomics_features", {"patient_key": key}, [_feature(key, value)])
        for key, value in (("P2", 0.7), ("P1", 0.5)):  # the other order
            replace_rows(b, "radiomics_features", {"patient_key": key}, [_feature(key, value)])
        replace_rows(a, "patients", {"patient_key": "P1"}, [{"patient_key": "P1", "updated_at": "2026-01-01"}])
        replace_rows(b, "patients", {"patient_key": "P1"}, [{"patient_key": "P1", "updated_at": "2026-12-06"}])
        assert source_digest(a) == source_digest(b)

        replace_rows(b, "radiomics_features", {"patient_key": "P2"}, [_feature("P2", 0.70001)])
        assert source_digest(a) != source_digest(b), "a changed feature value is a changed input"
        replace_rows(b, "radiomics_features", {"patient_key": "P2"}, [_feature("P2", 0.7)])
        assert source_digest(a) == source_digest(b)
        replace_rows(b, "radiomics_features", {"patient_key": "P2"}, [])
        assert source_digest(a) != source_digest(b), "a patient's rows gone is a changed input"


def test_issues_written_by_later_stages_are_not_inputs_but_patient_qc_issues_are(tmp_path: Path) -> None:
    with connect(tmp_path / "w.duckdb") as con:
        before = source_digest(con)
        replace_rows(con, "qc_issues", {"patient_key": "P1", "stage": "embeddings"}, [_issue("P1", "embeddings")])
        assert source_digest(con) == before  # the embeddings stage writes these after the digest is taken
        replace_rows(con, "qc_issues", {"patient_key": "P1", "stage": "radiomics"}, [_issue("P1", "radiomics")])
        assert source_digest(con) != before  # a quarantine decided by the patient steps changes who is modelled
        replace_rows(con, "recorded_outcomes", {"patient_key": "P1"}, [{"patient_key": "P1", "outcome": "good",
                                                                         "value": "1"}])
        assert source_digest(con) != before


def test_a_stage_digest_changes_with_each_of_its_inputs() -> None:
    base = {"job_name": "modeling_job", "run_config": {"a": 1}, "settings": {"models": {"seed": 1}},
            "source": "s", "upstream_runs": ["r1"]}
    digest = stage_digest(**base)
    assert stage_digest(**base) == digest
    assert stage_digest(**{**base, "run_config": {"a": 1}}) == digest  # an equal copy
    for changed in ({"job_name": "report_job"}, {"run_config": {"a": 2}}, {"settings": {"models": {"seed": 2}}},
                    {"source": "t"}, {"upstream_runs": ["r2"]}, {"upstream_runs": ["r1", "r2"]}):
        assert stage_digest(**{**base, **changed}) != digest, changed


def _outcome(key: str, outcome: str, value: str) -> dict:
    return {"patient_key": key, "outcome": outcome, "value": value}


def test_outcomes_the_study_derives_are_not_inputs_but_its_source_outcomes_are(tmp_path: Path) -> None:
    """study_outcome writes its labels (`good_outcome`, `good_outcome__score`) into `outcomes` during modelling, after
    the digest is taken: counted as inputs, they made the next command's digest differ from the first's, so a study
    with a derived outcome (e.g. cervical_sci_upper_limb) re-ran every stage on its second command."""
    derived = derived_outcome_names("good_outcome", "uems_6m")
    assert derived == ("good_outcome", "good_outcome__score")
    assert derived_outcome_names("good_outcome", "good_outcome") == ()  # the manifest column is the label
    with connect(tmp_path / "w.duckdb") as con:
        replace_rows(con, "outcomes", {"patient_key": "P1"}, [_outcome("P1", "uems_6m", "40")])
        before = source_digest(con, source_rows(derived))
        replace_rows(con, "outcomes", {"outcome": "good_outcome"}, [_outcome("P1", "good_outcome", "1")])
        replace_rows(con, "outcomes", {"outcome": "good_outcome__score"}, [_outcome("P1", "good_outcome__score", "3")])
        assert source_digest(con, source_rows(derived)) == before
        assert source_digest(con) != before  # what every outcome row counted did
        replace_rows(con, "outcomes", {"outcome": "uems_6m"}, [_outcome("P1", "uems_6m", "41")])
        assert source_digest(con, source_rows(derived)) != before  # the source of the label changed
