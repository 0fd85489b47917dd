"""The deep sigmoidal (NAF) transformer: monotone, onto, numerical inverse to 1e-6 in float64."""

from __future__ import annotations

import pytest
import torch

from pushforward.flows import NAF
from pushforward.inversion import ConvergenceError
from pushforward.transformers import DeepSigmoidTransformer
from pushforward.transformers.sigmoidal import sigmoid_layer, sigmoid_layer_inverse, sigmoid_layer_params

D64 = torch.float64


def _params(tau: DeepSigmoidTransformer, *shape: int, scale: float = 1.5, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return scale * torch.randn(*shape, tau.params_per_feature, generator=g, dtype=D64)


def test_zero_params_are_identity():
    tau = DeepSigmoidTransformer(units=5, depth=2)
    x = torch.linspace(-20, 20, 41, dtype=D64).reshape(-1, 1)
    y, logd = tau(x, torch.zeros(41, 1, tau.params_per_feature, dtype=D64))
    torch.testing.assert_close(y, x, atol=1e-5, rtol=1e-5)  # a = softplus(c) + 1e-6 ≈ 1
    torch.testing.assert_close(logd, torch.zeros_like(x), atol=1e-5, rtol=0)


@pytest.mark.parametrize("depth", [1, 3])
def test_inverse_float64(depth):
    tau = DeepSigmoidTransformer(units=8, depth=depth)
    x = 5 * torch.randn(400, 3, generator=torch.Generator().manual_seed(2), dtype=D64)
    p = _params(tau, 400, 3)
    y, logd = tau(x, p)
    x_rec, logd_inv = tau.inverse(y, p)
    torch.testing.assert_close(x_rec, x, atol=1e-6, rtol=0)
    torch.testing.assert_close(logd_inv, -logd, atol=1e-6, rtol=0)


def test_float32_inverse_converges():
    tau = DeepSigmoidTransformer(units=8, depth=2)
    p = _params(tau, 500, 2).float()
    x = 3 * torch.randn(500, 2)
    y, _ = tau(x, p)
    torch.testing.assert_close(tau.inverse(y, p)[0], x, atol=1e-3, rtol=1e-3)


def test_monotone_log_derivative_matches_autograd():
    tau = DeepSigmoidTransformer(units=6, depth=2)
    x = (4 * torch.randn(200, 2, generator=torch.Generator().manual_seed(4), dtype=D64)).requires_grad_(True)
    p = _params(tau, 200, 2)
    y, logd = tau(x, p)
    (grad,) = torch.autograd.grad(y.sum(), x)
    assert torch.all(grad > 0)
    torch.testing.assert_close(grad.log(), logd, atol=1e-9, rtol=0)


def test_large_inputs_are_finite_and_onto():
    log_a, b, log_w = sigmoid_layer_params(torch.randn(3, 12, dtype=D64))
    x = torch.tensor([-1e3, 0.0, 1e3], dtype=D64)
    y, logd = sigmoid_layer(x, log_a, b, log_w)
    assert torch.isfinite(y).all() and torch.isfinite(logd).all()
    assert y[0] < -100 and y[2] > 100  # linear tails: onto ℝ


def test_inverse_gradient_is_implicit_gradient():
    log_a, b, log_w = (t.requires_grad_(True) for t in sigmoid_layer_params(torch.randn(4, 9, dtype=D64)))
    y = torch.randn(4, dtype=D64, requires_grad=True)
    x = sigmoid_layer_inverse(y, log_a, b, log_w)
    (dx_dy,) = torch.autograd.grad(x.sum(), y)
    _, logd = sigmoid_layer(x.detach(), log_a.detach(), b.detach(), log_w.detach())
    torch.testing.assert_close(dx_dy, torch.exp(-logd), atol=1e-10, rtol=1e-8)


def test_bad_configuration_raises():
    with pytest.raises(ValueError, match="units"):
        DeepSigmoidTransformer(units=0)
    with pytest.raises(TypeError, match="depth"):
        DeepSigmoidTransformer(depth=1.0)  # type: ignore[arg-type]
    tau = DeepSigmoidTransformer(units=2)
    with pytest.raises(ValueError, match="6 parameters"):
        tau(torch.zeros(2, 3), torch.zeros(2, 3, 5))


def test_saturated_inverse_raises_instead_of_a_wrong_answer():
    # two units saturated on either side of x = 0: y(x) is flat to ~1e-13 around 0, so a y-residual of
    # 1e-12 left x undetermined by O(1) and the wrong x came back silently
    log_a = torch.zeros(1, 2, dtype=torch.float64)
    b = torch.tensor([[-30.0, 30.0]], dtype=torch.float64)
    log_w = torch.log(torch.tensor([[0.5, 0.5]], dtype=torch.float64))
    y, _ = sigmoid_layer(torch.tensor([0.3], dtype=torch.float64), log_a, b, log_w)
    with pytest.raises(ConvergenceError, match="ill-conditioned"):
        sigmoid_layer_inverse(y, log_a, b, log_w)


@pytest.mark.parametrize("scale, spread", [(0.5, 7.0), (0.2, 1.5)])
def test_naf_inverse_is_right_or_raises(scale, spread):
    # parameters perturbed by 0.5 and |x| ~ 10: 177 of 256 points came back wrong by up to 6.6e7 (float64)
    torch.manual_seed(0)
    flow = NAF(2, layers=2, hidden=(16, 16), units=8).double()
    g = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for p in flow.parameters():
            p.add_(scale * torch.randn(p.shape, generator=g, dtype=p.dtype))
        x = spread * torch.randn(128, 2, dtype=torch.float64, generator=g)
        z, _ = flow.transform(x)
        try:
            back, _ = flow.transform.inverse(z)
        except ConvergenceError:
            assert scale == 0.5  # the saturated case may refuse; the mild one must invert
            return
    torch.testing.assert_close(back, x, atol=1e-6, rtol=1e-6)
