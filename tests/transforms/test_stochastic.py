"""Stochastic normalizing flow layers: path weights, unbiased log Z on a target with known Z, VI training."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from pushforward import Flow, fit_vi
from pushforward.transforms import Affine, Compose, Langevin, MetropolisHastings, is_exact
from pushforward.transforms.stochastic import langevin_log_ratio

LOG_Z = math.log(3.0)


class TwoModes(nn.Module):
    """Unnormalised mixture ``3 · (½ N((−1.2, 0), 0.7²I) + ½ N((1.2, 0), 0.7²I))``: Z = 3 exactly."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        centres = torch.tensor([[-1.2, 0.0], [1.2, 0.0]], dtype=x.dtype)
        sq = ((x[:, None, :] - centres) ** 2).sum(-1) / 0.49
        log_comp = -0.5 * sq - math.log(2 * math.pi * 0.49)
        return torch.logsumexp(log_comp, 1) + math.log(0.5) + LOG_Z


def _snf(target: nn.Module) -> Flow:
    return Flow(
        Compose(
            [
                Affine(2),
                Langevin(2, target, step_size=0.05, steps=2),
                Affine(2),
                MetropolisHastings(2, target, scale=0.6, steps=3),
            ]
        )
    ).double()


def _weights(flow: Flow, target: nn.Module, n: int) -> torch.Tensor:
    with torch.no_grad():
        x, log_q = flow.sample_and_log_prob((n,))
        return target(x) - log_q


def test_path_weights_keep_the_normalising_constant_unbiased():
    """mean(w) → Z: within 4 standard errors; dropping the path weights biases it (so the test can fail)."""
    torch.manual_seed(0)
    target = TwoModes()
    flow = _snf(target)
    log_w = _weights(flow, target, 40_000)
    w = log_w.exp()
    z_hat, se = float(w.mean()), float(w.std() / math.sqrt(w.numel()))
    assert abs(z_hat - 3.0) < 4 * se, (z_hat, se)
    assert se < 0.1
    # the same draws without the stochastic layers' path weights: biased
    torch.manual_seed(0)
    with torch.no_grad():
        z = flow.base.sample((40_000,))
        y, ladj = flow.transform[0].inverse(z)
        log_q = flow.base.log_prob(z) - ladj
        y, _ = flow.transform[1].inverse(y)
        y, ladj = flow.transform[2].inverse(y)
        log_q = log_q - ladj
        y, _ = flow.transform[3].inverse(y)
        biased = (target(y) - log_q).exp()
    assert abs(float(biased.mean()) - 3.0) > 4 * float(biased.std() / math.sqrt(biased.numel()))


def test_langevin_path_weight_matches_the_gaussian_kernels():
    torch.manual_seed(1)
    y, y_new, g, g_new = (torch.randn(5, 3, dtype=torch.float64) for _ in range(4))
    step = torch.tensor(0.07, dtype=torch.float64)

    def kernel(a, b, grad):
        return torch.distributions.Normal(a + step * grad, torch.sqrt(2 * step)).log_prob(b).sum(-1)

    expected = kernel(y_new, y, g_new) - kernel(y, y_new, g)
    torch.testing.assert_close(langevin_log_ratio(y, y_new, g, g_new, step), expected)


def test_metropolis_hastings_leaves_the_target_invariant():
    torch.manual_seed(2)
    target = TwoModes()
    layer = MetropolisHastings(2, target, scale=0.8, steps=20).double()
    x = torch.where(torch.rand(20_000, 1) < 0.5, -1.2, 1.2) * torch.tensor([1.0, 0.0]) + 0.7 * torch.randn(
        20_000, 2
    )
    with torch.no_grad():
        y, _ = layer.inverse(x.double())
    torch.testing.assert_close(y.mean(0), torch.zeros(2, dtype=torch.float64), atol=0.04, rtol=0)
    torch.testing.assert_close(
        y.var(0), torch.tensor([1.44 + 0.49, 0.49], dtype=torch.float64), atol=0.06, rtol=0
    )


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_fit_vi_trains_a_stochastic_flow(dtype):
    torch.manual_seed(3)
    target = TwoModes()
    flow = _snf(target).to(dtype)
    assert not is_exact(flow.transform)
    before = float(_weights(flow, target, 4000).mean())
    history = fit_vi(flow, target, steps=150, samples=128, lr=1e-2, eval_samples=8000, seed=3)
    result = history.extras
    assert history.skipped_batches == 0  # a diverged run raises TrainingDiverged
    assert result["final_elbo"] > before
    assert result["final_elbo"] <= LOG_Z + 3 * result["elbo_stderr"]
    assert abs(result["log_z"] - LOG_Z) < max(4 * result["log_z_stderr"], 0.02)
    langevin = flow.transform[1]
    assert langevin.log_step.grad is not None


def test_bad_targets_are_refused():
    with pytest.raises(TypeError, match="callable"):
        Langevin(2, 3.0)
    with pytest.raises(ValueError, match="steps"):
        MetropolisHastings(2, TwoModes(), steps=0)
    layer = Langevin(2, lambda x: x.sum())
    with pytest.raises(ValueError, match="one log-density per sample"):
        layer(torch.randn(4, 2))
