from pathlib import Path

import dagster as dg

from cssci_platform.lib.feature_store import FeatureStore, feature_store_root


class ImageStoreResource(dg.ConfigurableResource):
    """Folder for this experiment's derived voxel data (`CSSCI_IMAGE_STORE`): DL slices, QC montages, Grad-CAMs; and
    where the feature store shared by the cohort's experiments is (preprocessed channels, resampled masks, radiomics
    values): `feature_store`, else `CSSCI_FEATURE_STORE`, else `.cssci_feature_store` beside the cohort manifest."""

    root: str
    feature_store: str = ""

    def folder(self, name: str) -> Path:
        path = Path(self.root) / name
        path.mkdir(parents=True, exist_ok=True)
        return path

    def features(self, manifest: Path) -> FeatureStore:
        """The cohort's feature store (the manifest places the default one)."""
        return FeatureStore(feature_store_root(self.feature_store or None, manifest))

