"""Surjective layers: exact densities integrate / sum to 1, stochastic ones bound the exact log-likelihood from
below (gap reported), sampling agrees with the density, bad input is refused."""

from __future__ import annotations

import math

import pytest
import torch

from pushforward import Flow
from pushforward.distributions.base import StandardNormal
from pushforward.transforms import (
    AbsoluteValue,
    Augment,
    Compose,
    LULinear,
    MaxPool,
    Slice,
    Sort,
    VariationalDequantization,
    is_exact,
)
from pushforward.transforms.surjective import cumulate, increments, inverse_softplus, softplus


def _perturbed(flow: Flow, scale: float = 0.3, seed: int = 0) -> Flow:
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in flow.parameters():
            p.add_(scale * torch.randn(p.shape, generator=g, dtype=p.dtype))
    return flow


def _grid(limit: float = 9.0, n: int = 721) -> tuple[torch.Tensor, float]:
    g = torch.linspace(-limit, limit, n, dtype=torch.float64)
    return torch.cartesian_prod(g, g), float(g[1] - g[0]) ** 2


EXACT_2D = {
    "abs": lambda: Flow(Compose([AbsoluteValue(2), LULinear(2)])),
    "sort": lambda: Flow(Compose([Sort(2), LULinear(2)])),
    "slice": lambda: Flow(Compose([LULinear(2), Slice(2, keep=1, hidden=(8,))])),
    "maxpool": lambda: Flow(MaxPool((1, 1, 2), kernel=(1, 2))),
}


@pytest.mark.parametrize("name", sorted(EXACT_2D))
def test_exact_density_integrates_to_one_on_a_2d_grid(name):
    """The grid mass over the box equals the probability of the box, estimated by sampling (the sorted
    model's log-normal gaps put ~1 % of the mass outside any small box, so "1" is the total over all
    space: box mass + sampled mass outside)."""
    torch.manual_seed(0)
    flow = _perturbed(EXACT_2D[name]().double(), 0.2)
    limit = 9.0
    x, cell = _grid(limit)
    if name == "maxpool":
        x = x.reshape(-1, 1, 1, 2)
    with torch.no_grad():
        box_mass = float(flow.log_prob(x).exp().sum()) * cell
        draws = flow.sample((100_000,)).reshape(100_000, 2)
    outside = float((draws.abs() > limit).any(1).double().mean())
    assert is_exact(flow.transform)
    assert box_mass + outside == pytest.approx(1.0, abs=3e-3)
    assert box_mass > 0.95


@pytest.mark.parametrize("name", sorted(EXACT_2D))
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_exact_sample_and_log_prob_agree(name, dtype):
    torch.manual_seed(1)
    flow = _perturbed(EXACT_2D[name]().to(dtype), 0.2)
    x, log_p = flow.sample_and_log_prob((64,))
    assert x.dtype == dtype
    torch.testing.assert_close(log_p, flow.log_prob(x), atol=1e-4 if dtype == torch.float32 else 1e-9, rtol=0)


def test_abs_samples_follow_the_density():
    """Sign frequency matches the learned probability; E[x] from samples matches the grid integral."""
    torch.manual_seed(2)
    flow = Flow(Compose([AbsoluteValue(2), LULinear(2)])).double()
    with torch.no_grad():
        flow.transform[0].sign_logits.copy_(torch.tensor([1.5, -0.5]))
    flow = _perturbed(flow, 0.1, seed=3)
    p_pos = torch.sigmoid(flow.transform[0].sign_logits.detach())
    x = flow.sample((40_000,))
    freq = (x > 0).double().mean(0)
    torch.testing.assert_close(freq, p_pos, atol=0.015, rtol=0)
    grid, cell = _grid()
    with torch.no_grad():
        mean_grid = (flow.log_prob(grid).exp()[:, None] * grid).sum(0) * cell
    torch.testing.assert_close(x.mean(0), mean_grid, atol=0.05, rtol=0)


def test_abs_with_symmetric_signs_is_sign_invariant_and_sort_is_exchangeable():
    flow = Flow(Compose([AbsoluteValue(2), LULinear(2)]))
    x = torch.randn(10, 2)
    torch.testing.assert_close(flow.log_prob(x), flow.log_prob(-x))
    layer = Sort((5, 2))
    flow = Flow(layer)
    x = torch.randn(3, 5, 2)
    torch.testing.assert_close(flow.log_prob(x), flow.log_prob(x[:, torch.randperm(5)]))


def test_sort_sums_to_one_on_an_enumerable_space():
    """Sets of 3 distinct integers from 0..7: the sorting layer's probability mass sums to 1 when the sorted
    model is a distribution on ordered triples (uniform here, 1 / C(8, 3) each)."""
    import itertools

    values = torch.tensor(list(itertools.permutations(range(8), 3)), dtype=torch.float64)
    layer = Sort(3, unconstrained=False)
    z, contribution = layer(values)
    log_p_sorted = -math.log(math.comb(8, 3))  # uniform over ordered triples
    total = float((contribution + log_p_sorted).exp().sum())
    assert total == pytest.approx(1.0, abs=1e-12)
    assert bool((z[:, 1:] > z[:, :-1]).all())


def test_increments_and_softplus_formulas_invert():
    y = torch.randn(5, 4, dtype=torch.float64).sort(-1).values
    u, ladj = increments(y)
    y2, ladj2 = cumulate(u)
    torch.testing.assert_close(y2, y)
    torch.testing.assert_close(ladj2, -ladj)
    z = torch.rand(5, 3, dtype=torch.float64) * 4 + 1e-3
    u, logd = inverse_softplus(z)
    z2, logd2 = softplus(u)
    torch.testing.assert_close(z2, z)
    torch.testing.assert_close(logd2, -logd)
    zz = z.clone().requires_grad_(True)
    (derivative,) = torch.autograd.grad(inverse_softplus(zz)[0].sum(), zz)  # elementwise map
    torch.testing.assert_close(logd, derivative.log())


def _exact_augmented_log_prob(flow: Flow, x: torch.Tensor) -> torch.Tensor:
    """log ∫ p(x, e) de on a fine grid of the one added dimension (the exact marginal)."""
    lin = flow.transform[1]
    e = torch.linspace(-12, 12, 4001, dtype=torch.float64)
    xe = torch.cat([x.repeat_interleave(e.numel(), 0), e.repeat(x.shape[0])[:, None]], 1)
    z, ladj = lin(xe)
    log_joint = (StandardNormal(3).double().log_prob(z) + ladj).reshape(x.shape[0], -1)
    return torch.logsumexp(log_joint, 1) + math.log(float(e[1] - e[0]))


def test_augment_bound_lies_below_the_exact_log_likelihood():
    torch.manual_seed(4)
    flow = _perturbed(Flow(Compose([Augment(2, extra=1, hidden=(8,)), LULinear(3)])).double(), 0.15)
    assert not is_exact(flow.transform)
    x = torch.randn(6, 2, dtype=torch.float64)
    with torch.no_grad():
        exact = _exact_augmented_log_prob(flow, x)
        draws = flow.log_prob(x.repeat(4000, 1)).view(4000, x.shape[0])  # 4000 draws of e per point
    bound = draws.mean(0)
    stderr = draws.std(0) / math.sqrt(draws.shape[0])
    gap = exact - bound
    print("augment: exact - bound per point (nats):", [round(float(v), 4) for v in gap])
    assert bool((gap > -3 * stderr).all()), gap
    assert float(gap.mean()) > 0.0
    # importance-weighted: log mean exp of the draws is consistent for the exact value
    iw = torch.logsumexp(draws, 0) - math.log(draws.shape[0])
    torch.testing.assert_close(iw, exact, atol=0.05, rtol=0)


def test_dequantization_bound_and_discrete_mass():
    """A normal model of z = x + u: P(x) = Φ(x+1) − Φ(x) exactly; the bound is below log P(x) (gap reported)
    and the importance-weighted estimates of P(x) sum to ~1 over the integers."""
    torch.manual_seed(5)
    layer = VariationalDequantization(1, hidden=(8,)).double()
    flow = _perturbed(Flow(layer), 0.1)
    xs = torch.arange(-6, 6, dtype=torch.float64)[:, None]
    normal = torch.distributions.Normal(0.0, 1.0)
    exact = torch.log(normal.cdf(xs[:, 0] + 1) - normal.cdf(xs[:, 0]))
    with torch.no_grad():
        draws = flow.log_prob(xs.repeat(3000, 1)).view(3000, xs.shape[0])
    bound = draws.mean(0)
    gap = exact - bound
    print("dequantization: log P(x) - bound (nats):", [round(float(v), 4) for v in gap])
    assert bool((gap > -0.02).all()) and float(gap.mean()) > 0
    # importance-weighted estimates of P(x) are unbiased (their weights are heavy-tailed where q vanishes at
    # u -> 0, 1, so a finite average sits slightly low); the bounds' total mass is below 1
    mass = float((torch.logsumexp(draws, 0) - math.log(draws.shape[0])).exp().sum())
    assert mass == pytest.approx(1.0, abs=0.05)
    assert float(bound.exp().sum()) < mass


def test_stochastic_sample_and_log_prob_shapes():
    flow = Flow(Compose([Augment(2, extra=2, hidden=(8,)), LULinear(4)]))
    x, lp = flow.sample_and_log_prob((7,))
    assert x.shape == (7, 2) and lp.shape == (7,) and torch.isfinite(lp).all()
    deq = Flow(VariationalDequantization(2))
    x = deq.sample((5,))
    assert bool((x == x.floor()).all())


def test_bad_input_is_refused():
    with pytest.raises(ValueError, match="integer"):
        VariationalDequantization(2)(torch.tensor([[0.5, 1.0]]))
    with pytest.raises(ValueError, match="keep"):
        Slice(3, keep=3)
    with pytest.raises(ValueError, match="divisible"):
        MaxPool((1, 3, 4), kernel=2)
    with pytest.raises(ValueError, match="key"):
        Sort((4, 2), key=2)
    with pytest.raises(ValueError, match="shape"):
        Flow(Sort((4, 2))).log_prob(torch.randn(3, 4))
    with pytest.raises(ValueError):
        Flow(AbsoluteValue(2)).log_prob(torch.tensor([[float("nan"), 1.0]]))
