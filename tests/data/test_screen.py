"""Screening data before a fit: constant columns, identical rows, extreme outliers, wide tables."""

import contextlib
import io

import numpy as np
import pytest

from pushforward.cli.main import main
from pushforward.data.screen import estimate_cost, robust_z, screen
from pushforward.io import build_flow


def test_robust_z_matches_the_normal_scale_and_ignores_outliers():
    x = np.random.default_rng(0).normal(size=(20000, 2))
    x[:10, 0] = 1e20
    z = robust_z(x)
    assert np.std(z[10:, 1]) == pytest.approx(1.0, abs=0.03)
    assert np.std(z[10:, 0]) == pytest.approx(1.0, abs=0.03)  # the outliers do not inflate the scale
    assert z[0, 0] > 1e19


def test_screen_finds_constant_columns_identical_rows_and_outliers():
    rng = np.random.default_rng(1)
    x = rng.normal(size=(5000, 3))
    assert screen(x).ok
    x[:10] = 1e20
    rep = screen(x, columns=["a", "b", "c"])
    assert rep.outlier_rows == list(range(10)) and rep.outlier_columns == [0, 1, 2] and not rep.ok
    assert "'a'" in rep.problems[0]
    y = rng.normal(size=(100, 3))
    y[:, 1] = 7.0
    assert screen(y).constant_columns == [1] and "constant" in screen(y).problems[0]
    same = np.ones((50, 2))
    assert "identical" in screen(same).problems[0]
    heavy = rng.standard_cauchy(size=(5000, 2))  # heavy tails are data, not errors
    assert not screen(heavy).outlier_rows
    discrete = rng.integers(0, 2, size=(1000, 2)).astype(float)  # MAD 0 for some columns: fallback scale
    assert screen(discrete).ok


def test_screen_rejects_bad_input():
    with pytest.raises(ValueError):
        screen(np.zeros((0, 2)))
    with pytest.raises(ValueError):
        screen(np.array([[np.nan, 1.0]]))


def test_cost_estimate_tracks_the_real_size():
    est = estimate_cost(lambda d: build_flow("realnvp", d, options={"layers": 2}), 100, 1000)
    flow = build_flow("realnvp", 100, options={"layers": 2})
    real = sum(p.numel() for p in flow.parameters()) + sum(b.numel() for b in flow.buffers())
    assert 0.8 * real < est["parameters"] < 1.25 * real and est["memory_bytes"] > 16 * real


def _fit(path, *extra):
    err = io.StringIO()
    argv = ["fit", str(path), "--flow", "realnvp", "--layers", "1", "--hidden", "8", "--steps", "2"]
    with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
        rc = main([*argv, "--no-progress", "--out", str(path.with_suffix(".safetensors")), *extra])
    return rc, err.getvalue()


@pytest.mark.parametrize("case", ["outliers", "identical", "constant", "wide"])
def test_cli_refuses_degenerate_data_with_one_line_and_an_override(tmp_path, case):
    rng = np.random.default_rng(2)
    x = rng.normal(size=(400, 3))
    override = ["--allow-degenerate"]
    if case == "outliers":
        x[:10] = 1e20
        override = ["--outliers", "drop"]
    elif case == "identical":
        x[:] = 1.5
    elif case == "constant":
        x[:, 2] = 0.0
    else:
        x = rng.normal(size=(20, 30))
    p = tmp_path / "d.npy"
    np.save(p, x)
    rc, err = _fit(p)
    lines = err.strip().splitlines()
    assert rc == 1 and len(lines) == 1 and "error" in lines[0] and not p.with_suffix(".safetensors").exists()
    if case != "identical":  # a single point has no density even when forced
        rc, err = _fit(p, *override)
        assert rc == 0, err


def test_cli_refuses_a_flow_too_large_for_the_memory_limit(tmp_path):
    p = tmp_path / "w.npy"
    np.save(p, np.random.default_rng(3).normal(size=(400, 200)))
    rc, err = _fit(p, "--max-memory-gb", "1e-6")
    assert rc == 1 and "GiB" in err and "--max-memory-gb" in err and len(err.strip().splitlines()) == 1


def test_screen_for_fit_refuses_or_reports_with_the_overrides():
    from pushforward.data.screen import screen_for_fit

    rng = np.random.default_rng(3)
    x = rng.normal(size=(100, 3))
    assert screen_for_fit(x) == (None, [])
    const = x.copy()
    const[:, 2] = 1.0
    with pytest.raises(ValueError, match="constant column"):
        screen_for_fit(const)
    keep, found = screen_for_fit(const, allow_degenerate=True)
    assert keep is None and "constant column" in found[0]
    with pytest.raises(ValueError, match="3 rows x 3 columns"):
        screen_for_fit(x[:3])
    out = x.copy()
    out[5, 1] = 1e30
    with pytest.raises(ValueError, match="outliers='drop'"):
        screen_for_fit(out)
    keep, found = screen_for_fit(out, outliers="drop")
    assert not keep[5] and keep.sum() == 99 and "dropped 1" in found[0]
    keep, found = screen_for_fit(out, outliers="keep")
    assert keep is None and "kept" in found[0]
    with pytest.raises(ValueError, match="outliers must be"):
        screen_for_fit(x, outliers="ignore")
