"""The wide feature matrix: one row per patient, radiomics + deep + clinical columns, plus meta columns.

Column names say where a value comes from, so signatures select by prefix:
``rad__<sequence>__<roi>__<channel>__<feature>``, ``dl__<backbone>__<channel>__<index>`` (the per-channel
grouping `ChannelPCA` expects) and ``clin__<variable>`` (binary 0/1, continuous as is, categorical one-hot
``clin__<variable>__<level>`` without the first level). Meta columns: ``center``, ``cohort``, ``label``
(the outcome as text; null when unknown); the index is ``patient_key``.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

import numpy as np
import polars as pl

if TYPE_CHECKING:
    import pandas as pd

META_COLUMNS = ("center", "cohort", "label")
RAD, DL, CLIN = "rad__", "dl__", "clin__"


def radiomics_block(radiomics: pl.DataFrame) -> pd.DataFrame:
    """Long `radiomics_features` rows (primary segmentation) -> patients x features."""
    rows = radiomics.filter(pl.col("segmentation") == "primary").with_columns(
        name=pl.concat_str(
            [pl.lit(RAD), "sequence", pl.lit("__"), "roi", pl.lit("__"), "channel", pl.lit("__"), "feature"]
        )
    )
    wide = rows.pivot(on="name", index="patient_key", values="value", aggregate_function="first")
    return _indexed(wide)


def embeddings_block(embeddings: pl.DataFrame) -> pd.DataFrame:
    """`embeddings` rows (one list per patient x backbone x channel) -> patients x dl__ columns."""
    import pandas as pd

    blocks = []
    for (backbone, channel), group in embeddings.group_by("backbone", "channel", maintain_order=True):
        values = np.array(group["embedding"].to_list(), dtype=np.float64)
        columns = [f"{DL}{backbone}__{channel}__{i:04d}" for i in range(values.shape[1])]
        blocks.append(
            pd.DataFrame(values, index=pd.Index(group["patient_key"].to_list(), name="patient_key"), columns=columns)
        )
    return pd.concat(blocks, axis=1, join="inner") if blocks else pd.DataFrame(index=pd.Index([], name="patient_key"))


def clinical_predictors(spec: Any, chosen: list[str] | None) -> dict[str, tuple[str, list[str] | None]]:
    """variable -> (type, levels) of the manifest's clinical variables the models use (`models.clinical_predictors`;
    None: all). `spec`: the manifest's CohortSpec. Raises ValueError naming unknown variables."""
    unknown = sorted(set(chosen or []) - set(spec.clinical))
    if unknown:
        raise ValueError(
            f"clinical_predictors {unknown} are not clinical variables of the manifest ({list(spec.clinical)})"
        )
    return {name: (v.type, v.levels) for name, v in spec.clinical.items() if chosen is None or name in chosen}


def clinical_block(clinical: pl.DataFrame, spec: Mapping[str, tuple[str, list[str] | None]]) -> pd.DataFrame:
    """Long `clinical` rows -> numeric clin__ columns; `spec` maps variable -> (type, levels)."""
    import pandas as pd

    columns: dict[str, pd.Series] = {}
    for variable, (kind, levels) in spec.items():
        rows = clinical.filter(pl.col("variable") == variable)
        keys = rows["patient_key"].to_list()
        if kind == "categorical":
            text = pd.Series(rows["value_text"].to_list(), index=keys, dtype=object)
            for level in (levels or [])[1:]:
                columns[f"{CLIN}{variable}__{level}"] = (text == level).astype(float).where(text.notna())
        else:
            columns[f"{CLIN}{variable}"] = pd.Series(rows["value_number"].to_list(), index=keys, dtype=float)
    frame = pd.DataFrame(columns)
    frame.index.name = "patient_key"
    return frame


def assemble(patients: pl.DataFrame, labels: pl.DataFrame, blocks: list[pd.DataFrame]) -> pd.DataFrame:
    """Meta columns joined with feature blocks; a patient missing any block is left out (and listed by the caller)."""
    meta = _indexed(
        patients.select("patient_key", "center", "cohort").join(
            labels.select("patient_key", "label"), on="patient_key", how="left"
        )
    )
    matrix = meta
    for block in blocks:
        if block.columns.empty:  # nothing declared (e.g. a cohort without clinical variables): no patient lacks it
            continue
        matrix = matrix.join(block, how="inner")
    return matrix.sort_index()


def missing_patients(patients: pl.DataFrame, matrix: pd.DataFrame) -> list[str]:
    return sorted(set(patients["patient_key"]) - set(matrix.index))


def feature_columns(matrix: pd.DataFrame, prefix: str) -> list[str]:
    return [c for c in matrix.columns if c.startswith(prefix)]


def _indexed(frame: pl.DataFrame) -> pd.DataFrame:
    return frame.to_pandas().set_index("patient_key")
