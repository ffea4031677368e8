"""study_outcome: the label the study models, derived from the manifest's outcome columns by the config's rule."""

import dagster as dg
import pandas as pd

from cssci_platform.lib.cohort import CohortSpec
from cssci_platform.lib.messages import markdown_table
from cssci_platform.lib.outcome_rules import SCORE_SUFFIX, OutcomeRuleError, OutcomeSettings, derive_labels, label_rows
from cssci_platform.lib.queries import modeling as queries
from cssci_platform.lib.warehouse import replace_rows
from cssci_platform.resources.cohort import CohortResource
from cssci_platform.resources.study import StudyResource
from cssci_platform.resources.warehouse import WarehouseResource


@dg.asset(
    group_name="modeling", kinds={"duckdb"}, deps=[dg.AssetKey("cohort_manifest"), dg.AssetKey("followup_outcomes")]
)
def study_outcome(study: StudyResource, cohort: CohortResource, warehouse: WarehouseResource) -> dg.MaterializeResult:
    """Rows `outcome = <name>` (and `<name>__score`, the thresholded quantity) in the `outcomes` table."""
    settings, spec = study.config().outcome, cohort.load().spec
    name, source = settings.name, settings.source_outcome
    _check_names(settings, spec)
    if name == source:
        return dg.MaterializeResult(
            metadata={"outcome": name, "rule": "as_is", "note": "the manifest column is the label"}
        )
    with warehouse.connect() as con:
        raw = queries.patients_with_outcome_source(con, source).to_pandas().set_index("patient_key")
        baseline = _baseline(con, settings.baseline, spec) if settings.rule == "change_above_mean" else None
    try:
        derived = derive_labels(
            raw["value"], settings.rule, settings.threshold, baseline, development=raw["cohort"] == "development"
        )
    except OutcomeRuleError as error:
        raise dg.Failure(f"outcome '{name}' from '{source}' ({settings.rule}): {error}") from None
    rows = label_rows(derived, raw["outcome_date"], name)
    with warehouse.connect() as con:
        replace_rows(con, "outcomes", {"outcome": name}, [r for r in rows if r["outcome"] == name])
        replace_rows(con, "outcomes", {"outcome": name + SCORE_SUFFIX}, [r for r in rows if r["outcome"] != name])
    counts = derived["label"].value_counts().sort_index()
    return dg.MaterializeResult(
        metadata={
            "outcome": name,
            "source": source,
            "rule": settings.rule,
            "threshold": float(derived["threshold"].iloc[0])
            if "threshold" in derived and len(derived)
            else float("nan"),
            "labelled": int(derived["label"].notna().sum()),
            "unknown": int(derived["label"].isna().sum()),
            "classes": dg.MetadataValue.md(
                markdown_table(["label", "patients"], counts.items())
            ),
        }
    )


def _check_names(settings: OutcomeSettings, spec: CohortSpec) -> None:
    declared, name, source = list(spec.outcomes), settings.name, settings.source_outcome
    if source not in spec.outcomes:
        raise dg.Failure(
            f"outcome source '{source}' is not declared in the manifest (outcomes: {declared}); "
            "set outcome.source in the experiment config or declare it under outcomes: in cohort.yaml"
        )
    if settings.rule != "as_is" and spec.outcomes[source].type != "continuous":
        raise dg.Failure(
            f"rule '{settings.rule}' needs a continuous outcome, but '{source}' is {spec.outcomes[source].type}"
        )
    if name in spec.outcomes and name != source:
        raise dg.Failure(
            f"outcome name '{name}' is already a manifest outcome; choose another name for the derived label"
        )


def _baseline(con, variable: str | None, spec: CohortSpec) -> pd.Series:
    if variable not in spec.clinical or spec.clinical[variable].type != "continuous":
        raise dg.Failure(
            f"baseline '{variable}' must be a continuous clinical variable of the manifest "
            f"(continuous: {[n for n, v in spec.clinical.items() if v.type == 'continuous']})"
        )
    return queries.clinical_numbers(con, variable).to_pandas().set_index("patient_key")["value_number"]
