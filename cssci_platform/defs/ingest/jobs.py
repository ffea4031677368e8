import dagster as dg

cohort_manifest_job = dg.define_asset_job(
    "cohort_manifest_job", ["cohort_manifest"],
    description="Validate the manifest and refresh the patients, clinical and outcomes tables.",
)

PATIENT_ASSETS = ["patient_scans", "preprocessed_channels", "radiomics_features", "roi_slices"]

patient_features_job = dg.define_asset_job(
    "patient_features_job", PATIENT_ASSETS,
    description="One patient: read and check scans, preprocess channels, extract radiomics features, cut ROI slices.",
)
