"""What ComBat harmonizes and which centers it estimates: feature classes left out, small centers handled.

- Feature classes: a radiomics column ``rad__<sequence>__<roi>__<channel>__<imageType>_<class>_<Feature>`` belongs
  to PyRadiomics class ``<class>`` (shape, firstorder, glcm, ...). Shape describes the lesion's geometry, not the
  scanner: ComBat would move it by a chance difference in tumour size between centers (a volume can become
  negative), so multi-center radiomics studies leave it out (`DEFAULT_UNHARMONIZED_CLASSES`).
- Small centers (fewer than ``min_center_size`` fit rows; ComBat needs at least 2 to estimate a scale):
  ``pool`` merges them into one batch `POOLED_BATCH`, ``unseen`` leaves them out of the fit so their rows follow
  the unseen-center policy, ``error`` refuses the fit naming the config keys that fix it.
"""

from __future__ import annotations

from collections.abc import Hashable, Sequence

import numpy as np
import numpy.typing as npt
import pandas as pd

POOLED_BATCH = "pooled_small_centers"
SMALL_CENTER_KEYS = (
    "harmonization.small_center: pool|unseen (with harmonization.min_center_size), or "
    "harmonization.enabled: false (cssci run --set harmonization.small_center=pool)"
)


def radiomics_feature_class(column: str) -> str | None:
    """``rad__sag_T2__lesion__original__original_shape_VoxelVolume`` -> ``shape``; non-radiomics columns -> None."""
    parts = str(column).split("__")
    if len(parts) < 5 or parts[0] != "rad":
        return None
    tokens = parts[-1].split("_")
    return tokens[1] if len(tokens) >= 3 else None


def columns_of_classes(columns: Sequence[str], classes: Sequence[str]) -> list[str]:
    """The radiomics columns whose feature class is one of `classes`."""
    wanted = set(classes)
    return [column for column in columns if radiomics_feature_class(column) in wanted]


def small_centers(labels: npt.NDArray[np.object_], min_size: int) -> dict[Hashable, int]:
    """Centers with fewer than `min_size` rows, and their row counts."""
    counts = pd.Series(labels).value_counts(sort=False)
    return {center: int(n) for center, n in counts.items() if n < min_size}


def small_center_error(small: dict[Hashable, int], min_size: int, batch_col: str) -> str:
    sizes = ", ".join(f"{center!r} has {n} sample(s)" for center, n in small.items())
    return (
        f"ComBat batch too small in {batch_col!r}: {sizes}; ComBat needs at least {min_size} per center to estimate "
        f"its location and scale. Fix: set {SMALL_CENTER_KEYS}, or merge/add patients"
    )
