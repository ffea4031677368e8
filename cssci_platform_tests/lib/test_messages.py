"""Messages: quoted values and shortened texts are bounded and say how long the original was; markdown tables."""

from __future__ import annotations

import pytest

from cssci_platform.lib.messages import markdown_table, quote_value, shorten


def test_a_short_value_is_quoted_whole() -> None:
    assert quote_value("abc") == "'abc'"
    assert quote_value(None) == "None"


def test_a_ten_megabyte_value_keeps_its_first_80_characters_and_its_length() -> None:
    quoted = quote_value("x" * 10_485_760)
    assert quoted == repr("x" * 80) + "… (10485760 characters)"


def test_line_breaks_cannot_forge_log_lines() -> None:
    assert "\n" not in quote_value("a\nERROR forged line")


def test_the_limit_is_the_callers() -> None:
    assert quote_value("abcdef", limit=3) == "'abc'… (6 characters)"


def test_a_long_non_string_value_is_cut_too() -> None:
    assert quote_value(list(range(1000))).endswith("characters)")
    assert len(quote_value(list(range(1000)))) < 120


def test_shorten_keeps_a_normal_path_and_cuts_a_huge_one_unquoted() -> None:
    assert shorten("images/P1.nii.gz") == "images/P1.nii.gz"
    assert shorten("d" * 1000, limit=10) == "dddddddddd… (1000 characters)"


def test_markdown_table_has_a_header_a_rule_and_one_line_per_row() -> None:
    table = markdown_table(["model", "AUC"], [["Rad_LR", "0.812"], ["DL_SVM", 0.7]])
    assert table == "| model | AUC |\n|---|---|\n| Rad_LR | 0.812 |\n| DL_SVM | 0.7 |"


def test_markdown_table_cells_cannot_break_the_table() -> None:
    table = markdown_table(["problem"], [["a | b\nsecond line"]])
    assert table.splitlines()[2] == "| a \\| b second line |"


def test_markdown_table_refuses_a_row_of_the_wrong_width() -> None:
    with pytest.raises(ValueError, match="row 0 has 1 cells for 2 headers"):
        markdown_table(["model", "AUC"], [["Rad_LR"]])
