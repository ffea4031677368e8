"""study_outcome: the label the study models, derived from the manifest's outcome columns by the config's rule."""

import dagster as dg
import pandas as pd

from cssci_platform.lib.cohort import CohortSpec
from cssci_platform.lib.outcome_rules import SCORE_SUFFIX, OutcomeRuleError, Rule, derive_labels
from cssci_platform.lib.warehouse import replace_rows
from cssci_platform.resources.cohort import CohortResource
from cssci_platform.resources.warehouse import WarehouseResource


class StudyOutcomeConfig(dg.Config):
    name: str | None = None  # default: the manifest's first outcome, as is
    source: str | None = None  # manifest outcome the label is computed from (default: name)
    rule: Rule = "as_is"
    threshold: float | None = None  # at_least
    baseline: str | None = None  # change_above_mean: clinical variable at admission


@dg.asset(group_name="modeling", kinds={"duckdb"}, deps=[dg.AssetKey("cohort_manifest"), dg.AssetKey("followup_outcomes")])
def study_outcome(config: StudyOutcomeConfig, cohort: CohortResource, warehouse: WarehouseResource) -> dg.MaterializeResult:
    """Rows `outcome = <name>` (and `<name>__score`, the thresholded quantity) in the `outcomes` table."""
    spec = cohort.load().spec
    name, source = _names(config, spec)
    if name == source:
        return dg.MaterializeResult(metadata={"outcome": name, "rule": "as_is", "note": "the manifest column is the label"})
    raw = warehouse.frame("SELECT p.patient_key, p.cohort, o.value, o.outcome_date FROM patients p LEFT JOIN outcomes o "
                          "ON o.patient_key = p.patient_key AND o.outcome = ?", [source]).to_pandas().set_index("patient_key")
    baseline = _baseline(warehouse, config.baseline, spec) if config.rule == "change_above_mean" else None
    try:
        derived = derive_labels(raw["value"], config.rule, config.threshold, baseline, development=raw["cohort"] == "development")
    except OutcomeRuleError as error:
        raise dg.Failure(f"outcome '{name}' from '{source}' ({config.rule}): {error}") from None
    rows = _rows(derived, raw["outcome_date"], name)
    with warehouse.connect() as con:
        replace_rows(con, "outcomes", {"outcome": name}, [r for r in rows if r["outcome"] == name])
        replace_rows(con, "outcomes", {"outcome": name + SCORE_SUFFIX}, [r for r in rows if r["outcome"] != name])
    counts = derived["label"].value_counts().sort_index()
    return dg.MaterializeResult(metadata={
        "outcome": name, "source": source, "rule": config.rule,
        "threshold": float(derived["threshold"].iloc[0]) if "threshold" in derived and len(derived) else float("nan"),
        "labelled": int(derived["label"].notna().sum()), "unknown": int(derived["label"].isna().sum()),
        "classes": dg.MetadataValue.md("\n".join(["| label | patients |", "|---|---|"] + [f"| {k} | {v} |" for k, v in counts.items()])),
    })


def _names(config: StudyOutcomeConfig, spec: CohortSpec) -> tuple[str, str]:
    declared = list(spec.outcomes)
    name = config.name or (declared[0] if declared else None)
    source = config.source or name
    if source not in spec.outcomes:
        raise dg.Failure(f"outcome source '{source}' is not declared in the manifest (outcomes: {declared}); "
                         "set outcome.source in the experiment config or declare it under outcomes: in cohort.yaml")
    numeric = spec.outcomes[source].type == "continuous"
    if config.rule != "as_is" and not numeric:
        raise dg.Failure(f"rule '{config.rule}' needs a continuous outcome, but '{source}' is {spec.outcomes[source].type}")
    if name in spec.outcomes and name != source:
        raise dg.Failure(f"outcome name '{name}' is already a manifest outcome; choose another name for the derived label")
    return name, source


def _baseline(warehouse: WarehouseResource, variable: str | None, spec: CohortSpec) -> pd.Series:
    if variable not in spec.clinical or spec.clinical[variable].type != "continuous":
        raise dg.Failure(f"baseline '{variable}' must be a continuous clinical variable of the manifest "
                         f"(continuous: {[n for n, v in spec.clinical.items() if v.type == 'continuous']})")
    rows = warehouse.frame("SELECT patient_key, value_number FROM clinical WHERE variable = ?", [variable]).to_pandas()
    return rows.set_index("patient_key")["value_number"]


def _rows(derived: pd.DataFrame, dates: pd.Series, name: str) -> list[dict]:
    rows = []
    for key, label, score in derived[["label", "score"]].itertuples():
        if label is None:
            continue
        date = dates.get(key)
        date = None if date is None or pd.isna(date) else date
        rows.append({"patient_key": key, "outcome": name, "value": label, "outcome_date": date})
        if pd.notna(score):
            rows.append({"patient_key": key, "outcome": name + SCORE_SUFFIX, "value": repr(float(score)), "outcome_date": date})
    return rows
