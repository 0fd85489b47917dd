r"""Amortised posteriors: a conditional flow on θ whose chain starts on the prior's support and whose context
path starts with the observations' z-scoring.

A :class:`Posterior` is a :class:`~pushforward.Flow` on the parameter :math:`\theta` given an observation
:math:`x`. Its chain (data → latent) is

.. math:: \theta \xrightarrow{\ b^{-1}\ } u \xrightarrow{\ (u - \mu_u)/\sigma_u\ } v
    \xrightarrow{\ f_\phi(\cdot\,;\,c)\ } z \sim p_Z, \qquad
    c = e\big((x - \mu_x) / \sigma_x\big),

    \log q(\theta \mid x) = \log p_Z(z) + \log|\det \partial f_\phi / \partial v|
        - \textstyle\sum_i \log \sigma_{u,i} + \log|\det \partial b^{-1} / \partial \theta|,

where :math:`b^{-1}` maps the prior's support onto :math:`\mathbb{R}^d` coordinate by coordinate
(:class:`~pushforward.transforms.ColumnMaps`: the identity, :math:`\log(\theta - a)` above a lower bound, a
scaled logit on an interval), :math:`(\mu_u, \sigma_u)` z-score the unconstrained parameter
(:class:`~pushforward.transforms.Standardize`), :math:`f_\phi` is the conditional flow's own transform and
:math:`p_Z` its base; the context path z-scores :math:`x` by median and IQR (:class:`ObservationEmbedding`,
buffers) and applies the optional embedding network :math:`e`. Because every sample is pushed through
:math:`b`, no probability mass leaks out of the support and no rejection loop is needed.

Reference: Papamakarios & Murray, "Fast ε-free Inference of Simulation Models with Bayesian Conditional
Density Estimation", NeurIPS 2016; Greenberg, Nonnenmacher & Macke, "Automatic Posterior Transformation
for Likelihood-Free Inference", ICML 2019.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Sequence

import torch
from torch import Tensor, nn
from torch.distributions import constraints

from ..checks import check_finite
from ..flows.core import Flow
from ..registry import Registered
from ..transforms.base import Compose
from ..transforms.columns import ColumnMaps
from ..transforms.preprocessing import Standardize

__all__ = [
    "ObservationEmbedding",
    "Posterior",
    "check_prior",
    "prior_support",
    "support_map",
    "z_score_stats",
]


def prior_support(prior: object | None) -> constraints.Constraint:
    """The support of ``prior`` as a ``torch.distributions`` constraint.

    ``torch.distributions`` priors give their ``support``; a
    :class:`pushforward.distributions.BoxUniform` gives the box; a prior without a support (or ``None``)
    is taken to live on the whole real space.
    """
    from ..distributions.base import BoxUniform

    if isinstance(prior, BoxUniform):
        return constraints.independent(constraints.interval(prior.low, prior.high), 1)
    support = getattr(prior, "support", None)
    if isinstance(support, constraints.Constraint):
        return support
    return constraints.real_vector


_LOWER = (constraints.greater_than, constraints.greater_than_eq)
_INTERVAL = (constraints.interval, constraints.half_open_interval)


def support_map(prior: object | None, dim: int) -> ColumnMaps:
    r"""The map :math:`b^{-1}` from the support of ``prior`` (on :math:`\theta \in \mathbb{R}^{dim}`) onto
    :math:`\mathbb{R}^{dim}`: a :class:`~pushforward.transforms.ColumnMaps` with, per coordinate, ``real``,
    ``lower`` (a lower bound: positive, ``greater_than``) or ``interval`` (``interval``, ``unit_interval``,
    a box). Any other support (a simplex, an upper bound only) raises ``ValueError``.

    Example:
        >>> prior = torch.distributions.Gamma(torch.ones(2), 1.0)
        >>> support_map(prior, 2).kinds
        ['lower', 'lower']
    """
    support = prior_support(prior)
    while isinstance(support, constraints.independent):
        support = support.base_constraint
    if support is constraints.real or support is constraints.real_vector:
        return ColumnMaps(dim, kinds=["real"] * dim)
    kind = "interval" if isinstance(support, _INTERVAL) else "lower" if isinstance(support, _LOWER) else None
    if kind is None:
        raise ValueError(
            f"the prior's support ({support}) has no coordinate-wise bijection from R^{dim} (real, a lower "
            "bound or an interval per coordinate): reparametrise theta (e.g. drop one coordinate of a "
            "Dirichlet draw, or negate a parameter with an upper bound) and use a prior on the result"
        )
    dtype = torch.get_default_dtype()
    low = torch.as_tensor(support.lower_bound, dtype=dtype).expand(dim).clone()
    high = torch.as_tensor(getattr(support, "upper_bound", 0.0), dtype=dtype).expand(dim).clone()
    if not bool(torch.isfinite(low).all() & torch.isfinite(high).all()):
        raise ValueError(f"the prior's support ({support}) has infinite bounds")
    return ColumnMaps(dim, kinds=[kind] * dim, low=low, high=high if kind == "interval" else torch.zeros(dim))


def z_score_stats(
    a: Tensor, structured: bool = False, min_scale: float = 1e-8, *, robust: bool = False
) -> tuple[Tensor, Tensor]:
    r"""Location and scale of ``a`` (shape ``(n, *event)``) over the batch, per element, or one scalar pair
    over everything when ``structured`` (images, sets): mean and standard deviation, or with ``robust`` the
    median and :math:`\mathrm{IQR}/1.349` (the standard deviation for a Gaussian, but one simulation at
    1e38 cannot inflate it; where the IQR is 0, e.g. a mostly constant entry, the standard deviation of the
    rows inside the 1-99 % quantiles). Scales below ``min_scale`` (constant entries) are set to 1, so
    standardising never divides by zero.

    Example:
        >>> a = torch.cat([torch.randn(999, 1), torch.full((1, 1), 1e38)])
        >>> bool(z_score_stats(a, robust=True)[1] < 2)
        True
    """
    if a.dim() < 2 or a.shape[0] < 2:
        raise ValueError(f"z-scoring needs at least 2 rows of shape (n, ...), got {tuple(a.shape)}")
    check_finite(a, "z-scoring data")
    flat = a.reshape(-1, 1) if structured else a.reshape(a.shape[0], -1)
    if robust:
        d = flat.double()
        q = torch.quantile(d, torch.tensor([0.01, 0.25, 0.5, 0.75, 0.99], dtype=d.dtype), dim=0)
        loc, scale = q[2], (q[3] - q[1]) / 1.349
        inside = torch.where((d >= q[0]) & (d <= q[4]), d, torch.full_like(d, math.nan))
        spread = (inside - inside.nanmean(0)).pow(2).nanmean(0).sqrt()
        scale = torch.where(scale > min_scale, scale, spread).to(a.dtype)
        loc = loc.to(a.dtype)
    else:
        loc, scale = flat.mean(0), flat.std(0)
    scale = torch.where((scale < min_scale) | ~torch.isfinite(scale), torch.ones_like(scale), scale)
    shape = a.shape[1:]
    return loc.expand(shape).clone() if structured else loc.reshape(shape).clone(), (
        scale.expand(shape).clone() if structured else scale.reshape(shape).clone()
    )


def check_prior(prior: object, dim: int | None = None) -> None:
    """``TypeError`` unless ``prior`` is ``None``, a ``torch.distributions.Distribution`` or a
    :class:`pushforward.distributions.BoxUniform`; ``ValueError`` when its event shape is not ``(dim,)`` or
    its support has no coordinate-wise map to the real line (:func:`support_map`; a Dirichlet prior lives on
    a simplex of dimension ``d - 1``: reparametrise θ first)."""
    from ..distributions.base import BoxUniform

    if prior is None:
        return
    if not isinstance(prior, (torch.distributions.Distribution, BoxUniform)):
        raise TypeError(
            f"prior must be a torch.distributions distribution, a BoxUniform or None, got {type(prior).__name__}"
        )
    if dim is None:
        return
    event = tuple(getattr(prior, "batch_shape", ())) + tuple(getattr(prior, "event_shape", ()))
    if event != (dim,):  # an Independent prior, or d independent coordinates (batch shape (d,))
        raise ValueError(
            f"the prior's (batch + event) shape is {event}, but theta has {dim} entries: expected ({dim},)"
        )
    support_map(prior, dim)


class ObservationEmbedding(Registered, nn.Module):
    r"""The context path of a :class:`Posterior`: z-scoring of the observations,
    :math:`h = (x - \mu_x) / \sigma_x`, then the optional embedding network ``net``.

    The statistics (``loc``, ``scale``) and the range of the training simulations (``low``, ``high``, used
    once ``range_known``) are buffers. In eval mode, an observation more than half a scale outside that range
    raises a ``RuntimeWarning``: the posterior's answer there is an extrapolation.

    Args:
        shape: Shape of one observation.
        net: Network ``(batch, *shape) → (batch, K)`` (registered, e.g. :mod:`pushforward.nets.embedding`,
            to be saved), or None.

    Example:
        >>> e = ObservationEmbedding((2,))
        >>> e.set(loc=torch.tensor([1.0, 2.0]), scale=torch.tensor([2.0, 4.0]))
        >>> e(torch.tensor([[3.0, 6.0]])).tolist()
        [[1.0, 1.0]]
    """

    def __init__(self, shape: Sequence[int], net: nn.Module | None = None) -> None:
        super().__init__()
        self.shape = tuple(int(s) for s in shape)
        if not self.shape or min(self.shape) < 1:
            raise ValueError(f"shape must be a non-empty tuple of positive ints, got {shape!r}")
        if net is not None and not isinstance(net, nn.Module):
            raise TypeError(f"the embedding net must be an nn.Module, got {type(net).__name__}")
        self.net = net
        self.in_shape = self.shape
        self.register_buffer("loc", torch.zeros(self.shape))
        self.register_buffer("scale", torch.ones(self.shape))
        self.register_buffer("low", torch.zeros(self.shape))
        self.register_buffer("high", torch.zeros(self.shape))
        self.register_buffer("range_known", torch.tensor(False))

    @torch.no_grad()
    def set(
        self,
        *,
        loc: Tensor | None = None,
        scale: Tensor | None = None,
        low: Tensor | None = None,
        high: Tensor | None = None,
    ) -> None:
        """Replace statistics in place (shape ``shape`` each; ``scale > 0``; ``low`` and ``high`` together,
        the range of the training simulations)."""
        if (low is None) != (high is None):
            raise ValueError("give low and high together")
        for name, value in (("loc", loc), ("scale", scale), ("low", low), ("high", high)):
            if value is None:
                continue
            value = torch.as_tensor(value, dtype=self.loc.dtype, device=self.loc.device)
            check_finite(value, f"x_{name}")
            if value.shape != self.shape:
                raise ValueError(f"x_{name} must have shape {self.shape}, got {tuple(value.shape)}")
            if name == "scale" and bool((value <= 0).any()):
                raise ValueError("x_scale must be positive")
            getattr(self, name).copy_(value)
        if low is not None:
            self.range_known.fill_(True)

    def forward(self, x: Tensor) -> Tensor:
        if not self.training and bool(self.range_known):  # training data lie in the range by construction
            margin = 0.5 * self.scale  # half a (robust) standard deviation beyond the simulations
            outside = ((x < self.low - margin) | (x > self.high + margin)).reshape(x.shape[0], -1).any(1)
            if bool(outside.any()):
                warnings.warn(
                    f"{int(outside.sum())} observation(s) lie outside the range of the simulations the posterior "
                    "was trained on: its answer there is an extrapolation and cannot be trusted",
                    RuntimeWarning,
                    stacklevel=4,
                )
        h = (x - self.loc) / self.scale
        return self.net(h) if self.net is not None else h.reshape(x.shape[0], -1)


class Posterior(Flow):
    r"""An amortised posterior :math:`q(\theta \mid x)`: a :class:`~pushforward.Flow` on θ whose context is
    the observation ``x`` (see the module documentation for the chain and the maths).

    ``log_prob(theta, context=x)``, ``sample(sample_shape, context=x)`` and ``sample_and_log_prob`` follow the
    Flow convention: one observation ``x`` of shape ``x_shape`` gives ``(*sample_shape, d)`` samples, a batch
    ``(B, *x_shape)`` gives ``(*sample_shape, B, d)``; ``log_prob`` takes ``theta (*batch, d)`` with one
    ``x`` for all rows or one per row. Parameters outside the support (or on its boundary) score
    :math:`-\infty`, and every sample lies strictly inside it.

    What a model file (:func:`pushforward.io.save`) holds: the conditional flow, the support map (its kinds
    and bounds: the prior itself is not needed after training), the z-scoring statistics of θ and ``x``, the
    range of the simulations and the embedding network (which must be built from registered classes, e.g.
    :mod:`pushforward.nets.embedding`). The training history and the estimator's choice of flow
    (``history``, ``flow_kind``, ``flow_scores``) are not saved.

    Args:
        flow: A conditional :class:`~pushforward.Flow` on ``(d,)`` (a preset such as ``NSF`` or ``FFJORD``,
            or a hand-built one without an embedding of its own): its transform and base join the chain.
        support: The map of the prior's support onto :math:`\mathbb{R}^d` (:func:`support_map`); default
            the whole real space. :meth:`from_prior` builds it from a prior.
        embedding: Network mapping standardised ``x`` of shape ``(batch, *x_shape)`` to the flow's context
            ``(batch, K)``; default none (``x`` is the context).
        x_shape: Shape of one observation; default the embedding's ``in_shape``, or ``(K,)`` without one.

    Call :meth:`fit_standardization` on the training simulations (or :meth:`set_standardization`) before
    training; the defaults are the identity.

    Example:
        >>> from pushforward.flows import NSF
        >>> from pushforward.distributions import BoxUniform
        >>> prior = BoxUniform(-torch.ones(2), torch.ones(2))
        >>> post = Posterior.from_prior(NSF(2, context=3, layers=2, hidden=(16, 16)), prior)
        >>> post.sample((5,), torch.zeros(3)).shape
        torch.Size([5, 2])
        >>> post.sample((5,), torch.zeros(4, 3)).shape
        torch.Size([5, 4, 2])
        >>> post.log_prob(torch.zeros(4, 2), torch.zeros(3)).shape
        torch.Size([4])
    """

    def __init__(
        self,
        flow: Flow,
        support: ColumnMaps | None = None,
        *,
        embedding: nn.Module | None = None,
        x_shape: Sequence[int] | None = None,
    ) -> None:
        if not isinstance(flow, Flow):
            raise TypeError(f"flow must be a conditional pushforward Flow, got {type(flow).__name__}")
        kind = type(flow)
        if kind.log_prob is not Flow.log_prob or kind._draw is not Flow._draw or flow.embedding is not None:
            raise TypeError(
                f"flow must be a Flow defined by its transform and base alone, got a {kind.__name__} (pass an "
                "embedding to the Posterior instead of the flow)"
            )
        if len(flow.event_shape) != 1:
            raise ValueError(
                f"the flow must model vectors θ of shape (d,), got event shape {flow.event_shape}"
            )
        k = flow.transform.context_features
        if k < 1:
            raise ValueError("the flow must be conditional (context_features ≥ 1): it models θ given x")
        d = flow.event_shape[0]
        if support is None:
            support = ColumnMaps(d, kinds=["real"] * d)
        if not isinstance(support, ColumnMaps) or support.features != d:
            raise TypeError(f"support must be a ColumnMaps on {d} coordinates (see support_map)")
        if embedding is not None and not isinstance(embedding, nn.Module):
            raise TypeError(f"embedding must be an nn.Module, got {type(embedding).__name__}")
        if x_shape is None:
            x_shape = getattr(embedding, "in_shape", None) if embedding is not None else (k,)
        if x_shape is None:
            raise ValueError("give x_shape=, the shape of one observation the embedding takes")
        x_shape = tuple(int(s) for s in x_shape)
        if embedding is None and x_shape != (k,):
            raise ValueError(
                f"without an embedding an observation is the flow's context: x_shape must be ({k},)"
            )
        dtype = flow.dtype or torch.get_default_dtype()
        chain = Compose([support.to(dtype), Standardize(d).to(dtype), flow.transform])
        context_path = ObservationEmbedding(x_shape, embedding).to(dtype)
        super().__init__(chain, flow.base, embedding=context_path, context_shape=x_shape)
        # the flow's own view (flow matching trains it), not a second copy; inside the chain its transform
        # sees intermediate values (validated at the chain's entry), so the flow's own input check is removed
        flow.transform_hook.remove()
        self.__dict__["_flow"] = flow
        self.dim = d
        self.x_shape = x_shape

    @classmethod
    def from_prior(
        cls,
        flow: Flow,
        prior: object | None,
        *,
        embedding: nn.Module | None = None,
        x_shape: Sequence[int] | None = None,
    ) -> Posterior:
        """The posterior around ``flow`` on the support of ``prior`` (a ``torch.distributions`` prior, a
        :class:`pushforward.distributions.BoxUniform` or None), which is used for its support only."""
        d = flow.event_shape[0] if isinstance(flow, Flow) and len(flow.event_shape) == 1 else None
        check_prior(prior, d)
        support = support_map(prior, d) if d is not None else None
        return cls(flow, support, embedding=embedding, x_shape=x_shape)

    # ------------------------------------------------------------------ parts of the chain
    @property
    def flow(self) -> Flow:
        """The conditional flow on the standardised unconstrained parameter (sharing this chain's modules)."""
        return self.__dict__["_flow"]

    @property
    def support_map(self) -> ColumnMaps:
        r"""The first layer of the chain, :math:`b^{-1}`."""
        return self.transform[0]  # type: ignore[index,return-value]

    @property
    def theta_standardize(self) -> Standardize:
        """The second layer of the chain: z-scoring of the unconstrained parameter."""
        return self.transform[1]  # type: ignore[index,return-value]

    theta_loc = property(lambda self: self.theta_standardize.loc, doc="Location of the unconstrained θ.")
    theta_scale = property(lambda self: self.theta_standardize.scale, doc="Scale of the unconstrained θ.")
    x_loc = property(lambda self: self.embedding.loc, doc="Location of the observations.")
    x_scale = property(lambda self: self.embedding.scale, doc="Scale of the observations.")
    x_low = property(lambda self: self.embedding.low, doc="Smallest simulated observation, per entry.")
    x_high = property(lambda self: self.embedding.high, doc="Largest simulated observation, per entry.")

    def flow_inputs(self, theta: Tensor, x: Tensor) -> tuple[Flow, Tensor, Tensor]:
        """``(flow, v, context)``: the flow, its standardised unconstrained parameters and the embedded
        observations, for losses that work in the flow's space (flow matching)."""
        v, _ = self.theta_to_latent(self.clamp_to_support(theta))
        return self.flow, v, self.embedding(x)

    # ------------------------------------------------------------------ standardisation
    def set_standardization(
        self,
        theta_loc: Tensor | None = None,
        theta_scale: Tensor | None = None,
        x_loc: Tensor | None = None,
        x_scale: Tensor | None = None,
        *,
        x_low: Tensor | None = None,
        x_high: Tensor | None = None,
    ) -> None:
        """Set the z-scoring statistics (of the *unconstrained* parameter ``u`` and of ``x``) and the range
        of the simulations (``x_low``, ``x_high``)."""
        if theta_loc is not None or theta_scale is not None:
            loc = self.theta_loc if theta_loc is None else torch.as_tensor(theta_loc)
            scale = self.theta_scale if theta_scale is None else torch.as_tensor(theta_scale)
            for name, value in (("theta_loc", loc), ("theta_scale", scale)):
                if value.shape != (self.dim,):
                    raise ValueError(f"{name} must have shape ({self.dim},), got {tuple(value.shape)}")
            if bool((scale <= 0).any()):
                raise ValueError("theta_scale must be positive")
            self.theta_standardize.set(loc, scale)
        self.embedding.set(loc=x_loc, scale=x_scale, low=x_low, high=x_high)

    @torch.no_grad()
    def fit_standardization(
        self, theta: Tensor, x: Tensor, *, z_score_theta: bool = True, z_score_x: str | None = "auto"
    ) -> None:
        """Fit the z-scoring statistics on simulations ``theta (n, d)`` and ``x (n, *x_shape)``, and take
        their range as the simulations' range.

        ``z_score_x`` is ``"independent"`` (per entry), ``"structured"`` (one mean and scale for all
        entries: images, sets of observations), ``None`` (off) or ``"auto"`` (independent for vectors,
        structured otherwise). ``θ`` is standardised in the unconstrained space, per entry.
        """
        if z_score_x not in ("auto", "independent", "structured", None):
            raise ValueError(
                f"z_score_x must be 'auto', 'independent', 'structured' or None, got {z_score_x!r}"
            )
        theta, x = theta.to(self.theta_loc), x.to(self.theta_loc)
        if tuple(x.shape[1:]) != self.x_shape:
            raise ValueError(
                f"x has shape {tuple(x.shape)}; expected (n, {', '.join(map(str, self.x_shape))})"
            )
        if z_score_theta:
            u, _ = self.support_map(self.clamp_to_support(theta))
            self.set_standardization(*z_score_stats(u))
        if z_score_x is None:
            loc, scale = torch.zeros_like(x[0]), torch.ones_like(x[0])
        else:
            structured = z_score_x == "structured" or (z_score_x == "auto" and x.dim() > 2)
            loc, scale = z_score_stats(x, structured=structured, robust=True)
        self.set_standardization(x_loc=loc, x_scale=scale, x_low=x.amin(0), x_high=x.amax(0))

    # ------------------------------------------------------------------ maps
    def _bounds(self) -> tuple[Tensor, Tensor]:
        """Lower and upper bounds of the support per coordinate (±inf where unbounded)."""
        s = self.support_map
        inf = torch.full_like(s.low, math.inf)
        lower = torch.where(s.lower_mask | s.interval_mask, s.low, -inf)
        return lower, torch.where(s.interval_mask, s.high, inf)

    def clamp_to_support(self, theta: Tensor) -> Tensor:
        """``theta`` moved strictly inside the support by at most one ulp (floating-point saturation)."""
        lower, upper = self._bounds()
        return torch.maximum(
            torch.minimum(theta, torch.nextafter(upper, lower)), torch.nextafter(lower, upper)
        )

    def in_support(self, theta: Tensor) -> Tensor:
        """Boolean ``(*batch,)``: whether each ``theta`` lies strictly inside the prior's support (its
        boundary maps to infinity in the unconstrained space)."""
        lower, upper = self._bounds()
        return ((theta > lower) & (theta < upper)).all(-1)

    def theta_to_latent(self, theta: Tensor) -> tuple[Tensor, Tensor]:
        r"""``(v, log|det ∂v/∂θ|)`` with :math:`v = (b^{-1}(\theta) - \mu_u) / \sigma_u`, for ``theta (n, d)``
        inside the support."""
        u, ladj_u = self.support_map(theta)
        v, ladj_v = self.theta_standardize(u)
        return v, ladj_u + ladj_v

    def latent_to_theta(self, v: Tensor) -> Tensor:
        r""":math:`\theta = b(\mu_u + \sigma_u v)` for ``v (n, d)``, kept inside the support."""
        u, _ = self.theta_standardize.inverse(v)
        return self.clamp_to_support(self.support_map.inverse(u)[0])

    # ------------------------------------------------------------------ density and sampling
    def log_prob(self, theta: Tensor, context: Tensor | None = None) -> Tensor:
        r""":math:`\log q(\theta \mid x)` for ``theta`` of shape ``(*batch, d)`` given observations ``context``
        (one for every row, or one per row).

        Parameters outside the prior's support (or on its boundary, or infinite) get :math:`-\infty`; so do
        rows whose density cannot be computed in floating point, even in float64 (an observation so far
        outside the simulations that its embedding overflows), without affecting the other rows, with a
        ``RuntimeWarning`` (observations outside the simulations' range warn too). NaN raises ``ValueError``.
        """
        if not isinstance(theta, Tensor) or theta.dim() < 1 or theta.shape[-1] != self.dim:
            raise ValueError(
                f"theta must have shape (batch, {self.dim}), got {getattr(theta, 'shape', None)}"
            )
        if bool(torch.isnan(theta).any()):
            raise ValueError("theta contains NaN")
        inside = self.in_support(theta)
        if bool(inside.all()):
            return super().log_prob(theta, context)
        centre = self.latent_to_theta(self.theta_loc.new_zeros(1, self.dim))[0].to(theta)
        lp = super().log_prob(torch.where(inside[..., None], theta, centre), context)
        return torch.where(inside, lp, torch.full_like(lp, -math.inf))

    def _draw(self, sample_shape: int | Sequence[int], context: Tensor | None, with_log_prob: bool):
        """The Flow's draw, with samples rounded strictly inside the support (a sigmoid saturates to the
        bound in floating point); a rounded sample's log-density is that of the returned value."""
        out = super()._draw(sample_shape, context, with_log_prob)
        theta = out[0] if with_log_prob else out
        inside = self.clamp_to_support(theta)
        if not with_log_prob:
            return inside
        if bool((inside != theta).any()):
            return inside, self.log_prob(inside, context)
        return out

    def map(
        self,
        x: Tensor,
        *,
        num_init: int = 1000,
        starts: int = 10,
        steps: int = 300,
        lr: float = 0.01,
    ) -> Tensor:
        r"""The maximum a posteriori estimate :math:`\arg\max_\theta \log q(\theta \mid x)` of the posterior
        estimate for one observation ``x`` (shape ``x_shape``).

        :math:`q(\theta \mid x)` already is a posterior (prior included), so the prior is not added again.
        Multi-start gradient ascent: ``num_init`` posterior samples, the ``starts`` with the highest
        density are refined by Adam (``steps`` steps of rate ``lr``) in the unconstrained space ``u``
        (the objective is the density of θ, so the result is the mode in θ, not in ``u``). Returns the best
        ``(d,)``.
        """
        if not isinstance(x, Tensor) or tuple(x.shape) != self.x_shape:
            raise ValueError(
                f"map takes one observation x of shape {self.x_shape}, got {getattr(x, 'shape', x)}"
            )
        was_training = self.training
        self.eval()
        try:
            with torch.no_grad():
                init = self.sample((num_init,), x)
                lp = self.log_prob(init, x)
                best = init[lp.topk(min(starts, num_init)).indices]
            u = self.support_map(best)[0].detach().requires_grad_(True)
            opt = torch.optim.Adam([u], lr=lr)
            with torch.enable_grad():
                for _ in range(steps):
                    theta = self.clamp_to_support(self.support_map.inverse(u)[0])
                    loss = -self.log_prob(theta, x)
                    grad = torch.autograd.grad(loss[torch.isfinite(loss)].sum(), u)[0]
                    opt.zero_grad()
                    u.grad = torch.nan_to_num(grad)
                    opt.step()
            with torch.no_grad():
                theta = self.clamp_to_support(self.support_map.inverse(u)[0])
                candidates = torch.cat([theta, best])
                lp = self.log_prob(candidates, x)
                return candidates[lp.argmax()]
        finally:
            self.train(was_training)
