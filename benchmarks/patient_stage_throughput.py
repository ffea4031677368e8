"""Patient stage: `cssci ingest` through the Dagster instance vs a bare loop of the same work in 2 processes (issue 18).

Both sides process the same synthetic SCI patients (demo protocol) with the demo study's settings (2 channels,
lesion + cord radiomics, the ROI slice and QC montage), each into a fresh feature store, so every extraction is
computed:

- `cli`: `cssci ingest MANIFEST --home HOME --workers 2` in a subprocess, exactly as a user runs it: the manifest run,
  partition registration, a daemon, the patients as `patient_batch_job` runs (one per worker, at most 25 patients each)
  from the run queue (2 at a time), the warehouse writes and every event in the instance. Wall time of the whole
  command.
- `bare`: a `ProcessPoolExecutor` of 2 spawned processes calling the library functions the assets call (QC
  inspection, preprocessing, radiomics, ROI slices, QC montage) per patient; no Dagster, no warehouse writes.

`--real N`: instead of synthetic patients, the first N real soft-tissue sarcoma T1 MRIs of
../shared/refdata/mri_sts_multivendor (expert tumour masks, vendor as center), original channel only, or the filter
channels `--channels` names (the published upper-limb study has five: original,mean,box,gaussian,median): patients
whose radiomics take seconds to minutes, as in a hospital's cohort.

bare / cli is the CLI's throughput relative to the bare loop (the issue asks >= 0.9x); (cli - bare) x 2 / patients is
the platform's cost per patient (the command's fixed costs and each batch run's start-up spread over the patients,
events, warehouse writes, QC bookkeeping). Rounds
alternate the order. The cohort is written once (untimed) under benchmarks/_work/patient_stage.

    python benchmarks/patient_stage_throughput.py --patients 16 --rounds 2
    python benchmarks/patient_stage_throughput.py --real 8 --rounds 1
    python benchmarks/patient_stage_throughput.py --real 16 --channels original,mean,box,gaussian,median --rounds 2
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import subprocess
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from multiprocessing import get_context
from pathlib import Path

import yaml

REPO_ROOT = Path(__file__).resolve().parents[1]
WORK = REPO_ROOT / "benchmarks" / "_work" / "patient_stage"
DEMO_SECTIONS = ("imaging", "preprocessing", "deep")  # what the patient steps read from the demo study


def study_document(manifest: Path) -> dict:
    """The demo study's patient settings on this cohort (the home's experiment.yaml for the CLI side)."""
    from cssci_platform.lib.study_config import resolve_config_path

    demo = yaml.safe_load(resolve_config_path("demo").read_text(encoding="utf-8"))
    return {"name": "patient_stage", "cohort": {"manifest": str(manifest)}, "outcome": {"name": "good_outcome"},
            **{section: demo[section] for section in DEMO_SECTIONS}}


def real_cohort(patients: int, channels: list[str]) -> tuple[Path, dict]:
    """A manifest over copies of the first `patients` real sarcoma MRIs, and its study (radiomics and ROI slices of
    `channels`)."""
    import csv

    root = Path(os.environ.get("CSSCI_REFDATA") or REPO_ROOT.parent / "shared" / "refdata") / "mri_sts_multivendor"
    folder = WORK / f"real_{patients}"
    with open(root / "scanners.csv", encoding="utf-8") as stream:
        chosen = sorted(csv.DictReader(stream), key=lambda row: row["patient"])[:patients]
    rows = ["patient_id,center,cohort,image__T1,mask__T1__tumour,large_tumour"]
    for index, row in enumerate(chosen):
        key = row["patient"]
        (folder / "data" / key).mkdir(parents=True, exist_ok=True)
        for name in ("MR_T1_image.nii.gz", "MR_T1_mask.nii.gz"):
            if not (folder / "data" / key / name).exists():
                shutil.copy(root / key / name, folder / "data" / key / name)
        rows.append(f"{key},{row['vendor']},development,{key}/MR_T1_image.nii.gz,{key}/MR_T1_mask.nii.gz,{index % 2}")
    (folder / "patients.csv").write_text("\n".join(rows) + "\n", encoding="utf-8")
    spec = {"manifest_version": 1, "name": "sarcoma", "table": "patients.csv", "data_root": "data",
            "centers": sorted({row["vendor"] for row in chosen}), "sequences": ["T1"], "rois": ["tumour"],
            "mask_label": 1, "outcomes": {"large_tumour": {"type": "binary"}}}
    manifest = folder / "cohort.yaml"
    manifest.write_text(yaml.safe_dump(spec, sort_keys=False), encoding="utf-8")
    study = {"name": "patient_stage_real", "cohort": {"manifest": str(manifest)}, "outcome": {"name": "large_tumour"},
             "imaging": {"sequences": ["T1"], "radiomics_rois": ["tumour"]},  # the default ROI ('lesion') is not here
             "preprocessing": {"channels": channels}, "deep": {"channels": channels}}
    return manifest, study


def prepared_cohort(patients: int) -> Path:
    from cssci_platform.lib.synthetic import write_sci_cohort

    folder = WORK / f"cohort_{patients}"
    manifest = folder / "cohort.yaml"
    if not manifest.exists():
        shutil.rmtree(folder, ignore_errors=True)
        write_sci_cohort(folder, n_development=patients, n_prospective=0, seed=7, protocol="demo")
    return manifest


def bare_patient(manifest: str, key: str, store: str, study_file: str) -> tuple[int, int]:
    """The work of one patient's `patient_features_job`, by the library functions; returns the feature values
    extracted and the slices cut."""
    import polars as pl

    from cssci_platform.lib.cohort import load_cohort
    from cssci_platform.lib.deep.patient_slices import cut_patient_slices, masked_pairs
    from cssci_platform.lib.feature_extraction import extract_patient_features, radiomics_inputs
    from cssci_platform.lib.feature_store import FeatureStore
    from cssci_platform.lib.preprocessing import preprocess_patient
    from cssci_platform.lib.qc_montage import dl_rectangle_of, montage_png, patient_montage, write_montage
    from cssci_platform.lib.quality import inspect_patient
    from cssci_platform.lib.study_config import load_config

    study = load_config(study_file)
    cohort = load_cohort(Path(manifest))
    inspection = inspect_patient(cohort, cohort.patients[key], study.imaging.geometry_tolerance())
    features = FeatureStore(Path(store))
    done = preprocess_patient(inspection.scans, cohort.resolve, features.folder("channels"), study.preprocessing)
    channels = pl.DataFrame([vars(c) for c in done.channels])
    masks = pl.DataFrame([vars(m) for m in done.masks])
    inputs = radiomics_inputs(channels, masks, study.imaging, study.preprocessing.channels)
    extraction = extract_patient_features(key, *inputs, study.radiomics.params,
                                          FeatureStore(features.folder("radiomics")))
    request = study.deep.slice.request(cohort.spec, masked_pairs(cohort))
    sliced = cut_patient_slices(key, channels, masks, request, features.folder("roi_slices"))
    image = patient_montage(key, channels, masks, request.roi, request.settings.mask_label,
                            dl_rectangle_of(sliced.rows))
    write_montage(features.folder("qc_montages"), key, montage_png(image))
    return extraction.rows.height, len(sliced.rows)


def run_bare(manifest: Path, keys: list[str], study_file: Path) -> float:
    store = WORK / "bare_store"
    shutil.rmtree(store, ignore_errors=True)
    started = time.perf_counter()
    with ProcessPoolExecutor(max_workers=2, mp_context=get_context("spawn")) as pool:
        done = list(pool.map(bare_patient, [str(manifest)] * len(keys), keys, [str(store)] * len(keys),
                             [str(study_file)] * len(keys)))
    assert all(values and slices for values, slices in done), "a patient got no radiomics value or no ROI slice"
    return time.perf_counter() - started


def run_cli(manifest: Path, study: dict) -> float:
    home = WORK / "cli_home"
    shutil.rmtree(home, ignore_errors=True)
    shutil.rmtree(WORK / "cli_store", ignore_errors=True)
    home.mkdir(parents=True)
    (home / "experiment.yaml").write_text(yaml.safe_dump(study, sort_keys=False), encoding="utf-8")
    environment = {name: value for name, value in os.environ.items() if not name.startswith(("CSSCI_", "DAGSTER_"))}
    environment |= {"CI": "true", "CSSCI_FEATURE_STORE": str(WORK / "cli_store")}
    started = time.perf_counter()
    done = subprocess.run([str(Path(sys.executable).parent / "cssci"), "ingest", str(manifest), "--home", str(home),
                           "--workers", "2"], env=environment, capture_output=True, text=True, check=False)
    elapsed = time.perf_counter() - started
    if done.returncode != 0:
        raise SystemExit(f"cssci ingest failed ({done.returncode}):\n{(done.stdout + done.stderr)[-3000:]}")
    values = re.search(r"radiomics feature values per patient \(median\): (\d+)", done.stdout)
    if values is None or int(values.group(1)) == 0:
        raise SystemExit(f"cssci ingest extracted no radiomics (both sides must do the same work):\n{done.stdout}")
    return elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--patients", type=int, default=16)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--real", type=int, default=0, help="the first N real sarcoma MRIs instead (refdata)")
    parser.add_argument("--channels", default="original", help="--real: the filter channels, comma-separated")
    args = parser.parse_args()
    from cssci_platform.lib.cohort import load_cohort

    if args.real:
        manifest, study = real_cohort(args.real, args.channels.split(","))
    else:
        manifest = prepared_cohort(args.patients)
        study = study_document(manifest)
    keys = sorted(load_cohort(manifest).patients)
    study_file = WORK / "study.yaml"
    study_file.write_text(yaml.safe_dump(study, sort_keys=False), encoding="utf-8")
    print(f"{len(keys)} patients, load before: {os.getloadavg()}")
    for round_number in range(args.rounds):
        order = ("bare", "cli") if round_number % 2 == 0 else ("cli", "bare")
        times = {}
        for side in order:
            times[side] = run_bare(manifest, keys, study_file) if side == "bare" else run_cli(manifest, study)
            print(f"round {round_number + 1} {side}: {times[side]:.1f} s (load {os.getloadavg()[0]:.2f})", flush=True)
        per_run = (times["cli"] - times["bare"]) * 2 / len(keys)
        print(f"round {round_number + 1}: bare / cli = {times['bare'] / times['cli']:.2f}x; platform cost per patient "
              f"{per_run:.1f} s", flush=True)


if __name__ == "__main__":
    main()
