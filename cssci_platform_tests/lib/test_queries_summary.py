"""The command line's reads (lib/queries/summary.py) on a small warehouse: before any step ran, and after."""

import duckdb
import pytest

from cssci_platform.lib.queries import summary


@pytest.fixture
def con():
    with duckdb.connect() as connection:
        yield connection


def test_a_warehouse_before_any_step_gives_empty_answers(con) -> None:
    assert summary.patients_per_status(con) == [] and summary.radiomics_values_per_patient(con) is None
    assert summary.champion_summaries(con) == [] and summary.qc_errors(con) == []
    assert summary.embedding_coverage(con) == summary.EmbeddingCoverage(0, 0, None, None)


def test_the_summary_reads_counts_champions_and_qc(con) -> None:
    con.execute("CREATE TABLE patient_status AS SELECT * FROM (VALUES ('P1', 'features'), ('P2', 'features'), "
                "('P3', 'quarantined')) t(patient_key, status)")
    con.execute("CREATE TABLE radiomics_features AS SELECT * FROM (VALUES ('P1', 1.0), ('P1', 2.0), ('P2', 3.0), "
                "('P2', 4.0), ('P2', 5.0)) t(patient_key, value)")
    con.execute("CREATE TABLE embeddings AS SELECT * FROM (VALUES ('P1', [1.0, 2.0], 'resnet18', 'none'), "
                "('P1', [3.0, 4.0], 'resnet18', 'none'), ('P2', [5.0, 6.0], 'resnet18', 'none')) "
                "t(patient_key, embedding, backbone, weights_id)")
    con.execute("CREATE TABLE trained_models AS SELECT * FROM (VALUES "
                "('Rad', 'Rad_LR', 3, 0.8::DOUBLE, 'r1', true), ('Rad', 'Rad_SVM', 1, 0.7::DOUBLE, 'r2', false), "
                "('Clinical', 'Clinical_LR', 1, 0.6::DOUBLE, 'r3', true)) "
                "t(signature, result_name, model_version, cv_auc_mean, run_id, champion)")
    con.execute("CREATE TABLE model_results AS SELECT * FROM (VALUES ('r1', 'test', 'auc', 0.75::DOUBLE), "
                "('r1', 'test', 'n', 8.0), ('r2', 'test', 'auc', 0.9)) t(run_id, role, metric, value)")
    con.execute("CREATE TABLE qc_issues AS SELECT * FROM (VALUES "
                "('P3', 'scans', 'error', 'no_image', 'missing', 'add it'), "
                "('P2', 'scans', 'warning', 'spacing', 'odd', 'check'), "
                "('P3', 'masks', 'error', 'empty', 'empty mask', 'redraw')) "
                "t(patient_key, stage, severity, code, message, fix)")
    assert summary.patients_per_status(con) == [("features", 2), ("quarantined", 1)]
    assert summary.radiomics_values_per_patient(con) == 2  # median of 2 and 3, rounded as BIGINT
    assert summary.embedding_coverage(con) == summary.EmbeddingCoverage(2, 3, 2, "resnet18 (none)")
    assert summary.champion_summaries(con) == [summary.ChampionSummary("Clinical", "Clinical_LR", 1, 0.6, None, None),
                                               summary.ChampionSummary("Rad", "Rad_LR", 3, 0.8, 0.75, 8.0)]
    assert sorted(summary.qc_errors(con)) == [("P3", "masks", "empty", "empty mask"),
                                              ("P3", "scans", "no_image", "missing")]
    assert summary.qc_issues(con).height == 3 and summary.qc_issues(con, "P2")["code"].to_list() == ["spacing"]
    assert summary.quarantined_among(con, ["P1", "P2", "P3"]) == {"P3"}
    assert summary.patient_qc_errors(con, "P3") == [("masks", "empty", "empty mask", "redraw"),
                                                    ("scans", "no_image", "missing", "add it")]
