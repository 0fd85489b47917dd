"""The contract of layers that are not bijections (registry cases with ``kind != "bijection"``), in float64.

Surjections (SurVAE flows) have a right inverse instead of an inverse:

* exact (inference) surjections: ``forward`` is deterministic, so ``forward(inverse(z))`` gives back ``z``;
* stochastic (generative) surjections: ``inverse`` is deterministic, so ``inverse(forward(x))`` gives back ``x``;

and in both, the inverse's contribution at the pair it produced is minus the forward contribution. Also:
the ``exact`` flag matches the kind, float32 works, the context changes the contribution, a seeded
state_dict round trip reproduces the outputs. Densities summing/integrating to 1 are checked per family
(``tests/transforms/test_surjective.py``).
"""

from __future__ import annotations

import pytest
import torch

from pushforward.transforms import is_exact
from pushforward.transforms.surjective import Surjection

from .registry import REGISTRY, Case
from .test_contract import _build, _inputs

SURJECTIONS = [
    pytest.param(c, id=name)
    for name, c in REGISTRY.items()
    if c.kind in ("exact_surjection", "stochastic_surjection")
]
NOT_BIJECTIONS = [
    pytest.param(c, id=name)
    for name, c in REGISTRY.items()
    if c.kind in ("exact_surjection", "stochastic_surjection", "markov")
]  # discrete bijections: tests/discrete/test_discrete_contract.py


def test_kinds_are_known():
    kinds = {c.kind for c in REGISTRY.values()}
    assert kinds <= {"bijection", "exact_surjection", "stochastic_surjection", "markov", "discrete"}, kinds


@pytest.mark.parametrize("case", SURJECTIONS)
def test_right_inverse_and_paired_contributions(case: Case):
    t = _build(case)
    x, c = _inputs(case, t, case.batch)
    torch.manual_seed(0)
    z, contribution = t(x, c)
    assert z.shape == (case.batch, *t.latent_shape) and contribution.shape == (case.batch,)
    if case.kind == "exact_surjection":
        x_new, ladj_inv = t.inverse(z, c)
        assert x_new.shape == x.shape
        z_again, contribution_new = t(x_new, c)
        torch.testing.assert_close(z_again, z, atol=case.inverse_atol, rtol=0)
        torch.testing.assert_close(ladj_inv, -contribution_new, atol=case.atol, rtol=1e-6)
    else:
        x_back, ladj_inv = t.inverse(z, c)
        torch.testing.assert_close(x_back, x, atol=case.inverse_atol, rtol=0)
        torch.testing.assert_close(ladj_inv, -contribution, atol=case.atol, rtol=1e-6)


@pytest.mark.parametrize("case", SURJECTIONS)
def test_exact_flag_matches_kind(case: Case):
    t = _build(case)
    assert any(isinstance(m, Surjection) for m in t.modules())
    assert is_exact(t) == (case.kind == "exact_surjection")


@pytest.mark.parametrize("case", NOT_BIJECTIONS)
def test_float32_and_seeded_state_dict(case: Case):
    t = _build(case, seed=0)
    fresh = _build(case, seed=1)
    fresh.load_state_dict(t.state_dict())
    x, c = _inputs(case, t, case.batch)
    torch.manual_seed(5)
    z, contribution = t(x, c)
    torch.manual_seed(5)
    z2, contribution2 = fresh(x, c)
    torch.testing.assert_close(z2, z, atol=0, rtol=0)
    torch.testing.assert_close(contribution2, contribution, atol=0, rtol=0)
    t32 = t.float()
    z32, contribution32 = t32(x.float(), c.float() if c is not None else None)
    assert z32.dtype == torch.float32 and torch.isfinite(z32).all() and torch.isfinite(contribution32).all()


@pytest.mark.parametrize("case", [p for p in NOT_BIJECTIONS if p.values[0].context])
def test_context_changes_the_contribution(case: Case):
    t = _build(case)
    x, c = _inputs(case, t, case.batch)
    torch.manual_seed(0)
    _, contribution = t(x, c)
    torch.manual_seed(0)
    _, other = t(x, c + 1.0)
    assert not torch.allclose(contribution, other)
