"""Named reads of the prospective loop: the champions that score, one patient's stored stage rows, and what the
validation of the champions on prospective patients needs: `validation_cohort_scores`, the one definition of a model's
scores on the validation cohort that both `validation_metrics` and the report's validation table read."""

from __future__ import annotations

import duckdb
import polars as pl

CHAMPIONS = "SELECT signature, registered_model, threshold FROM trained_models WHERE champion ORDER BY signature"


def champions(con: duckdb.DuckDBPyConnection) -> pl.DataFrame:
    """Each signature's champion: signature, registered_model, threshold (the frozen training threshold)."""
    return con.execute(CHAMPIONS).pl()


PATIENT_RADIOMICS = "SELECT * FROM radiomics_features WHERE patient_key = ?"


def patient_radiomics(con: duckdb.DuckDBPyConnection, patient_key: str) -> pl.DataFrame:
    """The patient's radiomics rows as its patient stage stored them (long: one row per feature)."""
    return con.execute(PATIENT_RADIOMICS, [patient_key]).pl()


PATIENT_SLICES = "SELECT * FROM roi_slices WHERE patient_key = ?"


def patient_slices(con: duckdb.DuckDBPyConnection, patient_key: str) -> pl.DataFrame:
    """The patient's ROI slices (one `.npy` per channel) as its patient stage cut them."""
    return con.execute(PATIENT_SLICES, [patient_key]).pl()


PATIENT_EMBEDDINGS = "SELECT * FROM embeddings WHERE patient_key = ?"


def patient_embeddings(con: duckdb.DuckDBPyConnection, patient_key: str) -> pl.DataFrame:
    """The patient's stored embeddings (any backbone, network and weights: the caller checks which it can use)."""
    return con.execute(PATIENT_EMBEDDINGS, [patient_key]).pl()


FINE_TUNED_NETWORKS = (
    "SELECT network_id, backbone, channel, weights_id, checkpoint_path, classes FROM networks ORDER BY network_id"
)


def fine_tuned_networks(con: duckdb.DuckDBPyConnection) -> pl.DataFrame:
    """The study's fine-tuned CNNs (network_id, backbone, channel, weights_id, checkpoint_path, classes): the
    embedding networks of a study that embeds with them, and the Grad-CAM overlays."""
    return con.execute(FINE_TUNED_NETWORKS).pl()


VALIDATION_COHORT_SCORES = """
WITH positive AS (
    SELECT coalesce($positive, (SELECT max(class_label) FROM predictions),
                    (SELECT max(class_label) FROM prospective_predictions)) AS class_label
),
models AS (
    SELECT run_id, result_name, signature, mode, fold, champion, registered_model, model_version, threshold
    FROM trained_models
),
prospective AS (
    SELECT m.run_id, p.patient_key, p.class_label, p.probability, 'prospective_predictions' AS scored_by
    FROM prospective_predictions p
    JOIN models m ON m.registered_model = p.registered_model AND m.model_version = p.model_version
    WHERE p.class_label = (SELECT class_label FROM positive)
),
training AS (
    SELECT p.model_name AS run_id, p.patient_key, p.class_label, p.probability, 'predictions' AS scored_by
    FROM predictions p
    WHERE p.role = 'validation' AND p.class_label = (SELECT class_label FROM positive)
      AND NOT EXISTS (SELECT 1 FROM prospective s WHERE s.run_id = p.model_name AND s.patient_key = p.patient_key)
),
scores AS (SELECT * FROM prospective UNION ALL SELECT * FROM training)
SELECT m.signature, m.result_name, m.mode, m.fold, m.champion, m.registered_model, m.model_version, m.threshold,
       m.run_id AS train_run, s.patient_key, s.class_label, s.probability, s.scored_by,
       coalesce(t.label, o.value) AS outcome
FROM scores s
JOIN models m ON m.run_id = s.run_id
JOIN patients c ON c.patient_key = s.patient_key AND c.cohort = 'prospective'
LEFT JOIN predictions t ON t.model_name = s.run_id AND t.patient_key = s.patient_key AND t.role = 'validation'
    AND t.class_label = s.class_label
LEFT JOIN outcomes o ON o.patient_key = s.patient_key AND o.outcome = $outcome
WHERE coalesce(t.label, o.value) IS NOT NULL
ORDER BY m.signature, m.result_name, m.mode, m.run_id, s.patient_key
"""


def validation_cohort_scores(
    con: duckdb.DuckDBPyConnection, outcome: str, positive_class: str | None = None
) -> pl.DataFrame:
    """Every trained model's positive-class probability per validation-cohort patient (`patients.cohort` is
    'prospective') whose `outcome` is known: the one definition of "a model's performance on the validation cohort".

    A champion's score is its registered version's prospective score (`prospective_predictions`: the deployed recipe,
    also for patients who arrived after training) where there is one, else its training run's score of the patient
    (`predictions`, role 'validation'); other models have only the latter. The outcome is the label the training run
    evaluated the patient against where it had one, else the patient's current value in `outcomes` (follow-ups arrive
    after training). Development patients are never in it, even when their partition was scored prospectively.
    `positive_class`: the scored class (default: the largest class label, "1" of a 0/1 outcome).
    Columns: signature, result_name, mode, fold, champion, registered_model, model_version, threshold, train_run,
    patient_key, class_label, probability, scored_by ('prospective_predictions' | 'predictions'), outcome."""
    return con.execute(VALIDATION_COHORT_SCORES, {"outcome": outcome, "positive": positive_class}).pl()


CHAMPION_TEST_PREDICTIONS = (
    "SELECT p.probability, p.class_label, coalesce(p.label, o.value) AS value FROM predictions p "
    "JOIN outcomes o ON o.patient_key = p.patient_key AND o.outcome = ? "
    "WHERE p.model_name = ? AND p.role = 'test' AND o.value IS NOT NULL AND "
    "p.class_label = (SELECT max(class_label) FROM predictions WHERE model_name = ?)"
)


def champion_test_predictions(con: duckdb.DuckDBPyConnection, run_id: str, outcome: str) -> pl.DataFrame:
    """The training run's positive-class probabilities on its held-out test patients with their `outcome` value."""
    return con.execute(CHAMPION_TEST_PREDICTIONS, [outcome, run_id, run_id]).pl()
