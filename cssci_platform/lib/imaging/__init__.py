"""SimpleITK image I/O, geometry checks, resampling and filter channels.

Every function takes and returns `SimpleITK.Image` objects; voxel data never leaves SimpleITK except for
the checks that need numpy. Errors name the file and say what to do. The parts:

- `files`: reading (volumes, DICOM series folders), atomic writing, content hashes;
- `nifti`, `headers`: what ITK does not check in NIfTI files and MetaImage/NRRD headers (truncation, NaN voxels,
  missing data files);
- `checks`: image vs mask geometry, non-finite voxels, mask labels;
- `transforms`: normalization, resampling, filter channels.
"""

from cssci_platform.lib.imaging.checks import (
    Geometry,
    GeometryTolerance,
    NonIntegralVoxels,
    geometry_mismatches,
    mask_label_counts,
    nonfinite_voxel_count,
    nonintegral_voxels,
)
from cssci_platform.lib.imaging.errors import ImageReadError
from cssci_platform.lib.imaging.files import (
    VOLUME_SUFFIXES,
    file_sha256,
    has_volume_suffix,
    nonfinite_voxels_in_file,
    read_image,
    write_image,
)
from cssci_platform.lib.imaging.headers import (
    METAIMAGE_ELEMENT_BYTES,
    METAIMAGE_HEADER_LIMIT,
    MetaImageHeader,
    header_data_files,
    is_metaimage,
    metaimage_header,
)
from cssci_platform.lib.imaging.nifti import NIFTI_DTYPES, NiftiPayload, is_nifti, nifti_payload
from cssci_platform.lib.imaging.transforms import (
    CHANNELS,
    INTERPOLATORS,
    ChannelSettings,
    filter_channel,
    normalize_unit_range,
    resample_mask_onto,
    resample_to_spacing,
)

__all__ = [
    "CHANNELS",
    "INTERPOLATORS",
    "METAIMAGE_ELEMENT_BYTES",
    "METAIMAGE_HEADER_LIMIT",
    "NIFTI_DTYPES",
    "VOLUME_SUFFIXES",
    "ChannelSettings",
    "Geometry",
    "GeometryTolerance",
    "ImageReadError",
    "MetaImageHeader",
    "NiftiPayload",
    "NonIntegralVoxels",
    "file_sha256",
    "filter_channel",
    "geometry_mismatches",
    "has_volume_suffix",
    "header_data_files",
    "is_metaimage",
    "is_nifti",
    "mask_label_counts",
    "metaimage_header",
    "nifti_payload",
    "nonfinite_voxel_count",
    "nonfinite_voxels_in_file",
    "nonintegral_voxels",
    "normalize_unit_range",
    "read_image",
    "resample_mask_onto",
    "resample_to_spacing",
    "write_image",
]
