"""Flow matching: the OT path, the learned field against the analytic Gaussian → Gaussian field, exact
log-densities afterwards, conditional training, early stopping, seeding and non-finite batches."""

import copy
import math

import pytest
import torch
from torch import nn

from pushforward import Flow
from pushforward.flows import FFJORD, RealNVP
from pushforward.train import TrainingDiverged, fit_flow_matching
from pushforward.train.flow_matching import continuous_layers, flow_matching_loss, ot_conditional_path
from pushforward.transforms.continuous import ContinuousFlow, TimeMLP

SIGMA_MIN = 1e-4


def gaussian_field(x, tau, mean, std, sigma_min=SIGMA_MIN):
    """dz/dτ of the marginal OT path from N(mean, std²) (τ = 0) to N(0, 1) (τ = 1), in closed form.

    In Lipman's time s = 1 - τ the marginal is N(s·mean, σ_s²), σ_s² = (1 - a s)² + s² std², a = 1 - σ_min,
    and the field is u = mean + (σ_s'/σ_s)(x - s·mean); the flow runs it backwards: dz/dτ = -u."""
    s = 1.0 - tau
    a = 1.0 - sigma_min
    var = (1 - a * s) ** 2 + s**2 * std**2
    dvar_half = -a * (1 - a * s) + s * std**2  # σ_s σ_s'
    return -(mean + dvar_half / var * (x - s * mean))


def normal_logpdf(x, mean, std):
    return -0.5 * ((x - mean) / std) ** 2 - math.log(std) - 0.5 * math.log(2 * math.pi)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_ot_path_endpoints_and_velocity(dtype):
    g = torch.Generator().manual_seed(0)
    x0, x1 = torch.randn(5, 3, generator=g, dtype=dtype), torch.randn(5, 3, generator=g, dtype=dtype)
    zero, one = torch.zeros(5, dtype=dtype), torch.ones(5, dtype=dtype)
    psi0, _ = ot_conditional_path(x0, x1, zero, 0.1)
    psi1, _ = ot_conditional_path(x0, x1, one, 0.1)
    torch.testing.assert_close(psi0, x0)
    torch.testing.assert_close(psi1, x1 + 0.1 * x0)
    s = torch.rand(5, generator=g, dtype=dtype)
    h = 1e-3
    (plus, u), (minus, _) = (ot_conditional_path(x0, x1, s + d, 0.1) for d in (h, -h))
    torch.testing.assert_close((plus - minus) / (2 * h), u, rtol=1e-3, atol=1e-3)


def test_loss_of_the_analytic_field_is_the_conditional_variance():
    """Plugging the exact marginal field into the loss leaves only E‖u_cond - u_marg‖², which is smaller
    than the loss of a zero field or of the field with the wrong time direction."""
    mean, std = 1.5, 0.5

    class Exact(nn.Module):
        def __init__(self, sign=1.0, flip=False):
            super().__init__()
            self.w = nn.Parameter(torch.zeros(()))
            self.sign, self.flip = sign, flip

        def forward(self, t, z, context=None):
            t = 1 - t if self.flip else t
            return self.sign * gaussian_field(z, t.reshape(-1, 1), mean, std) + self.w

    torch.manual_seed(0)
    x1 = mean + std * torch.randn(20000, 1, dtype=torch.float64)
    losses = {}
    for name, net in {"exact": Exact(), "flipped": Exact(flip=True), "negated": Exact(-1.0)}.items():
        flow = Flow(ContinuousFlow(1, net=net)).double()
        with torch.no_grad():
            losses[name] = float(flow_matching_loss(flow, x1, sigma_min=SIGMA_MIN))
    assert losses["exact"] < 0.5 * min(losses["flipped"], losses["negated"]), losses


@pytest.mark.slow
def test_learns_the_analytic_gaussian_field_and_a_normalised_density():
    mean, std = 1.5, 0.5
    torch.manual_seed(0)
    train = mean + std * torch.randn(8000, 1, dtype=torch.float64)
    val = mean + std * torch.randn(1000, 1, dtype=torch.float64)
    flow = FFJORD(1, hidden=(64, 64), trace="exact").double()
    history = fit_flow_matching(flow, train, val, steps=4000, batch_size=512, lr=3e-3, seed=0)
    assert history.best_step > 0 and history.skipped_batches == 0

    tau = torch.linspace(0.05, 0.95, 10, dtype=torch.float64)
    net = continuous_layers(flow)[0].dynamics.net
    errors = []
    for t in tau:
        s = 1 - t
        sd = math.sqrt((1 - (1 - SIGMA_MIN) * s) ** 2 + s**2 * std**2)
        z = s * mean + sd * torch.linspace(-2, 2, 41, dtype=torch.float64).unsqueeze(-1)
        with torch.no_grad():
            errors.append(net(t, z) - gaussian_field(z, t, mean, std))
    rms = float(torch.cat(errors).pow(2).mean().sqrt())
    assert rms < 0.12, rms  # the regression target is noisy: FM converges slowly

    grid = torch.linspace(mean - 6 * std, mean + 6 * std, 1201, dtype=torch.float64).unsqueeze(-1)
    with torch.no_grad():
        log_p = flow.log_prob(grid)
    mass = float(torch.trapezoid(log_p.exp(), grid.squeeze(-1)))
    assert abs(mass - 1) < 0.02, mass
    inner = grid.squeeze(-1).sub(mean).abs() < 2 * std
    err = (log_p[inner] - normal_logpdf(grid.squeeze(-1)[inner], mean, std)).abs().max()
    assert err < 0.2, float(err)


def _conditional_gaussian_fit():
    def mean_std(c):
        return 2 * c, 0.4 + 0.2 * c

    torch.manual_seed(1)
    c = torch.rand(8000, 1) * 2 - 1
    m, s = mean_std(c)
    theta = m + s * torch.randn(8000, 1)
    flow = FFJORD(1, context=1, hidden=(64, 64), trace="exact")
    fit_flow_matching(flow, (theta, c), (theta[:1000], c[:1000]), steps=4000, batch_size=512, lr=3e-3, seed=0)
    return flow, mean_std


@pytest.mark.slow
def test_conditional_flow_learns_a_context_dependent_gaussian():
    """The samples follow the context: mean 2c and std 0.4 + 0.2c for c in {-0.8, 0, 0.8}."""
    flow, mean_std = _conditional_gaussian_fit()
    for c0 in (-0.8, 0.0, 0.8):
        mu, sd = mean_std(c0)
        with torch.no_grad():
            draws = flow.sample((4000,), torch.tensor([c0]))
        assert abs(float(draws.mean()) - mu) < 0.07 and abs(float(draws.std()) - sd) < 0.07, (c0, mu, sd)


@pytest.mark.slow
@pytest.mark.xfail(
    reason="known gap (issue 16): after 4000 steps the conditional density is off by up to 0.8 nats at "
    "2 sd (0.2 nats near the mode) although its moments are right; needs a longer or better-conditioned fit",
    strict=False,
)
def test_conditional_flow_density_matches_pointwise():
    flow, mean_std = _conditional_gaussian_fit()
    for c0 in (-0.8, 0.0, 0.8):
        mu, sd = mean_std(c0)
        grid = mu + sd * torch.linspace(-2, 2, 21).unsqueeze(-1)
        with torch.no_grad():
            log_p = flow.log_prob(grid, torch.full((21, 1), c0))
        err = (log_p - normal_logpdf(grid.squeeze(-1), mu, sd)).abs().max()
        assert err < 0.25, (c0, float(err))


@pytest.mark.slow
def test_stacked_continuous_layers_share_the_path():
    """Two ODE layers, each covering half of the path, learn the same Gaussian as one."""
    mean, std = -1.0, 0.7
    torch.manual_seed(2)
    x = mean + std * torch.randn(6000, 1, dtype=torch.float64)
    flow = FFJORD(1, layers=2, hidden=(64, 64), trace="exact").double()
    fit_flow_matching(flow, x, steps=4000, batch_size=512, lr=3e-3, seed=0)
    grid = mean + std * torch.linspace(-2, 2, 21, dtype=torch.float64).unsqueeze(-1)
    with torch.no_grad():
        err = (flow.log_prob(grid) - normal_logpdf(grid.squeeze(-1), mean, std)).abs().max()
    assert err < 0.2, float(err)


def test_seeded_runs_are_identical_and_leave_the_global_rng_alone():
    x = torch.randn(300, 2)
    states = []
    for _ in range(2):
        torch.manual_seed(123)
        flow = FFJORD(2, hidden=(8,), trace="exact")
        rng = torch.get_rng_state()
        fit_flow_matching(flow, x, steps=5, batch_size=64, seed=7)
        assert torch.equal(rng, torch.get_rng_state())
        states.append(flow.state_dict())
    for k in states[0]:
        torch.testing.assert_close(states[0][k], states[1][k], rtol=0, atol=0)


def test_early_stopping_and_best_weights_restore():
    torch.manual_seed(0)
    x = torch.randn(400, 2)
    flow = FFJORD(2, hidden=(8,), trace="exact")
    snapshots = {}

    def spoil_at_the_end(step, loss):
        snapshots[step] = copy.deepcopy(flow.state_dict())
        if step == 12:
            with torch.no_grad():
                for p in flow.parameters():
                    p.add_(5 * torch.randn_like(p))

    history = fit_flow_matching(
        flow, x, x[:100], steps=12, batch_size=64, eval_every=1, callback=spoil_at_the_end
    )
    assert len(history.val_loss) == 12 and history.best_step < 12
    assert history.best_val_loss == min(history.val_loss)
    for k, v in flow.state_dict().items():
        torch.testing.assert_close(v, snapshots[history.best_step][k], rtol=0, atol=0)

    frozen = FFJORD(2, hidden=(8,), trace="exact")
    h = fit_flow_matching(frozen, x, x[:100], steps=50, batch_size=64, lr=1e-30, eval_every=1, patience=3)
    assert (
        h.stopped_early and len(h.val_loss) == 4
    )  # the first round sets the best, three more fail to beat it


def test_weight_average_is_the_warmed_up_moving_average_of_the_trajectory():
    torch.manual_seed(0)
    x = torch.randn(300, 2)
    flow = FFJORD(2, hidden=(8,), trace="exact")
    decay = 0.9
    average = [p.detach().clone() for p in flow.parameters()]
    live = []

    def follow(step, loss):  # an independent running average of the weights after each applied step
        t = step  # every step is applied here
        w = 1.0 - min(decay, (1.0 + t) / (10.0 + t))
        for a, p in zip(average, flow.parameters()):
            a.mul_(1 - w).add_(w * p.detach())
        live[:] = [p.detach().clone() for p in flow.parameters()]

    fit_flow_matching(flow, x, steps=30, batch_size=50, lr=1e-2, ema=decay, seed=0, callback=follow)
    for a, p in zip(average, flow.parameters()):
        torch.testing.assert_close(p.detach(), a, rtol=1e-5, atol=1e-6)
    assert any(
        (p.detach() - q).abs().max() > 1e-3 for p, q in zip(flow.parameters(), live)
    )  # not the raw ones

    # with validation data the loss is scored on the averaged weights, and the best averaged ones are kept
    flow2 = FFJORD(2, hidden=(8,), trace="exact")
    h = fit_flow_matching(
        flow2, x, x[:100], steps=30, batch_size=50, lr=1e-2, ema=decay, seed=0, eval_every=5
    )
    assert h.best_val_loss == min(h.val_loss)


class SometimesNaN(nn.Module):
    def __init__(self, bad_calls):
        super().__init__()
        self.inner, self.calls, self.bad_calls = TimeMLP(2, hidden=(8,)), 0, bad_calls

    def forward(self, t, z, context=None):
        self.calls += 1
        out = self.inner(t, z)
        return out * math.nan if self.calls in self.bad_calls else out


def test_non_finite_batches_are_skipped_and_all_non_finite_fails():
    torch.manual_seed(0)
    x = torch.randn(256, 2)
    flow = Flow(ContinuousFlow(2, net=SometimesNaN({2, 3})))
    history = fit_flow_matching(flow, x, steps=6, batch_size=64, seed=0)
    assert history.skipped_batches == 2
    assert all(torch.isfinite(p).all() for p in flow.parameters())

    always = Flow(ContinuousFlow(2, net=SometimesNaN(set(range(1, 100)))))
    with pytest.raises(TrainingDiverged, match="non-finite"):
        fit_flow_matching(always, x, steps=4, batch_size=64)


def test_bad_arguments():
    x = torch.randn(64, 2)
    with pytest.raises(ValueError, match="ContinuousFlow"):
        fit_flow_matching(RealNVP(2, layers=2, hidden=(8,)), x, steps=2)
    with pytest.raises(ValueError, match="augmented"):
        fit_flow_matching(FFJORD(2, hidden=(8,), augment=1), x, steps=2)
    flow = FFJORD(2, hidden=(8,))
    for kwargs, match in (
        (dict(sigma_min=1.0), "sigma_min"),
        (dict(steps=0), "steps"),
        (dict(batch_size=0), "batch_size"),
        (dict(patience=0), "patience"),
        (dict(schedule="linear"), "schedule"),
        (dict(ema=1.0), "ema"),
        (dict(ema=0.0), "ema"),
    ):
        with pytest.raises(ValueError, match=match):
            fit_flow_matching(flow, x, **kwargs)
    with pytest.raises(ValueError, match="conditional"):
        fit_flow_matching(FFJORD(2, context=1, hidden=(8,)), x, steps=2)
    with pytest.raises(ValueError, match="one time per row"):
        TimeMLP(2, hidden=(4,))(torch.rand(3), torch.randn(5, 2))
