"""Shape features once per mask: a patient's five filter channels on one tumour mask, each case extracted on its own
(shape computed per channel, as before issue 18's session 8) vs all of them in one `extract_cases` call (shape
computed with the first channel and copied to the others). Same process, same cached extractor, alternating which
side goes first per round; the values of both sides are compared (identical, feature by feature and in order).

Inputs: real sarcoma T1 MRIs of ``<refdata>/mri_sts_multivendor`` through our own preprocessing (1 mm isotropic,
[0, 1], the five channels), written once under ``benchmarks/_work/radiomics_shape_once`` (untimed).

    python benchmarks/radiomics_shape_once.py --patients STS_019,STS_003,STS_016 --rounds 2
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import tempfile
import time
from pathlib import Path

import polars as pl
import yaml

from cssci_platform.lib.cohort import load_cohort
from cssci_platform.lib.imaging import GeometryTolerance
from cssci_platform.lib.preprocessing import PreprocessingSettings, preprocess_patient
from cssci_platform.lib.quality import inspect_patient
from cssci_platform.lib.radiomics import RadiomicsCase, extract_cases, load_params

REPO_ROOT = Path(__file__).resolve().parents[1]
WORK = REPO_ROOT / "benchmarks" / "_work" / "radiomics_shape_once"


def channel_cases(root: Path, patient: str) -> list[RadiomicsCase]:
    """The patient's five preprocessed channels, each paired with its one resampled tumour mask."""
    folder = Path(tempfile.mkdtemp(prefix="manifest", dir=WORK))
    spec = {"manifest_version": 1, "name": "bench", "table": "patients.csv", "data_root": str(root),
            "centers": ["scanner"], "sequences": ["T1"], "rois": ["tumour"], "mask_label": 1}
    (folder / "cohort.yaml").write_text(yaml.safe_dump(spec), encoding="utf-8")
    pl.DataFrame([{"patient_id": patient, "center": "scanner", "cohort": "development",
                   "image__T1": f"{patient}/MR_T1_image.nii.gz", "mask__T1__tumour": f"{patient}/MR_T1_mask.nii.gz"}]
                 ).write_csv(folder / "patients.csv")
    cohort = load_cohort(folder / "cohort.yaml")
    inspection = inspect_patient(cohort, cohort.patients[patient], GeometryTolerance())
    result = preprocess_patient(inspection.scans, cohort.resolve, WORK / "store", PreprocessingSettings())
    [mask] = [m for m in result.masks if m.roi == "tumour"]
    return [RadiomicsCase(f"{patient}/{c.channel}", Path(c.image_path), Path(mask.mask_path)) for c in result.channels]


def extract(cases: list[RadiomicsCase], params, side: str) -> tuple[float, list]:
    """per_channel: each case alone (shape per channel); once: all in one call (shape once per mask)."""
    started = time.perf_counter()
    if side == "per_channel":
        results = [extract_cases([case], params)[0] for case in cases]
    else:
        results = extract_cases(cases, params)
    return time.perf_counter() - started, results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--refdata", type=Path,
                        default=Path(os.environ.get("CSSCI_REFDATA") or REPO_ROOT.parent / "shared" / "refdata"))
    parser.add_argument("--patients", default="STS_019,STS_003,STS_016")
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--out", type=Path, default=WORK / "radiomics_shape_once.json")
    args = parser.parse_args()
    WORK.mkdir(parents=True, exist_ok=True)
    params = load_params("default")
    uptime = [subprocess.run(["uptime"], capture_output=True, text=True).stdout.strip()]
    rows = []
    for patient in args.patients.split(","):
        cases = channel_cases(args.refdata / "mri_sts_multivendor", patient)
        seconds: dict[str, list[float]] = {"per_channel": [], "once": []}
        for round_ in range(args.rounds):
            order = ["per_channel", "once"] if round_ % 2 == 0 else ["once", "per_channel"]
            results = {}
            for side in order:
                elapsed, results[side] = extract(cases, params, side)
                seconds[side].append(elapsed)
        identical = [(cid, list(f.items())) for cid, f in results["per_channel"]] == \
            [(cid, list(f.items())) for cid, f in results["once"]]
        row = {"patient": patient, "channels": len(cases), "identical": identical,
               **{side: statistics.median(values) for side, values in seconds.items()}}
        row["ratio"] = row["per_channel"] / row["once"]
        rows.append(row)
        print(f"{patient}: {len(cases)} channels, per channel {row['per_channel']:.2f} s, shape once "
              f"{row['once']:.2f} s, {row['ratio']:.2f}x, identical {identical}")
    uptime.append(subprocess.run(["uptime"], capture_output=True, text=True).stdout.strip())
    args.out.write_text(json.dumps({"rows": rows, "uptime": uptime}, indent=1), encoding="utf-8")
    print(" | ".join(uptime))


if __name__ == "__main__":
    main()
