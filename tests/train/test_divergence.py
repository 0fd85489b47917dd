"""Divergence fails loudly: the shared guarded step, TrainingDiverged from fit, and the CLI exit status."""

import contextlib
import io

import numpy as np
import pytest
import torch

from pushforward import TrainingDiverged, fit
from pushforward.cli.main import main
from pushforward.data import toy
from pushforward.flows import MAF, RealNVP
from pushforward.train import skip_nonfinite_step


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_step_skips_nonfinite_loss_and_gradient(dtype):
    w = torch.nn.Parameter(torch.tensor([0.3, -1.2], dtype=dtype))
    opt = torch.optim.SGD([w], lr=0.1)
    before = w.detach().clone()
    assert not skip_nonfinite_step(w.sum() * float("nan"), [w], opt, clip_grad=1.0)
    assert torch.equal(w.detach(), before) and w.grad is None
    # finite loss, infinite gradient (sqrt at 0)
    assert not skip_nonfinite_step(torch.sqrt(w - w.detach()).sum(), [w], opt, clip_grad=None)
    assert torch.equal(w.detach(), before) and w.grad is None
    assert skip_nonfinite_step((w**2).sum(), [w], opt, clip_grad=1.0)
    assert not torch.equal(w.detach(), before)
    # an agreed verdict from elsewhere overrides the local check
    assert not skip_nonfinite_step((w**2).sum(), [w], opt, finite=False)


def test_fit_with_a_huge_learning_rate_raises():
    torch.manual_seed(0)
    x, v = torch.randn(512, 2), torch.randn(64, 2)
    with pytest.raises(TrainingDiverged, match="training diverged"):
        fit(MAF(2), x, v, steps=200, batch_size=64, lr=10.0, progress=False, seed=0)


def test_fit_raises_as_soon_as_most_batches_must_be_skipped():
    flow = RealNVP(2, layers=2, hidden=(8,))
    original = flow.log_prob
    calls = {"n": 0}

    def mostly_nan(x, context=None):
        calls["n"] += 1
        lp = original(x, context)
        return lp if calls["n"] % 4 == 0 else lp * float("nan")

    flow.log_prob = mostly_nan  # instance attribute, not a torch patch
    with pytest.raises(TrainingDiverged, match="non-finite") as info:
        fit(flow, toy("moons", 64, seed=0), steps=40, batch_size=64, progress=False)
    e = info.value
    assert e.skipped == 21 and e.steps < 40  # stopped once 21 of 40 skips were certain
    assert e.history is not None and e.history.skipped_batches == e.skipped


def test_fit_raises_when_training_made_the_flow_worse_than_untrained():
    # lr=10 on a small MAF: every batch finite, but the validation NLL ends thousands of nats above the start
    torch.manual_seed(0)
    x, v = torch.randn(512, 2), torch.randn(64, 2)
    with pytest.raises(TrainingDiverged, match="worse than the untrained"):
        fit(MAF(2, layers=2, hidden=(32, 32)), x, v, steps=60, batch_size=64, lr=10.0, progress=False, seed=0)


def test_fit_raises_when_no_validation_score_is_finite():
    flow = RealNVP(2, layers=2, hidden=(8,))
    original = flow.log_prob

    def nan_in_eval(x, context=None):
        lp = original(x, context)
        return lp if flow.training else lp * float("nan")

    flow.log_prob = nan_in_eval  # instance attribute, not a torch patch
    x = toy("moons", 128, seed=0)
    with pytest.raises(TrainingDiverged, match="no finite validation"):
        fit(flow, x, x[:32], steps=10, batch_size=64, progress=False)


def test_max_skipped_fraction_is_validated_and_can_allow_skips():
    x = toy("moons", 64, seed=0)
    with pytest.raises(ValueError, match="max_skipped_fraction"):
        fit(RealNVP(2, layers=1, hidden=(4,)), x, steps=2, max_skipped_fraction=1.5, progress=False)


def test_cli_fit_divergence_exits_nonzero_without_writing(tmp_path):
    rng = np.random.default_rng(0)
    np.savetxt(tmp_path / "d.csv", rng.normal(size=(400, 2)), delimiter=",")
    out = tmp_path / "m.safetensors"
    err = io.StringIO()
    with contextlib.redirect_stderr(err):
        argv = "fit D --flow maf --layers 2 --hidden 16 --steps 150 --lr 1000 --batch-size 64 --no-progress --out M"
        rc = main([{"D": str(tmp_path / "d.csv"), "M": str(out)}.get(a, a) for a in argv.split()])
    lines = [ln for ln in err.getvalue().splitlines() if "error" in ln]
    assert rc == 1 and not out.exists()
    assert len(lines) == 1 and "diverged" in lines[0] and "Traceback" not in err.getvalue()
