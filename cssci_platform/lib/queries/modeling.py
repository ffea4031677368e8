"""Named reads of the modelling tables: the study outcome, splits, the feature matrix, trained models and champions.

"Which outcome did the study model" has one answer, `modelled_outcome`: the outcome recorded with the split the
models were trained on (`patient_splits` writes the study config's `outcome.name` there). Training, the report,
prospective scoring and `cssci predict` all ask it.
"""

from __future__ import annotations

from typing import Any

import duckdb
import polars as pl

from cssci_platform.lib.queries.catalog import has_table, table_columns
from cssci_platform.lib.queries.eligibility import ELIGIBLE_PATIENTS, rule_parameters

STORED_SPLITS = "SELECT DISTINCT split FROM splits ORDER BY split"
SPLIT_FOLDS = "SELECT DISTINCT fold FROM splits WHERE split = ? ORDER BY fold"
SPLIT_ROLES = "SELECT patient_key, role FROM splits WHERE split = ? AND fold = ? ORDER BY patient_key"
SPLIT_OUTCOME = "SELECT any_value(outcome) AS outcome FROM splits WHERE split = ?"
TRAINED_SPLIT = "SELECT any_value(split) AS split FROM trained_models"
OUTCOME_VALUES = "SELECT patient_key, value FROM outcomes WHERE outcome = ? ORDER BY patient_key"
OUTCOME_NAMES = "SELECT DISTINCT outcome FROM outcomes ORDER BY outcome"
# Wide tables (a column per feature: 15,909 for the upper-limb protocol) are read unordered and sorted by patient here:
# DuckDB's ORDER BY sorts whole rows, 4.3 of the 5.6 s it took to read that matrix of 60 patients.
FEATURE_MATRIX = "SELECT * FROM feature_matrix"
ICC3_TABLE = "SELECT feature, icc, ci_low, ci_high FROM feature_reliability WHERE kind = 'ICC3'"
TRAINED_MODELS = "SELECT * FROM trained_models"
MODEL_PREDICTIONS = "SELECT * FROM predictions"
FIT_PROBLEMS = (
    "SELECT result_name, mode, fold, metric, reason FROM model_results WHERE reason IS NOT NULL "
    "ORDER BY metric, result_name, mode, fold"
)
FOLD_ROLES_OF_PREDICTIONS = (
    "SELECT DISTINCT patient_key, role FROM predictions WHERE role IN ('train', 'test') AND fold = ?"
)
CLINICAL_VALUES = "SELECT patient_key, variable, value_number, value_text FROM clinical"
CLINICAL_NUMBERS = "SELECT patient_key, value_number FROM clinical WHERE variable = ?"
SPLIT_CANDIDATES = f"""
SELECT p.patient_key, p.center, p.cohort, o.value AS label FROM patients p
LEFT JOIN outcomes o ON o.patient_key = p.patient_key AND o.outcome = $outcome
WHERE p.patient_key IN ({ELIGIBLE_PATIENTS})
ORDER BY p.patient_key
"""
MATRIX_PATIENTS = (
    f"SELECT patient_key, center, cohort FROM patients WHERE patient_key IN ({ELIGIBLE_PATIENTS}) ORDER BY patient_key"
)
MATRIX_RADIOMICS = f"SELECT * FROM radiomics_features WHERE patient_key IN ({ELIGIBLE_PATIENTS})"
NETWORK_EMBEDDINGS = "SELECT * FROM embeddings WHERE network = ?"
CLINICAL_ROWS = "SELECT * FROM clinical"
REPEAT_SEGMENTATION_FEATURES = f"""
SELECT patient_key, segmentation,
       'rad__' || sequence || '__' || roi || '__' || channel || '__' || feature AS feature, value
FROM radiomics_features
WHERE patient_key IN ({ELIGIBLE_PATIENTS})
  AND patient_key IN (SELECT patient_key FROM radiomics_features WHERE segmentation <> 'primary')
"""
TRAINING_PATIENTS_PER_CENTER = """
SELECT s.split, s.fold, m.center, count(*) AS n FROM feature_matrix m JOIN splits s USING (patient_key)
WHERE s.role = 'train' GROUP BY ALL ORDER BY ALL
"""
PATIENT_OUTCOME_SOURCE = (
    "SELECT p.patient_key, p.cohort, o.value, o.outcome_date FROM patients p LEFT JOIN outcomes o "
    "ON o.patient_key = p.patient_key AND o.outcome = ? ORDER BY p.patient_key"
)


def stored_splits(con: duckdb.DuckDBPyConnection) -> list[str]:
    """Names of the splits in the `splits` table."""
    return [row[0] for row in con.execute(STORED_SPLITS).fetchall()]


def split_folds(con: duckdb.DuckDBPyConnection, split: str) -> list[str]:
    """The folds of one stored split (`holdout`, held-out centers, `r<i>f<k>`), sorted."""
    return [row[0] for row in con.execute(SPLIT_FOLDS, [split]).fetchall()]


def split_roles(con: duckdb.DuckDBPyConnection, split: str, fold: str) -> dict[str, str]:
    """patient_key -> role (train, test, validation, excluded) in one fold of a stored split; empty if none."""
    return dict(con.execute(SPLIT_ROLES, [split, fold]).fetchall())


def modelled_outcome(con: duckdb.DuckDBPyConnection, split: str | None = None) -> str | None:
    """The outcome the study models: the one recorded with `split`, by default the split of the stored trained models
    (else the only stored split). None when nothing tells (no split stored yet)."""
    if split is None:
        split = trained_split(con)
    if split is None:
        names = stored_splits(con)
        split = names[0] if len(names) == 1 else None
    if split is None:
        return None
    return _scalar(con, SPLIT_OUTCOME, [split])


def trained_split(con: duckdb.DuckDBPyConnection) -> str | None:
    """The split the stored trained models used (None before any training)."""
    return _scalar(con, TRAINED_SPLIT, [])


def split_candidates(con: duckdb.DuckDBPyConnection, outcome: str) -> pl.DataFrame:
    """The patients a split assigns roles to (eligibility rule `splits`): patient_key, center, cohort, label (the
    study outcome's value, null when unknown)."""
    return con.execute(SPLIT_CANDIDATES, {"outcome": outcome, **rule_parameters("splits")}).pl()


def matrix_patients(con: duckdb.DuckDBPyConnection) -> pl.DataFrame:
    """patient_key, center, cohort of the patients the feature matrix holds (eligibility rule `feature_matrix`)."""
    return con.execute(MATRIX_PATIENTS, rule_parameters("feature_matrix")).pl()


def matrix_radiomics(con: duckdb.DuckDBPyConnection) -> pl.DataFrame:
    """The long radiomics rows of the feature matrix's patients."""
    return con.execute(MATRIX_RADIOMICS, rule_parameters("feature_matrix")).pl()


def repeat_segmentation_features(con: duckdb.DuckDBPyConnection) -> pl.DataFrame:
    """patient_key, segmentation, feature (the matrix column name), value of every eligible patient with a repeat
    segmentation: the input of the ICC."""
    return con.execute(REPEAT_SEGMENTATION_FEATURES, rule_parameters("feature_matrix")).pl()


def network_embeddings(con: duckdb.DuckDBPyConnection, network: str) -> pl.DataFrame:
    """Deep feature rows embedded by one kind of network (`pretrained` or `fine_tuned`), every backbone and channel."""
    return con.execute(NETWORK_EMBEDDINGS, [network]).pl()


def clinical_rows(con: duckdb.DuckDBPyConnection) -> pl.DataFrame:
    """The whole long clinical table."""
    return con.execute(CLINICAL_ROWS).pl()


def outcome_values(con: duckdb.DuckDBPyConnection, outcome: str) -> pl.DataFrame:
    """patient_key, value (string) of one outcome, labels or `__score` rows."""
    return con.execute(OUTCOME_VALUES, [outcome]).pl()


def outcome_names(con: duckdb.DuckDBPyConnection) -> list[str]:
    """Every outcome with rows in the `outcomes` table (manifest outcomes and those study_outcome derived)."""
    return [row[0] for row in con.execute(OUTCOME_NAMES).fetchall()]


def patients_with_outcome_source(con: duckdb.DuckDBPyConnection, source: str) -> pl.DataFrame:
    """Every patient (patient_key, cohort) with the raw value and date of the outcome a study label derives from."""
    return con.execute(PATIENT_OUTCOME_SOURCE, [source]).pl()


def clinical_numbers(con: duckdb.DuckDBPyConnection, variable: str) -> pl.DataFrame:
    """patient_key, value_number of one clinical variable."""
    return con.execute(CLINICAL_NUMBERS, [variable]).pl()


def clinical_values(con: duckdb.DuckDBPyConnection) -> pl.DataFrame:
    """The long clinical table: patient_key, variable, value_number, value_text."""
    return con.execute(CLINICAL_VALUES).pl()


def stored_feature_matrix(con: duckdb.DuckDBPyConnection) -> pl.DataFrame:
    """The wide feature matrix the modelling assets share (one row per patient, in patient order)."""
    return by_patient(con.execute(FEATURE_MATRIX).pl())


def by_patient(wide: pl.DataFrame) -> pl.DataFrame:
    """Rows of a wide table in patient order (see FEATURE_MATRIX: not sorted by DuckDB)."""
    return wide.sort("patient_key")


def icc3_table(con: duckdb.DuckDBPyConnection) -> pl.DataFrame | None:
    """ICC(3,1) per radiomics feature (feature, icc, ci_low, ci_high); None when feature_reliability was never
    written."""
    if not has_table(con, "feature_reliability"):
        return None
    return con.execute(ICC3_TABLE).pl()


def training_patients_per_center(con: duckdb.DuckDBPyConnection) -> pl.DataFrame:
    """split, fold, center, n: the feature matrix's training patients per center in every stored fold."""
    return con.execute(TRAINING_PATIENTS_PER_CENTER).pl()


def trained_models(con: duckdb.DuckDBPyConnection) -> pl.DataFrame:
    """Every trained model row (champions flagged in `champion`)."""
    return con.execute(TRAINED_MODELS).pl()


def model_predictions(con: duckdb.DuckDBPyConnection, with_networks: bool = True) -> pl.DataFrame:
    """Every stored prediction; without the fine-tuned CNNs' rows (`signature = 'CNN'`) unless `with_networks`."""
    return con.execute(MODEL_PREDICTIONS + ("" if with_networks else " WHERE signature <> 'CNN'")).pl()


def fit_problems(con: duckdb.DuckDBPyConnection) -> pl.DataFrame:
    """model_results rows of failed fits and small-sample warnings (empty in a warehouse written before them)."""
    columns = {column for column, _ in table_columns(con, "model_results")}
    if "reason" not in columns:
        return pl.DataFrame(
            schema={
                "result_name": pl.String,
                "mode": pl.String,
                "fold": pl.String,
                "metric": pl.String,
                "reason": pl.String,
            }
        )
    return con.execute(FIT_PROBLEMS).pl()


def roles_of_predicted_patients(con: duckdb.DuckDBPyConnection, fold: str) -> pl.DataFrame:
    """patient_key, role of the training and test patients the stored predictions of one fold cover."""
    return con.execute(FOLD_ROLES_OF_PREDICTIONS, [fold]).pl()


def _scalar(con: duckdb.DuckDBPyConnection, sql: str, parameters: list) -> Any:
    row = con.execute(sql, parameters).fetchone()
    return None if row is None else row[0]
