"""Named reads of the prospective loop: the champions that score, one patient's stored stage rows, and what the
validation of the champions on prospective patients needs."""

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


SCORED_PATIENTS_WITH_OUTCOME = (
    "SELECT p.signature, p.registered_model, p.model_version, p.patient_key, p.class_label, p.probability, "
    "o.value AS outcome, t.threshold, t.run_id AS train_run FROM prospective_predictions p "
    "JOIN outcomes o ON o.patient_key = p.patient_key AND o.value IS NOT NULL AND o.outcome = ? "
    "JOIN trained_models t ON t.registered_model = p.registered_model AND t.model_version = p.model_version "
    "WHERE p.class_label = (SELECT max(class_label) FROM prospective_predictions) "
    "ORDER BY p.signature, p.registered_model, p.model_version, p.patient_key"
)


def scored_patients_with_outcome(con: duckdb.DuckDBPyConnection, outcome: str) -> pl.DataFrame:
    """Prospective scores of the positive (last) class whose patient's `outcome` has arrived, with the champion
    version's threshold and training run."""
    return con.execute(SCORED_PATIENTS_WITH_OUTCOME, [outcome]).pl()


CHAMPION_TEST_PREDICTIONS = (
    "SELECT p.probability, p.class_label, coalesce(p.label, o.value) AS value FROM predictions p "
    "JOIN outcomes o ON o.patient_key = p.patient_key AND o.outcome = ? "
    "WHERE p.model_name = ? AND p.role = 'test' AND o.value IS NOT NULL AND "
    "p.class_label = (SELECT max(class_label) FROM predictions WHERE model_name = ?)"
)


def champion_test_predictions(con: duckdb.DuckDBPyConnection, run_id: str, outcome: str) -> pl.DataFrame:
    """The training run's positive-class probabilities on its held-out test patients with their `outcome` value."""
    return con.execute(CHAMPION_TEST_PREDICTIONS, [outcome, run_id, run_id]).pl()
