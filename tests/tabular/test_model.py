"""FlowModel: preprocessing inside the flow, every column's measure, names, out-of-support reports."""

from __future__ import annotations

import warnings

import numpy as np
import pandas as pd
import pytest
import torch

from pushforward import Flow
from pushforward.data.support import ColumnSupport, detect_support
from pushforward.tabular import FlowModel, OutOfSupportWarning
from pushforward.transforms import ColumnMaps, LogRatio, Standardize, Whiten

torch.set_num_threads(1)
TINY = {"layers": 2, "hidden": [16]}


def _fit(x, steps=60, preset="realnvp", **kw):
    kw.setdefault("support", detect_support(x))
    return FlowModel.train(x, preset, options=TINY, steps=steps, progress=False, batch_size=64, **kw)


def _table(n=400, seed=0):
    rng = np.random.default_rng(seed)
    return np.column_stack(
        [
            rng.normal(size=n),
            np.where(rng.random(n) < 0.3, 0.0, rng.lognormal(size=n)),
            100 * rng.beta(0.7, 2, n),
            rng.poisson(25, n),
            rng.integers(0, 2, n),
            rng.dirichlet([2.0, 3.0, 4.0], n),
        ]
    ).astype(np.float64)


NAMES = ["real", "amount", "pct", "count", "flag", "a", "b", "c"]


@pytest.fixture(scope="module")
def model():
    return _fit(_table(), columns=NAMES, whiten=True)


def test_the_model_is_a_flow_whose_chain_holds_the_preprocessing(model):
    assert isinstance(model, Flow)
    kinds = [type(t) for t in model.preprocessing]
    assert kinds == [ColumnMaps, LogRatio, Standardize, Whiten]
    assert (
        model.event_shape == (7,) and model.n_columns == 8
    )  # the last part of the composition is determined
    v = torch.as_tensor(_table()[:5][:, model.kept], dtype=torch.float32)
    z, ladj = model.transform(v)
    lp = model.base.log_prob(z) + ladj
    torch.testing.assert_close(model.log_prob(v), lp)
    # numpy rows without point masses score the tensor log_prob of the same rows
    x = np.random.default_rng(5).normal(size=(20, 2))
    m = _fit(x, support=None)
    torch.testing.assert_close(
        torch.from_numpy(m.log_prob(x)).float(), m.log_prob(torch.as_tensor(x, dtype=torch.float32))
    )


def test_samples_lie_inside_every_column_support(model):
    s = model.sample(3000, seed=1)
    assert s.shape == (3000, 8)
    assert model.support_violations(s) == []
    assert (s[:, 1] == 0).mean() > 0.1  # the point mass at zero is sampled
    assert set(np.unique(s[:, 4])) <= {0.0, 1.0} and (s[:, 3] == np.round(s[:, 3])).all()


def test_values_inside_the_support_never_score_minus_inf(model):
    x = _table()[:3].copy()
    x[0, 3] = 400.0  # a count far past the training maximum
    x[1, 3] = 0.0  # a level never seen in training
    x[2, 1] = 0.0  # the point mass
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert np.isfinite(model.log_prob(x)).all()


def test_values_outside_the_support_score_minus_inf_and_are_reported_by_row_and_column(model):
    x = _table()[:4].copy()
    x[1, 1] = -2.0
    x[3, 3] = 2.5
    with pytest.warns(OutOfSupportWarning, match="row 1 column amount") as rec:
        s = model.log_prob(x)
    assert np.isneginf(s[[1, 3]]).all() and np.isfinite(s[[0, 2]]).all()
    assert [(v["row"], v["column"]) for v in rec[0].message.violations] == [(1, "amount"), (3, "count")]


def test_a_reordered_dataframe_scores_the_same_and_bad_columns_are_named(model):
    x = _table()[:20]
    df = pd.DataFrame(x, columns=NAMES)
    ref = model.log_prob(x)
    np.testing.assert_array_equal(model.log_prob(df[NAMES[::-1]]), ref)
    with pytest.raises(ValueError, match=r"missing column.*count"):
        model.log_prob(df.drop(columns="count"))
    with pytest.raises(ValueError, match=r"unknown column.*extra"):
        model.log_prob(df.assign(extra=1.0))


def test_save_load_keeps_every_measure(tmp_path, model):
    model.save(tmp_path / "m.safetensors")
    back = FlowModel.load(tmp_path / "m.safetensors")
    x = _table()[:30]
    np.testing.assert_allclose(back.log_prob(x), model.log_prob(x), rtol=1e-6)
    assert back.support == model.support and back.columns == NAMES


def _one_column_mass(x, support):
    m = _fit(x[:, None], steps=150, preset="nsf", support=[support], val_fraction=0.0, lr=3e-3)
    return m


def test_a_count_column_scores_probabilities_that_sum_to_one():
    x = np.random.default_rng(0).poisson(3.0, 500).astype(float)
    m = _one_column_mass(x, ColumnSupport("count"))
    p = np.exp(m.log_prob(np.arange(0, 200, dtype=float)[:, None]))
    assert abs(p.sum() - 1) < 0.02, p.sum()
    assert (p > 0).all()


def test_the_mixed_measure_of_a_zero_inflated_column_sums_to_one():
    rng = np.random.default_rng(0)
    x = np.where(rng.random(600) < 0.4, 0.0, rng.gamma(2.0, size=600))
    m = _one_column_mass(x, detect_support(x[:, None])[0])
    p0 = float(np.exp(m.log_prob(np.array([[0.0]]))[0]))
    grid = np.linspace(1e-6, 60, 200001)
    dens = np.exp(m.log_prob(grid[:, None]))
    total = p0 + np.trapezoid(dens, grid)
    assert abs(p0 - 0.4) < 0.08 and abs(total - 1) < 0.02, (p0, total)


@pytest.mark.parametrize(
    "column",
    [
        lambda r: r.lognormal(size=300),
        lambda r: np.where(r.random(300) < 0.5, 0.0, r.lognormal(size=300)),
        lambda r: r.beta(0.5, 0.5, 300),
        lambda r: np.clip(r.normal(0.5, 0.4, 300), 0, 1),  # shares with point masses at both ends
        lambda r: 100 * r.beta(1, 3, 300),
        lambda r: r.poisson(40, 300),
        lambda r: r.integers(-5, 5, 300),
        lambda r: r.choice([1.0, 2.5, 7.0], 300),
    ],
)
def test_zero_violations_on_a_table_of_each_kind(column):
    rng = np.random.default_rng(3)
    x = np.column_stack([column(rng), rng.normal(size=300)]).astype(float)
    m = _fit(x, steps=30)
    assert m.support_violations(m.sample(2000, seed=0)) == []
    assert np.isfinite(m.log_prob(x)).all()


def test_conditional_model_context_is_standardised_inside():
    rng = np.random.default_rng(0)
    c = rng.normal(size=(300, 2)) * 100 + 1000
    x = (c[:, :1] - 1000) / 100 + rng.normal(size=(300, 1)) * 0.1
    m = FlowModel.train(
        x, "nsf", options=TINY, steps=80, progress=False, context=c, context_columns=["u", "v"]
    )
    assert m.log_prob(x[:5], c[:5]).shape == (5,)
    s = m.sample(4, seed=0, context=c[:3])
    assert s.shape == (12, 1)
    with pytest.raises(ValueError, match="conditional"):
        m.log_prob(x[:5])


def test_a_float32_model_scores_values_that_round_onto_a_bound_in_float32():
    rng = np.random.default_rng(4)
    x = np.column_stack([rng.lognormal(size=200), rng.normal(size=200)])
    m = _fit(x, steps=20)
    assert m.dtype == torch.float32 and m.support[0].kind == "positive"
    s = m.log_prob(np.array([[1e-50, 0.0], [1.0, 0.0]]))  # 1e-50 is 0 in float32: scored in float64
    assert np.isfinite(s).all()
