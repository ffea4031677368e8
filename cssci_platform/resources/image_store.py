from pathlib import Path

import dagster as dg


class ImageStoreResource(dg.ConfigurableResource):
    """Folder for derived voxel data (`CSSCI_IMAGE_STORE`): preprocessed channels and resampled masks."""

    root: str

    def folder(self, name: str) -> Path:
        path = Path(self.root) / name
        path.mkdir(parents=True, exist_ok=True)
        return path
