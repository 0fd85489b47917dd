r"""Continuous normalizing flows: the time-1 map of a neural ODE (FFJORD).

The transform integrates :math:`\frac{dz}{dt} = f(z, t; c)` from :math:`t = 0` (data) to :math:`t = T`
(latent), together with the log-determinant (instantaneous change of variables; Chen et al.,
"Neural Ordinary Differential Equations", 2018):

.. math:: \frac{d}{dt}\log\left|\det\frac{\partial z_t}{\partial z_0}\right| =
    \operatorname{tr}\left(\frac{\partial f}{\partial z}(z_t, t)\right), \qquad
    \text{forward ladj} = \int_0^T \operatorname{tr}\frac{\partial f}{\partial z}\,dt,

so only the trace of the Jacobian is needed, and the inverse integrates the same ODE backwards from
:math:`T` to :math:`0`. The trace is exact (``D`` backward passes per evaluation) or Hutchinson's estimate
:math:`\epsilon^\top \frac{\partial f}{\partial z}\epsilon` with one probe :math:`\epsilon` drawn per solve
(Grathwohl et al. 2019). ``torchdiffeq`` is an optional dependency (extra ``ode``), imported on first use.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Sequence
from typing import Any

import torch
from torch import Tensor, nn

from ..estimators import PROBES, exact_trace, hutchinson_trace, sample_probe
from ..nets.mlp import activation as make_activation
from .base import Transform, rowwise_outputs_active

__all__ = ["ContinuousFlow", "TimeMLP", "dopri5_per_row", "odeint"]

TRACES = ("exact", "hutchinson")

#: Smooth activations (ODE solvers need smooth dynamics; ReLU's kink makes adaptive steps collapse).
SMOOTH_ACTIVATIONS = ("elu", "silu", "softplus", "tanh")


def odeint(adjoint: bool = False) -> Callable[..., Any]:
    """``torchdiffeq.odeint`` (or ``odeint_adjoint``), with a clear error when torchdiffeq is missing."""
    try:
        import torchdiffeq
    except ImportError as err:  # pragma: no cover - depends on the environment
        raise ImportError(
            "continuous flows need torchdiffeq; install it with `pip install 'pushforward[ode]'` "
            "(or `pip install torchdiffeq`)"
        ) from err
    return torchdiffeq.odeint_adjoint if adjoint else torchdiffeq.odeint


class TimeMLP(nn.Module):
    r"""Time-dependent MLP :math:`f(z, t; c)` for ODE dynamics: :math:`t` (and the context :math:`c`) are
    concatenated to the input of **every** layer, so the field can change over time at every depth
    (FFJORD's ``concat`` layers).

    .. math:: h_0 = z,\quad h_{\ell} = \phi\big(W_\ell [h_{\ell-1}; t; c] + b_\ell\big),\quad
        f = W_{L+1}[h_L; t; c] + b_{L+1}.

    Reference: Grathwohl, Chen, Bettencourt, Sutskever & Duvenaud, "FFJORD: Free-form Continuous Dynamics
    for Scalable Reversible Generative Models", ICLR 2019.

    ``t`` is a scalar (the ODE solver's time) or one time per row, shape ``(batch,)`` (flow-matching
    training evaluates the field at a different time for every sample).

    Example:
        >>> f = TimeMLP(2, hidden=(32, 32))
        >>> f(torch.tensor(0.5), torch.randn(4, 2)).shape
        torch.Size([4, 2])
        >>> f(torch.rand(4), torch.randn(4, 2)).shape
        torch.Size([4, 2])
    """

    def __init__(
        self,
        features: int,
        hidden: Sequence[int] = (64, 64),
        *,
        context: int = 0,
        activation: str | Callable[[], nn.Module] = "softplus",
    ) -> None:
        super().__init__()
        if features <= 0:
            raise ValueError(f"features must be positive, got {features}")
        if isinstance(activation, str) and activation not in SMOOTH_ACTIVATIONS:
            raise ValueError(
                f"unknown or non-smooth activation {activation!r}; choose from {list(SMOOTH_ACTIVATIONS)}"
            )
        self.features, self.context = int(features), int(context)
        sizes = [features, *hidden, features]
        extra = 1 + context
        self.linears = nn.ModuleList(nn.Linear(a + extra, b) for a, b in itertools.pairwise(sizes))
        self.activations = nn.ModuleList(make_activation(activation) for _ in hidden)

    def forward(self, t: Tensor, z: Tensor, context: Tensor | None = None) -> Tensor:
        t = torch.as_tensor(t, dtype=z.dtype, device=z.device)
        if t.numel() not in (1, z.shape[0]):
            raise ValueError(f"t must be a scalar or hold one time per row ({z.shape[0]}), got {t.numel()}")
        tc = t.reshape(-1, 1).expand(z.shape[0], 1)  # one time for all rows, or one per row
        if self.context:
            if context is None:
                raise ValueError(f"this network expects a context of {self.context} features, got None")
            tc = torch.cat([tc, context], dim=-1)
        h = z
        for i, lin in enumerate(self.linears):
            h = lin(torch.cat([h, tc], dim=-1))
            if i < len(self.activations):
                h = self.activations[i](h)
        return h


# Dormand–Prince 5(4) tableau (Dormand & Prince, "A family of embedded Runge–Kutta formulae", 1980).
_DP_C = (0.0, 1 / 5, 3 / 10, 4 / 5, 8 / 9, 1.0, 1.0)
_DP_A = (
    (),
    (1 / 5,),
    (3 / 40, 9 / 40),
    (44 / 45, -56 / 15, 32 / 9),
    (19372 / 6561, -25360 / 2187, 64448 / 6561, -212 / 729),
    (9017 / 3168, -355 / 33, 46732 / 5247, 49 / 176, -5103 / 18656),
    (35 / 384, 0.0, 500 / 1113, 125 / 192, -2187 / 6784, 11 / 84),
)
_DP_B = _DP_A[6] + (0.0,)  # fifth-order weights (the last stage is evaluated at the new point: FSAL)
_DP_E = tuple(  # fifth- minus fourth-order weights: the local error estimate
    b - e
    for b, e in zip(_DP_B, (5179 / 57600, 0.0, 7571 / 16695, 393 / 640, -92097 / 339200, 187 / 2100, 1 / 40))
)


def dopri5_per_row(
    func: Callable[[Tensor, Tensor, Tensor], Tensor],
    y0: Tensor,
    t0: float,
    t1: float,
    *,
    rtol: float,
    atol: float,
    groups: Sequence[int] | None = None,
    max_steps: int = 10_000,
    failures: str = "raise",
) -> Tensor:
    r"""Integrate :math:`dy/dt = f(t, y)` from ``t0`` to ``t1`` with Dormand–Prince 5(4), each row of
    ``y0`` ``(batch, n)`` with its **own** time, step size and error control, so a row's result does not
    depend on the other rows of the batch.

    A shared adaptive solver (torchdiffeq's) picks one step sequence for the whole batch from the worst row,
    so a row's answer changes with its neighbours by up to the tolerance. Here every step is accepted or
    rejected per row, with the error norm of that row only:
    :math:`\max_g \operatorname{rms}_{i \in g}\big(e_i / (\text{atol} + \text{rtol}\max(|y_i|, |\hat y_i|))\big)`
    over the column ``groups`` (sizes summing to ``n``; the parts of a tuple state, default one group) and
    the next step :math:`h \min(10, \max(0.2, 0.9\,\text{err}^{-1/5}))` (Hairer, Nørsett & Wanner,
    "Solving Ordinary Differential Equations I", 1993, II.4). ``func(t, y, rows)`` gets the times ``(b,)``,
    states ``(b, n)`` and indices ``(b,)`` of the rows still integrating. Differentiable (out-of-place
    updates). A row whose state or derivative is not finite, whose step size collapses (below 1e-12) or that
    has not arrived after ``max_steps`` fails alone: ``failures="raise"`` raises ``ValueError`` naming how
    many rows failed, ``"nan"`` returns those rows as NaN (the caller reports them row by row).

    Example:
        >>> y = dopri5_per_row(lambda t, y, rows: -y, torch.ones(3, 1, dtype=torch.float64), 0.0, 1.0,
        ...                    rtol=1e-8, atol=1e-8)
        >>> bool(((y - 0.36787944117144233).abs() < 1e-7).all())  # exp(-1)
        True
    """
    B, n = y0.shape
    groups = tuple(groups) if groups is not None else (n,)
    span, sign = abs(t1 - t0), (1.0 if t1 >= t0 else -1.0)
    rows = torch.arange(B, device=y0.device)

    def norm(e: Tensor, y_old: Tensor, y_new: Tensor) -> Tensor:
        ratio = e / (atol + rtol * torch.maximum(y_old.abs(), y_new.abs()))
        return torch.stack([c.pow(2).mean(1).sqrt() for c in ratio.split(groups, 1)]).amax(0)

    t_start = torch.full((B,), float(t0), dtype=y0.dtype, device=y0.device)
    k1 = func(t_start, y0, rows)
    # initial step per row (Hairer et al. II.4): 1 % of |y| / |f| in the error norm's scale
    d0, d1 = norm(y0, y0, y0), norm(k1, y0, y0)
    h = torch.where((d0 < 1e-5) | (d1 < 1e-5), torch.full_like(d0, 1e-6), 0.01 * d0 / d1).clamp(max=span)
    y, tau = y0, torch.zeros_like(t_start)
    failed = torch.zeros(B, dtype=torch.bool, device=y0.device)
    for _ in range(max_steps):
        active = (tau < span).nonzero().squeeze(1)
        if active.numel() == 0:
            break
        ya, ka, ta = y[active], k1[active], tau[active]
        ha = torch.minimum(h[active], span - ta).unsqueeze(1)
        t = t0 + sign * ta
        ks = [ka]
        for c, a in zip(_DP_C[1:], _DP_A[1:]):
            yi = ya + sign * ha * sum(w * k for w, k in zip(a, ks) if w)
            ks.append(func(t + sign * c * ha.squeeze(1), yi, active))
        y_new = ya + sign * ha * sum(w * k for w, k in zip(_DP_B, ks) if w)
        err = norm(sign * ha * sum(w * k for w, k in zip(_DP_E, ks) if w), ya, y_new)
        accept = err <= 1.0
        last = accept & (ha.squeeze(1) >= span - ta)
        factor = (0.9 * err.clamp_min(1e-10) ** -0.2).clamp(0.2, 10.0)
        h_new = (ha.squeeze(1) * factor).detach()
        # a row whose state blew up or whose step collapsed fails alone: NaN, and it stops integrating
        broken = ~torch.isfinite(err) | ~(h_new >= 1e-12 * max(span, 1.0))
        y_next = torch.where(accept.unsqueeze(1), y_new, ya)
        y = y.index_copy(0, active, torch.where(broken.unsqueeze(1), torch.full_like(ya, torch.nan), y_next))
        k1 = k1.index_copy(0, active, torch.where(accept.unsqueeze(1), ks[-1], ka))
        tau_next = torch.where(last, span, torch.where(accept, ta + ha.squeeze(1), ta))
        tau = tau.index_copy(0, active, torch.where(broken, span, tau_next))
        h = h.index_copy(0, active, h_new)
        failed = failed.index_copy(0, active, failed[active] | broken)
    else:
        left = tau < span
        y = torch.where(left.unsqueeze(1), torch.full_like(y, torch.nan), y)
        failed = failed | left
    return _failed_rows(y, failed, failures, f"rtol={rtol:g}, atol={atol:g}")


def _failed_rows(y: Tensor, failed: Tensor, failures: str, tolerances: str) -> Tensor:
    if failures == "raise" and bool(failed.any()):
        raise ValueError(
            f"the ODE solver failed for {int(failed.sum())} of {failed.shape[0]} rows (non-finite dynamics, a step "
            f"size below 1e-12 or the step cap): the dynamics are too stiff for {tolerances} at those inputs; "
            "rescale the data, or loosen the tolerances"
        )
    return y


class _Dynamics(nn.Module):
    """The augmented right-hand side ``(z, ladj[, kinetic, frobenius]) ↦ (f, tr J[, ‖f‖², ‖J‖_F²])``."""

    def __init__(self, net: nn.Module) -> None:
        super().__init__()
        self.net = net
        self.trace = "exact"
        self.noise: Tensor | None = None
        self.context: Tensor | None = None
        self.regularize = False
        self.nfe = 0

    def forward(self, t: Tensor, state: tuple[Tensor, ...]) -> tuple[Tensor, ...]:
        self.nfe += 1
        create_graph = torch.is_grad_enabled()  # training without adjoint, or the adjoint's backward pass
        z = state[0]
        with torch.enable_grad():
            if not z.requires_grad:
                z = z.detach().requires_grad_(True)
            fz = self.net(t, z, self.context)
            if self.trace == "exact":
                tr, frob = exact_trace(fz, z, create_graph)
            else:
                tr, frob = hutchinson_trace(fz, z, self.noise, create_graph)  # type: ignore[arg-type]
        out: tuple[Tensor, ...] = (fz, tr)
        if self.regularize:
            out = (*out, (fz * fz).sum(-1), frob)
        if not create_graph:
            out = tuple(o.detach() for o in out)
        return out


class ContinuousFlow(Transform):
    r"""Continuous normalizing flow: the time-:math:`T` map of :math:`\frac{dz}{dt} = f(z, t; c)`.

    .. math:: z = x + \int_0^T f(z_t, t; c)\,dt, \qquad \log\left|\det\frac{\partial z}{\partial x}\right|
        = \int_0^T \operatorname{tr}\frac{\partial f}{\partial z}(z_t, t; c)\,dt,

    solved jointly as one ODE on the augmented state :math:`(z_t, \ell_t)` with torchdiffeq (``method``,
    ``rtol``, ``atol``, ``options`` passed through; ``adjoint=True`` backpropagates with the adjoint method
    in :math:`O(1)` memory — then gradients reach the parameters of ``f`` but not the context). ``inverse``
    integrates from :math:`T` back to 0 and returns :math:`-\int_0^T \operatorname{tr}\,dt` along that
    trajectory.

    **Trace** (``trace``): ``"exact"`` sums the diagonal with ``D`` vector–Jacobian products (small ``D``, the
    tests); ``"hutchinson"`` uses :math:`\epsilon^\top (\partial f/\partial z)\epsilon`, :math:`\epsilon`
    Gaussian or Rademacher (``probe``), drawn once per solve so the ODE stays deterministic for the solver.
    Then the ladj (and ``log_prob``) is an unbiased estimate. ``eval_trace`` replaces ``trace`` in eval mode;
    its default ``"exact"`` makes ``log_prob`` after ``eval()`` exact and deterministic (``D`` vector–Jacobian
    products per dynamics evaluation instead of one: meant for low and moderate ``D``); pass
    ``eval_trace="hutchinson"`` to evaluate with the estimator, or ``None`` to keep ``trace``.

    **RNODE regularisers** (``regularize=True``): every forward solve also integrates the kinetic energy
    :math:`\int_0^T \|f\|^2 dt` and the Jacobian Frobenius norm
    :math:`\int_0^T \|\partial f/\partial z\|_F^2 dt`
    (exact with ``trace="exact"``, else Hutchinson :math:`\|\epsilon^\top \partial f/\partial z\|^2`), per
    sample. They are stored, with gradient, in :attr:`kinetic_energy` and :attr:`jacobian_frobenius`
    (shape ``(batch,)``) after each forward call, and :meth:`regularization` returns
    :math:`\lambda_K \overline{KE} + \lambda_J \overline{JF}` to add to the loss (Finlay et al. 2020).

    **Batch independence**: in eval mode (``flow.eval()``), with the default ``dopri5`` solver and
    :class:`TimeMLP` dynamics, solves use per-row step control (:func:`dopri5_per_row`, same ``rtol`` and
    ``atol``): each row takes its own adaptive steps, so its log-density does not depend on the rest of the
    batch (a shared step sequence moved it by up to the tolerance, 6.6e-4 nats). A float32 flow is integrated
    in float64 there (its rounding depends on the batch), so rows agree to the float32 rounding of the result.
    Training solves share one step sequence (torchdiffeq), which is faster on a batch.

    After each solve :attr:`nfe` holds the number of dynamics evaluations.

    Args:
        features: Event size ``D``.
        hidden: Hidden sizes of the default :class:`TimeMLP` dynamics.
        context: Context features (concatenated to the dynamics input at every layer).
        net: Custom dynamics module ``net(t, z, context) -> dz/dt`` replacing the default.
        activation: Activation of the default dynamics (smooth: ``softplus``, ``tanh``, ``elu``, ``silu``).
        time: Integration length :math:`T`.
        trace, eval_trace, probe: See above.
        method, rtol, atol, options: Solver settings (torchdiffeq names; default dopri5).
        adjoint: Use the adjoint method for gradients.
        regularize: Integrate the RNODE terms in forward solves.
        kinetic, frobenius: Weights :math:`\lambda_K, \lambda_J` used by :meth:`regularization`.

    References: Chen, Rubanova, Bettencourt & Duvenaud, "Neural Ordinary Differential Equations", NeurIPS
    2018; Grathwohl, Chen, Bettencourt, Sutskever & Duvenaud, "FFJORD: Free-form Continuous Dynamics for
    Scalable Reversible Generative Models", ICLR 2019; Finlay, Jacobsen, Nurbekyan & Oberman, "How to train
    your neural ODE: the world of Jacobian and kinetic regularization", ICML 2020.

    Example:
        >>> cnf = ContinuousFlow(2, hidden=(32, 32), trace="hutchinson", regularize=True)
        >>> z, ladj = cnf(torch.randn(8, 2))
        >>> penalty = cnf.regularization()  # add to -log_prob().mean()
        >>> x, _ = cnf.inverse(z)
    """

    analytic_inverse = False
    #: the ODE inverse is as accurate as its solver's error control (rtol, atol), not checked by a round trip
    round_trip_check = False

    def __init__(
        self,
        features: int,
        hidden: Sequence[int] = (64, 64),
        *,
        context: int = 0,
        net: nn.Module | None = None,
        activation: str | Callable[[], nn.Module] = "softplus",
        time: float = 1.0,
        trace: str = "exact",
        eval_trace: str | None = "exact",
        probe: str = "gaussian",
        method: str = "dopri5",
        rtol: float = 1e-5,
        atol: float = 1e-5,
        options: dict[str, Any] | None = None,
        adjoint: bool = False,
        regularize: bool = False,
        kinetic: float = 0.01,
        frobenius: float = 0.01,
    ) -> None:
        if not isinstance(features, int) or features <= 0:
            raise ValueError(f"features must be a positive int, got {features!r}")
        for name, mode in (("trace", trace), ("eval_trace", eval_trace)):
            if mode is not None and mode not in TRACES:
                raise ValueError(f"{name} must be one of {TRACES}, got {mode!r}")
        if trace is None:
            raise ValueError(f"trace must be one of {TRACES}, got None")
        if probe not in PROBES:
            raise ValueError(f"probe must be one of {PROBES}, got {probe!r}")
        if not time > 0:
            raise ValueError(f"time must be positive, got {time}")
        if rtol <= 0 or atol <= 0:
            raise ValueError(f"rtol and atol must be positive, got rtol={rtol}, atol={atol}")
        if kinetic < 0 or frobenius < 0:
            raise ValueError("regularisation weights must be non-negative")
        if net is not None and not isinstance(net, nn.Module):
            raise TypeError(f"net must be an nn.Module, got {type(net).__name__}")
        super().__init__(features, context)
        self.dynamics = _Dynamics(
            net if net is not None else TimeMLP(features, hidden, context=context, activation=activation)
        )
        self.time, self.trace, self.probe = float(time), trace, probe
        self.eval_trace = eval_trace
        self.method, self.rtol, self.atol = method, float(rtol), float(atol)
        self.options = dict(options) if options else None
        self.adjoint, self.regularize = bool(adjoint), bool(regularize)
        self.kinetic, self.frobenius = float(kinetic), float(frobenius)
        self.kinetic_energy: Tensor | None = None
        self.jacobian_frobenius: Tensor | None = None
        self.nfe = 0

    # ------------------------------------------------------------------ solving
    def current_trace(self) -> str:
        """The trace used now: ``eval_trace`` in eval mode when set, else ``trace``."""
        if not self.training and self.eval_trace is not None:
            return self.eval_trace
        return self.trace

    def _solve(
        self, x: Tensor, context: Tensor | None, t0: float, t1: float, regularize: bool
    ) -> tuple[Tensor, ...]:
        dyn = self.dynamics
        trace = self.current_trace()
        dyn.trace, dyn.context, dyn.regularize, dyn.nfe = trace, context, regularize, 0
        dyn.noise = sample_probe(x, self.probe) if trace == "hutchinson" else None
        zero = torch.zeros(x.shape[0], dtype=x.dtype, device=x.device)
        if self._per_row(regularize):
            try:
                out = self._solve_per_row(x, context, t0, t1)
            finally:
                dyn.context, dyn.noise = None, None
            self.nfe = dyn.nfe
            return out
        state = (x, zero, zero, zero) if regularize else (x, zero)
        t = torch.tensor([t0, t1], dtype=x.dtype, device=x.device)
        kwargs: dict[str, Any] = dict(
            rtol=self.rtol, atol=self.atol, method=self.method, options=self.options
        )
        if self.adjoint:
            kwargs["adjoint_params"] = tuple(dyn.parameters())
        try:
            out = odeint(self.adjoint)(dyn, state, t, **kwargs)
        except AssertionError as e:  # torchdiffeq asserts when its adaptive step size underflows
            raise ValueError(
                f"the ODE solver failed ({' '.join(str(e).split()) or 'assertion'}): the dynamics are too stiff "
                f"(or not finite) for rtol={self.rtol:g}, atol={self.atol:g} at this input (max |value| "
                f"{float(x.detach().abs().max()):.3g}); rescale the data, or loosen the tolerances"
            ) from None
        finally:
            dyn.context, dyn.noise = None, None
        self.nfe = dyn.nfe
        return tuple(o[-1] for o in out)

    def _per_row(self, regularize: bool) -> bool:
        """Eval-mode solves use per-row step control (:func:`dopri5_per_row`) for the default solver and
        dynamics (a :class:`TimeMLP`, which takes one time per row)."""
        return (
            not self.training
            and not regularize
            and not self.adjoint
            and self.method == "dopri5"
            and isinstance(self.dynamics.net, TimeMLP)
        )

    def _solve_per_row(
        self, x: Tensor, context: Tensor | None, t0: float, t1: float
    ) -> tuple[Tensor, Tensor]:
        """Per-row solve, in float64 when the flow is in a lower precision: a float32 product's rounding
        depends on the batch it is computed in, and one flipped accept/reject decision moves a row by up to
        the tolerance; float64 keeps the rows independent to the float32 rounding of the result."""
        dyn, d = self.dynamics, x.shape[1]
        work = torch.float64 if x.dtype in (torch.float16, torch.bfloat16, torch.float32) else x.dtype
        params = {k: v.to(work) for k, v in itertools.chain(dyn.named_parameters(), dyn.named_buffers())}
        noise = None if dyn.noise is None else dyn.noise.to(work)
        ctx = None if context is None else context.to(work)

        def rhs(t: Tensor, y: Tensor, rows: Tensor) -> Tensor:
            dyn.context = None if ctx is None else ctx[rows]
            dyn.noise = None if noise is None else noise[rows]
            fz, tr = torch.func.functional_call(dyn, params, (t, (y[:, :d], y[:, d])))
            return torch.cat([fz, tr.unsqueeze(1)], 1)

        y0 = torch.cat([x.to(work), x.new_zeros(x.shape[0], 1, dtype=work)], 1)
        max_steps = int((self.options or {}).get("max_num_steps", 10_000))
        failures = "nan" if rowwise_outputs_active() else "raise"  # Flow.log_prob: -inf for that row alone
        y = dopri5_per_row(
            rhs,
            y0,
            t0,
            t1,
            rtol=self.rtol,
            atol=self.atol,
            groups=(d, 1),
            max_steps=max_steps,
            failures=failures,
        ).to(x.dtype)
        return y[:, :d], y[:, d]

    # ------------------------------------------------------------------ contract
    def forward(self, x: Tensor, context: Tensor | None = None) -> tuple[Tensor, Tensor]:
        out = self._solve(x, context, 0.0, self.time, self.regularize)
        if self.regularize:
            self.kinetic_energy, self.jacobian_frobenius = out[2], out[3]
        return out[0], out[1]

    def inverse(self, z: Tensor, context: Tensor | None = None) -> tuple[Tensor, Tensor]:
        x, ladj = self._solve(z, context, self.time, 0.0, False)
        return x, ladj

    def regularization(self) -> Tensor:
        r""":math:`\lambda_K \operatorname{mean}(KE) + \lambda_J \operatorname{mean}(JF)` of the last
        forward solve
        (needs ``regularize=True``); add it to the negative log-likelihood."""
        if self.kinetic_energy is None or self.jacobian_frobenius is None:
            raise ValueError("no regularisation terms: build with regularize=True and call forward first")
        return self.kinetic * self.kinetic_energy.mean() + self.frobenius * self.jacobian_frobenius.mean()

    def extra_repr(self) -> str:
        solver = f"method={self.method!r}, rtol={self.rtol}, atol={self.atol}"
        return f"{super().extra_repr()}, trace={self.trace!r}, {solver}"
