"""A risk group names the class, the direction and the threshold it was cut at (issue 16 bug 6): 'high' alone hid
that it meant P(good outcome) >= threshold, the opposite of what a clinician reads as high risk."""

import math

import pandas as pd
from sklearn.linear_model import LogisticRegression

from cssci_platform.lib.scoring import score


def fitted() -> tuple[LogisticRegression, pd.DataFrame]:
    x = pd.DataFrame({"rad__a": [0.0, 0.1, 0.2, 0.8, 0.9, 1.0]})
    model = LogisticRegression().fit(x, ["0", "0", "0", "1", "1", "1"])
    return model, x


def test_a_binary_risk_group_names_the_outcome_class_direction_and_threshold() -> None:
    model, x = fitted()
    positive = score(model, x.iloc[[5]], "Rad", ["0", "1"], 0.5, "good_outcome")
    negative = score(model, x.iloc[[0]], "Rad", ["0", "1"], 0.5, "good_outcome")
    assert positive.risk_group == "high P(good_outcome=1): >= 0.500"
    assert negative.risk_group == "low P(good_outcome=1): < 0.500"


def test_without_a_frozen_threshold_no_group_is_claimed() -> None:
    model, x = fitted()
    assert score(model, x.iloc[[5]], "Rad", ["0", "1"], math.nan, "good_outcome").risk_group == (
        "no threshold (P(good_outcome=1) not cut)"
    )


def test_a_multiclass_risk_group_names_the_most_probable_class_of_the_outcome() -> None:
    x = pd.DataFrame({"rad__a": [0.0, 0.1, 0.5, 0.6, 0.9, 1.0]})
    model = LogisticRegression().fit(x, ["lung", "lung", "breast", "breast", "kidney", "kidney"])
    assert score(model, x.iloc[[0]], "Rad", ["breast", "kidney", "lung"], math.nan, "primary_site").risk_group == (
        "most probable primary_site: lung"
    )
