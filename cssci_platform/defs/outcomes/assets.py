"""study_outcome: the label the study models, derived from the manifest's outcome columns by the config's rule."""

from typing import TYPE_CHECKING

import dagster as dg
import duckdb

from cssci_platform.lib.cohort import CohortSpec
from cssci_platform.lib.outcome_rules import (
    OutcomeRuleError,
    OutcomeSettings,
    check_baseline,
    check_outcome_names,
    class_counts_table,
    derived_outcome_names,
    label_rows,
    label_summary,
    study_labels,
)
from cssci_platform.lib.queries import modeling as queries
from cssci_platform.lib.warehouse import replace_rows
from cssci_platform.resources.cohort import CohortResource
from cssci_platform.resources.study import StudyResource
from cssci_platform.resources.warehouse import WarehouseResource

if TYPE_CHECKING:
    import pandas as pd


@dg.asset(
    group_name="outcomes", kinds={"duckdb"}, deps=[dg.AssetKey("cohort_manifest"), dg.AssetKey("followup_outcomes")]
)
def study_outcome(study: StudyResource, cohort: CohortResource, warehouse: WarehouseResource) -> dg.MaterializeResult:
    """Rows `outcome = <name>` (and `<name>__score`, the thresholded quantity) in the `outcomes` table."""
    settings, spec = study.config().outcome, cohort.load().spec
    name, source = settings.name, settings.source_outcome
    try:
        check_outcome_names(settings, spec)
        if name == source:
            return dg.MaterializeResult(
                metadata={"outcome": name, "rule": "as_is", "note": "the manifest column is the label"}
            )
        with warehouse.connect() as con:
            raw = queries.patients_with_outcome_source(con, source).to_pandas().set_index("patient_key")
            baseline = _baseline(con, settings, spec)
        derived = study_labels(settings, raw, baseline)
    except OutcomeRuleError as error:
        raise dg.Failure(str(error)) from None
    rows = label_rows(derived, raw["outcome_date"], name)
    with warehouse.connect() as con:
        for outcome in derived_outcome_names(name, source):
            replace_rows(con, "outcomes", {"outcome": outcome}, [r for r in rows if r["outcome"] == outcome])
    classes = dg.MetadataValue.md(class_counts_table(derived))
    return dg.MaterializeResult(metadata={**label_summary(settings, derived), "classes": classes})


def _baseline(con: duckdb.DuckDBPyConnection, settings: OutcomeSettings, spec: CohortSpec) -> "pd.Series | None":
    """The baseline values rule change_above_mean subtracts, by patient; None for the other rules."""
    if settings.rule != "change_above_mean":
        return None
    check_baseline(settings.baseline, spec)
    return queries.clinical_numbers(con, str(settings.baseline)).to_pandas().set_index("patient_key")["value_number"]
