r"""Continuous-flow presets: FFJORD, and augmented (ANODE) continuous flows with a likelihood bound."""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Any

import torch
from torch import Tensor, nn

from ..checks import check_input
from ..distributions.base import Distribution, StandardNormal
from ..transforms.base import Compose, Transform
from ..transforms.continuous import ContinuousFlow
from .core import Flow
from .preset import Preset, check_activation, check_count, check_flag, check_sizes

__all__ = ["FFJORD", "AugmentedFlow", "continuous_regularization"]


class AugmentedFlow(Flow):
    r"""A flow on the augmented space :math:`(x, a) \in \mathbb{R}^{D+A}` whose data are the first ``D``
    coordinates (augmented neural ODEs: Dupont, Doucet & Teh, "Augmented Neural ODEs", NeurIPS 2019).

    **What ``log_prob`` means.** The transform :math:`f` is a bijection of :math:`\mathbb{R}^{D+A}`, so it
    defines an exact *joint* density :math:`p(x, a) = p_Z(f(x, a))\,|\det \partial f/\partial(x,a)|`
    (:meth:`log_prob_joint`). The data density is the marginal :math:`p(x) = \int p(x, a)\,da`, which has no
    closed form. Padding :math:`a = 0` (as ANODE does for classification) would give
    :math:`p(x, a{=}0)`, which is *not* a density of :math:`x` (it does not integrate to one), so it is not
    used. Instead ``a`` is drawn from a fixed noise distribution :math:`q(a) = \mathcal N(0, s^2 I_A)` and

    .. math:: \log p(x) \ \ge\ \mathcal{L}_K(x) = \log \frac1K \sum_{k=1}^K \frac{p(x, a_k)}{q(a_k)},
        \qquad a_k \sim q,

    the importance-weighted bound (Burda, Grosse & Salakhutdinov, 2016; with :math:`K=1` the ELBO of
    Huang, Chen, Tsirigotis & Courville, "Augmented Normalizing Flows", 2020). :meth:`log_prob` returns
    :math:`\mathcal{L}_K` (``K = importance_samples``): a **stochastic lower bound** whose expectation
    increases to :math:`\log p(x)` as :math:`K \to \infty`; maximising it trains the joint model.
    Sampling is exact: draw :math:`z \sim p_Z`, invert, keep the first ``D`` coordinates.

    Args:
        transform: A bijection on ``features + augment`` dimensions (e.g. a :class:`ContinuousFlow`).
        features: Data dimension ``D``.
        augment: Number of augmented dimensions ``A``.
        noise_scale: :math:`s`, the scale of :math:`q(a)`.
        importance_samples: ``K``.
        base: Base distribution on ``D + A`` dimensions (default standard normal).

    Example:
        >>> flow = FFJORD(2, hidden=(16,), augment=2)
        >>> bound = flow.log_prob(torch.randn(5, 2))  # lower bound of log p(x)
        >>> flow.sample((3,)).shape
        torch.Size([3, 2])
    """

    def __init__(
        self,
        transform: Transform,
        features: int,
        augment: int,
        *,
        noise_scale: float = 1.0,
        importance_samples: int = 1,
        base: Distribution | None = None,
    ) -> None:
        if augment < 1:
            raise ValueError(f"augment must be >= 1, got {augment}")
        if transform.event_shape != (features + augment,):
            raise ValueError(
                f"transform must act on {features + augment} features, got {transform.event_shape}"
            )
        if noise_scale <= 0:
            raise ValueError(f"noise_scale must be positive, got {noise_scale}")
        if importance_samples < 1:
            raise ValueError(f"importance_samples must be >= 1, got {importance_samples}")
        super().__init__(transform, base)
        self.event_shape = (int(features),)
        self.augment = int(augment)
        self.noise_scale = float(noise_scale)
        self.importance_samples = int(importance_samples)
        self.noise = StandardNormal(augment)

    def log_prob_joint(self, x: Tensor, a: Tensor, context: Tensor | None = None) -> Tensor:
        """Exact joint log-density :math:`\\log p(x, a)` of data ``(B, D)`` and augmentation ``(B, A)``."""
        ctx = self._context(context, (x.shape[0],))
        z, ladj = self.transform(torch.cat([x, a], dim=-1), ctx)
        return self.base.log_prob(z) + ladj

    def log_prob(self, x: Tensor, context: Tensor | None = None) -> Tensor:
        """Importance-weighted lower bound of :math:`\\log p(x)` (see the class documentation)."""
        x = check_input(x, self.event_shape, dtype=self.dtype)
        batch_shape = tuple(x.shape[:-1])
        x = x.reshape(-1, self.event_shape[0])
        k, b = self.importance_samples, x.shape[0]
        ctx = self._context(context, batch_shape)
        eps = torch.randn(k, b, self.augment, dtype=x.dtype, device=x.device)
        a = self.noise_scale * eps
        log_q = self.noise.log_prob(eps) - self.augment * math.log(self.noise_scale)
        xs = x.unsqueeze(0).expand(k, b, -1).reshape(k * b, -1)
        cs = None if ctx is None else ctx.unsqueeze(0).expand(k, b, -1).reshape(k * b, -1)
        z, ladj = self.transform(torch.cat([xs, a.reshape(k * b, -1)], dim=-1), cs)
        log_w = (self.base.log_prob(z) + ladj).reshape(k, b) - log_q
        return (torch.logsumexp(log_w, 0) - math.log(k)).reshape(batch_shape)

    def _draw(self, sample_shape: int | Sequence[int], context: Tensor | None, with_log_prob: bool):
        ctx, out_shape, count = self._sample_plan(sample_shape, context)
        z = self.base.rsample((count,))
        xa, _ = self.transform.inverse(z, ctx)
        x = xa[:, : self.event_shape[0]]
        if not with_log_prob:
            return x.reshape(*out_shape, *self.event_shape)
        log_p = self.log_prob(x, ctx)
        return x.reshape(*out_shape, *self.event_shape), log_p.reshape(out_shape)


def _ffjord_transform(
    owner: str, features: int, augment: int, layers: int, context: int, hidden: Sequence[int], **kwargs: Any
) -> Transform:
    """The ``layers`` continuous flows of an FFJORD on ``features + augment`` dimensions, checked first."""
    features = check_count(owner, "features", features)
    augment = check_count(owner, "augment", augment, low=0)
    layers = check_count(owner, "layers", layers)
    context = check_count(owner, "context", context, low=0)
    hidden = check_sizes(owner, "hidden", hidden)
    check_activation(owner, kwargs.get("activation", "softplus"))
    parts: list[Transform] = [
        ContinuousFlow(features + augment, hidden, context=context, **kwargs) for _ in range(layers)
    ]
    return parts[0] if layers == 1 else Compose(parts)


class FFJORD(Preset):
    r"""FFJORD: ``layers`` stacked continuous normalizing flows :math:`dz/dt = f_\ell(z, t; c)`, each the
    time-1 map of a :class:`~pushforward.transforms.TimeMLP` field, trained by maximum likelihood with
    :math:`\log p(x) = \log p_Z(z(1)) + \int_0^1 \operatorname{tr}(\partial f/\partial z)\,dt`.

    In training the trace is Hutchinson's estimate by default (``trace="exact"`` for small ``D``). In eval
    mode (``flow.eval()``) it is exact by default (``eval_trace="exact"``: exact, deterministic
    log-likelihoods for ``D`` vector–Jacobian products per dynamics evaluation; pass
    ``eval_trace="hutchinson"`` for the estimator in high dimension). ``regularize=True`` integrates the
    RNODE terms; read them after a forward pass with :func:`continuous_regularization`. With
    ``augment > 0`` the ODE runs on :math:`\mathbb{R}^{D+A}` and an :class:`AugmentedFlow` is returned
    (``FFJORD(...)`` then gives that class, not an ``FFJORD``), whose ``log_prob`` is a lower bound (see
    there). Extra keyword ``options`` go to every :class:`~pushforward.transforms.ContinuousFlow`
    (``time``, ``options``, ``kinetic``, ``frobenius``).

    Reference: Grathwohl, Chen, Bettencourt, Sutskever & Duvenaud, "FFJORD: Free-form Continuous Dynamics for
    Scalable Reversible Generative Models", ICLR 2019.

    Example:
        >>> flow = FFJORD(2, hidden=(32, 32), trace="exact")
        >>> flow.log_prob(torch.randn(4, 2)).shape
        torch.Size([4])
    """

    def __new__(cls, features: int, *, augment: int = 0, **kwargs: Any) -> Flow:
        if isinstance(augment, bool) or not isinstance(augment, int) or augment == 0:
            return super().__new__(cls)  # __init__ checks augment
        importance_samples = kwargs.pop("importance_samples", 1)
        base = kwargs.pop("base", None)
        layers, context = kwargs.pop("layers", 1), kwargs.pop("context", 0)
        hidden = kwargs.pop("hidden", (64, 64, 64))
        transform = _ffjord_transform(cls.__name__, features, augment, layers, context, hidden, **kwargs)
        return AugmentedFlow(transform, features, augment, importance_samples=importance_samples, base=base)

    def __init__(
        self,
        features: int,
        *,
        context: int = 0,
        layers: int = 1,
        hidden: Sequence[int] = (64, 64, 64),
        activation: str | Callable[[], nn.Module] = "softplus",
        trace: str = "hutchinson",
        eval_trace: str | None = "exact",
        probe: str = "rademacher",
        method: str = "dopri5",
        rtol: float = 1e-5,
        atol: float = 1e-5,
        adjoint: bool = False,
        regularize: bool = False,
        augment: int = 0,
        importance_samples: int = 1,
        base: Distribution | None = None,
        **options: Any,
    ) -> None:
        owner = type(self).__name__
        check_count(owner, "augment", augment, low=0, high=0)
        check_count(owner, "importance_samples", importance_samples)
        check_flag(owner, "adjoint", adjoint)
        check_flag(owner, "regularize", regularize)
        transform = _ffjord_transform(
            owner,
            features,
            0,
            layers,
            context,
            hidden,
            activation=activation,
            trace=trace,
            eval_trace=eval_trace,
            probe=probe,
            method=method,
            rtol=rtol,
            atol=atol,
            adjoint=adjoint,
            regularize=regularize,
            **options,
        )
        super().__init__(transform, base)


def continuous_regularization(module: nn.Module) -> Tensor:
    r"""Sum of :meth:`ContinuousFlow.regularization` over every continuous flow inside ``module`` (after a
    forward pass with ``regularize=True``): :math:`\sum_\ell \lambda_K \overline{KE}_\ell + \lambda_J
    \overline{JF}_\ell`, the RNODE penalty to add to the negative log-likelihood.

    Example:
        >>> flow = FFJORD(2, hidden=(16,), regularize=True)
        >>> loss = -flow.log_prob(torch.randn(8, 2)).mean() + continuous_regularization(flow)
    """
    terms = [m.regularization() for m in module.modules() if isinstance(m, ContinuousFlow) and m.regularize]
    if not terms:
        raise ValueError("no ContinuousFlow with regularize=True in this module")
    return torch.stack(terms).sum()
