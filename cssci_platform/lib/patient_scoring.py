"""One recipe for scoring a patient with the study's champions, whatever the patient's rows come from.

`cssci predict` starts from the patient's folder (inbox layout): `rows_from_folder` runs the patient stage on it
with the study's own settings (preprocessing, radiomics profile, sequences, ROIs, channels, ROI-slice rectangle),
as `preprocessed_channels`, `radiomics_features` and `roi_slices` do for a partition. `prospective_predictions`
starts from the rows those assets stored for the partition. Both then call `score_patient`.

Embeddings (`study_embeddings`): a backbone's stored rows are used when the study's embedding networks made them
(`deep.embedding_network`; pretrained: the study's `weights`, fine_tuned: the stored networks), as for a development
patient `center_embeddings` embedded; otherwise (a new patient: its center's embeddings are not re-run for it) the
patient's slices are embedded here exactly as `center_embeddings` would (same networks, seed, inference settings),
and the new rows are returned in `PatientScores.new_embeddings` for the caller to store.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING

import duckdb
import polars as pl

from cssci_platform.lib.cohort import Cohort, CohortSpec, PatientRecord
from cssci_platform.lib.deep.cohort_networks import embedding_frame
from cssci_platform.lib.deep.errors import BackboneWeightsError
from cssci_platform.lib.deep.patient_slices import cut_patient_slices, masked_pairs
from cssci_platform.lib.deep.settings import IMAGENET_ALIASES, NO_WEIGHTS, DeepSettings
from cssci_platform.lib.feature_extraction import extract_patient_features, radiomics_inputs
from cssci_platform.lib.feature_store import file_sha256
from cssci_platform.lib.messages import markdown_table
from cssci_platform.lib.model_tracking import TrackingConfig
from cssci_platform.lib.preprocessing import preprocess_patient
from cssci_platform.lib.quality import inspect_patient
from cssci_platform.lib.queries import prospective as queries
from cssci_platform.lib.scoring import ChampionScore, as_rows, missing_columns, patient_feature_row, score

if TYPE_CHECKING:  # the study config composes the settings of the stages this module runs
    from cssci_platform.lib.deep.backbones import Backbone
    from cssci_platform.lib.study_config import StudyConfig


class ScoringError(Exception):
    """The patient cannot be scored; the message says why and how to fix it."""


@dataclass(frozen=True)
class PatientRows:
    """One patient's patient-stage rows: radiomics (long), ROI slices, stored embeddings (may be empty), and the
    study's fine-tuned networks (`fine_tuned_networks`; needed when the study embeds with them)."""

    radiomics: pl.DataFrame
    slices: pl.DataFrame
    embeddings: pl.DataFrame = dataclasses.field(default_factory=pl.DataFrame)
    networks: pl.DataFrame = dataclasses.field(default_factory=pl.DataFrame)


@dataclass(frozen=True)
class Champion:
    """A signature's champion as `trained_models` records it: the registered model and its frozen threshold."""

    signature: str
    registered_model: str
    threshold: float


@dataclass(frozen=True)
class ChampionResult:
    score: ChampionScore
    registered_model: str
    version: str
    run_id: str | None  # MLflow allows a model version registered without a run


@dataclass(frozen=True)
class PatientScores:
    results: list[ChampionResult]
    classes: list[str]
    new_embeddings: pl.DataFrame  # embeddings computed here (no stored rows with the study's weights)

    def prediction_rows(self, patient_key: str, center: str, predicted_at: datetime) -> list[dict]:
        """`prospective_predictions` rows: one per champion and class."""
        return [{"patient_key": patient_key, "center": center, **item, "registered_model": result.registered_model,
                 "model_version": result.version, "run_id": result.run_id, "predicted_at": predicted_at}
                for result in self.results for item in as_rows([result.score])]

    def markdown(self) -> str:
        """One line per champion: P(positive class), risk group, registered model and version."""
        positive = self.classes[-1]
        rows = [[r.score.signature, f"{r.score.probabilities[positive]:.3f}", r.score.risk_group,
                 f"{r.registered_model} v{r.version}"] for r in self.results]
        return markdown_table(["signature", f"P({positive})", "risk group", "model version"], rows)


def stored_rows(con: duckdb.DuckDBPyConnection, patient_key: str) -> PatientRows:
    """The rows the patient stage stored for one partition, and the study's fine-tuned networks."""
    return PatientRows(queries.patient_radiomics(con, patient_key), queries.patient_slices(con, patient_key),
                       queries.patient_embeddings(con, patient_key), queries.fine_tuned_networks(con))


def study_champions(con: duckdb.DuckDBPyConnection) -> list[Champion]:
    """Each signature's champion as `trained_models` records it."""
    return [Champion(*row) for row in queries.champions(con).iter_rows()]


def rows_from_folder(record: PatientRecord, cohort: Cohort, config: StudyConfig, workdir: Path) -> PatientRows:
    """The patient stage on one patient whose files `cohort.resolve` finds (QC, preprocessing, radiomics, ROI
    slices), with the study's settings; derived files go under `workdir`. Raises ScoringError on a failed check."""
    inspection = inspect_patient(cohort, record, config.imaging.geometry_tolerance())
    if not inspection.passed:
        raise ScoringError(
            "; ".join(f"{i.code}: {i.message} (fix: {i.fix})" for i in inspection.issues if i.severity == "error")
        )
    result = preprocess_patient(inspection.scans, cohort.resolve, workdir / "channels", config.preprocessing)
    channels = pl.DataFrame([vars(c) for c in result.channels])
    masks = pl.DataFrame([vars(m) for m in result.masks])
    inputs = radiomics_inputs(channels, masks, config.imaging, config.preprocessing.channels)
    radiomics = extract_patient_features(record.patient_key, *inputs, config.radiomics.params)
    if radiomics.issues:
        raise ScoringError("; ".join(i.message for i in radiomics.issues))
    request = config.deep.slice.request(cohort.spec, masked_pairs(cohort))
    cut = cut_patient_slices(record.patient_key, channels, masks, request, workdir / "roi_slices")
    if cut.issues:
        raise ScoringError("; ".join(f"{i.code}: {i.message} (fix: {i.fix})" for i in cut.issues))
    return PatientRows(radiomics.rows, pl.DataFrame(cut.rows))


def score_patient(
    record: PatientRecord,
    spec: CohortSpec,
    config: StudyConfig,
    rows: PatientRows,
    champions: list[Champion],
    outcome: str | None,
    tracking: TrackingConfig,
) -> PatientScores:
    """Every champion's probabilities for this patient, in the classes of `outcome` (the outcome the study modelled),
    with the risk group at each champion's frozen threshold; `tracking`: the study's MLflow store and experiment."""
    from cssci_platform.lib.model_tracking import load_champion  # MLflow: only where a champion is loaded

    if not champions or outcome is None:
        raise ScoringError("no champion model is registered yet: train the study first (modeling_job / `cssci run`)")
    slices = rows.slices.with_columns(center=pl.lit(record.center))
    embeddings, new = study_embeddings(slices, rows.embeddings, config.deep, rows.networks)
    row = patient_feature_row(record, spec, rows.radiomics, embeddings)
    classes = outcome_classes(spec, outcome)
    results = []
    for champion in champions:
        pipeline, version = load_champion(tracking, champion.registered_model)
        if missing := missing_columns(pipeline, row):
            raise ScoringError(
                f"patient '{record.patient_key}' lacks {len(missing)} feature(s) the {champion.signature} "
                f"champion uses, e.g. {missing[:3]}: its rows were not made with the settings the "
                "champion was trained with (sequences, ROIs, channels, radiomics profile, backbones)"
            )
        scored = score(pipeline, row, champion.signature, classes, champion.threshold, outcome)
        results.append(ChampionResult(scored, champion.registered_model, str(version.version), version.run_id))
    return PatientScores(results, classes, new)


def outcome_classes(spec: CohortSpec, outcome: str) -> list[str]:
    """The modelled outcome's classes in the manifest's level order (the last is the positive class of a binary
    outcome); an outcome without levels (a derived label such as `at_least`) is binary '0'/'1'."""
    variable = spec.outcomes.get(outcome)
    return list(variable.levels) if variable is not None and variable.levels else ["0", "1"]


def study_embeddings(slices: pl.DataFrame, stored: pl.DataFrame, deep: DeepSettings,
                     networks: pl.DataFrame) -> tuple[pl.DataFrame, pl.DataFrame]:
    """(the embeddings of every study backbone x deep channel by the study's `embedding_network`, the part computed
    here). A backbone's stored rows are used when they cover the study's channels and were made by the study's
    networks (pretrained: the `weights`; fine_tuned: the stored networks); otherwise its slices are embedded, with
    the networks and inference settings `center_embeddings` uses. `networks`: the stored fine-tuned networks."""
    slices = slices.filter(pl.col("channel").is_in(list(deep.channels)))
    kept, computed = [], []
    for backbone in deep.backbones:
        rows = _stored_rows(stored, backbone, deep)
        if rows.height and set(rows["channel"]) >= set(slices["channel"]) and _made_by_study(rows, deep, networks):
            kept.append(rows)
            continue
        for channels, network in _embedding_networks(backbone, deep, networks):
            chosen = slices.filter(pl.col("channel").is_in(channels))
            computed.append(embedding_frame(chosen, network, deep.embedding_network, deep.inference()))
    columns = ["patient_key", "sequence", "channel", "backbone", "weights_id", "network", "embedding"]
    new = pl.concat(computed) if computed else pl.DataFrame()
    frames = [f.select(columns) for f in [*kept, *computed] if f.height]
    return (pl.concat(frames) if frames else pl.DataFrame()), new


def _stored_rows(stored: pl.DataFrame, backbone: str, deep: DeepSettings) -> pl.DataFrame:
    if stored.is_empty():
        return stored
    return stored.filter((pl.col("backbone") == backbone) & (pl.col("network") == deep.embedding_network)
                         & pl.col("channel").is_in(list(deep.channels)))


def _made_by_study(rows: pl.DataFrame, deep: DeepSettings, networks: pl.DataFrame) -> bool:
    if deep.embedding_network == "fine_tuned":
        return networks.height > 0 and set(rows["weights_id"]) <= set(networks["weights_id"])
    return all(weights_match(w, deep.weights) for w in rows["weights_id"])


def _embedding_networks(backbone: str, deep: DeepSettings, networks: pl.DataFrame) -> list[tuple[list[str], Backbone]]:
    """(channels, network) pairs that embed `backbone`'s slices: the pretrained backbone for every channel, or the
    fine-tuned network of each channel."""
    from cssci_platform.lib.deep import load_backbone, load_fine_tuned  # torch: only where a patient is embedded

    if deep.embedding_network == "pretrained":
        try:
            return [(list(deep.channels), load_backbone(backbone, deep.weights, seed=deep.seed))]
        except BackboneWeightsError as error:
            raise ScoringError(f"{error.message}. Fix: {error.fix}") from error
    trained = networks.filter(pl.col("backbone") == backbone)
    missing = sorted(set(deep.channels) - set(trained["channel"]))
    if missing:
        raise ScoringError(
            f"no fine-tuned {backbone} for channels {missing}: the study embeds with fine-tuned "
            "networks (deep.embedding_network); materialize fine_tuned_backbones first"
        )
    return [([channel], load_fine_tuned(Path(path)).backbone)
            for channel, path in trained.select("channel", "checkpoint_path").iter_rows()]


def weights_match(weights_id: str, weights: str) -> bool:
    """Whether a stored weights id is what the `deep.weights` setting loads (`load_backbone`'s provenance ids:
    'none', the torchvision ImageNet enum name, 'file:<first 16 hex of the checkpoint's sha256>')."""
    setting = str(weights)
    if setting.lower() == NO_WEIGHTS:
        return weights_id == NO_WEIGHTS
    if setting.lower() in IMAGENET_ALIASES:
        return weights_id == IMAGENET_ALIASES[setting.lower()]
    path = Path(setting)
    return path.is_file() and weights_id == f"file:{file_sha256(path)[:16]}"
