r"""Stochastic layers of stochastic normalizing flows: Markov kernels between bijections.

A layer draws :math:`y' \sim K(\cdot \mid y)` from a kernel that (nearly) leaves a target :math:`\tilde p`
invariant and returns, in place of a log-determinant, the log **path weight**

.. math:: \Delta S(y \to y') = \log K(y \mid y') - \log K(y' \mid y),

the backward kernel being the same kernel run from :math:`y'`. Along a sampled path
:math:`z = y_0 \to \dots \to y_T = x` (``inverse``, the sampling direction),
:meth:`pushforward.Flow.sample_and_log_prob` returns :math:`\log q(y_0) - \sum_t \Delta S_t`
(bijections contribute their log-determinants as usual), so the importance weight

.. math:: \log w = \log \tilde p(x) - \log q(y_0) + \sum_t \Delta S_t

has :math:`\mathbb E[w] = Z` exactly (the ratio of the path densities of the backward process started at
:math:`\tilde p / Z` and of the forward process): importance sampling keeps an unbiased :math:`Z`, and
:func:`pushforward.fit_vi` maximises :math:`\mathbb E[\log w] \le \log Z` through the reparameterised
Langevin noise (and through the accepted Metropolis–Hastings proposals, ignoring the accept decision's
gradient). ``forward`` (data → latent) runs the same kernel, so ``log_prob`` is a one-sample estimate whose
exponential is unbiased for the model's marginal density.

The target is any differentiable ``x -> log p̃(x)``; pass an ``nn.Module`` to keep the layer serialisable.

Reference: Wu, Köhler & Noé, "Stochastic Normalizing Flows", NeurIPS 2020; Roberts & Tweedie, "Exponential
convergence of Langevin distributions and their discrete approximations", Bernoulli 1996; Metropolis et
al. 1953, Hastings 1970.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
from torch import Tensor, nn

from .base import Transform, sum_except_batch

__all__ = ["Langevin", "MetropolisHastings"]

LogDensity = Callable[[Tensor], Tensor]


# ---------------------------------------------------------------------------------- pure formulas
def langevin_log_ratio(y: Tensor, y_new: Tensor, grad: Tensor, grad_new: Tensor, step: Tensor) -> Tensor:
    r"""The path weight of an unadjusted Langevin step with step size :math:`\varepsilon`,
    :math:`K(y' \mid y) = \mathcal N(y';\ y + \varepsilon \nabla\log\tilde p(y),\ 2\varepsilon I)`:

    .. math:: \log K(y \mid y') - \log K(y' \mid y) = \frac{\|y' - y - \varepsilon g\|^2
        - \|y - y' - \varepsilon g'\|^2}{4\varepsilon}, \quad g = \nabla\log\tilde p(y),\ g' =
        \nabla\log\tilde p(y').
    """
    forward = y_new - y - step * grad
    backward = y - y_new - step * grad_new
    return sum_except_batch(forward * forward - backward * backward) / (4 * step)


def metropolis_log_ratio(log_p: Tensor, log_p_new: Tensor) -> Tensor:
    r"""The path weight of a Metropolis–Hastings step with a symmetric proposal: by detailed balance,
    :math:`\log K(y \mid y') - \log K(y' \mid y) = \log\tilde p(y) - \log\tilde p(y')` (0 when rejected)."""
    return log_p - log_p_new


def _log_density(target: LogDensity, y: Tensor) -> Tensor:
    lp = target(y)
    if not isinstance(lp, Tensor) or lp.shape != y.shape[:1]:
        raise ValueError(
            f"the target must return one log-density per sample, shape ({y.shape[0]},); "
            f"got {getattr(lp, 'shape', type(lp).__name__)}"
        )
    return lp


class _MarkovLayer(Transform):
    """Shared parts: the target, the step count; ``inverse`` and ``forward`` run the same kernel."""

    #: ``log_prob`` through a Markov layer is a stochastic estimate (see the module documentation).
    exact = False

    def __init__(self, features: int, target: LogDensity, steps: int) -> None:
        if not callable(target):
            raise TypeError(f"target must be callable (x -> log density), got {type(target).__name__}")
        if isinstance(steps, bool) or not isinstance(steps, int) or steps < 1:
            raise ValueError(f"steps must be a positive int, got {steps!r}")
        super().__init__(features)
        self.target = target
        self.steps = steps

    def _run(self, y: Tensor) -> tuple[Tensor, Tensor]:
        raise NotImplementedError

    def forward(self, x: Tensor, context: Tensor | None = None) -> tuple[Tensor, Tensor]:
        return self._run(x)

    def inverse(self, z: Tensor, context: Tensor | None = None) -> tuple[Tensor, Tensor]:
        return self._run(z)


class Langevin(_MarkovLayer):
    r"""Unadjusted (overdamped) Langevin steps towards a target, with a learned step size.

    .. math:: y' = y + \varepsilon \nabla \log \tilde p(y) + \sqrt{2\varepsilon}\, \eta, \quad
        \eta \sim \mathcal N(0, I), \qquad \Delta S = \log K(y \mid y') - \log K(y' \mid y)

    (:func:`langevin_log_ratio`). Fully reparameterised: gradients reach the step size and the layers
    before it through :math:`\nabla\log\tilde p` (second derivatives of the target).

    Args:
        features: Dimension.
        target: ``x -> log p̃(x)`` of shape ``(batch,)``, differentiable (an ``nn.Module`` to save the layer).
        step_size: Initial :math:`\varepsilon`.
        steps: Langevin steps in this layer.
        learn_step: Learn :math:`\log\varepsilon`.

    Reference: Wu, Köhler & Noé, "Stochastic Normalizing Flows", NeurIPS 2020.

    Example:
        >>> import torch
        >>> from pushforward import Flow
        >>> from pushforward.transforms import Affine, Compose
        >>> log_p = lambda x: -0.5 * (x**2).sum(-1)
        >>> flow = Flow(Compose([Affine(2), Langevin(2, log_p, step_size=0.1)]))
        >>> x, log_q = flow.sample_and_log_prob((5,))   # log_q includes the path weights
        >>> log_w = log_p(x) - log_q                    # E[exp(log_w)] = Z = 2π
    """

    def __init__(
        self,
        features: int,
        target: LogDensity,
        *,
        step_size: float = 0.01,
        steps: int = 1,
        learn_step: bool = True,
    ) -> None:
        super().__init__(features, target, steps)
        if not step_size > 0:
            raise ValueError(f"step_size must be positive, got {step_size}")
        log_step = torch.tensor(math.log(step_size))
        if learn_step:
            self.log_step = nn.Parameter(log_step)
        else:
            self.register_buffer("log_step", log_step)

    def _grad(self, y: Tensor, create_graph: bool) -> Tensor:
        with torch.enable_grad():
            y_in = y if (create_graph and y.requires_grad) else y.detach().requires_grad_(True)
            lp = _log_density(self.target, y_in)
            (grad,) = torch.autograd.grad(lp.sum(), y_in, create_graph=create_graph)
        if not bool(torch.isfinite(grad).all()):
            raise ValueError("the target's gradient is not finite at the current state")
        return grad

    def _run(self, y: Tensor) -> tuple[Tensor, Tensor]:
        create_graph = torch.is_grad_enabled()
        step = self.log_step.exp().to(y.dtype)
        log_ratio = torch.zeros(y.shape[0], dtype=y.dtype, device=y.device)
        grad = self._grad(y, create_graph)
        for _ in range(self.steps):
            y_new = y + step * grad + torch.sqrt(2 * step) * torch.randn_like(y)
            grad_new = self._grad(y_new, create_graph)
            log_ratio = log_ratio + langevin_log_ratio(y, y_new, grad, grad_new, step)
            y, grad = y_new, grad_new
        return y, log_ratio


class MetropolisHastings(_MarkovLayer):
    r"""Random-walk Metropolis–Hastings steps towards a target, with a learned proposal scale.

    .. math:: y^\star = y + \sigma \eta, \quad y' = \begin{cases} y^\star & u < \tilde p(y^\star)/\tilde p(y)
        \\ y & \text{otherwise} \end{cases}, \qquad \Delta S = \log\tilde p(y) - \log\tilde p(y')

    (:func:`metropolis_log_ratio`; detailed balance makes the backward kernel the forward one).
    Gradients pass through accepted proposals (reparameterised), not through the accept decision.

    Args:
        features: Dimension.
        target: ``x -> log p̃(x)`` of shape ``(batch,)`` (an ``nn.Module`` to save the layer).
        scale: Initial proposal scale :math:`\sigma`.
        steps: MH steps in this layer.
        learn_scale: Learn :math:`\log\sigma`.

    Reference: Wu, Köhler & Noé, "Stochastic Normalizing Flows", NeurIPS 2020; Hastings, "Monte Carlo
    sampling methods using Markov chains and their applications", Biometrika 1970.

    Example:
        >>> import torch
        >>> layer = MetropolisHastings(2, lambda x: -0.5 * (x**2).sum(-1), scale=0.5, steps=3)
        >>> y, path_weight = layer.inverse(torch.randn(4, 2))
    """

    def __init__(
        self,
        features: int,
        target: LogDensity,
        *,
        scale: float = 0.5,
        steps: int = 1,
        learn_scale: bool = True,
    ) -> None:
        super().__init__(features, target, steps)
        if not scale > 0:
            raise ValueError(f"scale must be positive, got {scale}")
        log_scale = torch.tensor(math.log(scale))
        if learn_scale:
            self.log_scale = nn.Parameter(log_scale)
        else:
            self.register_buffer("log_scale", log_scale)

    def _run(self, y: Tensor) -> tuple[Tensor, Tensor]:
        scale = self.log_scale.exp().to(y.dtype)
        log_ratio = torch.zeros(y.shape[0], dtype=y.dtype, device=y.device)
        log_p = _log_density(self.target, y)
        for _ in range(self.steps):
            proposal = y + scale * torch.randn_like(y)
            log_p_prop = _log_density(self.target, proposal)
            log_u = torch.log(torch.rand_like(log_p))
            accept = (log_u < (log_p_prop - log_p).detach()) & torch.isfinite(log_p_prop)
            mask = accept.view(-1, *([1] * (y.dim() - 1)))
            y_new = torch.where(mask, proposal, y)
            log_p_new = torch.where(accept, log_p_prop, log_p)
            log_ratio = log_ratio + metropolis_log_ratio(log_p, log_p_new)
            y, log_p = y_new, log_p_new
        return y, log_ratio
