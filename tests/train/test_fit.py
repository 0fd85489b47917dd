"""fit: reaches the known entropy of a toy density, handles data forms, early-stops, skips bad batches."""

import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader, TensorDataset

from pushforward import fit
from pushforward.data import ENTROPY, toy
from pushforward.flows import RealNVP
from pushforward.train import evaluate_nll


def test_fit_reaches_entropy_of_8gaussians():
    """Test NLL within 0.1 nats of the differential entropy (≈ 2.838 nats)."""
    torch.manual_seed(0)
    flow = RealNVP(2, layers=8, hidden=(128, 128))
    train, val, test = (toy("8gaussians", n, seed=s) for n, s in ((20000, 0), (2000, 1), (10000, 2)))
    history = fit(flow, train, val, steps=3000, batch_size=512, lr=2e-3, progress=False, seed=0)
    nll = evaluate_nll(flow, test)
    assert history.val_loss and history.best_step > 0
    assert abs(nll - ENTROPY["8gaussians"]) < 0.1, nll


def test_fit_accepts_numpy_tuples_and_loaders():
    x = toy("moons", 512, seed=0)
    for data in (x.numpy(), x, DataLoader(TensorDataset(x), batch_size=64)):
        flow = RealNVP(2, layers=2, hidden=(8,))
        h = fit(flow, data, steps=20, progress=False)
        assert len(h.train_loss) >= 1 and np.isfinite(h.train_loss[-1])
    cond = RealNVP(2, layers=2, hidden=(8,), context=1)
    c = torch.randn(512, 1)
    h = fit(cond, (x, c), (x[:100], c[:100]), steps=20, progress=False)
    assert np.isfinite(h.val_loss[-1])


def test_fit_improves_and_restores_best_weights():
    torch.manual_seed(0)
    x = toy("moons", 2000, seed=0)
    flow = RealNVP(2, layers=4, hidden=(32, 32))
    before = evaluate_nll(flow, x[:500])
    h = fit(flow, x[500:], x[:500], steps=400, eval_every=50, lr=3e-3, progress=False, seed=0)
    after = evaluate_nll(flow, x[:500])
    assert after < before - 0.5
    assert after == pytest.approx(h.best_val_loss, abs=1e-6)


def test_early_stopping_triggers():
    torch.manual_seed(0)
    x = toy("moons", 600, seed=0)
    flow = RealNVP(2, layers=2, hidden=(256, 256))
    h = fit(flow, x[:100], x[100:], steps=3000, eval_every=10, lr=1e-2, patience=3, progress=False, seed=0)
    assert h.stopped_early and h.steps[-1] < 3000


def test_non_finite_batches_are_skipped_not_applied():
    flow = RealNVP(2, layers=2, hidden=(8,))
    x = toy("moons", 64, seed=0)
    calls = {"n": 0}
    original = flow.log_prob

    def poisoned(x, context=None):
        calls["n"] += 1
        lp = original(x, context)
        return lp * float("nan") if calls["n"] % 2 == 0 else lp

    flow.log_prob = poisoned  # instance attribute, not a torch patch
    h = fit(flow, x, steps=10, batch_size=64, progress=False)
    assert h.skipped_batches == 5
    assert all(torch.isfinite(p).all() for p in flow.parameters())


@pytest.mark.parametrize(
    "data, error",
    [
        (np.array([["a", "b"]]), TypeError),
        (torch.randn(10, 3), ValueError),
        (torch.tensor([[0.0, float("nan")]]), ValueError),
        (torch.empty(0, 2), ValueError),
        ([1, 2, 3], TypeError),
    ],
)
def test_fit_rejects_bad_data(data, error):
    with pytest.raises(error):
        fit(RealNVP(2, layers=2, hidden=(8,)), data, steps=1, progress=False)


def test_fit_rejects_bad_settings():
    x = toy("moons", 64)
    flow = RealNVP(2, layers=2, hidden=(8,))
    with pytest.raises(ValueError):
        fit(flow, x, steps=10, epochs=1, progress=False)
    with pytest.raises(ValueError):
        fit(flow, x, steps=-1, progress=False)
    with pytest.raises(ValueError):
        fit(flow, x, steps=1, batch_size=0, progress=False)


@pytest.mark.slow
def test_fit_reaches_entropy_of_checkerboard():
    """Checkerboard (entropy log 32 ≈ 3.466 nats) needs a spline flow: NSF coupling, within 0.1 nats."""
    from pushforward.flows import NSF

    torch.manual_seed(0)
    flow = NSF(2, layers=5, hidden=(64, 64), bins=8, bound=5.0)
    train, val, test = (toy("checkerboard", n, seed=s) for n, s in ((50000, 0), (5000, 1), (20000, 2)))
    fit(flow, train, val, steps=4000, batch_size=512, lr=2e-3, progress=False, seed=0)
    nll = evaluate_nll(flow, test)
    assert abs(nll - ENTROPY["checkerboard"]) < 0.1, nll
