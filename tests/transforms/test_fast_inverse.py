"""MaskedAutoregressive.inverse takes the one-pass path for MADE conditioners (affine and spline) and equals
the D-pass reference ``_inverse_sequential``; other conditioners fall back to the reference explicitly."""

from __future__ import annotations

import pytest
import torch

from pushforward.nets import MADE
from pushforward.transformers import AffineTransformer, DeepSigmoidTransformer, RQSTransformer
from pushforward.transforms import Inverse, MaskedAutoregressive

D64 = torch.float64


def _layer(D, tau, dtype, seed=0, **kw):
    torch.manual_seed(seed)
    layer = MaskedAutoregressive(D, tau, **kw)
    with torch.no_grad():
        for p in layer.parameters():
            p.add_(0.1 * torch.randn_like(p))
    return layer.to(dtype)


TRANSFORMERS = {
    "affine": lambda: AffineTransformer(),
    "affine_noclamp": lambda: AffineTransformer(clamp=None),
    "spline": lambda: RQSTransformer(bins=6, bound=2.0),
}
SIZES = [
    dict(D=1, hidden=(8,)),
    dict(D=4, hidden=(16, 16), order="reversed"),
    dict(D=6, hidden=(24, 24, 24), order="random", residual=True),
    dict(D=5, hidden=(16,), context=2, order=[4, 2, 0, 1, 3]),
    dict(D=11, hidden=(40, 40), order="random", context=1),
]


@pytest.mark.parametrize("tau", list(TRANSFORMERS))
@pytest.mark.parametrize("size", SIZES, ids=lambda c: "-".join(f"{k}{v}" for k, v in c.items()))
@pytest.mark.parametrize("dtype,tol", [(D64, 1e-10), (torch.float32, 1e-6)], ids=["fp64", "fp32"])
def test_fast_inverse_equals_sequential(tau, size, dtype, tol):
    size = dict(size)
    D = size.pop("D")
    layer = _layer(D, TRANSFORMERS[tau](), dtype, **size)
    g = torch.Generator().manual_seed(3)
    z = (2 * torch.randn(64, D, generator=g, dtype=D64)).to(dtype)  # some values in the spline tails
    c = size.get("context", 0)
    ctx = torch.randn(64, c, generator=g, dtype=D64).to(dtype) if c else None
    with torch.no_grad():
        x_ref, l_ref = layer._inverse_sequential(z, ctx)
        x, ladj = layer.inverse(z, ctx)
    torch.testing.assert_close(x, x_ref, rtol=tol, atol=tol)
    # the ladj sums D elementwise log-derivatives, each within tol: allow D·tol for the sum
    torch.testing.assert_close(ladj, l_ref, rtol=tol, atol=D * tol)


def test_inverse_uses_one_pass_for_made(monkeypatch):
    layer = MaskedAutoregressive(3, AffineTransformer(), hidden=(8,))
    monkeypatch.setattr(layer, "_inverse_sequential", lambda *a: pytest.fail("took the D-pass path"))
    layer.inverse(torch.randn(4, 3))


class _WrappedMADE(torch.nn.Module):
    """A custom conditioner with the autoregressive property that the one-pass path does not know."""

    def __init__(self, D, P):
        super().__init__()
        self.made = MADE(D, P, (8,), zero_init=False)
        self.order = self.made.order

    def forward(self, x, context=None):
        return self.made(x, context)


def test_custom_conditioner_falls_back_to_sequential(monkeypatch):
    layer = MaskedAutoregressive(3, AffineTransformer(), conditioner=_WrappedMADE(3, 2))
    calls = []
    seq = layer._inverse_sequential
    monkeypatch.setattr(layer, "_inverse_sequential", lambda *a: calls.append(1) or seq(*a))
    monkeypatch.setattr(layer, "_inverse_one_pass", lambda *a: pytest.fail("fast path on a custom net"))
    z = torch.randn(5, 3)
    x, _ = layer.inverse(z)
    assert calls == [1]
    torch.testing.assert_close(layer(x)[0], z, rtol=1e-5, atol=1e-5)


def test_switch_off():
    layer = _layer(4, AffineTransformer(), D64, hidden=(12,))
    layer.fast_inverse = False
    z = torch.randn(3, 4, dtype=D64)
    torch.testing.assert_close(layer.inverse(z), layer._inverse_sequential(z, None))


def test_deep_sigmoid_fast_inverse_roundtrip():
    # numerically inverted transformer: the fast path applies too (one column at a time)
    layer = _layer(3, DeepSigmoidTransformer(units=4), D64, hidden=(12,))
    z = torch.randn(16, 3, dtype=D64)
    with torch.no_grad():
        x, _ = layer.inverse(z)
        x_ref, _ = layer._inverse_sequential(z, None)
    torch.testing.assert_close(x, x_ref, rtol=1e-7, atol=1e-7)


@pytest.mark.parametrize("tau", ["affine", "spline"])
def test_iaf_density_gradients_match_sequential(tau):
    """IAF density = the layer's inverse; trained through the fast path, gradients equal the reference."""
    layer = _layer(5, TRANSFORMERS[tau](), D64, hidden=(16, 16), order="random", context=2)
    iaf = Inverse(layer)
    x = torch.randn(8, 5, dtype=D64)
    ctx = torch.randn(8, 2, dtype=D64)

    def grads(fast):
        layer.fast_inverse = fast
        layer.zero_grad()
        z, ladj = iaf(x, ctx)
        (-(z**2).sum() / 2 + ladj.sum()).backward()
        return [p.grad.clone() for p in layer.parameters()]

    for a, b in zip(grads(True), grads(False)):
        torch.testing.assert_close(a, b, rtol=1e-8, atol=1e-10)
