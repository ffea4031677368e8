"""The closing summary suggests a larger synthetic cohort only when a champion's test set is too small for the report
to state its numbers without a warning (the default demo, sized for 200 patients since issue 18, has 54 test
patients and no longer needs the suggestion)."""

from types import SimpleNamespace

from cssci_platform.cli.output import _small_test_set
from cssci_platform.lib.report.tables import MIN_TEST_PATIENTS


def test_a_small_test_set_gets_the_larger_cohort_hint() -> None:
    assert _small_test_set([SimpleNamespace(test_n=54.0), SimpleNamespace(test_n=MIN_TEST_PATIENTS - 1.0)])


def test_a_test_set_large_enough_or_unknown_gets_none() -> None:
    assert not _small_test_set([SimpleNamespace(test_n=54.0), SimpleNamespace(test_n=float(MIN_TEST_PATIENTS))])
    assert not _small_test_set([SimpleNamespace(test_n=None)])
