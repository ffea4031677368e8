"""The report, publication grade (issue 16): Table 1 by cohort and outcome with level names, performance tables with
the champions first and the zoo in an appendix, "0.82 (0.71-0.93)" intervals that never read "nan-nan", numbered
and captioned figures and tables, the small-test-set warning, the reporting checklist. Small synthetic binary study;
every number the tables print comes from `lib/evaluation` (checked against it here)."""

from __future__ import annotations

import re

import numpy as np
import pandas as pd
import pytest

from cssci_platform.lib.evaluation import auc_interval
from cssci_platform.lib.outcome_rules import OutcomeSettings
from cssci_platform.lib.report.checklist import CHECKLIST, TO_BE_WRITTEN, fill_checklist, run_facts
from cssci_platform.lib.report.inputs import MethodSettings, ReportInputs
from cssci_platform.lib.report.study import build_report, build_study_report, featured_models
from cssci_platform.lib.report.tables import (
    MIN_TEST_PATIENTS,
    interval_text,
    missing_interval_reason,
    small_test_set_warning,
)
from cssci_platform.lib.study_config import StudyConfig

MODELS = pd.DataFrame(
    [
        ("m1", "Rad_LR", "Rad", "LR", True, 0.81),
        ("m2", "Rad_SVM", "Rad", "SVM", False, 0.78),
        ("m3", "Clinical_LR", "Clinical", "LR", True, 0.70),
        ("m4", "Clinical_KNN", "Clinical", "KNN", False, 0.60),
        ("m5", "Rad_KNN", "Rad", "KNN", False, 0.55),
    ],
    columns=["run_id", "result_name", "signature", "classifier", "champion", "cv_auc_mean"],
).assign(mode="leakage_safe", threshold=0.5, split="holdout_8_2", fold="holdout", registered_model=None)


def study(n_test: int = 8, n_validation: int = 6, seed: int = 0, validation_one_class: bool = False) -> ReportInputs:
    """A binary study: 40 training patients, `n_test` test and `n_validation` validation patients."""
    rng = np.random.default_rng(seed)
    roles = ["train"] * 40 + ["test"] * n_test + ["validation"] * n_validation
    keys = [f"P{i:03d}" for i in range(len(roles))]
    y = rng.integers(0, 2, len(keys))
    y[40:42] = [0, 1]  # both classes in the test cohort
    if validation_one_class:
        y[40 + n_test :] = 1
    rows = []
    for run_id, strength in zip(MODELS["run_id"], (2.0, 1.5, 1.0, 0.5, 0.2), strict=True):
        risk = 1 / (1 + np.exp(-(strength * (y - 0.5) * 2 + rng.normal(0, 1, len(keys)))))
        for key, role, q in zip(keys, roles, risk, strict=True):
            for label, p in (("0", 1 - q), ("1", q)):
                rows.append({"patient_key": key, "role": role, "mode": "leakage_safe", "class_label": label,
                             "probability": p, "model_name": run_id, "fold": "holdout"})
    clinical = pd.DataFrame({"patient_key": keys, "age": rng.normal(60, 10, len(keys)),
                             "sex": rng.choice(["F", "M"], len(keys))})
    return ReportInputs(
        experiment="toy",
        predictions=pd.DataFrame(rows),
        outcomes=pd.DataFrame({"patient_key": keys, "label": y.astype(str)}),
        models=MODELS,
        clinical=clinical,
        clinical_types={"age": "continuous", "sex": "categorical"},
        method=MethodSettings(cv_folds=5),
        outcome="good_outcome",
        centers=pd.DataFrame({"patient_key": keys, "center": [f"center_{'AB'[i % 2]}" for i in range(len(keys))],
                              "cohort": ["development"] * (40 + n_test) + ["prospective"] * n_validation}),
    )


@pytest.fixture(scope="module")
def small() -> ReportInputs:
    return study()


@pytest.fixture(scope="module")
def small_page(small: ReportInputs) -> str:
    return build_report(small)


def _text(page: str) -> str:
    return re.sub(r"data:image/png;base64,[A-Za-z0-9+/=]+", "", page)


# ----------------------------------------------------------------------------------------- small test set warning


def test_the_small_test_set_rule_counts_patients_and_the_smaller_class() -> None:
    eight = small_test_set_warning({"good": 5, "poor": 3})
    assert eight is not None and "8 patients" in eight and "5 good, 3 poor" in eight
    assert small_test_set_warning({"good": 20, "poor": 20}) is None
    unbalanced = small_test_set_warning({"good": 35, "poor": 5})
    assert unbalanced is not None and f"fewer than {MIN_TEST_PATIENTS}" not in unbalanced
    assert "smaller outcome class" in unbalanced
    assert small_test_set_warning({"good": 12, "poor": 0}) is not None


def test_a_small_test_set_is_announced_at_the_top_with_patients_per_class(small_page: str) -> None:
    top = small_page.split("<h2")[0]
    assert 'class="warning"' in top and "Small test set" in top
    match = re.search(r"the test cohort has (\d+) patients with a known outcome \((\d+) good_outcome: yes, "
                      r"(\d+) good_outcome: no\)", top)
    assert match and int(match[1]) == 8 and int(match[2]) + int(match[3]) == 8


def test_a_large_test_set_has_no_warning() -> None:
    page = build_report(study(n_test=60, seed=3))
    assert "Small test set" not in page


# ---------------------------------------------------------------------------------------------- intervals


def test_intervals_read_estimate_then_bounds_and_say_why_when_missing() -> None:
    assert interval_text(0.8234, 0.7111, 0.9349) == "0.823 (0.711-0.935)"
    assert interval_text(0.8, float("nan"), float("nan")) == "0.800"
    assert "only one outcome class" in (missing_interval_reason(6, 0) or "")
    assert "too few patients" in (missing_interval_reason(1, 7) or "")
    assert missing_interval_reason(3, 4) is None


def test_performance_cells_use_the_interval_of_lib_evaluation_and_never_print_nan(small: ReportInputs,
                                                                                 small_page: str) -> None:
    text = _text(small_page)
    assert not re.search(r"\bnan\b", text, re.IGNORECASE) and "nan-nan" not in text
    test_table = text.split("<h3>Test</h3>")[1].split("</table>")[0]
    predictions = small.predictions
    rows = predictions[(predictions["model_name"] == "m1") & (predictions["role"] == "test")
                       & (predictions["class_label"] == "1")]
    y = rows["patient_key"].map(dict(zip(small.outcomes["patient_key"], small.outcomes["label"]))).astype(int)
    ci = auc_interval(y.to_numpy(), rows["probability"].to_numpy())
    assert f"{ci.auc:.3f} ({ci.low:.3f}-{ci.high:.3f})" in test_table


def test_a_cohort_with_one_outcome_class_keeps_its_rows_and_says_why() -> None:
    page = _text(build_report(study(validation_one_class=True)))
    validation = page.split("<h3>Validation (prospective)</h3>")[1].split("<h2")[0]
    assert "Rad_LR" in validation and "not estimable" in validation
    assert "only one outcome class (6 patients, all positive)" in validation
    assert "nan" not in validation.lower()


# --------------------------------------------------------------------------------------- layout and captions


def test_every_figure_and_table_is_numbered_in_order_with_a_caption(small: ReportInputs) -> None:
    report = build_study_report(small)
    figure_numbers = [int(n) for n in re.findall(r"<figcaption><b>Figure (\d+)\.</b>", report.html)]
    table_numbers = [int(n) for n in re.findall(r'<p class="table-caption"><b>Table (\d+)\.</b>', report.html)]
    assert figure_numbers == list(range(1, len(report.figures) + 1)) and len(report.figures) >= 5
    assert table_numbers == list(range(1, len(report.tables) + 1)) and len(report.tables) >= 6
    assert all(item.caption and item.title for item in [*report.figures, *report.tables])
    keys = [item.key for item in report.figures]
    assert {"roc_train", "roc_test", "roc_validation", "calibration_test", "decision_curves_test"} <= set(keys)
    assert len(set(keys)) == len(keys) and len({t.key for t in report.tables}) == len(report.tables)


def test_table_one_is_split_by_cohort_and_outcome_with_level_names(small: ReportInputs) -> None:
    report = build_study_report(small)
    [table] = [t for t in report.tables if t.key == "table1_by_cohort"]
    columns = list(table.frame.columns)
    for cohort in ("Training", "Test", "Validation"):
        assert f"{cohort}: good_outcome: yes" in columns and f"{cohort}: good_outcome: no" in columns
        assert f"{cohort}: p" in columns
    assert not {"0", "1"} & set(columns)
    first = table.frame.iloc[0]
    training = small.predictions[small.predictions["role"] == "train"]["patient_key"].unique()
    known = small.outcomes.set_index("patient_key").loc[training, "label"]
    assert str(int((known == "1").sum())) in first["Training: good_outcome: yes"]


def test_performance_shows_champions_and_best_per_signature_first_and_the_zoo_in_an_appendix(
    small_page: str,
) -> None:
    featured = featured_models(MODELS)
    assert list(featured["result_name"]) == ["Rad_LR", "Clinical_LR"]  # champions are the best here
    test_table = small_page.split("<h3>Test</h3>")[1].split("</table>")[0]
    assert "Rad_LR" in test_table and "Clinical_LR" in test_table and "Rad_KNN" not in test_table
    appendix = small_page.split('id="appendix"')[1]
    zoo = appendix.split("<details>")[2].split("</details>")[0]  # training, test, validation
    assert "Rad_KNN" in zoo and "Clinical_KNN" in zoo


def test_best_per_signature_is_shown_when_it_is_not_the_champion() -> None:
    models = MODELS.assign(champion=[False, True, True, False, False])  # Rad_SVM champion, Rad_LR best CV
    featured = featured_models(models)
    assert list(featured["result_name"]) == ["Rad_SVM", "Clinical_LR", "Rad_LR"]


def test_calibration_table_has_short_headers_and_footnotes(small_page: str) -> None:
    table = small_page.split('id="table-calibration_test"')[1].split("</div>")[0]
    headers = re.findall(r"<th>(.*?)</th>", table)
    assert "Slope (ideal 1)" in headers and all(len(h) <= 20 for h in headers)
    assert "df = G" in table.split("</table>")[1]  # the Hosmer-Lemeshow convention, as a footnote


# ----------------------------------------------------------------------------------------------- checklist


def _config() -> StudyConfig:
    return StudyConfig(
        name="toy",
        cohort={"synthetic": {"protocol": "demo"}},
        outcome=OutcomeSettings(name="good_outcome", source="ianr", rule="at_least", threshold=37),
        reference="Doe et al. 2024",
    )


def test_checklist_items_are_filled_from_the_run_and_the_rest_left_to_the_authors(small: ReportInputs) -> None:
    inputs = ReportInputs(**{**small.__dict__, "study": _config()})
    items = {(i.item.guideline, i.item.number): i for i in fill_checklist(run_facts(inputs))}
    assert len(items) == len(CHECKLIST)
    assert items[("TRIPOD+AI", "8a")].text == "good_outcome: 1 when 'ianr' >= 37.0"
    assert items[("TRIPOD+AI", "6a")].text == "2 centers: center_A, center_B"
    assert "holdout_8_2" in items[("TRIPOD+AI", "12a")].text
    assert "ComBat" in items[("CLEAR", "22")].text and "Doe et al. 2024" == items[("TRIPOD+AI", "18c")].text
    for unknown in (("TRIPOD+AI", "17"), ("TRIPOD+AI", "5b"), ("TRIPOD+AI", "14")):
        assert items[unknown].text == TO_BE_WRITTEN and not items[unknown].filled
    without_study = {(i.item.guideline, i.item.number): i for i in fill_checklist(run_facts(small))}
    assert without_study[("TRIPOD+AI", "8a")].text == TO_BE_WRITTEN  # no config: the outcome rule is unknown


def test_the_checklist_is_a_numbered_table_of_the_report(small_page: str) -> None:
    section = small_page.split('id="checklist"')[1].split("<h2")[0]
    assert "Reporting checklist (TRIPOD+AI, CLEAR)" in section and TO_BE_WRITTEN in section
    assert "2 centers: center_A, center_B" in section


# ----------------------------------------------------------------------------------------------- validation


def _validation_scores(inputs: ReportInputs, leave_out: str) -> pd.DataFrame:
    """validation_cohort_scores-shaped rows of the study's validation patients, one patient left out (as the query
    leaves out a patient whose outcome is unknown)."""
    rows = inputs.predictions[(inputs.predictions["role"] == "validation") & (inputs.predictions["class_label"] == "1")
                              & (inputs.predictions["patient_key"] != leave_out)]
    models = MODELS.set_index("run_id")
    outcome = dict(zip(inputs.outcomes["patient_key"], inputs.outcomes["label"], strict=True))
    return pd.DataFrame({
        "signature": rows["model_name"].map(models["signature"]), "result_name": rows["model_name"].map(
            models["result_name"]), "mode": rows["mode"], "fold": "holdout",
        "champion": rows["model_name"].map(models["champion"]), "registered_model": None, "model_version": None,
        "threshold": 0.5, "train_run": rows["model_name"], "patient_key": rows["patient_key"], "class_label": "1",
        "probability": rows["probability"], "scored_by": "predictions", "outcome": rows["patient_key"].map(outcome),
    })


def test_the_validation_numbers_are_those_validation_metrics_computes(small: ReportInputs) -> None:
    from cssci_platform.lib.report.validation import validation_performance_frame

    scores = _validation_scores(small, leave_out="P053")
    report = build_study_report(ReportInputs(**{**small.__dict__, "validation_scores": scores}))
    expected = validation_performance_frame(scores).set_index("result_name")
    [table] = [t for t in report.tables if t.key == "performance_validation"]
    rad = table.frame.set_index("Model").loc["Rad_LR (champion)"]
    assert rad["n"] == expected.loc["Rad_LR", "n"] == 5  # not the 6 validation rows of `predictions`
    assert rad["AUC (95% CI)"].startswith(f"{expected.loc['Rad_LR', 'auc']:.3f}")
    [roc] = [f for f in report.figures if f.key == "roc_validation"]
    assert "n = 5" in roc.caption
    [zoo] = [t for t in report.tables if t.key == "performance_validation_all_models"]
    assert len(zoo.frame) == len(MODELS)


def test_delong_p_values_below_a_thousandth_read_as_such() -> None:
    """A journal prints p < 0.001, never "0.000" (which reads as p = 0)."""
    page = build_report(study(n_test=400, seed=3))
    delong = page[page.index('class="dataframe delong"'):]
    delong = delong[: delong.index("</table>")]
    cells = re.findall(r"<td>([^<]*)</td>", delong)
    assert "&lt;0.001" in cells and "0.000" not in cells[-1:]


def test_table_one_names_each_test_by_a_letter_after_its_p_and_keeps_the_tests_in_the_csv(small: ReportInputs) -> None:
    """Journal style: a letter after each p and one footnote naming the tests. A last column naming each cohort's test
    ('Training: Chi-square; Test: Fisher's exact; ...') made the three-cohort table wider than the page and its rows
    tall (cervical_sci_ianr's report); the CSV keeps one test column per cohort."""
    report = build_study_report(small)
    [table] = [t for t in report.tables if t.key == "table1_by_cohort"]
    assert {"Training: test", "Test: test", "Validation: test"} <= set(table.frame.columns)
    assert "Test" not in table.frame.columns
    rendered = table.html or ""
    header = rendered[: rendered.index("</thead>")]
    assert ": test" not in header and ">Test<" not in header
    marked = [cell for cell in re.findall(r"<td>([^<]*)</td>", rendered) if re.fullmatch(r"[<\d.]+ \S", cell)]
    assert marked, "every p carries the letter of its test"
    letters = {cell.split(" ")[1] for cell in marked}
    footnote = re.findall(r'<p class="note">([^<]*)</p>', rendered)[-1]
    assert all(f"{letter} " in footnote for letter in letters)
