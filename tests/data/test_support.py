"""Per-column measures: detection rules, cells of point masses, rounding into the support, parsing."""

from __future__ import annotations

import numpy as np
import pytest

from pushforward.data.support import (
    ColumnSupport,
    composition_groups,
    dequantize,
    describe_support,
    detect_support,
    parse_support,
    support_from_config,
    support_violations,
)


def _table(n=300, seed=0):
    rng = np.random.default_rng(seed)
    comp = rng.dirichlet([2.0, 3.0, 4.0], n)
    return np.column_stack(
        [
            rng.normal(size=n),  # real
            rng.lognormal(size=n) + 0.1,  # positive
            np.where(rng.random(n) < 0.3, 0.0, rng.lognormal(size=n)),  # non-negative, point mass at 0
            rng.beta(2, 2, n),  # share in (0, 1)
            100 * rng.beta(0.7, 2, n),  # percentage
            rng.integers(0, 2, n),  # binary
            rng.poisson(30, n),  # count with > 20 levels
            rng.integers(-40, 40, n),  # integers with negatives
            rng.choice([0.5, 1.5, 4.0], n),  # categorical, not a lattice
            comp,  # a composition of three parts
        ]
    ).astype(np.float64)


KINDS = [
    "real",
    "positive",
    "nonnegative",
    "interval",
    "interval",
    "categorical",
    "count",
    "integer",
    "categorical",
    "part",
    "part",
    "part",
]


def test_detection_rule_covers_every_kind():
    sup = detect_support(_table())
    assert [s.kind for s in sup] == KINDS
    assert (sup[3].low, sup[3].high) == (0.0, 1.0) and (sup[4].low, sup[4].high) == (0.0, 100.0)
    assert sup[5].levels == [0.0, 1.0] and sup[8].levels == [0.5, 1.5, 4.0]
    assert composition_groups(sup) == [([9, 10, 11], 1.0)]
    lines = describe_support(sup, [f"c{j}" for j in range(12)])
    assert lines[1].startswith("c2: non-negative") and "count" in lines[5]


def test_rows_of_the_table_are_inside_and_bad_values_are_reported_by_row_and_column():
    x = _table()
    sup = detect_support(x)
    assert support_violations(x, sup) == []
    bad = x[:4].copy()
    bad[0, 1] = -1.0  # negative value of a positive column
    bad[1, 6] = 2.5  # a count that is not an integer
    bad[2, 8] = 1.0  # an unseen categorical level
    bad[3, 9] += 0.1  # parts that no longer sum to 1
    v = support_violations(bad, sup, [f"c{j}" for j in range(12)])
    assert [(e["row"], e["column"]) for e in v] == [(0, "c1"), (1, "c6"), (2, "c8"), (3, "c9")]


def test_values_inside_the_support_but_unseen_are_inside():
    sup = detect_support(_table())
    x = _table()[:1].copy()
    x[0, 6] = 500.0  # far past the training maximum of the count
    x[0, 2] = 0.0  # the point mass
    x[0, 7] = -1000.0  # any integer
    assert support_violations(x, sup) == []


def test_cells_are_disjoint_and_cover_the_dequantised_domain():
    s = ColumnSupport("categorical", levels=[0.5, 1.5, 4.0])
    lo, hi = s.cells(np.array([0.5, 1.5, 4.0]))
    np.testing.assert_allclose(lo, [0.0, 1.0, 2.75])
    np.testing.assert_allclose(hi, [1.0, 2.75, 5.25])
    assert s.domain() == ("interval", 0.0, 5.25)
    c = ColumnSupport("count", low=0.0)
    assert c.domain() == ("lower", -0.5, 0.0)
    z = ColumnSupport("nonnegative", low=0.0, pad=0.3)
    lo, hi = z.cells(np.array([0.0, 2.0]))
    assert (lo[0], hi[0]) == (-0.3, 0.0) and np.isnan(lo[1])
    assert z.domain() == ("lower", -0.3, 0.0)


@pytest.mark.parametrize("seed", [0, 1])
def test_dequantise_then_round_gives_back_the_data(seed):
    x = _table(seed=seed)
    sup = detect_support(x)
    d = dequantize(x, sup, np.random.default_rng(seed))
    moved = ~np.isclose(d, x)
    assert moved[:, 5:9].any(0).all() and not moved[:, [0, 1, 3, 4, 9, 10, 11]].any()
    assert moved[x[:, 2] == 0, 2].all() and not moved[x[:, 2] > 0, 2].any()
    back = np.column_stack([s.round(d[:, j]) for j, s in enumerate(sup)])
    np.testing.assert_array_equal(back, x)


def test_round_keeps_any_value_inside_the_support():
    rng = np.random.default_rng(0)
    v = rng.normal(scale=50, size=2000)
    for s in detect_support(_table()):
        if s.kind in ("real", "part"):
            continue
        kind, lo, hi = s.domain()
        w = (
            v
            if kind == "real"
            else (lo + np.exp(v / 10) if kind == "lower" else lo + (hi - lo) / (1 + np.exp(-v)))
        )
        assert s.inside(s.round(w)).all(), s


def test_parse_overrides_and_errors():
    x = _table()
    names = [f"c{j}" for j in range(12)]
    sup = parse_support("c1=real,6=categorical,c0=interval:-10:10,c5=count", names, x)
    assert [s.kind for s in sup][:7] == [
        "interval",
        "real",
        "nonnegative",
        "interval",
        "interval",
        "count",
        "categorical",
    ]
    sup = parse_support({"c9": "part:1", "c10": "part:1", "c11": "part:1", "c3": "real"}, names, x)
    assert composition_groups(sup) == [([9, 10, 11], 1.0)]
    with pytest.raises(ValueError, match="sum to 1"):
        parse_support({"c11": "real"}, names, x)
    assert all(s.kind == "real" for s in parse_support("none", names, x))
    with pytest.raises(ValueError, match="unknown column 'z'"):
        parse_support("z=real", names, x)
    with pytest.raises(ValueError, match="valid: auto, real"):
        parse_support("c0=banana", names, x)
    with pytest.raises(ValueError, match="outside the support"):
        parse_support("c0=positive", names, x)
    with pytest.raises(ValueError, match="c6"):
        parse_support("c6=categorical:1:2", names, x)


def test_config_round_trip_and_hostile_configs():
    sup = detect_support(_table())
    assert support_from_config([s.as_dict() for s in sup]) == sup
    old = support_from_config([{"kind": "interval", "low": -0.5, "high": 1.5, "levels": [0, 1], "step": 1.0}])
    assert old[0].kind == "categorical" and old[0].levels == [0.0, 1.0]
    for bad in (
        [{"kind": "interval", "low": float("nan"), "high": 1.0}],
        [{"kind": "positive", "low": "0"}],
        [{"kind": "count", "step": 0.0}],
        [{"kind": "categorical", "levels": [1.0]}],
        [{"kind": "real", "evil": 1}],
        "real",
    ):
        with pytest.raises((ValueError, TypeError)):
            support_from_config(bad)


def test_integers_beyond_unit_bins_in_float64_are_continuous():
    """At 2**52 a unit bin around an integer rounds away in float64: such a column is not dequantised."""
    big = np.array([[0.0], [2.0**52 + 2], [1.0], [1.0], [3.0]])
    small = np.array([[0.0], [5.0], [1.0], [1.0], [3.0]])
    assert detect_support(big)[0].kind not in ("count", "integer", "categorical")
    assert detect_support(small)[0].kind in ("count", "integer", "categorical")
