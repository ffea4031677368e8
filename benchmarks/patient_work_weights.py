"""How well `patient_work` orders patients for the runs of a wave: each patient's measured time in the batch runs of
finished `cssci ingest` homes, taken by two runs in the wave's order (`patient_waves`: largest expected work first,
each run taking the next patient as it frees), and the longest run over an even split (1.0 = both runs end together)
for candidate weights (issue 18, sessions 16 and 18).

The patients' times are the gaps between a batch run's per-patient outcome observations (the first from the run's
step start), so each home must come from a command that ran its patients in batch runs, e.g. the `cli_home` that
`patient_stage_throughput.py --real 32` leaves under benchmarks/_work/patient_stage (copy it aside between runs):

    python benchmarks/patient_stage_throughput.py --real 32 --rounds 1
    cp -r benchmarks/_work/patient_stage/cli_home /tmp/home_one
    python benchmarks/patient_stage_throughput.py --real 32 --channels original,mean,box,gaussian,median --rounds 1
    cp -r benchmarks/_work/patient_stage/cli_home /tmp/home_five
    python benchmarks/patient_work_weights.py /tmp/home_one /tmp/home_five

Prints the ratio for file bytes (the weights before session 16), patient count, the shipped weights and the best of a
grid, per home.
"""

from __future__ import annotations

import argparse
import itertools
from pathlib import Path


def measured(home: Path) -> tuple[dict[str, float], dict[str, tuple[list[int], list[int]]]]:
    """(seconds per patient, (image file sizes, mask file sizes) per patient) of a finished ingest home."""
    import dagster as dg

    from cssci_platform.cli.patient_runs import PATIENT_BATCH_JOB, patient_file_sizes
    from cssci_platform.lib.cohort import load_cohort

    times: dict[str, float] = {}
    with dg.DagsterInstance.from_config(str(home / "dagster_home")) as instance:
        for record in instance.get_run_records(filters=dg.RunsFilter(job_name=PATIENT_BATCH_JOB)):
            events = [e for e in instance.all_logs(record.dagster_run.run_id) if e.dagster_event]
            previous = next(e.timestamp for e in events if e.dagster_event.event_type == dg.DagsterEventType.STEP_START)
            for event in events:
                if event.dagster_event.event_type == dg.DagsterEventType.ASSET_OBSERVATION:
                    times[event.dagster_event.partition] = event.timestamp - previous
                    previous = event.timestamp
    cohort = load_cohort(Path((home / "current_manifest").read_text(encoding="utf-8").strip()))
    return times, {key: patient_file_sizes(cohort, cohort.patients[key]) for key in times}


def longest_run_over_even(weights: dict[str, float], times: dict[str, float]) -> float:
    from cssci_platform.cli.patient_runs import patient_waves

    ends = [0.0, 0.0]  # each run's busy seconds
    for wave in patient_waves(sorted(times), workers=2, work=weights):
        for key in wave.patients:  # the run that frees first takes the next patient
            ends[ends.index(min(ends))] += times[key]
    return max(ends) / (sum(ends) / len(ends))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("homes", nargs="+", type=Path)
    args = parser.parse_args()
    from cssci_platform.cli.patient_runs import WORK_PER_IMAGE_MB, WORK_PER_MASK, WORK_PER_PATIENT, expected_work

    def weights_of(files: dict, *candidate: float) -> dict[str, float]:
        return {key: expected_work(images, masks, *candidate) for key, (images, masks) in files.items()}

    data = []
    for home in args.homes:
        times, files = measured(home)
        data.append((times, files))
        print(f"{home}: {len(times)} patients, {sum(times.values()):.1f} s of patient work")
    named = {
        "file bytes": lambda files: {k: float(sum(i) + sum(m)) for k, (i, m) in files.items()},
        "patient count": lambda files: dict.fromkeys(files, 1.0),
        f"shipped ({WORK_PER_PATIENT}, {WORK_PER_IMAGE_MB}, {WORK_PER_MASK}, 2)":
            lambda files: weights_of(files),
    }
    for name, weigh in named.items():
        print(name, [round(longest_run_over_even(weigh(files), times), 3) for times, files in data])
    grid = itertools.product((0.5, 1, 2, 3), (0, 0.2, 0.5, 1), (1, 2, 3, 5, 8), (1, 1.5, 2))
    scored = []
    for candidate in grid:
        ratios = [longest_run_over_even(weights_of(files, *candidate), times) for times, files in data]
        scored.append((max(ratios), ratios, candidate))
    scored.sort()
    for worst, ratios, candidate in scored[:5]:
        print(f"grid {candidate}: {[round(r, 3) for r in ratios]} (worst {worst:.3f})")


if __name__ == "__main__":
    main()
