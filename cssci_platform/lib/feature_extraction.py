"""One patient's radiomics extraction: every preprocessed channel x every resampled mask, as long rows."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import polars as pl
from pydantic import Field

from cssci_platform.lib.feature_store import FeatureStore, content_key, file_sha256
from cssci_platform.lib.imaging import GeometryTolerance
from cssci_platform.lib.quality import QcIssue
from cssci_platform.lib.radiomics import RadiomicsCase, RadiomicsError, extract_cases, extractor_version, load_params
from cssci_platform.lib.settings import Section

FEATURE_SCHEMA = {
    "patient_key": pl.String, "sequence": pl.String, "roi": pl.String, "segmentation": pl.String,
    "channel": pl.String, "feature": pl.String, "value": pl.Float64, "extractor_version": pl.String,
    "params_name": pl.String, "params_hash": pl.String,
}


class ImagingSettings(Section):
    """The images a study uses (study config section `imaging`): which sequences and ROIs feed the handcrafted
    radiomics (default: every sequence, ROI `lesion`), and how far a mask's grid may differ from its image's before
    the patient is quarantined at ingest."""

    sequences: list[str] | None = None
    radiomics_rois: list[str] = ["lesion"]
    spacing_tolerance_mm: float = Field(1e-3, ge=0)
    origin_tolerance_mm: float = Field(1e-2, ge=0)
    direction_tolerance: float = Field(1e-4, ge=0)

    def geometry_tolerance(self) -> GeometryTolerance:
        return GeometryTolerance(self.spacing_tolerance_mm, self.origin_tolerance_mm, self.direction_tolerance)


class RadiomicsSettings(Section):
    """The PyRadiomics parameters (study config section `radiomics`)."""

    params: str = "default"  # a profile in cssci_platform/configs/radiomics or a PyRadiomics YAML path


def radiomics_inputs(channels: pl.DataFrame, masks: pl.DataFrame, imaging: ImagingSettings,
                     channel_names: Sequence[str]) -> tuple[pl.DataFrame, pl.DataFrame]:
    """The patient's preprocessed channels and masks (rows of preprocessed_channels / preprocessed_masks) that the
    study extracts radiomics from: its channels, its sequences (all when unset) and its radiomics ROIs."""
    channels = channels.filter(pl.col("channel").is_in(list(channel_names)))
    masks = masks.filter(pl.col("roi").is_in(imaging.radiomics_rois))
    if imaging.sequences is not None:
        channels = channels.filter(pl.col("sequence").is_in(imaging.sequences))
        masks = masks.filter(pl.col("sequence").is_in(imaging.sequences))
    return channels, masks


@dataclass
class PatientExtraction:
    rows: pl.DataFrame
    issues: list[QcIssue]
    extractions: int
    features_per_extraction: int
    params_hash: str
    extractor_version: str
    computed: int = 0  # extractions run by PyRadiomics in this call
    reused: int = 0  # extractions read from the feature store


def extract_patient_features(patient_key: str, channels: pl.DataFrame, masks: pl.DataFrame,
                             params_name: str, store: FeatureStore | None = None) -> PatientExtraction:
    """`channels`/`masks`: the patient's rows of preprocessed_channels / preprocessed_masks. With a `store`, a case
    whose channel file, mask file (by content), parameter text, label and extractor version were extracted before
    (by any experiment on the cohort) is read from it, and every newly extracted case is saved to it."""
    params = load_params(params_name)
    version = extractor_version()
    pairs = channels.join(masks, on=["patient_key", "sequence"], how="inner")
    cases = [RadiomicsCase(_case_id(r), Path(r["image_path"]), Path(r["mask_path"]))
             for r in pairs.iter_rows(named=True)]
    keys = _case_keys(cases, params.sha256, version) if store is not None else {}
    results: dict[str, dict[str, float] | RadiomicsError] = {c.case_id: stored for c in cases
               if store is not None and (stored := _stored_case(store, c.case_id, keys[c.case_id])) is not None}
    reused = len(results)
    computed = extract_cases([c for c in cases if c.case_id not in results], params)
    for case_id, outcome in computed:
        results[case_id] = outcome
        if store is not None and not isinstance(outcome, RadiomicsError):
            store.save_rows(f"{case_id}-{keys[case_id][:16]}", keys[case_id],
                            pl.DataFrame({"feature": list(outcome), "value": list(outcome.values())},
                                         schema={"feature": pl.String, "value": pl.Float64}))
    records, issues, widths = [], [], set()
    for row in pairs.iter_rows(named=True):
        outcome = results[_case_id(row)]
        if isinstance(outcome, RadiomicsError):
            issues.append(QcIssue(patient_key, "radiomics", "extraction_failed", f"{_case_id(row)}: {outcome}",
                                  "check the ROI (size, label) or the radiomics parameter file", row["mask_path"]))
            continue
        widths.add(len(outcome))
        bad = sorted(name for name, value in outcome.items() if not math.isfinite(value))
        if bad:
            issues.append(QcIssue(patient_key, "radiomics", "nonfinite_features",
                                  f"{_case_id(row)}: {len(bad)} non-finite values ({', '.join(bad[:5])})",
                                  "check the ROI: a one-voxel-thick or constant ROI gives undefined texture features",
                                  row["mask_path"]))
        records += [(patient_key, row["sequence"], row["roi"], row["segmentation"], row["channel"], name, value,
                     version, params.name, params.sha256) for name, value in outcome.items()]
    frame = pl.DataFrame(records, schema=FEATURE_SCHEMA, orient="row")
    return PatientExtraction(frame, issues, len(cases), max(widths, default=0), params.sha256, version,
                             computed=len(computed), reused=reused)


def _case_keys(cases: list[RadiomicsCase], params_sha256: str, version: str) -> dict[str, str]:
    """A case's key: the content of its channel and mask files, the parameter text, its label, the extractor."""
    hashes: dict[Path, str] = {}

    def content(path: Path) -> str:
        if path not in hashes:
            hashes[path] = file_sha256(path) if path.is_file() else f"missing:{path}"
        return hashes[path]

    return {c.case_id: content_key(image=content(c.image_path), mask=content(c.mask_path), params=params_sha256,
                                   label=c.label, extractor=version) for c in cases}


def _stored_case(store: FeatureStore, case_id: str, key: str) -> dict[str, float] | None:
    rows = store.find_rows(f"{case_id}-{key[:16]}", key)
    return None if rows is None else dict(zip(rows["feature"].to_list(), rows["value"].to_list()))


def _case_id(row: dict) -> str:
    return f"{row['patient_key']}/{row['sequence']}/{row['roi']}/{row['segmentation']}/{row['channel']}"
