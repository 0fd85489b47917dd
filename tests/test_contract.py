"""The transform contract, run over every case of the registry in float64.

Checks: shapes, inverse round trip, ladj against slogdet of the autograd Jacobian (or the case's reference),
inverse ladj = −forward ladj, per-sample results independent of the batch, context actually used, gradients
reaching every parameter, and a state_dict round trip into a freshly built instance.
"""

from __future__ import annotations

import inspect

import pytest
import torch

import pushforward.transforms as T
from pushforward.transforms import Transform

from .registry import REGISTRY, Case

torch.set_default_dtype(torch.float32)


def _build(case: Case, seed: int = 0) -> Transform:
    torch.manual_seed(seed)
    t = case.factory().double()
    if case.perturb:
        g = torch.Generator().manual_seed(1000 + seed)
        with torch.no_grad():
            for p in t.parameters():
                p.add_(case.perturb * torch.randn(p.shape, generator=g, dtype=p.dtype))
    return t.eval()


def _inputs(case: Case, t: Transform, n: int, seed: int = 7):
    g = torch.Generator().manual_seed(seed)
    if case.sampler is not None:
        x = case.sampler(n, g)
    else:
        x = torch.randn(n, *t.event_shape, generator=g, dtype=torch.float64)
    c = torch.randn(n, case.context, generator=g, dtype=torch.float64) if case.context else None
    return x, c


def reference_ladj(t: Transform, x, context):
    """slogdet of the float64 autograd Jacobian of the flattened map, one sample at a time."""
    out = []
    for i in range(x.shape[0]):
        ci = context[i : i + 1] if context is not None else None

        def f(xi, ci=ci):
            return t(xi.reshape(1, *t.event_shape), ci)[0].reshape(-1)

        J = torch.autograd.functional.jacobian(f, x[i].reshape(-1))
        out.append(torch.linalg.slogdet(J)[1])
    return torch.stack(out)


def _active(case: Case, check: str) -> None:
    if check in case.skip:
        pytest.skip(f"{check}: {case.skip[check]}")


CASES = [
    pytest.param(c, id=name, marks=[pytest.mark.slow] if c.slow else [])
    for name, c in REGISTRY.items()
    if c.kind != "discrete"  # bijections of integers: tests/discrete/test_discrete_contract.py
]


@pytest.mark.parametrize("case", CASES)
def test_shapes_and_roundtrip(case: Case):
    t = _build(case)
    x, c = _inputs(case, t, case.batch)
    z, ladj = t(x, c)
    assert z.shape == (case.batch, *t.latent_shape) and z.dtype == torch.float64
    assert ladj.shape == (case.batch,)
    assert torch.isfinite(z).all() and torch.isfinite(ladj).all()
    _active(case, "roundtrip")
    x_rec, ladj_inv = t.inverse(z, c)
    assert x_rec.shape == x.shape and ladj_inv.shape == (case.batch,)
    torch.testing.assert_close(x_rec, x, atol=case.inverse_atol, rtol=0)
    if "inverse_ladj" not in case.skip:
        torch.testing.assert_close(ladj_inv, -ladj, atol=case.atol, rtol=1e-6)


@pytest.mark.parametrize("case", CASES)
def test_ladj_matches_jacobian(case: Case):
    _active(case, "jacobian")
    t = _build(case)
    x, c = _inputs(case, t, min(case.batch, 3))
    _, ladj = t(x, c)
    ref = (case.reference_ladj or reference_ladj)(t, x, c)
    torch.testing.assert_close(ladj, ref, atol=case.atol, rtol=1e-6)


@pytest.mark.parametrize("case", CASES)
def test_batch_consistency_and_context(case: Case):
    _active(case, "batch_consistency")
    t = _build(case)
    x, c = _inputs(case, t, case.batch)
    z, ladj = t(x, c)
    z1, ladj1 = t(x[:1], c[:1] if c is not None else None)
    torch.testing.assert_close(z1, z[:1], atol=1e-10, rtol=1e-8)
    torch.testing.assert_close(ladj1, ladj[:1], atol=1e-10, rtol=1e-8)
    if case.context and "context" not in case.skip:
        z_other, _ = t(x, c + 1.0)
        assert not torch.allclose(z_other, z), "changing the context did not change the output"
        with pytest.raises((ValueError, RuntimeError)):
            t(x, c[:-1])


@pytest.mark.parametrize("case", CASES)
def test_gradients_reach_every_parameter(case: Case):
    _active(case, "gradients")
    t = _build(case)
    params = [(n, p) for n, p in t.named_parameters() if p.requires_grad]
    if not params:
        pytest.skip("no parameters")
    x, c = _inputs(case, t, case.batch)
    z, ladj = t(x, c)
    loss = (z**2).sum() + ladj.sum()
    if "roundtrip" not in case.skip:
        x_rec, ladj_inv = t.inverse(z.detach() * 0.9, c)
        loss = loss + (x_rec**2).sum() + ladj_inv.sum()
    loss.backward()
    missing = [n for n, p in params if p.grad is None or not bool(p.grad.abs().sum() > 0)]
    assert not missing, f"no gradient reached {missing}"
    assert all(torch.isfinite(p.grad).all() for _, p in params)


@pytest.mark.parametrize("case", CASES)
def test_state_dict_roundtrip(case: Case):
    _active(case, "state_dict")
    t = _build(case, seed=0)
    fresh = _build(case, seed=1)
    fresh.load_state_dict(t.state_dict())
    fresh.eval()
    x, c = _inputs(case, t, case.batch)
    z, ladj = t(x, c)
    z2, ladj2 = fresh(x, c)
    torch.testing.assert_close(z2, z, atol=0, rtol=0)
    torch.testing.assert_close(ladj2, ladj, atol=0, rtol=0)


def _exported_transform_classes() -> set[type]:
    out = set()
    for name in T.__all__:
        obj = getattr(T, name)
        if inspect.isclass(obj) and issubclass(obj, Transform) and obj is not Transform:
            out.add(obj)
    return out


def test_every_exported_transform_is_registered():
    covered: set[type] = set()
    for case in REGISTRY.values():
        torch.manual_seed(0)
        covered |= {type(m) for m in case.factory().modules()}
    missing = sorted(c.__name__ for c in _exported_transform_classes() - covered)
    assert not missing, f"exported transforms missing from tests/registry: {missing}"


def test_registry_detects_unregistered(monkeypatch):
    """The coverage check can fail: a new exported class is reported."""

    class Unregistered(T.Shift):
        pass

    monkeypatch.setattr(T, "Unregistered", Unregistered, raising=False)
    monkeypatch.setattr(T, "__all__", [*T.__all__, "Unregistered"])
    with pytest.raises(AssertionError, match="Unregistered"):
        test_every_exported_transform_is_registered()
