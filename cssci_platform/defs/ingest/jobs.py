from cssci_platform.defs.experiment_jobs import experiment_job

cohort_manifest_job = experiment_job(
    "cohort_manifest_job", ["cohort_manifest"],
    "Validate the manifest and refresh the patients, clinical and outcomes tables.",
)

PATIENT_ASSETS = ["patient_scans", "preprocessed_channels", "radiomics_features", "roi_slices"]

patient_features_job = experiment_job(
    "patient_features_job", PATIENT_ASSETS,
    "One patient: read and check scans, preprocess channels, extract radiomics features, cut ROI slices.",
)
