"""The synthetic cohort's planted imaging effect is recovered by the Rad signature from real radiomics of its images.

The cohort plants a lesion length / T2 intensity / heterogeneity effect on the outcome (imaging part alone:
true AUC ~0.75, `lib/synthetic.py`). Images go through our QC, preprocessing (sag_T2, original channel) and
PyRadiomics; the leakage-safe Rad pipeline (ComBat across the 3 centers, selection chain, LR) must find it on
held-out patients.
"""

from concurrent.futures import ProcessPoolExecutor
from multiprocessing import get_context
from pathlib import Path

import pandas as pd
import polars as pl

from cssci_platform.lib.cohort import load_cohort
from cssci_platform.lib.feature_extraction import extract_patient_features
from cssci_platform.lib.imaging import GeometryTolerance
from cssci_platform.lib.modeling.chains import ChainSettings
from cssci_platform.lib.modeling.matrix import assemble, radiomics_block
from cssci_platform.lib.modeling.signatures import Signature
from cssci_platform.lib.modeling.training import train_signature
from cssci_platform.lib.preprocessing import PreprocessingSettings, preprocess_patient
from cssci_platform.lib.quality import inspect_patient
from cssci_platform.lib.selection.settings import SelectionSettings
from cssci_platform.lib.splits import PRESETS, assign_splits
from cssci_platform.lib.synthetic import write_sci_cohort


def _lesion_radiomics(manifest: Path, key: str, store: Path) -> pl.DataFrame:
    cohort = load_cohort(manifest)
    inspection = inspect_patient(cohort, cohort.patients[key], GeometryTolerance())
    assert inspection.passed, [i.message for i in inspection.issues]
    scans = [
        s
        for s in inspection.scans
        if s.sequence == "sag_T2" and s.roi in ("", "lesion") and s.segmentation in ("", "primary")
    ]
    result = preprocess_patient(scans, cohort.resolve, store, PreprocessingSettings(channels=("original",)))
    channels = pl.DataFrame([vars(c) for c in result.channels])
    masks = pl.DataFrame([vars(m) for m in result.masks])
    return extract_patient_features(key, channels, masks, "default").rows


def test_rad_signature_recovers_the_planted_imaging_effect(tmp_path: Path) -> None:
    manifest = write_sci_cohort(
        tmp_path / "cohort", n_development=150, n_prospective=0, seed=21, second_rater_fraction=0
    )
    cohort = load_cohort(manifest)
    keys = sorted(cohort.patients)
    with ProcessPoolExecutor(max_workers=2, mp_context=get_context("spawn")) as pool:
        rows = pl.concat(pool.map(_lesion_radiomics, [manifest] * len(keys), keys, [tmp_path / "store"] * len(keys)))
    patients = pl.DataFrame(
        {
            "patient_key": keys,
            "center": [cohort.patients[k].center for k in keys],
            "cohort": [cohort.patients[k].cohort for k in keys],
        }
    )
    labels = pl.DataFrame(
        {"patient_key": keys, "label": [str(cohort.patients[k].outcomes["good_outcome"]) for k in keys]}
    )
    matrix = assemble(patients, labels, [radiomics_block(rows)])
    splits = assign_splits(patients.join(labels, on="patient_key"), PRESETS["holdout_7_3"])
    roles = pd.Series(dict(splits.select("patient_key", "role").iter_rows()))
    [model] = train_signature(
        matrix,
        roles,
        Signature("rad"),
        ["LR"],
        "leakage_safe",
        ["0", "1"],
        ChainSettings(selection=SelectionSettings(mrmr_k=10), lasso_cv=5),
        cv_folds=5,
    )
    print(
        f"planted signal: Rad_LR test AUC {model.metrics['test']['auc']:.3f} on {model.metrics['test']['n']:.0f} "
        f"held-out patients, CV AUC {model.cv_score_mean:.3f}"
    )
    assert model.metrics["test"]["auc"] > 0.65
    assert model.cv_score_mean > 0.6
