"""The one engine, run through every loss: a diverging rate raises TrainingDiverged, kill + resume gives the
weights of the uninterrupted run, and settings that cannot work are refused before the first step."""

from __future__ import annotations

import math

import pytest
import torch
from torch.utils.data import DataLoader, TensorDataset

from pushforward.distributions import BoxUniform
from pushforward.flows import FFJORD, MAF, Glow, PlanarFlow, RealNVP
from pushforward.flows.dequantization import DequantizedFlow
from pushforward.inference.vi import ReverseKL
from pushforward.sbi.posterior import Posterior
from pushforward.train import TrainConfig, TrainingDiverged, train
from pushforward.train.engine import lr_factor
from pushforward.train.losses import BitsPerDim, FlowMatching, MaximumLikelihood

torch.set_num_threads(1)


def _ml():
    return RealNVP(2, layers=1, hidden=(8,)), MaximumLikelihood(), torch.randn(96, 2), torch.randn(32, 2)


def _ml_context():
    c = torch.randn(96, 1)
    x = torch.randn(96, 2) + c
    return MAF(2, context=1, layers=1, hidden=(8,)), MaximumLikelihood(), (x, c), (x[:32], c[:32])


def _flow_matching():
    x = torch.randn(96, 2)
    return FFJORD(2, hidden=(8,), trace="exact"), FlowMatching(), x, x[:32]


def _vi():
    return (
        PlanarFlow(2, layers=2),
        ReverseKL(lambda z: -0.5 * (z**2).sum(-1), samples=32, eval_samples=0),
        None,
        None,
    )


def _simulations():
    prior = BoxUniform(-torch.ones(1), torch.ones(1))
    theta = prior.sample((96,))
    return prior, theta, theta + 0.1 * torch.randn(96, 1)


def _npe():
    prior, theta, x = _simulations()
    post = Posterior.from_prior(MAF(1, context=1, layers=1, hidden=(8,)), prior)
    post.fit_standardization(theta, x)
    return post, MaximumLikelihood(), (theta, x), (theta[:32], x[:32])


def _fmpe():
    prior, theta, x = _simulations()
    post = Posterior.from_prior(FFJORD(1, context=1, hidden=(8,), trace="exact"), prior)
    post.fit_standardization(theta, x)
    return post, FlowMatching(), (theta, x), (theta[:32], x[:32])


def _bits_per_dim():
    x = torch.randint(0, 4, (64, 1, 4, 4)).float()
    return DequantizedFlow(Glow((1, 4, 4), levels=1, steps=1, hidden=(8,)), levels=4), BitsPerDim(), x, x[:16]


CASES = {
    "ml": _ml,
    "ml_context": _ml_context,
    "flow_matching": _flow_matching,
    "vi": _vi,
    "npe": _npe,
    "fmpe": _fmpe,
    "bits_per_dim": _bits_per_dim,
}


def make(name: str, seed: int = 0):
    torch.manual_seed(seed)
    return CASES[name]()


def weights(model):
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


@pytest.mark.parametrize("name", CASES)
def test_a_diverging_rate_raises_and_leaves_finite_weights(name):
    model, loss, data, val = make(name)
    cfg = TrainConfig(
        steps=30, batch_size=32, lr=1e30, clip_grad=None, schedule="constant", eval_every=1, seed=0
    )
    with pytest.raises(TrainingDiverged, match="training diverged"):
        train(model, loss, data, val, cfg)
    assert all(bool(torch.isfinite(p).all()) for p in model.parameters())


class Crash(Exception):
    pass


@pytest.mark.parametrize("name", CASES)
def test_kill_and_resume_gives_the_uninterrupted_weights(name, tmp_path):
    cfg = TrainConfig(steps=12, batch_size=32, lr=1e-2, eval_every=3, seed=5, ema=0.9)
    ref, loss, data, val = make(name)
    h_ref = train(ref, loss, data, val, cfg, checkpoint=tmp_path / "ref.ckpt", checkpoint_every=4)

    def crash(step, value):
        if step == 10:
            raise Crash

    model, loss, data, val = make(name)
    with pytest.raises(Crash):
        train(model, loss, data, val, cfg, checkpoint=tmp_path / "c.ckpt", checkpoint_every=4, callback=crash)
    model, loss, _, _ = make(name, seed=99)  # other initial weights: everything comes from the checkpoint
    h = train(model, loss, data, val, cfg, checkpoint=tmp_path / "c.ckpt", checkpoint_every=4, resume=True)
    assert h.resumed_from_step == 8 and h.train_loss == h_ref.train_loss and h.val_loss == h_ref.val_loss
    expected = weights(ref)
    for k, v in weights(model).items():
        torch.testing.assert_close(v, expected[k], rtol=0, atol=0, msg=k)


BAD_SETTINGS = [
    (dict(clip_grad=-1.0), ValueError, "clip_grad"),
    (dict(clip_grad=0.0), ValueError, "clip_grad"),
    (dict(lr=0.0), ValueError, "lr"),
    (dict(lr=-1e-3), ValueError, "lr"),
    (dict(lr=math.nan), ValueError, "lr"),
    (dict(eval_every=0), ValueError, "eval_every"),
    (dict(steps=0), ValueError, "steps"),
    (dict(steps=True), TypeError, "steps"),
    (dict(batch_size=2.5), TypeError, "batch_size"),
    (dict(schedule="linear"), ValueError, "schedule"),
    (dict(warmup=50, steps=10), ValueError, "warmup"),
]


@pytest.mark.parametrize("name", CASES)
@pytest.mark.parametrize("settings, error, match", BAD_SETTINGS)
def test_settings_that_cannot_work_are_refused_before_any_step(name, settings, error, match):
    model, loss, data, val = make(name)
    before = weights(model)
    calls = []
    with pytest.raises(error, match=match):
        train(model, loss, data, val, TrainConfig(**settings), callback=lambda s, v: calls.append(s))
    assert not calls
    for k, v in weights(model).items():
        torch.testing.assert_close(v, before[k], rtol=0, atol=0)


@pytest.mark.parametrize("name", [n for n in CASES if n != "vi"])
def test_empty_data_and_empty_loaders_are_refused(name):
    model, loss, data, _ = make(name)
    first = data[0] if isinstance(data, tuple) else data
    cfg = TrainConfig(steps=2)
    empty = (first[:0], data[1][:0]) if isinstance(data, tuple) else first[:0]
    with pytest.raises(ValueError, match="empty"):
        train(model, loss, empty, None, cfg)
    tensors = data if isinstance(data, tuple) else (data,)
    with pytest.raises(ValueError, match="empty"):  # fit used to loop forever here
        train(model, loss, DataLoader(TensorDataset(*(t[:0] for t in tensors)), batch_size=8), None, cfg)
    with pytest.raises(ValueError, match="empty"):  # used to report a validation NLL of 0.0
        train(model, loss, data, DataLoader(TensorDataset(*(t[:0] for t in tensors)), batch_size=8), cfg)


def test_a_data_free_loss_takes_no_data_and_epochs_need_data():
    model, loss, _, _ = make("vi")
    with pytest.raises(ValueError, match="data-free"):
        train(model, loss, torch.randn(10, 2), None, TrainConfig(steps=2))
    with pytest.raises(ValueError, match="epochs"):
        train(model, loss, None, None, TrainConfig(epochs=2))


def test_loss_units_reach_the_history_and_max_seconds_stops():
    model, loss, data, val = make("bits_per_dim")
    h = train(model, loss, data, val, TrainConfig(steps=10**6, batch_size=16, max_seconds=0.5, seed=0))
    assert h.units == "bits/dim" and h.stopped_early and h.stop_reason == "time" and h.steps[-1] < 10**6


def test_schedule_warms_up_then_anneals():
    assert [lr_factor(t, 10, 0, "cosine") for t in (0, 10)] == [1.0, 0.0]
    assert lr_factor(0, 10, 4, "constant") == 0.25 and lr_factor(9, 10, 4, "constant") == 1.0
