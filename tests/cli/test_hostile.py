"""CLI against hostile input: stale checkpoints, unwritable outputs, concurrent fits, odd column names."""

from __future__ import annotations

import contextlib
import io

import numpy as np
import pytest

from pushforward.cli.main import main
from pushforward.data.csv import load_table

SMALL = ["--flow", "realnvp", "--layers", "1", "--hidden", "8", "--no-progress", "--batch-size", "64"]


def run(*argv):
    err, out = io.StringIO(), io.StringIO()
    with contextlib.redirect_stderr(err), contextlib.redirect_stdout(out):
        rc = main([str(a) for a in argv])
    return rc, out.getvalue(), err.getvalue()


def one_error_line(rc, err):
    lines = [ln for ln in err.splitlines() if "error" in ln]
    return rc != 0 and len(lines) == 1 and "Traceback" not in err


@pytest.fixture
def data(tmp_path):
    rng = np.random.default_rng(0)
    a, b = tmp_path / "a.csv", tmp_path / "b.csv"
    np.savetxt(a, rng.normal(size=(200, 2)), delimiter=",", header="u,v", comments="")
    np.savetxt(b, rng.normal(size=(200, 2)) + 3, delimiter=",", header="u,v", comments="")
    return a, b


def test_resume_refuses_a_checkpoint_from_other_data_and_announces_resuming(data, tmp_path):
    a, b = data
    m = tmp_path / "m.safetensors"
    ck = ("--checkpoint", tmp_path / "m.ckpt")  # an explicit checkpoint is kept after success
    assert run("fit", a, *SMALL, "--steps", "6", "--out", m, *ck)[0] == 0
    rc, _, err = run("fit", b, *SMALL, "--steps", "6", "--out", m, *ck, "--resume")
    assert one_error_line(rc, err) and "other data or settings" in err
    rc, _, err = run("fit", a, *SMALL, "--steps", "6", "--lr", "0.002", "--out", m, *ck, "--resume")
    assert one_error_line(rc, err)  # other options: refused too
    rc, _, err = run("fit", a, *SMALL, "--steps", "6", "--out", m, *ck, "--resume")
    assert rc == 0 and "resuming from" in err and "step 6 of 6" in err


def test_out_is_checked_before_training(data, tmp_path):
    a, _ = data
    rc, _, err = run("fit", a, *SMALL, "--steps", "2", "--out", tmp_path)
    assert one_error_line(rc, err) and "directory" in err and "fitting" not in err
    rc, _, err = run("fit", a, *SMALL, "--steps", "2", "--out", tmp_path / "no" / "m.safetensors")
    assert one_error_line(rc, err) and "fitting" not in err


def test_a_second_fit_to_the_same_out_is_refused_while_one_runs(data, tmp_path):
    from pushforward.cli.fit import cleanup, lock_output

    a, _ = data
    m = tmp_path / "m.safetensors"
    lock_output(m)  # stands for a concurrent fit holding the lock
    try:
        rc, _, err = run("fit", a, *SMALL, "--steps", "2", "--out", m)
        assert one_error_line(rc, err) and "another" in err and not m.exists()
    finally:
        cleanup()
    assert run("fit", a, *SMALL, "--steps", "2", "--out", m)[0] == 0  # released: free again


@pytest.mark.parametrize(
    "option", ['base="x"', "base=1", "mask=[1,2]", 'clamp="x"', "activation=1", "bins=1e999"]
)
def test_bad_options_give_one_line(data, tmp_path, option):
    a, _ = data
    rc, _, err = run(
        "fit", a, *SMALL, "--steps", "2", "--out", tmp_path / "m.safetensors", "--option", option
    )
    assert one_error_line(rc, err), err


def test_odd_column_names_survive_sample_score_and_report(tmp_path):
    pytest.importorskip("matplotlib")
    rng = np.random.default_rng(1)
    d = tmp_path / "d.csv"
    rows = "\n".join(f"{u:.6f},{v:.6f}" for u, v in rng.normal(size=(150, 2)))
    d.write_text('"a,b","$x$ in $"\n' + rows + "\n")
    x, cols = load_table(d)
    assert cols == ["a,b", "$x$ in $"] and x.shape == (150, 2)
    m = tmp_path / "m.safetensors"
    assert run("fit", d, *SMALL, "--steps", "4", "--out", m)[0] == 0
    s = tmp_path / "s.csv"
    assert run("sample", m, "-n", "20", "--out", s)[0] == 0
    back, names = load_table(s)
    assert names == cols and back.shape == (20, 2)
    rc, stdout, _ = run("sample", m, "-n", "5")
    (tmp_path / "stdout.csv").write_text(stdout)
    assert load_table(tmp_path / "stdout.csv")[1] == cols
    assert run("score", m, s)[0] == 0  # the tool reads its own output
    rc, _, err = run("report", m, d, "--out", tmp_path / "r.html", "--samples", "50")
    assert rc == 0, err


def test_newline_in_a_column_name_stays_one_header_line(tmp_path):
    from pushforward.data.csv import save_table

    p = tmp_path / "x.csv"
    save_table(p, np.zeros((2, 2)), ["a\nb", "c"])
    assert len(p.read_text().splitlines()) == 3
    assert load_table(p)[1] == ["a b", "c"]
