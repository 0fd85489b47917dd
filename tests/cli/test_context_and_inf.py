"""Conditional models from one CSV (``--context-columns`` on fit, score, sample and report), columns matched
by name, and rows that score -inf named with the columns outside the support (never hidden)."""

from __future__ import annotations

import contextlib
import io

import numpy as np
import pytest
import torch

from pushforward.cli.main import main
from pushforward.data.csv import load_table

torch.set_num_threads(1)
TINY = ["--flow", "realnvp", "--layers", "2", "--hidden", "16", "--no-progress"]


def run(*argv):
    err, out = io.StringIO(), io.StringIO()
    with contextlib.redirect_stderr(err), contextlib.redirect_stdout(out):
        rc = main([str(a) for a in argv])
    return rc, out.getvalue(), err.getvalue()


@pytest.fixture(scope="module")
def conditional(tmp_path_factory):
    d = tmp_path_factory.mktemp("ctx")
    rng = np.random.default_rng(1)
    c = rng.normal(size=(300, 1))
    y = np.hstack([3.0 * c, rng.normal(size=(300, 1))]) + 0.3 * rng.normal(size=(300, 2))
    np.savetxt(d / "t.csv", np.hstack([y[:, :1], c, y[:, 1:]]), delimiter=",", header="y,c,z", comments="")
    m = d / "m.safetensors"
    rc, _, err = run(
        "fit", d / "t.csv", *TINY, "--context-columns", "c", "--steps", "200", "--lr", "0.01", "--out", m
    )
    assert rc == 0, err
    return d, m


def scores(stdout: str) -> np.ndarray:
    return np.array([float(v) for v in stdout.split()[1:]])


def test_score_takes_the_context_from_the_same_csv_and_matches_columns_by_name(conditional):
    d, m = conditional
    rc, out, err = run("score", m, d / "t.csv", "--context-columns", "c")
    assert rc == 0, err
    same_file = scores(out)
    x, _ = load_table(d / "t.csv")
    np.savetxt(d / "ctx.csv", x[:, 1:2], delimiter=",", header="c", comments="")
    np.savetxt(d / "yz.csv", x[:, [2, 0]], delimiter=",", header="z,y", comments="")  # other column order
    rc, out, err = run("score", m, d / "yz.csv", "--context", d / "ctx.csv")
    assert rc == 0, err
    np.testing.assert_allclose(scores(out), same_file, rtol=1e-6, atol=1e-6)
    assert same_file.shape == (300,) and np.isfinite(same_file).all()


def test_a_conditional_model_without_context_says_exactly_what_to_pass(conditional):
    d, m = conditional
    for command in (["score", m, d / "t.csv"], ["report", m, d / "t.csv", "--out", d / "r.html"]):
        rc, _, err = run(*command)
        assert rc == 1 and "--context-columns c" in err and len(err.strip().splitlines()) == 1, err
    rc, _, err = run("sample", m, "-n", "2")
    assert rc == 1 and "--context FILE" in err and "--context-columns c" in err
    rc, _, err = run("score", m, d / "t.csv", "--context-columns", "z")
    assert rc == 1 and "do not match" in err  # the model's context is c, not z


def test_sample_writes_n_rows_per_context_row_labelled_with_it(conditional, tmp_path):
    d, m = conditional
    x, _ = load_table(d / "t.csv")
    rc, _, err = run(
        "sample",
        m,
        "-n",
        "3",
        "--context",
        d / "t.csv",
        "--context-columns",
        "c",
        "--out",
        tmp_path / "s.csv",
    )
    assert rc == 0, err
    s, names = load_table(tmp_path / "s.csv")
    assert names == ["context_row", "c", "y", "z"] and s.shape == (3 * 300, 4)
    np.testing.assert_array_equal(s[:, 0], np.repeat(np.arange(300), 3))
    np.testing.assert_allclose(s[:, 1], np.repeat(x[:, 1], 3), rtol=1e-8)
    assert "3 samples for each of 300 context rows (900 rows)" in err
    assert np.corrcoef(s[:, 1], s[:, 2])[0, 1] > 0.8  # y follows its context (y = 3 c + noise)


def test_report_takes_context_columns_and_names_the_data_file(conditional, tmp_path):
    d, m = conditional
    out = tmp_path / "r.html"
    rc, _, err = run("report", m, d / "t.csv", "--context-columns", "c", "--out", out)
    assert rc == 0, err
    text = out.read_text()
    assert "t.csv" in text and "Every row has a finite log-likelihood" in text


@pytest.fixture(scope="module")
def positive_model(tmp_path_factory):
    d = tmp_path_factory.mktemp("inf")
    rng = np.random.default_rng(0)
    x = np.hstack([rng.lognormal(size=(300, 1)), rng.normal(size=(300, 1))])
    np.savetxt(d / "train.csv", x, delimiter=",", header="income,z", comments="")
    test = x[:8].copy()
    test[2, 0] = -5.0  # outside the positive support of income
    test[6, 0] = -1.0
    np.savetxt(d / "test.csv", test, delimiter=",", header="income,z", comments="")
    m = d / "m.safetensors"
    rc, _, err = run("fit", d / "train.csv", *TINY, "--steps", "30", "--out", m)
    assert rc == 0 and "income: positive" in err, err
    return d, m


def test_score_names_the_rows_and_columns_that_scored_minus_inf(positive_model):
    d, m = positive_model
    rc, out, err = run("score", m, d / "test.csv")
    assert rc == 0, err
    s = scores(out)
    assert np.isneginf(s[[2, 6]]).all() and np.isfinite(np.delete(s, [2, 6])).all()
    assert "2 rows -inf; mean of the 6 finite rows" in err
    assert "2 rows of" in err and "test.csv scored -inf" in err
    assert "row 2: income = -5 is outside its support positive" in err
    assert "row 6: income = -1 is outside its support positive" in err


def test_report_lists_minus_inf_rows_instead_of_dropping_them(positive_model, tmp_path):
    d, m = positive_model
    out = tmp_path / "r.html"
    rc, _, err = run("report", m, d / "test.csv", "--out", out, "--samples", "300")
    assert rc == 0, err
    text = out.read_text()
    assert "2 rows score -inf" in text and "<td>2</td>" in text and "<td>6</td>" in text
    assert "income = -5 outside positive" in text
    assert "test.csv" in text
