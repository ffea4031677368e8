"""Follow-up files with continuous outcomes (IANR score, UEMS) are accepted when numeric, rejected otherwise."""

import polars as pl

from cssci_platform.lib.cohort import load_cohort
from cssci_platform.lib.inbox import read_followup
from cssci_platform.lib.synthetic import write_sci_cohort


def test_numeric_scores_are_recorded_and_text_is_rejected_with_its_line(tmp_path):
    manifest = write_sci_cohort(tmp_path, n_development=3, n_prospective=2, seed=5, protocol="ianr")
    path = tmp_path / "followup" / "outcomes.csv"
    rows, problems = read_followup(path, load_cohort(manifest))
    assert problems == [] and rows.height == 2 and set(rows["outcome"]) == {"ianr_6m"}
    table = pl.read_csv(path, infer_schema=False)
    bad = table.head(1).with_columns(pl.lit("forty").alias("value"))
    pl.concat([table, bad]).write_csv(path)
    rows, problems = read_followup(path, load_cohort(manifest))
    assert rows.height == 2
    assert problems == ["outcomes.csv line 4: value 'forty' of 'ianr_6m' is not a number (the outcome is continuous)"]
