r"""Amortised posteriors: a conditional flow wrapped with z-scoring, an embedding net and a bijection onto
the prior's support.

A :class:`Posterior` holds a conditional flow :math:`q_\phi(v \mid c)` on an unconstrained, standardised
parameter :math:`v`, and maps it to the parameter space of a prior :math:`p(\theta)`:

.. math:: \theta = b(\mu_u + \sigma_u \odot v), \qquad c = e\big((x - \mu_x) / \sigma_x\big),

    \log q(\theta \mid x) = \log q_\phi(v \mid c) - \sum_i \log \sigma_{u,i}
        - \log\left|\det \frac{\partial b}{\partial u}\right|_{u = b^{-1}(\theta)},

where :math:`b` is a bijection from :math:`\mathbb{R}^d` onto the prior's support (``biject_to`` of
:mod:`torch.distributions`, e.g. an affine sigmoid for a box-uniform prior), :math:`(\mu_u, \sigma_u)` and
:math:`(\mu_x, \sigma_x)` are z-scoring statistics stored as buffers, and :math:`e` an optional embedding
network. Because every sample is pushed through :math:`b`, no probability mass leaks out of the support and
no rejection loop is needed.

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
from torch.distributions.transforms import Transform as TorchTransform
from torch.distributions.transforms import identity_transform

from ..checks import check_finite
from ..flows.core import Flow

__all__ = [
    "Posterior",
    "check_prior",
    "check_simulations",
    "prepare_posterior",
    "prior_support",
    "support_bijection",
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


def support_bijection(prior: object | None) -> TorchTransform:
    r"""The bijection :math:`b: \mathbb{R}^d \to \operatorname{supp}(p)` (``biject_to`` of the support)."""
    support = prior_support(prior)
    if support is constraints.real or support is constraints.real_vector:
        return identity_transform
    return torch.distributions.biject_to(support)


def _interval_bounds(support: constraints.Constraint) -> tuple[Tensor | float | None, Tensor | float | None]:
    """Lower/upper bounds of an interval-like support (``None`` where unbounded)."""
    while isinstance(support, constraints.independent):
        support = support.base_constraint
    return getattr(support, "lower_bound", None), getattr(support, "upper_bound", None)


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
    its support's bijection changes the dimension (a Dirichlet prior lives on a simplex of dimension
    ``d - 1``: reparametrise θ first)."""
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
    b = support_bijection(prior)
    if tuple(b.inverse_shape((dim,))) != (dim,):
        raise ValueError(
            f"the prior's support ({prior_support(prior)}) has no bijection from R^{dim}: "
            "reparametrise theta (e.g. drop one coordinate of a Dirichlet draw) and use a prior on the result"
        )


class Posterior(nn.Module):
    r"""An amortised posterior :math:`q(\theta \mid x)` built on any conditional flow.

    See the module documentation for the maths. The flow models the standardised unconstrained parameter
    ``v`` given the context ``embedding((x - x_loc) / x_scale)``; this object adds the change of variables
    to :math:`\theta`, so :meth:`log_prob` is a normalised density on the prior's support.

    Args:
        flow: A conditional :class:`~pushforward.Flow` on ``(d,)`` (or any module with the same
            ``log_prob(v, context)`` / ``sample(shape, context)`` interface, such as a continuous flow).
        prior: The prior, used for its support only (``torch.distributions`` prior,
            :class:`pushforward.distributions.BoxUniform`, or ``None`` for an unbounded parameter).
        embedding: Network mapping standardised ``x`` of shape ``(batch, *x_shape)`` to the flow's
            context ``(batch, context_features)``; default none (``x`` is the context).
        x_shape: Shape of one observation; default ``(context_features,)`` without an embedding.
        bijection: A ``torch.distributions`` transform from :math:`\mathbb{R}^d` onto the support, to use
            instead of ``biject_to(prior.support)``.

    Call :meth:`fit_standardization` on the training simulations (or pass the statistics to
    :meth:`set_standardization`) before training; the defaults are the identity.

    Example:
        >>> import torch
        >>> from pushforward.flows import NSF
        >>> from pushforward.distributions import BoxUniform
        >>> prior = BoxUniform(-torch.ones(2), torch.ones(2))
        >>> post = Posterior(NSF(2, context=3, layers=2, hidden=(16, 16)), prior)
        >>> post.sample(5, torch.zeros(3)).shape
        torch.Size([5, 2])
        >>> post.log_prob(torch.zeros(4, 2), torch.zeros(3)).shape
        torch.Size([4])
    """

    def __init__(
        self,
        flow: Flow,
        prior: object | None = None,
        *,
        embedding: nn.Module | None = None,
        x_shape: Sequence[int] | None = None,
        bijection: TorchTransform | None = None,
    ) -> None:
        super().__init__()
        if not isinstance(flow, nn.Module) or not hasattr(flow, "log_prob"):
            raise TypeError(f"flow must be a conditional flow module, got {type(flow).__name__}")
        event_shape = tuple(getattr(flow, "event_shape", ()))
        if len(event_shape) != 1:
            raise ValueError(f"the flow must model vectors θ of shape (d,), got event shape {event_shape}")
        context = int(getattr(flow, "context_features", 0))
        if context < 1:
            raise ValueError("the flow must be conditional (context_features ≥ 1): it models θ given x")
        if embedding is not None and not isinstance(embedding, nn.Module):
            raise TypeError(f"embedding must be an nn.Module, got {type(embedding).__name__}")
        self.dim = event_shape[0]
        check_prior(prior, self.dim)
        self.flow = flow
        self.prior = prior
        self.embedding = embedding
        self.event_shape: tuple[int, ...] = (self.dim,)
        self.context_features = context
        if x_shape is None and embedding is None:
            x_shape = (context,)
        self.x_shape: tuple[int, ...] | None = tuple(int(s) for s in x_shape) if x_shape is not None else None
        self.support = prior_support(prior)
        self.bijection = bijection if bijection is not None else support_bijection(prior)
        lower, upper = _interval_bounds(self.support)
        dtype = torch.get_default_dtype()
        self.register_buffer("_lower", _bound_buffer(lower, -math.inf, self.dim, dtype))
        self.register_buffer("_upper", _bound_buffer(upper, math.inf, self.dim, dtype))
        self.register_buffer("theta_loc", torch.zeros(self.dim))
        self.register_buffer("theta_scale", torch.ones(self.dim))
        xs = self.x_shape if self.x_shape is not None else ()
        self.register_buffer("x_loc", torch.zeros(xs))
        self.register_buffer("x_scale", torch.ones(xs))
        self.register_buffer("x_low", torch.full(xs, -math.inf))
        self.register_buffer("x_high", torch.full(xs, math.inf))

    # ------------------------------------------------------------------ what the training engine reads
    @property
    def features(self) -> int:
        """Number of parameters ``d``."""
        return self.dim

    @property
    def context_shape(self) -> tuple[int, ...] | None:
        """Shape of one observation ``x`` (the engine's context)."""
        return self.x_shape

    @property
    def dtype(self) -> torch.dtype:
        return self.theta_loc.dtype

    def flow_inputs(self, theta: Tensor, x: Tensor) -> tuple[Flow, Tensor, Tensor]:
        """``(flow, v, context)``: the flow, its standardised unconstrained parameters and the embedded
        observations, for losses that work in the flow's space (flow matching)."""
        v, _ = self.theta_to_latent(self.clamp_to_support(theta))
        return self.flow, v, self.embed(x)

    # ------------------------------------------------------------------ standardisation
    def set_standardization(
        self,
        theta_loc: Tensor | None = None,
        theta_scale: Tensor | None = None,
        x_loc: Tensor | None = None,
        x_scale: Tensor | None = None,
    ) -> None:
        """Set the z-scoring statistics (of the *unconstrained* parameter ``u`` and of ``x``)."""
        for name, value in (
            ("theta_loc", theta_loc),
            ("theta_scale", theta_scale),
            ("x_loc", x_loc),
            ("x_scale", x_scale),
        ):
            if value is None:
                continue
            value = torch.as_tensor(value, dtype=self.theta_loc.dtype, device=self.theta_loc.device)
            check_finite(value, name)
            if name.endswith("scale") and bool((value <= 0).any()):
                raise ValueError(f"{name} must be positive")
            if name.startswith("theta") and value.shape != (self.dim,):
                raise ValueError(f"{name} must have shape ({self.dim},), got {tuple(value.shape)}")
            setattr(self, name, value.clone())
        if x_loc is not None and self.x_shape is None:
            self.x_shape = tuple(self.x_loc.shape)
        if x_loc is not None and self.x_low.shape != self.x_loc.shape:
            self.x_low = torch.full_like(self.x_loc, -math.inf)
            self.x_high = torch.full_like(self.x_loc, math.inf)

    @torch.no_grad()
    def fit_standardization(
        self, theta: Tensor, x: Tensor, *, z_score_theta: bool = True, z_score_x: str | None = "auto"
    ) -> None:
        """Fit the z-scoring statistics on simulations ``theta (n, d)`` and ``x (n, *x_shape)``.

        ``z_score_x`` is ``"independent"`` (per entry), ``"structured"`` (one mean and scale for all
        entries: images, sets of observations), ``None`` (off) or ``"auto"`` (independent for vectors,
        structured otherwise). ``θ`` is standardised in the unconstrained space, per entry.
        """
        if z_score_x not in ("auto", "independent", "structured", None):
            raise ValueError(
                f"z_score_x must be 'auto', 'independent', 'structured' or None, got {z_score_x!r}"
            )
        theta = theta.to(self.theta_loc)
        x = x.to(self.theta_loc)
        if self.x_shape is None:
            self.x_shape = tuple(x.shape[1:])
        elif tuple(x.shape[1:]) != self.x_shape:
            raise ValueError(
                f"x has shape {tuple(x.shape)}; expected (n, {', '.join(map(str, self.x_shape))})"
            )
        if z_score_theta:
            u = self.unconstrain(self.clamp_to_support(theta))
            self.theta_loc, self.theta_scale = z_score_stats(u)
        if z_score_x is None:
            self.x_loc, self.x_scale = torch.zeros_like(x[0]), torch.ones_like(x[0])
        else:
            structured = z_score_x == "structured" or (z_score_x == "auto" and x.dim() > 2)
            self.x_loc, self.x_scale = z_score_stats(x, structured=structured, robust=True)
        self.x_low, self.x_high = x.amin(0).clone(), x.amax(0).clone()

    # ------------------------------------------------------------------ maps
    def clamp_to_support(self, theta: Tensor) -> Tensor:
        """``theta`` moved inside an interval support by at most one ulp (floating-point saturation)."""
        lower = torch.nextafter(self._lower, self._upper)
        upper = torch.nextafter(self._upper, self._lower)
        return torch.maximum(torch.minimum(theta, upper), lower)

    def unconstrain(self, theta: Tensor) -> Tensor:
        r""":math:`u = b^{-1}(\theta)`."""
        return self.bijection.inv(theta)

    def _bijection_ladj(self, u: Tensor, theta: Tensor) -> Tensor:
        ladj = self.bijection.log_abs_det_jacobian(u, theta)
        if ladj.dim() == u.dim():  # elementwise (event_dim 0) transforms
            ladj = ladj.sum(-1)
        return ladj.expand(u.shape[:-1])

    def theta_to_latent(self, theta: Tensor) -> tuple[Tensor, Tensor]:
        r"""``(v, log|det ∂v/∂θ|)`` with :math:`v = (b^{-1}(\theta) - \mu_u) / \sigma_u`."""
        u = self.unconstrain(theta)
        v = (u - self.theta_loc) / self.theta_scale
        return v, -self._bijection_ladj(u, theta) - self.theta_scale.log().sum()

    def latent_to_theta(self, v: Tensor) -> Tensor:
        r""":math:`\theta = b(\mu_u + \sigma_u v)`, kept inside the support."""
        return self.clamp_to_support(self.bijection(self.theta_loc + self.theta_scale * v))

    def embed(self, x: Tensor) -> Tensor:
        """The flow's context for observations ``x`` of shape ``(batch, *x_shape)``: standardise, embed."""
        h = (x - self.x_loc) / self.x_scale
        return self.embedding(h) if self.embedding is not None else h

    def _prepare_x(self, x: Tensor) -> tuple[Tensor, tuple[int, ...]]:
        """``x`` as ``(batch, *x_shape)`` and its batch shape (``()`` for a single observation)."""
        if not isinstance(x, Tensor):
            raise TypeError(f"x must be a torch.Tensor, got {type(x).__name__}")
        if self.x_shape is None:
            raise ValueError("the observation shape is unknown: pass x_shape= or call fit_standardization")
        k = len(self.x_shape)
        if x.dim() < k or tuple(x.shape[x.dim() - k :]) != self.x_shape:
            raise ValueError(f"x has shape {tuple(x.shape)}; one observation has shape {self.x_shape}")
        x = x.to(self.theta_loc)
        check_finite(x, "x")
        batch = tuple(x.shape[: x.dim() - k])
        margin = 0.5 * self.x_scale  # half a (robust) standard deviation beyond the simulations
        outside = (x < self.x_low - margin) | (x > self.x_high + margin)
        if bool(outside.any()):
            warnings.warn(
                f"{int(outside.reshape(-1, *self.x_shape).flatten(1).any(1).sum())} observation(s) lie outside "
                "the range of the simulations the posterior was trained on: its answer there is an "
                "extrapolation and cannot be trusted",
                RuntimeWarning,
                stacklevel=3,
            )
        return x.reshape(-1, *self.x_shape), batch

    # ------------------------------------------------------------------ density and sampling
    def in_support(self, theta: Tensor) -> Tensor:
        """Boolean ``(batch,)``: whether each ``theta`` lies in the prior's support, strictly inside an
        interval support (its boundary maps to infinity in the unconstrained space)."""
        ok = self.support.check(theta)
        ok = ok.all(-1) if ok.dim() == theta.dim() else ok
        return ok & ((theta > self._lower) & (theta < self._upper)).all(-1)

    def log_prob(self, theta: Tensor, x: Tensor) -> Tensor:
        r""":math:`\log q(\theta \mid x)` for ``theta (*batch, d)``; ``x`` one observation or one per row.

        Parameters outside the prior's support (or on its boundary, where the bijection is singular) get
        :math:`-\infty`; so do rows whose density cannot be computed in floating point (an observation so
        far outside the simulations that its embedding or the flow overflows), without affecting the other
        rows (observations outside the simulations' range also raise a ``RuntimeWarning``).
        """
        if not isinstance(theta, Tensor) or theta.dim() < 1 or theta.shape[-1] != self.dim:
            raise ValueError(
                f"theta must have shape (batch, {self.dim}), got {getattr(theta, 'shape', None)}"
            )
        theta = theta.to(self.theta_loc)
        if torch.isnan(theta).any():
            raise ValueError("theta contains NaN")
        batch = theta.shape[:-1]
        theta = theta.reshape(-1, self.dim)
        inside = self.in_support(theta)
        safe = torch.where(inside[:, None], theta, self.latent_to_theta(torch.zeros_like(theta)))
        v, ladj = self.theta_to_latent(safe)
        inside = inside & torch.isfinite(v).all(-1)
        v = torch.where(inside[:, None], v, torch.zeros_like(v))
        xb, xbatch = self._prepare_x(x)
        context = self.embed(xb)
        usable = torch.isfinite(context).all(-1)  # (m,): rows whose embedding did not overflow
        context = torch.where(usable[:, None], context, torch.zeros_like(context))
        if xbatch == ():
            context, inside = context[0], inside & usable[0]
        elif math.prod(xbatch) != theta.shape[0]:
            raise ValueError(f"x has batch shape {xbatch}, theta {tuple(batch)}: give one x or one per theta")
        else:
            inside = inside & usable
        lp = self.flow.log_prob(v, context) + ladj
        lp = torch.where(inside & ~torch.isnan(lp), lp, torch.full_like(lp, -math.inf))
        return lp.reshape(batch)

    def forward(self, theta: Tensor, x: Tensor) -> Tensor:
        """Alias of :meth:`log_prob`."""
        return self.log_prob(theta, x)

    @torch.no_grad()
    def sample(self, n: int | Sequence[int], x: Tensor) -> Tensor:
        """``n`` samples of θ for one observation (shape ``(n, d)``) or for each of a batch of ``B``
        observations (shape ``(n, B, d)``). Every sample lies in the prior's support."""
        if isinstance(n, bool) or not (
            isinstance(n, int)
            or (
                isinstance(n, (tuple, list, torch.Size))
                and all(isinstance(s, int) and not isinstance(s, bool) for s in n)
            )
        ):
            raise TypeError(f"the number of samples must be an int or a tuple of ints, got {n!r}")
        shape = (n,) if isinstance(n, int) else tuple(n)
        if math.prod(shape) < 1:
            raise ValueError(f"the number of samples must be positive, got {n}")
        xb, xbatch = self._prepare_x(x)
        context = self.embed(xb)
        if xbatch == ():
            context = context[0]
        else:
            context = context.reshape(*xbatch, -1)
        v = self.flow.sample(shape, context)
        return self.latent_to_theta(v)

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
        estimate for one observation ``x``.

        :math:`q(\theta \mid x)` already is a posterior (prior included), so the prior is not added again.
        Multi-start gradient ascent: ``num_init`` posterior samples, the ``starts`` with the highest
        density are refined by Adam (``steps`` steps of rate ``lr``) in the unconstrained space ``u``
        (the objective is the density of θ, so the result is the mode in θ, not in ``u``). Returns the best
        ``(d,)``.
        """
        _, xbatch = self._prepare_x(x)
        if xbatch != ():
            raise ValueError("map takes one observation x")
        was_training = self.training
        self.eval()
        try:
            with torch.no_grad():
                init = self.sample(num_init, x)
                lp = self.log_prob(init, x)
                best = init[lp.topk(min(starts, num_init)).indices]
            u = self.unconstrain(best).detach().requires_grad_(True)
            opt = torch.optim.Adam([u], lr=lr)
            with torch.enable_grad():
                for _ in range(steps):
                    theta = self.latent_to_theta((u - self.theta_loc) / self.theta_scale)
                    loss = -self.log_prob(theta, x)
                    grad = torch.autograd.grad(loss[torch.isfinite(loss)].sum(), u)[0]
                    opt.zero_grad()
                    u.grad = torch.nan_to_num(grad)
                    opt.step()
            with torch.no_grad():
                theta = self.latent_to_theta((u - self.theta_loc) / self.theta_scale)
                candidates = torch.cat([theta, best])
                lp = self.log_prob(candidates, x)
                return candidates[lp.argmax()]
        finally:
            self.train(was_training)


def _bound_buffer(bound: Tensor | float | None, default: float, dim: int, dtype: torch.dtype) -> Tensor:
    if bound is None:
        return torch.full((dim,), default, dtype=dtype)
    return torch.as_tensor(bound, dtype=dtype).expand(dim).clone()


def prepare_posterior(
    flow: Flow,
    prior: object,
    embedding: nn.Module | None,
    theta: Tensor,
    x: Tensor,
    *,
    n_val: int,
    generator: torch.Generator,
    z_score_x: bool,
) -> tuple[Posterior, Tensor, Tensor, Tensor]:
    """The shared start of every estimator: the :class:`Posterior` around ``flow`` (in ``theta``'s dtype),
    its standardisation fitted on a random training split, and the parameters in the flow's latent space.

    Returns ``(posterior, v, train_idx, val_idx)`` with ``v`` the standardised unconstrained parameters.
    Raises ``ValueError`` when a parameter lies outside the prior's support or on its boundary.
    """
    n = theta.shape[0]
    flow = flow.to(theta.dtype)
    if embedding is not None:
        embedding = embedding.to(theta.dtype)
    posterior = Posterior(flow, prior, embedding=embedding, x_shape=tuple(x.shape[1:])).to(theta.dtype)
    outside = ~posterior.in_support(theta)
    if bool(outside.any()):
        raise ValueError(f"{int(outside.sum())} of the parameters theta lie outside the prior's support")

    perm = torch.randperm(n, generator=generator)
    train_idx, val_idx = perm[n_val:], perm[:n_val]
    posterior.fit_standardization(theta[train_idx], x[train_idx], z_score_x=z_score_x)
    posterior.x_low, posterior.x_high = x.amin(0).clone(), x.amax(0).clone()  # the range of every simulation
    with torch.no_grad():
        v, _ = posterior.theta_to_latent(posterior.clamp_to_support(theta))
    if not bool(torch.isfinite(v).all()):
        raise ValueError(
            "some parameters map to infinity in the unconstrained space (on the support's boundary)"
        )
    return posterior, v, train_idx, val_idx


def check_simulations(theta: Tensor, x: Tensor, validation_fraction: float, **positive_ints: object) -> None:
    """``ValueError`` unless ``theta`` is ``(n, d)``, ``x`` is ``(n, ...)``, the validation fraction lies in
    ``(0, 1)`` and every named training setting is a positive int."""
    if theta.dim() != 2:
        raise ValueError(f"theta must have shape (n, d), got {tuple(theta.shape)}")
    if x.dim() < 2 or x.shape[0] != theta.shape[0]:
        raise ValueError(f"x must have shape (n, ...) with n = {theta.shape[0]} rows, got {tuple(x.shape)}")
    if not 0.0 < validation_fraction < 1.0:
        raise ValueError(f"validation_fraction must be in (0, 1), got {validation_fraction}")
    for name, v in positive_ints.items():
        if not isinstance(v, int) or isinstance(v, bool) or v < 1:
            raise ValueError(f"{name} must be a positive int, got {v!r}")
