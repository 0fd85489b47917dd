"""Ensembles of tabular models in one model file: FlowModelEnsemble, FlowDensity(ensemble=K).save/load, and the
command line on the saved file."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
import torch

from pushforward import FlowDensity, io
from pushforward.cli.main import main
from pushforward.data.support import detect_support
from pushforward.flows import MAF, Ensemble
from pushforward.tabular import FlowModel, FlowModelEnsemble, load_model_file

torch.set_num_threads(1)
TINY = {"layers": 2, "hidden": [8]}


def _table(n=240, seed=0):
    rng = np.random.default_rng(seed)
    return np.column_stack(
        [rng.normal(size=n), rng.poisson(4, n), np.where(rng.random(n) < 0.3, 0.0, rng.lognormal(size=n))]
    ).astype(np.float64)


def _perturb(module: torch.nn.Module, seed: int) -> None:
    """Move every weight away from its initial value, so members differ and nothing sits at the identity."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in module.parameters():
            p.add_(0.05 * torch.randn(p.shape, generator=g, dtype=p.dtype))


def _members(dtype, context=None, k=3):
    x = _table()
    out = []
    for s in range(k):
        m = FlowModel.fit(
            x,
            "maf",
            options=TINY,
            steps=4,
            seed=s,
            progress=False,
            support=detect_support(x),
            columns=["a", "n", "z"],
            context=context,
            context_columns=None if context is None else ["c0", "c1"],
            dtype=dtype,
        )
        _perturb(m, 10 + s)
        out.append(m)
    return x, out


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("conditional", [False, True])
def test_round_trip_gives_equal_scores_and_samples(tmp_path, dtype, conditional):
    ctx = np.random.default_rng(1).normal(size=(240, 2)) if conditional else None
    x, members = _members(dtype, ctx)
    ens = FlowModelEnsemble(members)
    ens.validation = members[0].validation
    path = tmp_path / "e.safetensors"
    ens.save(path)
    again = load_model_file(path)
    assert isinstance(again, FlowModelEnsemble) and len(again.members) == 3
    assert again.dtype == dtype and again.columns == ["a", "n", "z"]
    c = None if ctx is None else ctx[:20]
    want = ens.log_likelihood(x[:20], c)
    assert np.isfinite(want).all()
    np.testing.assert_array_equal(again.log_likelihood(x[:20], c), want)
    # the density is the members' average
    manual = np.log(np.mean([np.exp(m.log_likelihood(x[:20], c)) for m in members], 0))
    np.testing.assert_allclose(want, manual, rtol=1e-6, atol=1e-6)
    np.testing.assert_array_equal(again.sample(7, seed=3, context=c), ens.sample(7, seed=3, context=c))
    assert again.validation_quantile(0.5) == pytest.approx(ens.validation_quantile(0.5))
    assert [m.history["steps"] for m in again.members] == [m.history["steps"] for m in members]
    # the generic loader returns the same module (without the metadata)
    generic = io.load(path)
    assert type(generic) is FlowModelEnsemble
    v = torch.as_tensor(x[:5, :], dtype=dtype)
    ct = None if ctx is None else torch.as_tensor(ctx[:5], dtype=dtype)
    torch.testing.assert_close(generic.log_prob(v, ct), ens.eval().log_prob(v, ct))


def test_members_must_share_columns():
    _, (a, b, _) = _members(torch.float64)
    b.columns = ["p", "q", "r"]
    with pytest.raises(ValueError, match="columns"):
        FlowModelEnsemble([a, b])
    with pytest.raises(TypeError, match="FlowModel"):
        FlowModelEnsemble([a, MAF(3)])


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_generic_ensemble_is_the_equal_weight_mixture_and_saves(tmp_path, dtype):
    torch.manual_seed(0)
    members = [MAF(2, context=1, layers=2, hidden=(8,)).to(dtype) for _ in range(3)]
    for i, m in enumerate(members):
        _perturb(m, i)
    ens = Ensemble(members)
    x, c = torch.randn(6, 2, dtype=dtype), torch.randn(6, 1, dtype=dtype)
    lp = torch.stack([m.log_prob(x, c) for m in members])
    torch.testing.assert_close(ens.log_prob(x, c), torch.logsumexp(lp, 0) - math.log(3))
    torch.manual_seed(1)
    s = ens.sample((50,), c[:2])
    assert s.shape == (50, 2, 2) and s.dtype == dtype
    io.save(ens, tmp_path / "g.safetensors")
    again = io.load(tmp_path / "g.safetensors")
    assert type(again) is Ensemble
    torch.testing.assert_close(again.log_prob(x, c), ens.eval().log_prob(x, c))
    torch.manual_seed(1)
    torch.testing.assert_close(again.sample((50,), c[:2]), s)
    with pytest.raises(ValueError, match="context"):
        Ensemble([members[0], MAF(2, layers=1, hidden=(8,))])
    with pytest.raises(ValueError, match="at least one"):
        Ensemble([])


def _density(**kw):
    params = dict(flow="maf", layers=2, hidden=(8,), steps=6, batch_size=32, ensemble=3, random_state=0)
    params.update(kw)
    return FlowDensity(**params)


@pytest.mark.parametrize("conditional", [False, True])
def test_flowdensity_ensemble_save_load_round_trip(tmp_path, conditional):
    rng = np.random.default_rng(2)
    X = pd.DataFrame(rng.normal(size=(150, 2)), columns=["u", "w"])
    y = X["u"].to_numpy() + 0.3 * rng.normal(size=150)
    est = _density().fit(X, y) if conditional else _density().fit(X)
    path = tmp_path / "fd.safetensors"
    est.save(path)
    again = FlowDensity.load(path)
    assert len(again.models_) == 3 and again.ensemble == 3
    if conditional:
        np.testing.assert_array_equal(again.log_likelihood(X[:9], y[:9]), est.log_likelihood(X[:9], y[:9]))
        np.testing.assert_array_equal(
            again.sample(X[:4], 5, random_state=0), est.sample(X[:4], 5, random_state=0)
        )
    else:
        np.testing.assert_array_equal(again.score_samples(X[:9]), est.score_samples(X[:9]))
        np.testing.assert_array_equal(again.sample(11, random_state=4), est.sample(11, random_state=4))
    file_model = load_model_file(path)
    assert file_model.validation["source"] == "out-of-fold"
    assert file_model.validation["n"] == 150


def test_cli_samples_and_scores_a_saved_ensemble(tmp_path, capsys):
    rng = np.random.default_rng(3)
    x = rng.normal(size=(150, 2)) + np.array([5.0, -1.0])
    frame = pd.DataFrame(x, columns=["alpha", "beta"])
    est = _density().fit(frame)
    path = tmp_path / "fd.safetensors"
    est.save(path)
    np.savetxt(tmp_path / "x.csv", x[:, ::-1], delimiter=",", header="beta,alpha", comments="")
    out = tmp_path / "scores.csv"
    assert main(["score", str(path), str(tmp_path / "x.csv"), "--anomalies", "0.1", "--out", str(out)]) == 0
    scores = np.loadtxt(out, delimiter=",", skiprows=1)
    np.testing.assert_allclose(scores[:, 0], est.score_samples(frame), rtol=1e-8)  # CSV: 9 digits
    assert "out-of-fold" in capsys.readouterr().err
    assert main(["sample", str(path), "-n", "9", "--seed", "2", "--out", str(tmp_path / "s.npy")]) == 0
    np.testing.assert_array_equal(np.load(tmp_path / "s.npy"), est.sample(9, random_state=2))
    assert not np.allclose(est.sample(9, random_state=2), est.sample(9, random_state=3))


def test_cli_samples_a_conditional_ensemble_per_context_row(tmp_path):
    rng = np.random.default_rng(4)
    X = pd.DataFrame(rng.normal(size=(150, 2)), columns=["c0", "c1"])
    y = pd.DataFrame({"t": X["c0"].to_numpy() + 0.2 * rng.normal(size=150)})
    est = _density().fit(X, y)
    path = tmp_path / "cd.safetensors"
    est.save(path)
    X[:3].to_csv(tmp_path / "ctx.csv", index=False)
    assert main(["sample", str(path), "-n", "4", "--context", str(tmp_path / "ctx.csv"), "--seed", "1",
                 "--out", str(tmp_path / "s.csv")]) == 0  # fmt: skip
    s = np.loadtxt(tmp_path / "s.csv", delimiter=",", skiprows=1)
    assert s.shape == (12, 4)
    np.testing.assert_array_equal(s[:, 0], np.repeat(np.arange(3), 4))
    np.testing.assert_allclose(s[:, 3], est.sample(X[:3], 4, random_state=1).reshape(-1), rtol=1e-8)
    pd.concat([X[:5], y[:5].rename(columns={"t": "y0"})], axis=1).to_csv(tmp_path / "d.csv", index=False)
    out = tmp_path / "sc.csv"
    assert (
        main(["score", str(path), str(tmp_path / "d.csv"), "--context-columns", "c0,c1", "--out", str(out)])
        == 0
    )
    np.testing.assert_allclose(
        np.loadtxt(out, delimiter=",", skiprows=1), est.log_likelihood(X[:5], y[:5]), rtol=1e-8
    )
