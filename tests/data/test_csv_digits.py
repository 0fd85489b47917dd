"""CSV numbers are ASCII decimal: what Python's float() also reads (``1_000``, Arabic-Indic and full-width
digits) is refused with the row and column, never read as a number."""

from __future__ import annotations

import pytest

from pushforward.data.csv import DataFileError, load_table


@pytest.mark.parametrize(
    "cell",
    [
        "1_000",
        "1_0.5",
        "\u0661\u0662",
        "\u0663.\u0665",
        "\uff11\uff12",
        "\uff11.\uff15e\uff13",
        "\u0968\u0969",
        "1e1_0",
    ],
)
def test_non_ascii_or_separated_digits_are_refused_with_row_and_column(tmp_path, cell):
    path = tmp_path / "data.csv"
    path.write_text(f"a,b\n1.0,2.0\n3.0,{cell}\n", encoding="utf-8")
    with pytest.raises(DataFileError, match=r"line 3, column 2: .*not an ASCII decimal number"):
        load_table(path)


def test_a_first_row_of_such_digits_is_not_taken_for_a_header(tmp_path):
    path = tmp_path / "data.csv"
    path.write_text("\u0661,\u0662\n3,4\n", encoding="utf-8")
    with pytest.raises(DataFileError, match="line 1, column 1"):
        load_table(path)


@pytest.mark.parametrize(
    "cell, value", [("1000", 1000.0), ("-1.5e3", -1500.0), ("+.5", 0.5), ("7.", 7.0), ("2E-2", 0.02)]
)
def test_ascii_decimals_still_read(tmp_path, cell, value):
    path = tmp_path / "data.tsv"
    path.write_text(f"a\tb\n1\t{cell}\n", encoding="utf-8")
    x, columns = load_table(path)
    assert columns == ["a", "b"] and x[0, 1] == value


def test_infinity_is_still_reported_as_non_finite(tmp_path):
    path = tmp_path / "data.csv"
    path.write_text("a\n1\n-Infinity\n", encoding="utf-8")
    with pytest.raises(DataFileError, match="line 3, column 1: non-finite"):
        load_table(path)
