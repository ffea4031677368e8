import dagster as dg

from cssci_platform.defs.partitions import patients_partitions

cohort_manifest_job = dg.define_asset_job(
    "cohort_manifest_job", selection=["cohort_manifest"],
    description="Validate the manifest and refresh the patients, clinical and outcomes tables.",
)

patient_features_job = dg.define_asset_job(
    "patient_features_job",
    selection=dg.AssetSelection.assets("patient_scans", "preprocessed_channels", "radiomics_features"),
    partitions_def=patients_partitions,
    description="One patient: read and check scans, preprocess channels, extract radiomics features.",
)
