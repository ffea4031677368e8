"""Synthetic spine-MRI demo cohorts with planted, documented effects.

Two generators write a cohort in the platform's manifest format (``cohort.yaml`` + ``patients.csv`` +
NIfTI volumes and masks) together with ``truth.csv``, the planted ground truth (not part of the manifest).
Everything is deterministic by ``seed``. Each patient draws from its own generators, seeded by
``(seed, stream, center, patient number)``, so a patient's values do not depend on how many other
patients are generated; cohort-level draws (which center, which class, which patients get a second
rater) use ``default_rng(seed)``.

- ``common``: the spine phantom, planes and acquisition model, and the manifest-writing helpers.
- ``sci``: ``write_sci_cohort`` (cervical spinal cord injury; protocols ``demo``, ``ianr``, ``upper_limb``)
  and ``sample_sci_patients`` (the same patients without images).
- ``metastasis``: ``write_metastasis_cohort`` (spinal metastasis primary site) and
  ``sample_metastasis_patients``.

Every name is re-exported here, so ``from cssci_platform.lib.synthetic import ...`` keeps working.
"""

from cssci_platform.lib.synthetic.common import (
    BODY,
    CORD,
    CSF,
    DISC,
    FIELD_OF_VIEW_MM,
    IN_PLANE_BLUR,
    MASK_LABEL,
    PLANES,
    SOFT_TISSUE,
    TISSUE_SIGNAL,
    Acquisition,
    Grid,
    Plane,
    SpineAnatomy,
    Vector3,
    acquire,
    allocate,
    base_manifest,
    bias_field,
    draw_spine_anatomy,
    ellipsoid,
    grid_for,
    image_path,
    paint,
    patient_rng,
    plane_spacing,
    random_date,
    sigmoid,
    texture_field,
    tissue_labels,
    write_manifest,
    write_volume,
)
from cssci_platform.lib.synthetic.metastasis import (
    LESION_PATTERNS,
    MAX_VERTEBRAE_INVOLVED,
    METASTASIS_CENTERS,
    METASTASIS_CLASSES,
    METASTASIS_COLUMNS,
    METASTASIS_SEQUENCES,
    PATTERN_SIGNAL,
    MetastasisCenter,
    MetastasisClass,
    MetastasisPatient,
    body_centre_yz,
    draw_metastasis_patient,
    epidural_extension,
    lesion_signal_map,
    metastasis_levels,
    metastasis_manifest,
    metastasis_table_row,
    metastasis_truth_row,
    render_metastasis_patient,
    sample_metastasis_patients,
    vertebral_lesion,
    write_metastasis_cohort,
)
from cssci_platform.lib.synthetic.sci import (
    ASIA_GRADES,
    DL_RECT_MARGIN_MM,
    IANR_GOOD_THRESHOLD,
    IANR_LOGIT_COEFFICIENTS,
    IANR_MAX,
    IANR_SCALE,
    INJURY_SITES,
    SCI_CENTERS,
    SCI_COLUMNS,
    SCI_IMAGE_NAMES,
    SCI_OUTCOME_COEFFICIENTS,
    SCI_PROTOCOL_LAYOUTS,
    SCI_PROTOCOLS,
    SCI_STANDARDIZATION,
    UEMS_ADMISSION_MEAN,
    UEMS_ADMISSION_SD,
    UEMS_CHANGE_INTERCEPT,
    UEMS_CHANGE_SCALE,
    UEMS_MAX,
    SciCenter,
    SciLesionShape,
    SciPatient,
    SciProtocol,
    SciProtocolLayout,
    check_protocol,
    draw_ianr_clinical,
    draw_sci_patient,
    ianr_logit_extra,
    ianr_score,
    injury_level_rectangle,
    lesion_signal,
    render_sci_patient,
    render_sci_plane,
    sample_sci_patients,
    sci_columns,
    sci_imaging_logit,
    sci_manifest,
    sci_outcome_value,
    sci_table_row,
    sci_true_logit,
    sci_truth_row,
    second_rater_lesion,
    uems_one_year,
    upper_limb_outcomes,
    write_sci_cohort,
)

__all__ = [name for name in dir() if not name.startswith("_")]
