"""Data files: numbers only, and every problem reported with its line number."""

from __future__ import annotations

import numpy as np
import pytest

from pushforward.data.csv import DataFileError, load_table, save_table


def write(tmp_path, text, name="d.csv"):
    p = tmp_path / name
    p.write_text(text)
    return p


def test_header_and_delimiters(tmp_path):
    x, cols = load_table(write(tmp_path, "a,b\n1,2\n3,4.5e-1\n"))
    assert cols == ["a", "b"]
    np.testing.assert_array_equal(x, [[1, 2], [3, 0.45]])
    x, cols = load_table(write(tmp_path, "1\t2\n3\t4\n", "d.tsv"))
    assert cols is None and x.shape == (2, 2)
    x, _ = load_table(write(tmp_path, "1 2  3\n4 5 6\n", "d.txt"))
    assert x.shape == (2, 3)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("a,b\n1,2\n3\n", "line 3: expected 2 columns, got 1"),
        ("1,2\n\n3,4\n", "line 2: empty row"),
        ("1,2\n,\n", "line 2: empty row"),
        ("a,b\n1,2\n3,x\n", "line 3, column 2: 'x' is not a number"),
        ("1,2\n3,nan\n", "line 2, column 2: missing value"),
        ("1,2\n3,inf\n", "line 2, column 2: non-finite value"),
        ("1,2\n3,\n", "line 2, column 2: missing value"),
        ("a,b\n", "no data rows"),
        ("", "the file is empty"),
    ],
)
def test_malformed_text_files(tmp_path, text, message):
    with pytest.raises(DataFileError, match=message.replace("(", r"\(")):
        load_table(write(tmp_path, text))


def test_npy_checks(tmp_path):
    np.save(tmp_path / "a.npy", np.array([[1.0, np.nan]]))
    with pytest.raises(DataFileError, match="row 0, column 2: non-finite"):
        load_table(tmp_path / "a.npy")
    np.save(tmp_path / "b.npy", np.array(["x", "y"]))
    with pytest.raises(DataFileError, match="numeric"):
        load_table(tmp_path / "b.npy")
    np.save(tmp_path / "c.npy", np.array([{"a": 1}], dtype=object), allow_pickle=True)
    with pytest.raises(DataFileError, match=r"without pickle|numeric"):
        load_table(tmp_path / "c.npy")
    (tmp_path / "d.npy").write_bytes(b"junk")
    with pytest.raises(DataFileError):
        load_table(tmp_path / "d.npy")
    with pytest.raises(FileNotFoundError):
        load_table(tmp_path / "missing.csv")


def test_binary_file_is_rejected(tmp_path):
    (tmp_path / "b.csv").write_bytes(b"\xff\xfe\x00\x01")
    with pytest.raises(DataFileError):
        load_table(tmp_path / "b.csv")


def test_save_round_trip(tmp_path):
    x = np.random.default_rng(0).normal(size=(5, 3))
    for name in ("r.csv", "r.npy"):
        save_table(tmp_path / name, x, ["a", "b", "c"])
        y, _ = load_table(tmp_path / name)
        np.testing.assert_allclose(y, x, rtol=1e-8)
