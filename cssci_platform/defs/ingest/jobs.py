import dagster as dg

cohort_manifest_job = dg.define_asset_job(
    "cohort_manifest_job", selection=["cohort_manifest"],
    description="Validate the manifest and refresh the patients, clinical and outcomes tables.",
)

patient_features_job = dg.define_asset_job(
    "patient_features_job",
    selection=dg.AssetSelection.assets("patient_scans", "preprocessed_channels", "radiomics_features", "roi_slices"),
    description="One patient: read and check scans, preprocess channels, extract radiomics features, cut ROI slices.",
)
