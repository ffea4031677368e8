"""Table cells and rules the report prints: the AUC with its interval ("0.82 (0.71-0.93)"), why an interval is
missing, the outcome's level names, and when a test cohort is too small for its numbers to mean anything."""

from __future__ import annotations

import html
import math
from collections.abc import Mapping, Sequence

import pandas as pd

# the smallest test cohort whose AUC and threshold metrics the report presents without a warning at the top
MIN_TEST_PATIENTS = 30
MIN_TEST_PATIENTS_PER_CLASS = 10


def small_test_set_warning(class_counts: Mapping[str, int]) -> str | None:
    """The warning the report prints at its top when the test cohort is too small for its numbers to mean
    anything: fewer than `MIN_TEST_PATIENTS` patients with a known outcome, or fewer than
    `MIN_TEST_PATIENTS_PER_CLASS` in the smaller class (a class with none counts). `class_counts`: outcome level
    name -> test patients. None when the test cohort is large enough."""
    total = sum(class_counts.values())
    smallest = min(class_counts.values(), default=0)
    if total >= MIN_TEST_PATIENTS and smallest >= MIN_TEST_PATIENTS_PER_CLASS and len(class_counts) >= 2:
        return None
    counts = ", ".join(f"{count} {name}" for name, count in class_counts.items()) or "no patient with a known outcome"
    reasons = []
    if total < MIN_TEST_PATIENTS:
        reasons.append(f"fewer than {MIN_TEST_PATIENTS} patients")
    if smallest < MIN_TEST_PATIENTS_PER_CLASS or len(class_counts) < 2:
        reasons.append(f"fewer than {MIN_TEST_PATIENTS_PER_CLASS} patients in the smaller outcome class")
    return (
        f"Small test set: the test cohort has {total} patients with a known outcome ({counts}): "
        f"{' and '.join(reasons)}. Its AUCs, intervals and threshold metrics are too imprecise to support claims; "
        "read them as a check that the pipeline runs, not as the model's performance."
    )


def interval_text(estimate: float, low: float, high: float, digits: int = 3) -> str:
    """'0.823 (0.712-0.934)'; the estimate alone when an interval bound is missing; '' without an estimate."""
    if not _finite(estimate):
        return ""
    if not (_finite(low) and _finite(high)):
        return f"{estimate:.{digits}f}"
    return f"{estimate:.{digits}f} ({low:.{digits}f}-{high:.{digits}f})"


def missing_interval_reason(positives: int, negatives: int) -> str | None:
    """Why a cohort's AUC interval cannot be computed, or None when it can (two patients per class at least)."""
    if positives == 0 or negatives == 0:
        present = "positive" if positives else "negative"
        return f"only one outcome class ({positives + negatives} patients, all {present}): AUC and interval undefined"
    if min(positives, negatives) < 2:
        return (
            f"too few patients for an interval ({positives} positive, {negatives} negative; DeLong's variance needs "
            "two per class)"
        )
    return None


def outcome_level_names(outcome: str, classes: Sequence[str] | None) -> dict[str, str]:
    """Stored label -> the name printed in tables: a binary outcome without levels reads '<outcome>: no' (0) and
    '<outcome>: yes' (1); declared levels are printed as declared."""
    if classes and len(classes) > 2:
        return {str(level): str(level) for level in classes}
    if classes and set(map(str, classes)) != {"0", "1"}:
        return {str(level): str(level) for level in classes}
    return {"0": f"{outcome}: no", "1": f"{outcome}: yes", "0.0": f"{outcome}: no", "1.0": f"{outcome}: yes"}


def number_cells(frame: pd.DataFrame, digits: int = 3) -> pd.DataFrame:
    """Floats as fixed-point text (missing: an en dash), other cells as they are."""
    shown = frame.copy()
    for column in shown.columns:
        if pd.api.types.is_float_dtype(shown[column]):
            shown[column] = [f"{v:.{digits}f}" if _finite(v) else "\u2013" for v in shown[column]]
    return shown


def html_table(frame: pd.DataFrame, css_class: str, footnotes: Sequence[str] = (), escape: bool = True) -> str:
    """`frame` as an HTML table (no index) with its footnotes below it."""
    body = frame.to_html(index=False, classes=css_class, escape=escape, na_rep="\u2013", border=0)
    notes = "".join(f'<p class="note">{html.escape(note)}</p>' for note in footnotes)
    return body + notes


def _finite(value: object) -> bool:
    return isinstance(value, int | float) and math.isfinite(float(value))
