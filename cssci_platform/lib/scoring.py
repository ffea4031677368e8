"""Scoring one new patient with registered champion models: the feature row, probabilities, risk group.

The feature row is built from that patient's own rows only (radiomics, embeddings, clinical values), with
the same column names as the training matrix, so nothing cohort-sized is read or recomputed. Harmonization
of a center unseen at training follows the policy stored in the champion's ComBat step.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING

import polars as pl

from cssci_platform.lib.cohort import CohortSpec, PatientRecord
from cssci_platform.lib.modeling.matrix import assemble, clinical_block, embeddings_block, radiomics_block

if TYPE_CHECKING:
    import pandas as pd


@dataclass(frozen=True)
class ChampionScore:
    signature: str
    probabilities: dict[str, float]
    risk_group: str
    top_classes: list[str]


def patient_feature_row(
    record: PatientRecord, spec: CohortSpec, radiomics: pl.DataFrame, embeddings: pl.DataFrame
) -> pd.DataFrame:
    """One row with rad__/dl__/clin__ columns and center (what champion pipelines take)."""
    key = record.patient_key
    patients = pl.DataFrame({"patient_key": [key], "center": [record.center], "cohort": [record.cohort]})
    labels = pl.DataFrame(
        {"patient_key": [key], "label": [None]}, schema={"patient_key": pl.String, "label": pl.String}
    )
    clinical = pl.DataFrame(
        [
            {
                "patient_key": key,
                "variable": name,
                "value_number": float(v) if isinstance(v, int | float) else None,
                "value_text": v if isinstance(v, str) else None,
            }
            for name, v in record.clinical.items()
        ],
        schema={"patient_key": pl.String, "variable": pl.String, "value_number": pl.Float64, "value_text": pl.String},
    )
    blocks = [radiomics_block(radiomics)]
    if embeddings.height:
        blocks.append(embeddings_block(embeddings))
    blocks.append(clinical_block(clinical, {n: (v.type, v.levels) for n, v in spec.clinical.items()}))
    row = assemble(patients, labels, blocks)
    if row.empty:
        raise ValueError(f"patient '{key}' has no complete feature row (radiomics or embeddings missing)")
    return row.drop(columns=["cohort", "label"])


def score(pipeline, row: pd.DataFrame, signature: str, classes: list[str], threshold: float,
          outcome: str) -> ChampionScore:
    """Class probabilities in `classes` order, and a risk group that names the class, direction and threshold:
    binary - 'high P(<outcome>=<classes[-1]>): >= t' at or above the frozen training threshold t, else 'low ...: < t'
    (the positive class may be the good outcome: the name says which); multiclass - the most probable class."""
    raw = pipeline.predict_proba(row)[0]
    probabilities = {str(c): float(p) for c, p in zip(pipeline.classes_, raw)}
    ordered = {c: probabilities.get(c, 0.0) for c in classes}
    top = sorted(ordered, key=ordered.__getitem__, reverse=True)
    if len(classes) == 2:
        group = binary_risk_group(ordered[classes[-1]], threshold, f"P({outcome}={classes[-1]})")
    else:
        group = f"most probable {outcome}: {top[0]}"
    return ChampionScore(signature, ordered, group, top[:3])


def binary_risk_group(probability: float, threshold: float, quantity: str) -> str:
    if math.isnan(threshold):
        return f"no threshold ({quantity} not cut)"
    return f"high {quantity}: >= {threshold:.3f}" if probability >= threshold else f"low {quantity}: < {threshold:.3f}"


def missing_columns(pipeline, row: pd.DataFrame) -> list[str]:
    """Training columns the new patient's row lacks (e.g. a sequence or backbone the champion used)."""
    from cssci_platform.lib.modeling.chains import pipeline_input_columns  # scikit-learn: only where a model scores

    return sorted(set(pipeline_input_columns(pipeline)) - set(row.columns))


def as_rows(scores: list[ChampionScore]) -> list[dict]:
    return [
        {"signature": s.signature, "class_label": c, "probability": p, "risk_group": s.risk_group}
        for s in scores
        for c, p in s.probabilities.items()
    ]
