"""Every run process, code server and UI reload loads the definitions before its first step (issue 18: run start-up
was 6-14 s of each run under load, most of it imports). Loading them must not import the modelling stack
(scikit-learn, SciPy, pandas): a patient, follow-up or embedding run never uses it, and the steps that do import it
when they run."""

from __future__ import annotations

import json
import subprocess
import sys

# Imported only by the steps that model, score or report; measured at ~1.7 s of a ~4.3-s definitions load on a quiet
# 2-core machine, twice that under load (benchmarks/RESULTS.md, "Run start-up").
MODELLING_STACK = ("sklearn", "scipy", "pandas")

LOAD_DEFINITIONS = """
import json, sys
import cssci_platform.definitions as definitions
repository = definitions.defs().get_repository_def()
jobs = sorted(job.name for job in repository.get_all_jobs())
print(json.dumps({"jobs": jobs, "imported": sorted({m.split(".")[0] for m in sys.modules})}))
"""


def _load_definitions_in_a_fresh_process() -> dict:
    completed = subprocess.run([sys.executable, "-c", LOAD_DEFINITIONS], capture_output=True, text=True, timeout=300,
                               check=True)
    return json.loads(completed.stdout.strip().splitlines()[-1])


def test_loading_the_definitions_imports_no_part_of_the_modelling_stack() -> None:
    loaded = _load_definitions_in_a_fresh_process()
    assert {"patient_batch_job", "modeling_job", "report_job"} <= set(loaded["jobs"])  # the whole graph was built
    assert [name for name in MODELLING_STACK if name in loaded["imported"]] == []
