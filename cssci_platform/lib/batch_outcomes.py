"""What a patient batch run (`defs/ingest/patient_batch.py`) records per patient, as an observation of
`OUTCOME_ASSET` for the patient's partition and the run tags it adds, and what the command line reads back to report
and resume (`cli/patient_runs.py`): declared here so that neither imports the other."""

OUTCOME_ASSET = "patient_scans"
OUTCOME = "patient_outcome"  # PROCESSED, QUARANTINED (a blocking QC check failed) or FAILED (a step raised)
PROCESSED, QUARANTINED, FAILED = "processed", "quarantined", "failed"
FAILED_CHECKS = "failed_checks"  # the failed checks' names, ', '-joined
ERROR = "error"  # the failed steps' root causes, ' | '-joined
INPUT_DIGEST = "input_digest"  # the command's digest of the patient's manifest row and files
# Run tags of a batch run: the mark that it carries a tag per patient, added as the run takes each patient (after
# winning the patient's claim in its wave, `lib/patient_claims.py`), so a patient's latest run is found by an indexed
# query of the run that processed it; and the wave the run shares its patients with.
PATIENTS_TAGGED = "cssci/patients_tagged"
BATCH_PATIENT_TAG = "cssci/patient/"  # + patient key
WAVE_TAG = "cssci/wave"
