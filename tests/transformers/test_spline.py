"""The rational-quadratic spline transformer: monotone, exact inverse, identity tails, correct derivative."""

from __future__ import annotations

import pytest
import torch

from pushforward.transformers import RQSTransformer
from pushforward.transformers.spline import (
    rational_quadratic_spline,
    rational_quadratic_spline_inverse,
    spline_knots,
)

D64 = torch.float64


def _params(tau: RQSTransformer, *shape: int, scale: float = 2.0, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return scale * torch.randn(*shape, tau.params_per_feature, generator=g, dtype=D64)


def test_params_per_feature_is_3k_minus_1():
    assert RQSTransformer(bins=8).params_per_feature == 23
    assert RQSTransformer(bins=1).params_per_feature == 2


def test_zero_params_are_identity():
    tau = RQSTransformer(bins=6, bound=3.0)
    x = torch.linspace(-5, 5, 101, dtype=D64).reshape(101, 1)
    y, logd = tau(x, torch.zeros(101, 1, tau.params_per_feature, dtype=D64))
    torch.testing.assert_close(y, x, atol=1e-12, rtol=0)
    torch.testing.assert_close(logd, torch.zeros_like(x), atol=1e-12, rtol=0)


def test_knots_pinned_and_increasing():
    tau = RQSTransformer(bins=5, bound=2.5)
    xk, yk, dk = tau.knots(_params(tau, 7, 3))
    assert torch.all(xk[..., 0] == -2.5) and torch.all(xk[..., -1] == 2.5)
    assert torch.all(yk[..., 0] == -2.5) and torch.all(yk[..., -1] == 2.5)
    assert torch.all(xk.diff(dim=-1) > 0) and torch.all(yk.diff(dim=-1) > 0) and torch.all(dk > 0)
    assert torch.all(dk[..., 0] == 1) and torch.all(dk[..., -1] == 1)


@pytest.mark.parametrize("bins", [1, 2, 8])
def test_inverse_is_exact_float64(bins):
    tau = RQSTransformer(bins=bins, bound=3.0)
    g = torch.Generator().manual_seed(1)
    x = 4 * torch.randn(500, 3, generator=g, dtype=D64)  # many in the tails
    p = _params(tau, 500, 3)
    y, logd = tau(x, p)
    x_rec, logd_inv = tau.inverse(y, p)
    torch.testing.assert_close(x_rec, x, atol=1e-10, rtol=0)
    torch.testing.assert_close(logd_inv, -logd, atol=1e-10, rtol=0)


def test_monotone_and_continuous():
    tau = RQSTransformer(bins=8, bound=2.0)
    x = torch.linspace(-3, 3, 20001, dtype=D64).reshape(-1, 1)
    p = _params(tau, 1, 1).expand(x.shape[0], 1, -1)
    y, logd = tau(x, p)
    dy = y.diff(dim=0)
    assert torch.all(dy > 0)
    # continuity (also at the knots and at ±B): no jump larger than (max slope) × step
    step = float(x[1] - x[0])
    assert float(dy.max()) <= 1.01 * step * float(logd.exp().max())


def test_log_derivative_matches_autograd():
    tau = RQSTransformer(bins=8, bound=2.0)
    x = 3 * torch.randn(300, 2, generator=torch.Generator().manual_seed(3), dtype=D64)
    x.requires_grad_(True)
    p = _params(tau, 300, 2)
    y, logd = tau(x, p)
    (grad,) = torch.autograd.grad(y.sum(), x)
    torch.testing.assert_close(grad.log(), logd, atol=1e-9, rtol=0)


def test_tails_are_identity_and_differentiable():
    tau = RQSTransformer(bins=4, bound=1.0)
    x = torch.tensor([[-50.0], [-1.5], [1.0001], [7.0]], dtype=D64, requires_grad=True)
    p = _params(tau, 4, 1)
    y, logd = tau(x, p)
    torch.testing.assert_close(y, x.detach(), atol=0, rtol=0)
    assert torch.all(logd == 0)
    (grad,) = torch.autograd.grad(y.sum() + logd.sum(), x)
    torch.testing.assert_close(grad, torch.ones_like(grad))
    (gp,) = torch.autograd.grad(tau(x, p.requires_grad_(True))[0].sum(), p)
    assert torch.isfinite(gp).all()


def test_pure_functions_agree_with_class():
    tau = RQSTransformer(bins=3, bound=2.0)
    p = _params(tau, 10, 1)
    knots = spline_knots(p[..., :3], p[..., 3:6], p[..., 6:], 2.0)
    x = torch.randn(10, 1, dtype=D64)
    y, _ = rational_quadratic_spline(x, *knots)
    torch.testing.assert_close(y, tau(x, p)[0])
    torch.testing.assert_close(rational_quadratic_spline_inverse(y, *knots)[0], x)


def test_float32_inverse():
    tau = RQSTransformer(bins=8, bound=3.0)
    g = torch.Generator().manual_seed(0)
    for i in range(20):  # many random splines: float32 accuracy must hold for all of them, not one lucky draw
        p = _params(tau, 1000, 2, seed=i).float()
        x = 2 * torch.randn(1000, 2, generator=g)
        y, logd = tau(x, p)
        x_rec = tau.inverse(y, p)[0]
        # random raw parameters make some bins nearly flat or very steep (dy/dx from e^-13 to e^13), so the
        # float32 residual is checked relative to the local slope, and the inverse itself where it is well
        # conditioned (dx/dy < e^2)
        slope = logd.exp().clamp_min(1.0)
        assert ((tau(x_rec, p)[0] - y).abs() <= 1e-4 * slope).all()
        ok = logd > -2
        torch.testing.assert_close(x_rec[ok], x[ok], atol=1e-4, rtol=0)


def test_bad_configuration_raises():
    with pytest.raises(ValueError, match="bins"):
        RQSTransformer(bins=0)
    with pytest.raises(TypeError, match="bins"):
        RQSTransformer(bins=2.5)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="bound"):
        RQSTransformer(bound=-1.0)
    with pytest.raises(ValueError, match="min_width"):
        RQSTransformer(bins=10, min_width=0.2)
    tau = RQSTransformer(bins=4)
    with pytest.raises(ValueError, match="11 parameters"):
        tau(torch.zeros(2, 3), torch.zeros(2, 3, 5))
