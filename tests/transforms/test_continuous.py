"""Continuous normalizing flows: exact log-likelihood against a variational-equation reference, round trip,
Hutchinson unbiasedness, RNODE terms, adjoint gradients, augmented flows, and errors."""

from __future__ import annotations

import math
import sys

import pytest
import torch
from torch import nn

from pushforward.flows import FFJORD, PRESETS, AugmentedFlow, Flow, continuous_regularization
from pushforward.transforms import ContinuousFlow
from pushforward.transforms.continuous import odeint

torch.set_default_dtype(torch.float32)


def _cnf(features: int = 2, **kw) -> ContinuousFlow:
    torch.manual_seed(0)
    kw.setdefault("rtol", 1e-9)
    kw.setdefault("atol", 1e-9)
    cnf = ContinuousFlow(features, hidden=(8,), activation="tanh", **kw).double()
    with torch.no_grad():
        for p in cnf.parameters():
            p.mul_(2.0)  # a clearly non-trivial field
    return cnf


def _reference_log_prob(cnf: ContinuousFlow, x: torch.Tensor) -> torch.Tensor:
    """Solve dz/dt = f, dM/dt = (∂f/∂z) M, M(0) = I with the full autograd Jacobian;
    log p = log N(z) + log|det M|."""
    net = cnf.dynamics.net
    d = x.shape[1]

    def rhs(t, state):
        z, m = state
        with torch.enable_grad():
            zz = z.detach().requires_grad_(True)
            fz = net(t, zz)
            jac = torch.stack(
                [torch.autograd.grad(fz[:, i].sum(), zz, retain_graph=True)[0] for i in range(d)], dim=1
            )
        return fz.detach(), (jac @ m).detach()

    m0 = torch.eye(d, dtype=x.dtype).expand(x.shape[0], d, d).clone()
    t = torch.tensor([0.0, cnf.time], dtype=x.dtype)
    z, m = (s[-1] for s in odeint()(rhs, (x, m0), t, rtol=1e-10, atol=1e-10))
    log_base = -0.5 * (z**2).sum(-1) - 0.5 * d * math.log(2 * math.pi)
    return log_base + torch.linalg.slogdet(m)[1]


def test_exact_log_prob_matches_full_jacobian_reference():
    cnf = _cnf()
    flow = Flow(cnf).double()
    x = torch.randn(6, 2, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        lp = flow.log_prob(x)
    torch.testing.assert_close(lp, _reference_log_prob(cnf, x), atol=1e-6, rtol=0)


def test_round_trip_and_sample_log_prob():
    cnf = _cnf(3)
    x = torch.randn(10, 3, dtype=torch.float64)
    with torch.no_grad():
        z, ladj = cnf(x)
        x_rec, ladj_inv = cnf.inverse(z)
    torch.testing.assert_close(x_rec, x, atol=1e-6, rtol=0)
    torch.testing.assert_close(ladj_inv, -ladj, atol=1e-6, rtol=0)
    assert cnf.nfe > 0
    flow = Flow(cnf).double()
    with torch.no_grad():
        s, log_q = flow.sample_and_log_prob((5,))
        torch.testing.assert_close(flow.log_prob(s), log_q, atol=1e-6, rtol=0)


@pytest.mark.parametrize("probe", ["gaussian", "rademacher"])
def test_hutchinson_is_unbiased(probe):
    cnf = _cnf(3, trace="hutchinson", probe=probe, method="rk4", options={"step_size": 0.1})
    x = torch.randn(1, 3, dtype=torch.float64, generator=torch.Generator().manual_seed(1))
    torch.manual_seed(0)
    with torch.no_grad():
        est = cnf(x.expand(2000, 3))[1]  # one probe per row, rows independent (fixed-step solver)
        cnf.trace = "exact"
        exact = float(cnf(x)[1])
    se = float(est.std() / est.numel() ** 0.5)
    assert se > 0
    assert abs(float(est.mean()) - exact) < 3 * se, (float(est.mean()), exact, se)


class _LinearField(nn.Module):
    """f(z, t) = a z: z_t = x e^{at}, ladj = D a T, KE = a²|x|²(e^{2aT} − 1)/(2a), JF = D a² T."""

    def __init__(self, a: float) -> None:
        super().__init__()
        self.a = nn.Parameter(torch.tensor(a, dtype=torch.float64))

    def forward(self, t, z, context=None):
        return self.a * z


@pytest.mark.parametrize("trace", ["exact", "hutchinson"])
def test_rnode_regularisers_on_linear_field(trace):
    a, T, d = 0.7, 0.8, 3
    cnf = ContinuousFlow(d, net=_LinearField(a), time=T, trace=trace, probe="rademacher", regularize=True,
                         rtol=1e-10, atol=1e-10, kinetic=0.5, frobenius=0.25).double()  # fmt: skip
    x = torch.randn(5, d, dtype=torch.float64)
    z, ladj = cnf(x)
    torch.testing.assert_close(z, x * math.exp(a * T))
    torch.testing.assert_close(ladj, torch.full((5,), d * a * T, dtype=torch.float64))
    ke = a**2 * (x**2).sum(-1) * (math.exp(2 * a * T) - 1) / (2 * a)
    torch.testing.assert_close(cnf.kinetic_energy, ke)
    # J = aI: Rademacher probes give ‖εᵀJ‖² = D a² exactly, so both modes are exact here.
    torch.testing.assert_close(cnf.jacobian_frobenius, torch.full((5,), d * a**2 * T, dtype=torch.float64))
    reg = continuous_regularization(cnf)
    torch.testing.assert_close(reg, 0.5 * ke.mean() + 0.25 * d * a**2 * T)
    reg.backward()
    assert cnf.dynamics.net.a.grad is not None and float(cnf.dynamics.net.a.grad) > 0


def test_regularization_requires_flag():
    cnf = _cnf()
    cnf(torch.randn(2, 2, dtype=torch.float64))
    with pytest.raises(ValueError, match="regularize=True"):
        cnf.regularization()


def test_adjoint_gradients_match_backprop():
    cnf = _cnf(rtol=1e-8, atol=1e-8)
    x = torch.randn(4, 2, dtype=torch.float64)
    grads = []
    for adjoint in (False, True):
        cnf.adjoint = adjoint
        cnf.zero_grad()
        z, ladj = cnf(x)
        ((z**2).sum() - ladj.sum()).backward()
        grads.append(torch.cat([p.grad.reshape(-1) for p in cnf.parameters()]))
    torch.testing.assert_close(grads[1], grads[0], atol=1e-5, rtol=1e-4)


def test_context_is_used_and_validated():
    torch.manual_seed(0)
    cnf = ContinuousFlow(2, hidden=(8,), context=3).double()
    x, c = torch.randn(4, 2, dtype=torch.float64), torch.randn(4, 3, dtype=torch.float64)
    with torch.no_grad():
        z1 = cnf(x, c)[0]
        z2 = cnf(x, c + 1)[0]
    assert not torch.allclose(z1, z2)
    with pytest.raises(ValueError, match="context"):
        cnf(x)
    with pytest.raises(ValueError, match="context"):
        cnf(x, c[:2])


def test_ffjord_preset_and_training_step():
    assert PRESETS["ffjord"] is FFJORD
    torch.manual_seed(0)
    flow = FFJORD(2, hidden=(8, 8), layers=2, regularize=True, rtol=1e-4, atol=1e-4)
    x = torch.randn(16, 2)
    loss = -flow.log_prob(x).mean() + continuous_regularization(flow)
    loss.backward()
    assert all(p.grad is not None for p in flow.parameters())
    assert flow.sample((3,)).shape == (3, 2)
    cflow = FFJORD(2, context=1, hidden=(8,), trace="exact")
    assert cflow.log_prob(x, torch.randn(16, 1)).shape == (16,)


def test_augmented_flow_bound():
    torch.manual_seed(0)
    flow = FFJORD(2, hidden=(8,), augment=2, trace="exact", rtol=1e-6, atol=1e-6).double()
    assert isinstance(flow, AugmentedFlow) and flow.event_shape == (2,)
    x = torch.randn(3, 2, dtype=torch.float64)
    # Zero dynamics: p(x, a) = N(x) N(a), so with q = N(0, I) the bound is exactly log N(x) for every draw.
    with torch.no_grad():
        for p in flow.parameters():
            p.zero_()
        log_n = -0.5 * (x**2).sum(-1) - math.log(2 * math.pi)
        torch.testing.assert_close(flow.log_prob(x), log_n)
        # With a mismatched q the bound is strictly below log p(x) and tightens with more samples.
        flow.noise_scale = 1.5
        flow.importance_samples = 1
        b1 = torch.stack([flow.log_prob(x) for _ in range(8)]).mean(0)
        flow.importance_samples = 200
        b200 = flow.log_prob(x)
        assert bool((b1 < log_n).all()) and bool((b1 < b200).all())
        torch.testing.assert_close(b200, log_n, atol=0.1, rtol=0)
    assert flow.sample((4,)).shape == (4, 2)
    with pytest.raises(ValueError):
        FFJORD(2, augment=-1)


@pytest.mark.parametrize(
    "kwargs", [dict(trace="bogus"), dict(probe="uniform"), dict(time=0.0), dict(rtol=0.0), dict(kinetic=-1.0)]
)
def test_bad_arguments(kwargs):
    with pytest.raises(ValueError):
        ContinuousFlow(2, **kwargs)


def test_bad_input_shape_and_net_type():
    with pytest.raises(ValueError, match="shape"):
        _cnf()(torch.randn(3, 5, dtype=torch.float64))
    with pytest.raises(TypeError):
        ContinuousFlow(2, net=lambda t, z, c: z)  # type: ignore[arg-type]


def test_missing_torchdiffeq_names_the_extra(monkeypatch):
    monkeypatch.setitem(sys.modules, "torchdiffeq", None)
    with pytest.raises(ImportError, match=r"pushforward\[ode\]"):
        odeint()


def test_ffjord_eval_log_prob_is_exact_and_deterministic_by_default():
    # FFJORD trains with Hutchinson's estimator; in eval mode log_prob used to be stochastic too (two calls
    # differed by 0.04): now exact unless the estimator is asked for
    torch.manual_seed(0)
    flow = FFJORD(2, hidden=(8,)).double()
    x = torch.randn(16, 2, dtype=torch.float64)
    with torch.no_grad():
        flow.eval()
        a, b = flow.log_prob(x), flow.log_prob(x)
        exact = FFJORD(2, hidden=(8,), trace="exact").double()
        exact.load_state_dict(flow.state_dict())
        ref = exact.eval().log_prob(x)
    assert torch.equal(a, b)
    torch.testing.assert_close(a, ref)
    asked = FFJORD(2, hidden=(8,), eval_trace="hutchinson").eval()
    assert asked.transform.current_trace() == "hutchinson"
    with pytest.raises(ValueError, match="eval_trace"):
        FFJORD(2, eval_trace="bogus")
