"""Flow: shapes, sampling, context, dtype/device agnosticism and clear errors on bad input."""

import math

import numpy as np
import pytest
import torch

from pushforward import Flow
from pushforward.distributions import DiagNormal, MixtureOfGaussians, StandardNormal
from pushforward.flows import FFJORD, NICE, PRESETS, RealNVP
from pushforward.transforms import AffineCoupling, Compose, Shift, half_mask

torch.set_default_dtype(torch.float32)


def small_flow(context=0):
    return RealNVP(3, layers=4, hidden=(16,), context=context)


def test_log_prob_and_sample_shapes():
    flow = small_flow()
    assert flow.log_prob(torch.randn(7, 3)).shape == (7,)
    assert flow.log_prob(torch.randn(2, 5, 3)).shape == (2, 5)
    assert flow.sample((4,)).shape == (4, 3)
    assert flow.sample(6).shape == (6, 3)
    assert flow.sample((2, 3)).shape == (2, 3, 3)
    x, lp = flow.sample_and_log_prob((5,))
    assert x.shape == (5, 3) and lp.shape == (5,)


def test_sample_and_log_prob_agrees_with_log_prob():
    torch.manual_seed(0)
    flow = small_flow()
    with torch.no_grad():
        for p in flow.parameters():
            p.add_(0.2 * torch.randn_like(p))
    x, lp = flow.sample_and_log_prob((50,))
    torch.testing.assert_close(lp, flow.log_prob(x), atol=1e-4, rtol=1e-4)


def test_conditional_shapes():
    flow = small_flow(context=2)
    c = torch.randn(4, 2)
    assert flow.log_prob(torch.randn(4, 3), c).shape == (4,)
    assert flow.log_prob(torch.randn(4, 3), torch.randn(2)).shape == (4,)  # broadcast context
    assert flow.sample((5,), c).shape == (5, 4, 3)
    x, lp = flow.sample_and_log_prob((5,), c)
    assert x.shape == (5, 4, 3) and lp.shape == (5, 4)
    torch.testing.assert_close(lp, flow.log_prob(x, c.expand(5, 4, 2)), atol=1e-4, rtol=1e-4)
    with pytest.raises(ValueError, match="conditional"):
        flow.log_prob(torch.randn(4, 3))
    with pytest.raises(ValueError, match="context"):
        flow.log_prob(torch.randn(4, 3), torch.randn(3, 2))


def test_rsample_is_differentiable():
    flow = small_flow()
    x = flow.rsample((8,))
    x.sum().backward()
    assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in flow.parameters())


def test_float64_and_to():
    flow = small_flow().to(torch.float64)
    x = torch.randn(5, 3, dtype=torch.float64)
    assert flow.log_prob(x).dtype == torch.float64
    assert flow.sample((3,)).dtype == torch.float64


@pytest.mark.skipif(not torch.cuda.is_available(), reason="no GPU")
def test_cuda():
    flow = small_flow().cuda()
    assert flow.log_prob(torch.randn(5, 3, device="cuda")).device.type == "cuda"
    assert flow.sample((3,)).device.type == "cuda"


@pytest.mark.parametrize(
    "bad, error, match",
    [
        (torch.randn(5, 4), ValueError, "shape"),
        (torch.tensor([[0.0, float("nan"), 1.0]]), ValueError, "NaN"),
        (torch.tensor([[0.0, float("inf"), 1.0]]), ValueError, "inf"),
        (torch.randn(5, 3, dtype=torch.float64), TypeError, "dtype"),
        (torch.ones(5, 3, dtype=torch.long), TypeError, "floating"),
        (torch.empty(0, 3), ValueError, "empty"),
        (np.zeros((5, 3)), TypeError, "torch.Tensor"),
        (torch.randn(3), ValueError, "shape"),
    ],
)
def test_bad_input_raises_clear_errors(bad, error, match):
    with pytest.raises(error, match=match):
        small_flow().log_prob(bad)


def test_unconditional_flow_rejects_context():
    with pytest.raises(ValueError, match="unconditional"):
        small_flow().log_prob(torch.randn(2, 3), torch.randn(2, 1))


def test_flow_rejects_mismatched_base():
    with pytest.raises(ValueError, match="base event shape"):
        Flow(Shift(3), StandardNormal(4))
    with pytest.raises(TypeError):
        Flow(torch.nn.Linear(2, 2))


def test_compose_rejects_mismatched_shapes():
    with pytest.raises(ValueError, match="cannot compose"):
        Compose([Shift(3), Shift(4)])
    with pytest.raises(ValueError):
        Compose([])


@pytest.mark.parametrize("base", [DiagNormal(2, loc=1.0, scale=2.0), MixtureOfGaussians(2, 3)])
def test_learnable_bases(base):
    flow = Flow(Compose([AffineCoupling(half_mask(2), hidden=(8,))]), base)
    x, lp = flow.sample_and_log_prob((6,))
    torch.testing.assert_close(lp, flow.log_prob(x), atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("name", sorted(PRESETS))
def test_every_preset_shares_the_signature(name):
    """Every preset takes (features, *, context, layers, hidden) and returns a working Flow.

    Presets without a conditioner (planar, radial, Sylvester) reject a context with a clear ValueError.
    """
    if name in {"realnvp_image", "glow"}:
        pytest.skip("image presets take an image shape; covered by the image tests")
    try:
        flow = PRESETS[name](2, context=1, layers=2, hidden=(8,))
    except ValueError as err:
        assert "context" in str(err)
        flow = PRESETS[name](2, context=0, layers=2, hidden=(8,))
        assert isinstance(flow, Flow)
        lp = flow.log_prob(torch.randn(3, 2))
    else:
        assert isinstance(flow, Flow)
        lp = flow.log_prob(torch.randn(3, 2), torch.randn(3, 1))
    assert lp.shape == (3,) and torch.isfinite(lp).all()


def test_nice_is_volume_preserving_until_the_rescaling():
    flow = NICE(4, hidden=(8,))
    with torch.no_grad():
        for p in flow.parameters():
            p.add_(0.3 * torch.randn_like(p))
    x = torch.randn(5, 4)
    with torch.no_grad():
        _, ladj = flow.transform(x)
        expected = float(flow.transform[-1].log_scale.sum())
    assert not math.isclose(expected, 0.0, abs_tol=1e-3)
    torch.testing.assert_close(ladj, torch.full((5,), expected))


@pytest.mark.parametrize("context_shape", [(2,), (4, 2), (3, 4, 2)])
def test_every_flow_shares_the_sample_shapes(context_shape):
    # Flow and AugmentedFlow used to have two sampling paths: with a 1-D context, (5, 2) vs (5, 1, 2)
    torch.manual_seed(0)
    c = torch.randn(*context_shape)
    plain = RealNVP(2, context=2, layers=2, hidden=(8,))
    augmented = FFJORD(2, context=2, hidden=(8,), augment=1, method="rk4", options={"step_size": 0.5})
    want = (5, *context_shape[:-1], 2)
    with torch.no_grad():
        for flow in (plain, augmented):
            assert flow.sample((5,), c).shape == want
            x, lp = flow.sample_and_log_prob((5,), c)
            assert x.shape == want and lp.shape == want[:-1]
