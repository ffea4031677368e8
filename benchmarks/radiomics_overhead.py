"""Radiomics step overhead.

1. Per-patient wall time of our step (``extract_cases([case], params)``: reads the files, cached extractor,
   float conversion, checks) vs a bare PyRadiomics loop (``RadiomicsFeatureExtractor(<same YAML>)`` built
   once, then ``.execute(image_path, mask_path)``) on the same cases and parameter file. Both run in this
   process, alternating which goes first per case, for ``--repeats`` rounds; the per-case median is reported.
(The across-patient speed-up is the command line's patient processes, ``cssci run --workers N``; the in-step process
pool it was once measured with is gone.)

Inputs: the real STS MRIs (``<refdata>/mri_sts_multivendor/STS_*/MR_T1_{image,mask}.nii.gz``), first brought
to what our preprocessing hands the extractor -- 1 mm isotropic (linear image / nearest-neighbour mask
resampling, cropped to the ROI bounding box + 20 mm) and intensities normalised to [0, 1] (0.5 / 99.5
percentile clip) -- and written once to ``benchmarks/_work/`` (untimed).

    python benchmarks/radiomics_overhead.py --refdata ../shared/refdata --cases 32 --repeats 5
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import SimpleITK as sitk

from cssci_platform.lib.radiomics import RadiomicsCase, extract_cases, extractor_version, load_params

REPO_ROOT = Path(__file__).resolve().parents[1]
WORK = REPO_ROOT / "benchmarks" / "_work" / "radiomics_overhead"


def prepare_case(folder: Path, out: Path) -> RadiomicsCase:
    """Resample to 1 mm isotropic, crop to the ROI + 20 mm, normalise to [0, 1]; cached on disk."""
    image_path, mask_path = out / f"{folder.name}_image.nii.gz", out / f"{folder.name}_mask.nii.gz"
    if not (image_path.is_file() and mask_path.is_file()):
        image = sitk.ReadImage(str(folder / "MR_T1_image.nii.gz"), sitk.sitkFloat32)
        mask = sitk.ReadImage(str(folder / "MR_T1_mask.nii.gz"), sitk.sitkUInt8)
        image, mask = _resample_iso(image, sitk.sitkLinear), _resample_iso(mask, sitk.sitkNearestNeighbor)
        image, mask = _crop_to_roi(image, mask, margin_mm=20)
        sitk.WriteImage(_normalise(image), str(image_path))
        sitk.WriteImage(mask, str(mask_path))
    return RadiomicsCase(folder.name, image_path, mask_path)


def _resample_iso(image: sitk.Image, interpolator: int) -> sitk.Image:
    size = [round(n * s) for n, s in zip(image.GetSize(), image.GetSpacing())]
    return sitk.Resample(
        image,
        size,
        sitk.Transform(),
        interpolator,
        image.GetOrigin(),
        (1.0, 1.0, 1.0),
        image.GetDirection(),
        0,
        image.GetPixelID(),
    )


def _crop_to_roi(image: sitk.Image, mask: sitk.Image, margin_mm: int) -> tuple[sitk.Image, sitk.Image]:
    stats = sitk.LabelShapeStatisticsImageFilter()
    stats.Execute(mask)
    box = stats.GetBoundingBox(1)
    lower = [max(0, box[i] - margin_mm) for i in range(3)]
    upper = [min(image.GetSize()[i], box[i] + box[i + 3] + margin_mm) for i in range(3)]
    region = [slice(lo, hi) for lo, hi in zip(lower, upper)]
    return image[region[0], region[1], region[2]], mask[region[0], region[1], region[2]]


def _normalise(image: sitk.Image) -> sitk.Image:
    values = sitk.GetArrayFromImage(image)
    low, high = np.percentile(values, [0.5, 99.5])
    out = sitk.GetImageFromArray(np.clip((values - low) / (high - low), 0, 1).astype(np.float32))
    out.CopyInformation(image)
    return out


def time_overhead(cases: list[RadiomicsCase], params_path: Path, repeats: int) -> list[dict]:
    """Per-case median seconds of ours vs bare PyRadiomics, alternating which runs first."""
    from radiomics.featureextractor import RadiomicsFeatureExtractor

    params = load_params(params_path)
    bare = RadiomicsFeatureExtractor(str(params_path))
    extract_cases(cases[:1], params)  # warm both paths (imports, extractor cache, file cache)
    bare.execute(str(cases[0].image_path), str(cases[0].mask_path))

    def ours(case: RadiomicsCase) -> float:
        start = time.perf_counter()
        ((_, result),) = extract_cases([case], params)
        elapsed = time.perf_counter() - start
        if not isinstance(result, dict):
            raise SystemExit(f"benchmark case failed: {result}")
        return elapsed

    def baseline(case: RadiomicsCase) -> float:
        start = time.perf_counter()
        bare.execute(str(case.image_path), str(case.mask_path))
        return time.perf_counter() - start

    rows = []
    for index, case in enumerate(cases):
        times: dict[str, list[float]] = {"ours": [], "bare": []}
        for repeat in range(repeats):
            order = (("ours", ours), ("bare", baseline))
            for name, run in order if (index + repeat) % 2 == 0 else order[::-1]:
                times[name].append(run(case))
        mask = sitk.ReadImage(str(case.mask_path))  # keep a reference: the array view borrows its buffer
        roi = int(np.count_nonzero(sitk.GetArrayViewFromImage(mask)))
        row = {"case": case.case_id, "roi_voxels": roi, **{k: statistics.median(v) for k, v in times.items()}}
        row["ratio"] = row["ours"] / row["bare"]
        rows.append(row)
        print(
            f"{case.case_id:8s} roi {roi:7d}  ours {row['ours']:7.3f} s  bare {row['bare']:7.3f} s  "
            f"ratio {row['ratio']:.3f}",
            flush=True,
        )
    return rows


def machine() -> dict:
    cpu = next(
        (
            line.split(":", 1)[1].strip()
            for line in Path("/proc/cpuinfo").read_text(encoding="utf-8").splitlines()
            if line.startswith("model name")
        ),
        platform.processor(),
    )
    return {
        "nproc": os.cpu_count(),
        "cpu": cpu,
        "python": platform.python_version(),
        "extractor": extractor_version(),
        "load_avg_at_start": os.getloadavg(),
    }


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument(
        "--refdata", type=Path, default=Path(os.environ.get("CSSCI_REFDATA") or REPO_ROOT.parent / "shared" / "refdata")
    )
    parser.add_argument("--cases", type=int, default=32, help="first N STS cases (sorted by id)")
    parser.add_argument("--repeats", type=int, default=5, help="ours/bare rounds per case")
    parser.add_argument("--profile", default="default", help="radiomics profile name")
    parser.add_argument("--out", type=Path, default=WORK / "radiomics_overhead.json")
    args = parser.parse_args(argv)

    folders = sorted((args.refdata / "mri_sts_multivendor").glob("STS_*"))[: args.cases]
    if not folders:
        raise SystemExit(f"no STS cases under {args.refdata / 'mri_sts_multivendor'}")
    (WORK / "inputs").mkdir(parents=True, exist_ok=True)
    cases = [prepare_case(folder, WORK / "inputs") for folder in folders]
    params_path = load_params(args.profile).path
    assert params_path is not None

    info = machine()
    print(json.dumps(info), flush=True)
    rows = time_overhead(cases, params_path, args.repeats)
    ours, bare = sum(r["ours"] for r in rows), sum(r["bare"] for r in rows)
    ratios = [r["ratio"] for r in rows]
    summary = {
        "cases": len(rows),
        "sum_ours_s": ours,
        "sum_bare_s": bare,
        "ratio_of_sums": ours / bare,
        "median_ratio": statistics.median(ratios),
        "max_ratio": max(ratios),
    }
    print(
        f"\noverhead: {len(rows)} cases, sum of per-case medians ours {ours:.2f} s vs bare {bare:.2f} s -> "
        f"{ours / bare:.3f}x; median per-case ratio {summary['median_ratio']:.3f}x, max {max(ratios):.3f}x"
    )
    info["load_avg_at_end"] = os.getloadavg()
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(
        json.dumps(
            {
                "machine": info,
                "command": " ".join(sys.argv),
                "profile": args.profile,
                "per_case": rows,
                "overhead": summary,
            },
            indent=2,
        ),
        encoding="utf-8",
    )
    print(f"figures written to {args.out}")


if __name__ == "__main__":
    main()
