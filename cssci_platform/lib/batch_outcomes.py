"""What a patient batch run (`defs/ingest/patient_batch.py`) records per patient, as an observation of
`OUTCOME_ASSET` for the patient's partition, and what the command line reads back to report and resume
(`cli/patient_runs.py`): declared here so that neither imports the other."""

OUTCOME_ASSET = "patient_scans"
OUTCOME = "patient_outcome"  # PROCESSED, QUARANTINED (a blocking QC check failed) or FAILED (a step raised)
PROCESSED, QUARANTINED, FAILED = "processed", "quarantined", "failed"
FAILED_CHECKS = "failed_checks"  # the failed checks' names, ', '-joined
ERROR = "error"  # the failed steps' root causes, ' | '-joined
INPUT_DIGEST = "input_digest"  # the command's digest of the patient's manifest row and files
