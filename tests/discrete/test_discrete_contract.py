"""The discrete transform contract, over every ``kind="discrete"`` case of the registry.

Checks, in float32 and float64 conditioners, with parameters perturbed away from the identity: the output is
integer and the round trip bit-exact for every element at several batch sizes; ``ladj`` is exactly 0 (a
bijection of a countable set); gradients reach every parameter through the straight-through estimator; a
changed context changes the output; a state_dict round trip reproduces the map; non-integer, NaN and
out-of-range inputs raise ``ValueError``.
"""

from __future__ import annotations

import pytest
import torch

from ..registry import REGISTRY, Case
from .common import DTYPES

DISCRETE = [pytest.param(c, id=name) for name, c in REGISTRY.items() if c.kind == "discrete"]


def _build(case: Case, dtype: torch.dtype, seed: int = 0):
    torch.manual_seed(seed)
    t = case.factory().to(dtype)
    g = torch.Generator().manual_seed(1000 + seed)
    with torch.no_grad():
        for p in t.parameters():
            p.add_(case.perturb * torch.randn(p.shape, generator=g, dtype=torch.float64).to(dtype))
    return t.eval()


def _inputs(case: Case, t, n: int, dtype: torch.dtype, seed: int = 7):
    g = torch.Generator().manual_seed(seed)
    x = case.sampler(n, g).to(dtype)
    c = torch.randn(n, case.context, generator=g, dtype=torch.float64).to(dtype) if case.context else None
    return x, c


def test_discrete_cases_exist():
    names = {c.values[0].name for c in DISCRETE}
    assert {"integer_coupling_vector", "modular_coupling", "idf_multiscale"} <= names


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("case", DISCRETE)
@pytest.mark.parametrize("batch", [1, 5, 33])
def test_bit_exact_roundtrip(case: Case, dtype, batch):
    t = _build(case, dtype)
    x, c = _inputs(case, t, batch, dtype)
    z, ladj = t(x, c)
    assert z.dtype == dtype and z.shape == (batch, *t.latent_shape)
    assert torch.equal(z, z.round()), "the latent is not integer"
    assert torch.equal(ladj, torch.zeros(batch, dtype=dtype))
    x_rec, ladj_inv = t.inverse(z, c)
    assert torch.equal(x_rec, x), f"{int((x_rec != x).sum())} elements differ after the round trip"
    assert torch.equal(ladj_inv, torch.zeros(batch, dtype=dtype))
    if case.support is not None:
        assert float(z.detach().min()) >= case.support[0] and float(z.detach().max()) <= case.support[1]


@pytest.mark.parametrize("case", DISCRETE)
def test_not_the_identity(case: Case):
    """The perturbed transform moves some elements (so the round trip above is not trivial)."""
    t = _build(case, torch.float64)
    x, c = _inputs(case, t, 16, torch.float64)
    z = t(x, c)[0]
    assert not torch.equal(z.reshape(x.shape), x)


@pytest.mark.parametrize("case", DISCRETE)
def test_batch_independent(case: Case):
    t = _build(case, torch.float64)
    x, c = _inputs(case, t, 6, torch.float64)
    z = t(x, c)[0]
    z1 = t(x[2:3], c[2:3] if c is not None else None)[0]
    assert torch.equal(z1, z[2:3])


@pytest.mark.parametrize("case", DISCRETE)
def test_gradients_reach_every_parameter(case: Case):
    t = _build(case, torch.float64)
    params = [(n, p) for n, p in t.named_parameters() if p.requires_grad]
    x, c = _inputs(case, t, 16, torch.float64)
    z = t(x, c)[0]
    x_rec = t.inverse(z.detach(), c)[0]
    (torch.sin(z).sum() + torch.cos(x_rec).sum()).backward()
    missing = [n for n, p in params if p.grad is None or not bool(p.grad.abs().sum() > 0)]
    assert not missing, f"no gradient reached {missing}"


@pytest.mark.parametrize("case", [c for c in DISCRETE if c.values[0].context])
def test_context_is_used(case: Case):
    t = _build(case, torch.float64)
    x, c = _inputs(case, t, 32, torch.float64)
    assert not torch.equal(t(x, c)[0], t(x, c + 3.0)[0])
    with pytest.raises(ValueError):
        t(x, c[:-1])


@pytest.mark.parametrize("case", DISCRETE)
def test_state_dict_roundtrip(case: Case):
    t = _build(case, torch.float64, seed=0)
    fresh = _build(case, torch.float64, seed=1)
    x, c = _inputs(case, t, 8, torch.float64)
    fresh.load_state_dict(t.state_dict())
    assert torch.equal(fresh.eval()(x, c)[0], t(x, c)[0])


@pytest.mark.parametrize("case", DISCRETE)
def test_rejects_bad_input(case: Case):
    t = _build(case, torch.float64)
    x, c = _inputs(case, t, 4, torch.float64)
    for method in (t.forward, t.inverse):
        bad = x.clone().reshape(4, -1)
        bad[0, 0] += 0.5
        with pytest.raises(ValueError, match="non-integer"):
            method(bad.reshape(x.shape) if method == t.forward else bad.reshape(4, *t.latent_shape), c)
        bad[0, 0] = float("nan")
        with pytest.raises(ValueError, match="NaN"):
            method(bad.reshape(x.shape) if method == t.forward else bad.reshape(4, *t.latent_shape), c)
    with pytest.raises(TypeError):
        t(x.long(), c)
    if case.support is not None:
        low, high = case.support
        for value in (low - 1, high + 1):
            bad = x.clone().reshape(4, -1)
            bad[1, -1] = value
            with pytest.raises(ValueError, match="out of range"):
                t(bad.reshape(x.shape), c)
    else:
        huge = x.float().clone().reshape(4, -1)
        huge[0, 0] = 2.0**25
        with pytest.raises(ValueError, match="not exact"):
            _build(case, torch.float32)(huge.reshape(x.shape), c.float() if c is not None else None)
