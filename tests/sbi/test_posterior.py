"""Posterior: a Flow on θ; support, z-scoring, normalisation, MAP, shapes of the Flow convention (issues 16, 26)."""

import copy
import math

import pytest
import torch
from torch.distributions import Independent, MultivariateNormal, Uniform

from pushforward.distributions import BoxUniform
from pushforward.flows import NSF
from pushforward.flows.core import Flow
from pushforward.sbi import Posterior

DTYPES = [torch.float32, torch.float64]


def _perturb(module: torch.nn.Module, scale: float = 0.3, seed: int = 0) -> None:
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in module.parameters():
            p.add_(scale * torch.randn(p.shape, generator=g, dtype=p.dtype))


def _box_posterior(dtype, prior_kind="torch", context=3, perturb=0.3):
    low, high = torch.tensor([-1.0, 0.0]), torch.tensor([2.0, 0.5])
    prior = Independent(Uniform(low, high), 1) if prior_kind == "torch" else BoxUniform(low, high)
    flow = NSF(2, context=context, layers=2, hidden=(16, 16))
    _perturb(flow, perturb)
    post = Posterior.from_prior(flow, prior).to(dtype)
    return post, low.to(dtype), high.to(dtype)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("prior_kind", ["torch", "pushforward"])
def test_samples_always_inside_a_box_prior(dtype, prior_kind):
    torch.manual_seed(0)
    post, low, high = _box_posterior(dtype, prior_kind)
    # a very wide unconstrained spread pushes many samples into floating-point saturation of the sigmoid
    post.set_standardization(theta_scale=torch.tensor([40.0, 40.0]), x_scale=torch.full((3,), 0.2))
    theta = post.sample((4000,), torch.randn(3, dtype=dtype))
    assert theta.dtype == dtype and theta.shape == (4000, 2)
    assert bool(((theta > low) & (theta < high)).all())
    assert bool(torch.isfinite(post.log_prob(theta, torch.zeros(3, dtype=dtype))).all())
    batched = post.sample((7,), torch.randn(5, 3, dtype=dtype))
    assert batched.shape == (7, 5, 2) and bool(((batched > low) & (batched < high)).all())


@pytest.mark.parametrize("dtype", DTYPES)
def test_log_prob_is_minus_infinity_outside_the_support(dtype):
    post, _, _ = _box_posterior(dtype)
    theta = torch.tensor([[0.5, 0.25], [2.5, 0.25], [0.5, -0.1], [-3.0, 9.0]], dtype=dtype)
    lp = post.log_prob(theta, torch.zeros(3, dtype=dtype))
    assert bool(torch.isfinite(lp[0]))
    assert bool((lp[1:] == -math.inf).all())
    with pytest.raises(ValueError, match="theta"):
        post.log_prob(torch.tensor([[float("nan"), 0.1]], dtype=dtype), torch.zeros(3, dtype=dtype))
    with pytest.raises(ValueError, match="context has shape"):
        post.log_prob(theta, torch.zeros(4, dtype=dtype))


@pytest.mark.parametrize("dtype", DTYPES)
def test_z_scoring_round_trip_and_statistics(dtype):
    torch.manual_seed(1)
    post, low, high = _box_posterior(dtype)
    theta = low + (high - low) * torch.rand(3000, 2, dtype=dtype) ** 2  # skewed inside the box
    x = 5.0 + 3.0 * torch.randn(3000, 3, dtype=dtype)
    post.fit_standardization(theta, x)
    v, _ = post.theta_to_latent(theta)
    assert torch.allclose(v.mean(0), torch.zeros(2, dtype=dtype), atol=1e-4)
    assert torch.allclose(v.std(0), torch.ones(2, dtype=dtype), atol=1e-4)
    tol = 1e-4 if dtype == torch.float32 else 1e-10
    assert torch.allclose(post.latent_to_theta(v), theta, atol=tol)
    h = (x - post.x_loc) / post.x_scale
    assert torch.allclose(h.median(0).values, torch.zeros(3, dtype=dtype), atol=1e-3)  # robust: median, IQR
    # ladj is log|dv/dθ|: compare with autograd on one coordinate (the map is elementwise)
    t = theta[:5].clone().requires_grad_(True)
    vv, la = post.theta_to_latent(t)
    grads = torch.stack(
        [torch.autograd.grad(vv[:, j].sum(), t, retain_graph=True)[0][:, j] for j in range(2)], 1
    )
    assert torch.allclose(la, grads.abs().log().sum(1), atol=10 * tol)


def test_structured_z_scoring_uses_one_scale():
    flow = NSF(2, context=4, layers=1, hidden=(8, 8))
    post = Posterior(flow, embedding=torch.nn.Flatten(), x_shape=(2, 2))
    x = torch.randn(100, 2, 2) * torch.tensor([1.0, 10.0])
    post.fit_standardization(torch.randn(100, 2), x, z_score_x="auto")
    assert post.x_scale.shape == (2, 2) and torch.unique(post.x_scale).numel() == 1


@pytest.mark.parametrize("dtype", DTYPES)
def test_log_prob_integrates_to_one_over_a_box(dtype):
    post, low, high = _box_posterior(dtype, perturb=0.1)  # smooth enough for a 400² midpoint rule
    post.set_standardization(theta_loc=torch.tensor([0.3, -0.2]), theta_scale=torch.tensor([0.8, 1.5]))
    x = torch.tensor([0.4, -1.0, 2.0], dtype=dtype)
    n = 400
    g0 = low[0] + (high[0] - low[0]) * (torch.arange(n, dtype=dtype) + 0.5) / n
    g1 = low[1] + (high[1] - low[1]) * (torch.arange(n, dtype=dtype) + 0.5) / n
    grid = torch.cartesian_prod(g0, g1)
    with torch.no_grad():
        density = post.log_prob(grid, x).exp()
    cell = (high[0] - low[0]) * (high[1] - low[1]) / n**2
    assert float(density.sum() * cell) == pytest.approx(1.0, abs=0.01)


def test_log_prob_integrates_to_one_on_the_real_line():
    flow = NSF(1, context=2, layers=2, hidden=(16, 16))
    _perturb(flow, 0.1, seed=3)
    post = Posterior.from_prior(flow, torch.distributions.Normal(torch.zeros(1), 1.0)).double()
    post.set_standardization(theta_loc=torch.tensor([1.0]), theta_scale=torch.tensor([0.5]))
    grid = torch.linspace(-12, 14, 20001, dtype=torch.float64)[:, None]
    with torch.no_grad():
        density = post.log_prob(grid, torch.tensor([0.3, 0.1], dtype=torch.float64)).exp()
    assert float(torch.trapezoid(density, grid[:, 0])) == pytest.approx(1.0, abs=1e-3)


def test_map_finds_the_mode_of_a_gaussian_posterior():
    torch.manual_seed(0)
    flow = NSF(2, context=1, layers=1, hidden=(8, 8))  # zero-initialised: the identity, v ~ N(0, I)
    prior = MultivariateNormal(torch.zeros(2), torch.eye(2))
    post = Posterior.from_prior(flow, prior)
    post.set_standardization(theta_loc=torch.tensor([0.7, -1.2]), theta_scale=torch.tensor([0.3, 2.0]))
    mode = post.map(torch.zeros(1), num_init=100, starts=4, steps=100, lr=0.05)
    assert torch.allclose(mode, torch.tensor([0.7, -1.2]), atol=0.02)


def test_constructor_rejects_bad_flows():
    with pytest.raises(ValueError, match="conditional"):
        Posterior(NSF(2, layers=1, hidden=(8, 8)))
    with pytest.raises(TypeError, match="flow"):
        Posterior(torch.nn.Linear(2, 2))
    with pytest.raises(ValueError, match="x_shape"):
        Posterior(NSF(2, context=3, layers=1, hidden=(8, 8)), x_shape=(4,))
    post = Posterior(NSF(2, context=3, layers=1, hidden=(8, 8)))
    with pytest.raises(ValueError, match="positive"):
        post.set_standardization(theta_scale=torch.tensor([1.0, 0.0]))


def test_one_extreme_simulation_does_not_flatten_the_x_scale_and_far_observations_warn():
    from pushforward.sbi import NPE

    g = torch.Generator().manual_seed(0)
    theta = torch.rand(300, 1, generator=g) * 2 - 1
    x = theta + 0.1 * torch.randn(300, 1, generator=g)
    x[7] = 1e38
    prior = BoxUniform(-torch.ones(1), torch.ones(1))
    post = NPE(prior, flow="maf", layers=1, hidden=(8,), epochs=2, seed=0).fit(theta, x)
    assert float(post.x_scale) < 1.0  # the mean/std scale would be about 6e35
    with pytest.warns(RuntimeWarning, match="outside the range of the simulations"):
        post.sample((5,), torch.tensor([-1e30]))
    with pytest.raises(TypeError, match="sample_shape"):
        post.sample("12", torch.tensor([0.3]))
    with pytest.raises(TypeError, match="sample_shape"):
        post.sample(True, torch.tensor([0.3]))


@pytest.mark.parametrize("dtype", DTYPES)
def test_boundary_is_minus_infinity_and_an_extreme_row_does_not_spoil_the_batch(dtype):
    post, low, high = _box_posterior(dtype)
    theta = torch.stack([low, high, (low + high) / 2])
    lp = post.log_prob(theta, torch.zeros(3, dtype=dtype))
    lp = lp.detach()
    assert lp[:2].tolist() == [-math.inf, -math.inf] and math.isfinite(float(lp[2]))
    huge = torch.finfo(dtype).max / 4
    x = torch.tensor([[0.1, 0.2, 0.3], [huge, -huge, huge], [0.0, 0.0, 0.0]], dtype=dtype)
    post.eval()  # in training mode the simulations' range is not checked (the training data lie in it)
    with pytest.warns(RuntimeWarning, match="outside the range"):
        post.set_standardization(
            x_loc=torch.zeros(3, dtype=dtype),
            x_scale=torch.full((3,), 1e-3, dtype=dtype),
            x_low=torch.full((3,), -1.0, dtype=dtype),
            x_high=torch.ones(3, dtype=dtype),
        )
        theta = torch.full((3, 2), 0.5, dtype=dtype) * (low + high)
        lp = post.log_prob(theta, x)
    assert torch.isfinite(lp[[0, 2]]).all()
    if dtype == torch.float64:  # the embedding overflows even in float64: that row alone is -inf
        assert lp[1] == -math.inf
    else:  # the row whose float32 embedding overflowed is scored again in float64, as every Flow does
        with pytest.warns(RuntimeWarning, match="outside the range"):
            ref = copy.deepcopy(post).double().log_prob(theta.double(), x.double())
        assert math.isfinite(float(ref[1])) and float(lp[1]) == pytest.approx(float(ref[1]), rel=1e-5)


@pytest.mark.parametrize("dtype", DTYPES)
def test_a_posterior_is_one_flow_chain_with_the_flow_convention(dtype):
    post, _, _ = _box_posterior(dtype)
    post.set_standardization(theta_loc=torch.tensor([0.2, -0.4]), theta_scale=torch.tensor([0.7, 1.3]))
    assert isinstance(post, Flow) and post.context_shape == (3,) and post.event_shape == (2,)
    assert [type(t).__name__ for t in post.transform.transforms][:2] == ["ColumnMaps", "Standardize"]
    torch.manual_seed(0)
    x = torch.randn(4, 3, dtype=dtype)
    theta, lp = post.sample_and_log_prob((6,), context=x)
    assert theta.shape == (6, 4, 2) and lp.shape == (6, 4)
    tol = 1e-4 if dtype == torch.float32 else 1e-10
    torch.testing.assert_close(post.log_prob(theta, context=x), lp, atol=tol, rtol=tol)
    # the chain is the support map, the z-scoring, the flow: log_prob is theirs, written out by hand
    v, ladj = post.theta_to_latent(theta[:, 0])
    z, ladj_flow = post.flow.transform(v, post.embedding(x[:1]).expand(6, -1))
    by_hand = post.base.log_prob(z) + ladj_flow + ladj
    torch.testing.assert_close(post.log_prob(theta[:, 0], x[0]), by_hand, atol=tol, rtol=tol)
    assert post.sample((3, 2), x[0]).shape == (3, 2, 2)
    assert post.in_support(theta).all()


def test_an_embedding_is_the_flows_context_path_and_trains_with_it():
    from pushforward.nets.embedding import MLPEmbedding

    torch.manual_seed(0)
    net = MLPEmbedding((2, 3), 4, hidden=(8,))
    post = Posterior(NSF(1, context=4, layers=1, hidden=(8,)), embedding=net)
    assert post.context_shape == (2, 3) and post.embedding.net is net
    x = torch.randn(5, 2, 3)
    assert post.sample((7,), x).shape == (7, 5, 1) and post.sample((7,), x[0]).shape == (7, 1)
    post.log_prob(torch.randn(5, 1), x).sum().backward()
    assert all(p.grad is not None for p in net.parameters())
    with pytest.raises(ValueError, match="context has shape"):
        post.log_prob(torch.randn(5, 1), torch.randn(5, 6))
