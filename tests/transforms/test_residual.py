"""Residual blocks: stochastic log-det estimators, the fixed-point inverse, implicit gradients, the preset."""

from __future__ import annotations

import pytest
import torch

from pushforward.estimators import (
    jacobian,
    logdet_identity_plus,
    residual_logdet,
    roulette_survival,
    roulette_terms,
    sample_probe,
)
from pushforward.flows import PRESETS, Flow, ResidualFlow
from pushforward.inversion import ConvergenceError
from pushforward.transforms import ResidualBlock
from pushforward.transforms.residual import finite_variance_p

from ..flows.quadrature import mass_2d, perturbed

torch.set_default_dtype(torch.float32)


def _block(features: int = 3, **kw) -> ResidualBlock:
    torch.manual_seed(0)
    kw.setdefault("ladj_mode", "exact")
    kw.setdefault("eval_ladj_mode", None)  # these tests study the estimators in eval mode
    return ResidualBlock(features, hidden=(16, 16), **kw).double().eval()


def _exact(block: ResidualBlock, x: torch.Tensor) -> torch.Tensor:
    mode = block.ladj_mode
    block.ladj_mode = "exact"
    try:
        return block(x)[1]
    finally:
        block.ladj_mode = mode


@pytest.mark.parametrize(
    "mode, options",
    [
        ("roulette", dict(n_exact=1, p=0.5)),
        ("roulette", dict(n_exact=2, p=0.25, probe="rademacher")),
        ("series", dict(n_terms=12)),  # truncation bias ≤ Lip^13/13 ~ 1e-9, far below the standard error
    ],
)
def test_stochastic_logdet_is_unbiased(mode, options):
    block = _block(ladj_mode=mode, coeff=0.6, **options)
    x = torch.randn(1, 3, dtype=torch.float64, generator=torch.Generator().manual_seed(1)) * 1.5
    exact = float(_exact(block, x).detach())
    torch.manual_seed(2)
    with torch.no_grad():
        if mode == "series":  # independent rows: one call
            est = block(x.expand(4000, 3))[1]
        else:  # the roulette truncation is shared within a call: one mean per call, many calls
            est = torch.stack([block(x.expand(16, 3))[1].mean() for _ in range(150)])
    se = float(est.std() / est.numel() ** 0.5)
    assert se > 0
    assert abs(float(est.mean()) - exact) < 3 * se, (float(est.mean()), exact, se)


def test_neumann_gradient_is_unbiased():
    block = _block(ladj_mode="roulette", n_exact=1, p=0.5, neumann_grad=True, coeff=0.8)
    x0 = torch.randn(1, 3, dtype=torch.float64, generator=torch.Generator().manual_seed(4))
    xe = x0.clone().requires_grad_(True)
    (g_exact,) = torch.autograd.grad(_exact(block, xe).sum(), xe)
    torch.manual_seed(5)
    grads = []
    for _ in range(150):
        xs = x0.expand(16, 3).clone().requires_grad_(True)
        (g,) = torch.autograd.grad(block(xs)[1].mean(), xs)
        grads.append(g.sum(0))
    grads = torch.stack(grads)
    se = grads.std(0) / grads.shape[0] ** 0.5
    assert bool(((grads.mean(0) - g_exact[0]).abs() < 3 * se + 1e-12).all()), (grads.mean(0), g_exact, se)


def test_roulette_terms_weights():
    torch.manual_seed(0)
    weights, probs = roulette_terms(2, 0.5)
    assert probs[:2] == [1.0, 1.0]
    assert weights[0] == 1.0 and weights[1] == -0.5
    with pytest.raises(ValueError):
        roulette_terms(2, 1.5)
    # N = max(M, 1) with n_exact = 0: the first term is always there, P(N >= k) = (1 - p)^k for k >= 2
    assert [roulette_survival(k, 0, 0.5) for k in (1, 2, 3)] == [1.0, 0.25, 0.125]
    assert [roulette_survival(k, 2, 0.5) for k in (1, 2, 3, 4)] == [1.0, 1.0, 0.5, 0.25]


@pytest.mark.parametrize("n_exact", [0, 1])
def test_roulette_is_unbiased_for_every_n_exact(n_exact):
    # a linear g(x) = A x has the closed-form log det(I + A); mean of seeded draws vs it, z-score bound.
    # Before the fix, n_exact = 0 weighted the first term by 1/(1-p): bias tr(A) p/(1-p) = 0.7, z ~ 140.
    gen = torch.Generator().manual_seed(0)
    a = torch.tensor([[0.3, 0.2], [-0.1, 0.4]], dtype=torch.float64)
    exact = float(logdet_identity_plus(a[None])[0])
    x = torch.zeros(64, 2, dtype=torch.float64, requires_grad=True)
    gx = x @ a.T
    draws = []
    for _ in range(600):
        weights, probs = roulette_terms(n_exact, 0.5, generator=gen)
        probes = sample_probe(x.detach().expand(1, 64, 2), "rademacher", generator=gen)
        draws.append(residual_logdet(gx, x, probes, weights, probs).mean())
    d = torch.stack(draws)
    z = (float(d.mean()) - exact) / (float(d.std()) / len(d) ** 0.5)
    assert abs(z) < 4.0, z


@pytest.mark.parametrize("context", [0, 2])
def test_inverse_round_trip(context):
    torch.manual_seed(0)
    block = ResidualBlock(5, hidden=(32, 32), context=context, coeff=0.97).double()
    x = 3 * torch.randn(32, 5, dtype=torch.float64)
    c = torch.randn(32, context, dtype=torch.float64) if context else None
    with torch.no_grad():
        z, _ = block(x, c)
        x_rec, _ = block.inverse(z, c)
    assert float((x_rec - x).abs().max()) < 1e-6
    # float32 too, at float32 precision
    b32 = block.float()
    with torch.no_grad():
        x32 = b32.inverse(
            b32(x.float(), None if c is None else c.float())[0], None if c is None else c.float()
        )[0]
    assert float((x32 - x.float()).abs().max()) < 1e-4


def test_inverse_reports_non_convergence():
    torch.manual_seed(0)
    block = ResidualBlock(3, hidden=(16,), max_iter=2, atol=1e-14).double()
    z = torch.randn(8, 3, dtype=torch.float64) * 4
    with pytest.raises(ConvergenceError, match="did not converge"):
        block.inverse(z)
    assert issubclass(ConvergenceError, ValueError)


def test_inverse_gradient_is_exact():
    block = _block()
    z = torch.randn(3, 3, dtype=torch.float64, requires_grad=True)
    x, ladj_inv = block.inverse(z)
    (g,) = torch.autograd.grad((x**2).sum() + ladj_inv.sum(), z)

    def ref(zz):
        with torch.no_grad():
            xx = block.inverse(zz)[0]
        return xx

    # Reference: finite differences of the (deterministic) inverse and its ladj.
    eps = 1e-6
    num = torch.zeros_like(z)
    for i in range(3):
        for j in range(3):
            dz = torch.zeros_like(z)
            dz[i, j] = eps
            with torch.no_grad():
                xp, lp = block.inverse(z + dz)
                xm, lm = block.inverse(z - dz)
            num[i, j] = (((xp**2).sum() + lp.sum()) - ((xm**2).sum() + lm.sum())) / (2 * eps)
    torch.testing.assert_close(g, num, atol=1e-6, rtol=1e-5)
    assert ref(z).shape == z.shape


def test_stochastic_modes_give_parameter_gradients():
    for mode, neumann in [("roulette", True), ("roulette", False), ("series", False), ("series", True)]:
        block = _block(ladj_mode=mode, neumann_grad=neumann).train()
        x = torch.randn(8, 3, dtype=torch.float64)
        z, ladj = block(x)
        ((z**2).sum() + ladj.sum()).backward()
        for name, p in block.named_parameters():
            assert p.grad is not None and torch.isfinite(p.grad).all(), (mode, name)


def test_eval_ladj_mode_and_no_grad():
    block = _block(ladj_mode="roulette", eval_ladj_mode="exact")
    x = torch.randn(4, 3, dtype=torch.float64)
    with torch.no_grad():
        a = block(x)[1]
        b = block(x)[1]
    assert not a.requires_grad
    torch.testing.assert_close(a, b, atol=0, rtol=0)
    block.train()
    assert block.current_ladj_mode() == "roulette"


@pytest.mark.parametrize(
    "kwargs",
    [
        dict(coeff=1.0),
        dict(coeff=0.0),
        dict(ladj_mode="bogus"),
        dict(probe="uniform"),
        dict(probes=0),
        dict(p=1.0),
        dict(n_terms=0),
        dict(atol=0.0),
    ],
)
def test_bad_arguments(kwargs):
    with pytest.raises(ValueError):
        ResidualBlock(3, **kwargs)


def test_bad_inputs():
    block = _block()
    with pytest.raises(ValueError, match="shape"):
        block(torch.randn(4, 2, dtype=torch.float64))
    cblock = ResidualBlock(3, hidden=(8,), context=2)
    with pytest.raises(ValueError, match="context"):
        cblock(torch.randn(4, 3))
    with pytest.raises(ValueError, match="context"):
        cblock(torch.randn(4, 3), torch.randn(3, 2))


def test_preset():
    assert PRESETS["residual"] is ResidualFlow
    torch.manual_seed(0)
    flow = ResidualFlow(2, layers=2, hidden=(16,), eval_ladj_mode="exact")
    assert sum(isinstance(m, ResidualBlock) for m in flow.modules()) == 2
    flow_b = ResidualFlow(2, blocks=3, hidden=(16,))
    assert sum(isinstance(m, ResidualBlock) for m in flow_b.modules()) == 3
    x = torch.randn(16, 2)
    flow.train()
    loss = -flow.log_prob(x).mean()
    loss.backward()
    flow.eval()
    lp = flow.log_prob(x)
    assert lp.shape == (16,) and torch.isfinite(lp).all()
    s, log_q = flow.sample_and_log_prob((5,))
    assert s.shape == (5, 2)
    torch.testing.assert_close(flow.log_prob(s), log_q, atol=1e-4, rtol=1e-4)
    cflow = ResidualFlow(2, context=3, layers=1, hidden=(8,))
    assert cflow.log_prob(x, torch.randn(16, 3)).shape == (16,)
    with pytest.raises(ValueError):
        ResidualFlow(2, layers=0)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_float32_sampling_and_tiny_inverse(seed):
    # the fixed-point stopping rule follows the dtype and the size of |z|, |g|, |x| (it used to demand
    # 8 ulps of |x|, unreachable in float32 when |x| << |z| or |g|)
    torch.manual_seed(seed)
    flow = ResidualFlow(2, layers=2, hidden=(32, 32)).eval()
    with torch.no_grad():
        x = flow.sample((200,))
    assert x.dtype == torch.float32 and bool(torch.isfinite(x).all())
    block = ResidualBlock(2, hidden=(32, 32), ladj_mode="exact")
    with torch.no_grad():
        for p in block.parameters():
            p.add_(0.3 * torch.randn_like(p))
        block.eval()
        z = 0.01 * torch.randn(200, 2)
        x, _ = block.inverse(z)
        back, _ = block(x)
    scale = z.abs().amax(1) + block.net(x).abs().amax(1)
    assert bool(((back - z).abs().amax(1) <= 1e-5 * scale + 1e-7).all())


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_block_stays_contractive_and_normalised_after_the_weights_change(dtype):
    # stale power-iteration vectors used to under-estimate the spectral norms after a perturbation:
    # ||J_g|| reached 1.3-1.5 and the 2-D mass 1.16; eval mode now uses the exact norms
    torch.manual_seed(0)
    block = ResidualBlock(2, hidden=(32, 32), ladj_mode="exact").to(dtype)
    perturbed(block, 0.5)
    block.eval()
    x = (3 * torch.randn(2000, 2, dtype=torch.float64)).to(dtype).requires_grad_(True)
    jac = jacobian(block.net(x), x)
    assert float(torch.linalg.matrix_norm(jac.double(), ord=2).max()) < 1.0
    flow = Flow(block).double()
    assert abs(mass_2d(flow.log_prob) - 1.0) < 1e-3


def test_eval_mode_log_prob_is_exact_and_deterministic_by_default():
    torch.manual_seed(0)
    flow = perturbed(ResidualFlow(2, layers=2, hidden=(16, 16)).double(), 0.1).eval()
    x = torch.randn(64, 2, dtype=torch.float64)
    with torch.no_grad():
        a, b = flow.log_prob(x), flow.log_prob(x)
    assert torch.equal(a, b)
    block = flow.transform.transforms[1]
    assert block.current_ladj_mode() == "exact"
    assert block.p < 1 - block.net.lipschitz_bound() ** 2  # finite-variance roulette default
    asked = perturbed(ResidualFlow(2, layers=2, hidden=(16, 16), eval_ladj_mode="roulette").double(), 0.1)
    assert asked.eval().transform.transforms[1].current_ladj_mode() == "roulette"


def test_finite_variance_p():
    assert finite_variance_p(0.0) == 0.5
    for lip in (0.5, 0.9, 0.99):
        assert lip**2 < 1 - finite_variance_p(lip)
    with pytest.raises(ValueError, match="Lipschitz"):
        finite_variance_p(1.0)
