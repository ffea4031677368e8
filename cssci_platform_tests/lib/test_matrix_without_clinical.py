"""A manifest without clinical variables (the real sarcoma cohort has none) still gives every patient a matrix row.

Found by test_real_cohort.py: the clinical block of such a cohort has no columns and no rows, and the inner join
with it emptied the feature matrix ("no training patients in this split")."""

import pandas as pd
import polars as pl

from cssci_platform.lib.modeling.matrix import assemble, clinical_block


def test_a_cohort_without_clinical_variables_keeps_every_patient() -> None:
    patients = pl.DataFrame({"patient_key": ["P1", "P2"], "center": ["GE", "Siemens"], "cohort": ["development"] * 2})
    labels = pl.DataFrame({"patient_key": ["P1", "P2"], "label": ["0", "1"]})
    radiomics = pd.DataFrame(
        {"rad__T1__tumour__original__original_shape_VoxelVolume": [1.0, 2.0]},
        index=pd.Index(["P1", "P2"], name="patient_key"),
    )
    no_clinical = clinical_block(
        pl.DataFrame(
            schema={
                "patient_key": pl.String,
                "variable": pl.String,
                "value_number": pl.Float64,
                "value_text": pl.String,
            }
        ),
        {},
    )
    matrix = assemble(patients, labels, [radiomics, no_clinical])
    assert list(matrix.index) == ["P1", "P2"]
