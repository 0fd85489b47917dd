"""Per-column support: detection, bijections with their log-dets, dequantisation, parsing."""

from __future__ import annotations

import numpy as np
import pytest

from pushforward.data.support import (
    ColumnSupport,
    dequantize,
    describe_support,
    detect_support,
    from_unconstrained,
    parse_support,
    to_unconstrained,
)


def _table(n=200, seed=0):
    rng = np.random.default_rng(seed)
    return np.stack(
        [rng.normal(size=n), rng.lognormal(size=n) + 0.1, rng.integers(0, 2, n), rng.integers(1, 6, n)], 1
    ).astype(np.float64)


def test_detect_kinds():
    sup = detect_support(_table())
    assert [s.kind for s in sup] == ["real", "positive", "interval", "interval"]
    assert sup[2].levels == [0.0, 1.0] and sup[2].step == 1.0
    assert (sup[2].low, sup[2].high) == (-0.5, 1.5)
    assert sup[3].levels == [1.0, 2.0, 3.0, 4.0, 5.0]
    lines = describe_support(sup, ["a", "b", "c", "d"])
    assert lines[0].startswith("b: positive") and lines[1].startswith("c: binary")


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_round_trip_and_log_det_against_finite_differences(dtype):
    x = _table().astype(dtype)
    sup = [ColumnSupport("real"), ColumnSupport("positive", low=0.05), ColumnSupport("interval", -2.0, 3.0)]
    x = x[:, :3].copy()
    x[:, 2] = np.random.default_rng(1).uniform(-1.9, 2.9, len(x))
    y, ladj = to_unconstrained(x, sup)
    np.testing.assert_allclose(from_unconstrained(y, sup), x, rtol=1e-5 if dtype == np.float32 else 1e-10)
    eps = 1e-6
    fd = np.zeros(len(x))
    for j in range(3):
        xp, xm = x.astype(np.float64).copy(), x.astype(np.float64).copy()
        xp[:, j] += eps
        xm[:, j] -= eps
        fd += np.log(
            np.abs(to_unconstrained(xp, sup)[0][:, j] - to_unconstrained(xm, sup)[0][:, j]) / (2 * eps)
        )
    np.testing.assert_allclose(ladj, fd, rtol=1e-5, atol=1e-5)


def test_outside_support_has_zero_density_and_samples_stay_inside():
    sup = [ColumnSupport("positive"), ColumnSupport("interval", 0.0, 1.0)]
    _, ladj = to_unconstrained(np.array([[-1.0, 0.5], [1.0, 1.5], [1.0, 0.5]]), sup)
    assert np.isneginf(ladj[:2]).all() and np.isfinite(ladj[2])
    x = from_unconstrained(np.random.default_rng(0).normal(scale=30, size=(500, 2)), sup)
    assert (x[:, 0] >= 0).all() and ((x[:, 1] >= 0) & (x[:, 1] <= 1)).all()


def test_discrete_dequantised_then_rounded_to_levels():
    sup = detect_support(_table())
    x = _table()
    d = dequantize(x, sup, np.random.default_rng(0))
    assert np.array_equal(d[:, :2], x[:, :2])
    assert (np.abs(d[:, 2:] - x[:, 2:]) <= 0.5).all() and not np.array_equal(d[:, 2:], x[:, 2:])
    y, ladj = to_unconstrained(d, sup)
    assert np.isfinite(ladj).all()
    back = from_unconstrained(y, sup)
    assert np.array_equal(back[:, 2:], x[:, 2:])


def test_parse_overrides_and_errors():
    x = _table()
    sup = parse_support("b=real,2=discrete,a=interval:-10:10", ["a", "b", "c", "d"], x)
    assert [s.kind for s in sup] == ["interval", "real", "interval", "interval"]
    assert all(s.kind == "real" for s in parse_support("none", list("abcd"), x))
    with pytest.raises(ValueError, match="unknown column 'z'"):
        parse_support("z=real", list("abcd"), x)
    with pytest.raises(ValueError, match="valid: auto, real"):
        parse_support("a=banana", list("abcd"), x)
    with pytest.raises(ValueError, match="outside the support"):
        parse_support("a=positive", list("abcd"), x)
