"""MaskedAutoregressive (MAF) and its inverse (IAF): exact inverses, against a naive D-pass reference."""

from __future__ import annotations

import math

import pytest
import torch

from pushforward.flows import IAF, MAF
from pushforward.transformers import AffineTransformer, DeepSigmoidTransformer, RQSTransformer
from pushforward.transformers.affine import soft_clamp
from pushforward.transforms import Inverse, MaskedAutoregressive

D64 = torch.float64


def _perturb(module: torch.nn.Module, scale: float = 0.3, seed: int = 0) -> torch.nn.Module:
    module = module.double()
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in module.parameters():
            p.add_(scale * torch.randn(p.shape, generator=g, dtype=p.dtype))
    return module.eval()


def naive_affine_inverse(layer: MaskedAutoregressive, z: torch.Tensor, context=None):
    """The textbook MAF sampler: for d in order, x_d = (z_d − t_d(x_<d)) · exp(−s_d(x_<d)), one dimension at a
    time, feeding the conditioner only the dimensions already generated (the others are zero)."""
    made, clamp = layer.conditioner, layer.transformer.clamp
    x = torch.zeros_like(z)
    log_det = torch.zeros(z.shape[0], dtype=z.dtype)
    done = torch.zeros(z.shape[1], dtype=torch.bool)
    for d in made.order.tolist():
        params = made(torch.where(done, x, torch.zeros_like(x)), context)[:, d]
        shift, s = params[:, 0], soft_clamp(params[:, 1], clamp)
        x[:, d] = (z[:, d] - shift) * torch.exp(-s)
        log_det = log_det - s
        done[d] = True
    return x, log_det


def naive_generic_inverse(layer: MaskedAutoregressive, z: torch.Tensor, context=None):
    """Same loop for any transformer, one column at a time."""
    made, tau = layer.conditioner, layer.transformer
    x = torch.zeros_like(z)
    log_det = torch.zeros(z.shape[0], dtype=z.dtype)
    done = torch.zeros(z.shape[1], dtype=torch.bool)
    for d in made.order.tolist():
        params = made(torch.where(done, x, torch.zeros_like(x)), context)[:, d : d + 1]
        xd, ld = tau.inverse(z[:, d : d + 1], params)
        x[:, d] = xd[:, 0]
        log_det = log_det + ld[:, 0]
        done[d] = True
    return x, log_det


@pytest.mark.parametrize("order", ["natural", "reversed", "random"])
@pytest.mark.parametrize("context", [0, 2])
def test_maf_inverse_matches_naive_reference(order, context):
    torch.manual_seed(0)
    layer = _perturb(
        MaskedAutoregressive(5, AffineTransformer(), hidden=(20, 20), order=order, context=context)
    )
    z = torch.randn(16, 5, dtype=D64)
    c = torch.randn(16, context, dtype=D64) if context else None
    x, ladj = layer.inverse(z, c)
    x_ref, ladj_ref = naive_affine_inverse(layer, z, c)
    torch.testing.assert_close(x, x_ref, atol=1e-8, rtol=0)
    torch.testing.assert_close(ladj, ladj_ref, atol=1e-8, rtol=0)
    # and forward undoes it in one pass
    z_rec, ladj_fwd = layer(x, c)
    torch.testing.assert_close(z_rec, z, atol=1e-10, rtol=0)
    torch.testing.assert_close(ladj_fwd, -ladj, atol=1e-10, rtol=0)


@pytest.mark.parametrize(
    "transformer",
    [RQSTransformer(bins=6, bound=2.0), DeepSigmoidTransformer(units=4, depth=2)],
    ids=["spline", "dsf"],
)
def test_generic_inverse_matches_naive_reference(transformer):
    torch.manual_seed(1)
    layer = _perturb(MaskedAutoregressive(4, transformer, hidden=(16,), order="random"), scale=0.5)
    z = 1.5 * torch.randn(10, 4, dtype=D64)
    x, ladj = layer.inverse(z)
    x_ref, ladj_ref = naive_generic_inverse(layer, z)
    # rtol: strongly perturbed sigmoid layers are very flat in places, sending some x far out
    torch.testing.assert_close(x, x_ref, atol=1e-8, rtol=1e-9)
    torch.testing.assert_close(ladj, ladj_ref, atol=1e-8, rtol=1e-9)


def _shared_maf_iaf(features: int = 4, layers: int = 3, context: int = 0):
    torch.manual_seed(2)
    maf = MAF(features, layers=layers, hidden=(16, 16), context=context)
    iaf = IAF(features, layers=layers, hidden=(16, 16), context=context)
    maf_layers = [t for t in maf.transform if isinstance(t, MaskedAutoregressive)]
    iaf_layers = [t.transform for t in iaf.transform if isinstance(t, Inverse)]
    _perturb(maf)
    iaf.double()
    # IAF = Compose([Inv(B1), P, Inv(B2), P, Inv(B3)]) is MAF^{-1} when B_k = A_{L+1-k} (P = reverse,
    # P^{-1} = P)
    for b, a in zip(iaf_layers, reversed(maf_layers)):
        b.load_state_dict(a.state_dict())
    return maf.eval(), iaf.eval()


@pytest.mark.parametrize("context", [0, 3])
def test_iaf_and_maf_with_shared_weights_are_exact_inverses(context):
    maf, iaf = _shared_maf_iaf(context=context)
    x = torch.randn(12, 4, dtype=D64)
    c = torch.randn(12, context, dtype=D64) if context else None
    u_iaf, ladj_iaf = iaf.transform(x, c)  # sequential density direction of the IAF
    u_maf, ladj_maf = maf.transform.inverse(x, c)  # sequential sampling direction of the MAF
    torch.testing.assert_close(u_iaf, u_maf, atol=1e-10, rtol=0)
    torch.testing.assert_close(ladj_iaf, ladj_maf, atol=1e-10, rtol=0)
    z = torch.randn(12, 4, dtype=D64)
    torch.testing.assert_close(iaf.transform.inverse(z, c)[0], maf.transform(z, c)[0], atol=1e-10, rtol=0)
    # composing one with the other is the identity
    torch.testing.assert_close(maf.transform(iaf.transform(x, c)[0], c)[0], x, atol=1e-10, rtol=0)


def test_maf_sampling_and_iaf_density_match_naive_reference():
    maf, iaf = _shared_maf_iaf(layers=1)
    layer = maf.transform[0]
    # MAF sampling: the flow's sample equals the naive sequential sampler applied to the same base draw
    torch.manual_seed(11)
    x_flow = maf.sample((25,))
    torch.manual_seed(11)
    z = maf.base.sample((25,))
    x_ref, _ = naive_affine_inverse(layer, z)
    torch.testing.assert_close(x_flow, x_ref, atol=1e-8, rtol=0)
    # IAF density: log N(u) + log|du/dx| with u the naive sequential pass
    x = torch.randn(25, 4, dtype=D64)
    u, ladj_inv = naive_affine_inverse(layer, x)
    log_normal = -0.5 * (u**2).sum(1) - 2 * math.log(2 * math.pi)
    torch.testing.assert_close(iaf.log_prob(x), log_normal + ladj_inv, atol=1e-8, rtol=0)


def test_density_direction_is_one_pass():
    calls = []
    layer = MaskedAutoregressive(6, AffineTransformer(), hidden=(8,))
    layer.conditioner.register_forward_hook(lambda *a: calls.append(1))
    z, _ = layer(torch.randn(3, 6))
    assert len(calls) == 1
    layer.inverse(z)  # the one-pass inverse (nets/made_fast.py) evaluates the MADE blockwise, not via forward
    assert len(calls) == 1
    layer._inverse_sequential(z, None)  # the D-pass reference
    assert len(calls) == 1 + 6


def test_bad_arguments_raise():
    with pytest.raises(TypeError, match="Transformer"):
        MaskedAutoregressive(3, torch.nn.Linear(2, 2))  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="features"):
        MaskedAutoregressive(0, AffineTransformer())
    layer = MaskedAutoregressive(3, AffineTransformer(), context=2)
    with pytest.raises(ValueError, match="shape"):
        layer(torch.randn(4, 2), torch.randn(4, 2))
    with pytest.raises(ValueError, match="context"):
        layer(torch.randn(4, 3))
    with pytest.raises(ValueError, match="batch"):
        layer(torch.randn(4, 3), torch.randn(3, 2))
