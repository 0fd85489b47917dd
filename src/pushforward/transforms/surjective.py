r"""Surjective layers (SurVAE flows): many-to-one maps in one chain with the bijections.

A surjection :math:`f` maps data to latent (``forward``) like a bijection but is not invertible. It returns
``(z, contribution)`` where the *likelihood contribution* replaces the log-determinant, so that a chain
keeps :math:`\log p(x) = \log p_Z(z) + \sum_k \text{contribution}_k`:

* **inference surjections** (deterministic :math:`z = f(x)`, stochastic right inverse
  :math:`x \sim p(x \mid z)` supported on :math:`f^{-1}(z)`): the contribution :math:`\log p(x \mid z)` is
  **exact** (:class:`AbsoluteValue`, :class:`Sort`, :class:`Slice`, :class:`MaxPool`);
* **generative surjections** (deterministic :math:`x = g(z)`, variational :math:`z \sim q(z \mid x)`): the
  contribution :math:`-\log q(z \mid x)` gives a one-sample estimate whose expectation is a **lower bound**
  on :math:`\log p(x)` (:class:`Augment`, :class:`VariationalDequantization`).

``inverse(z)`` draws the stochastic direction and returns minus the forward contribution at the pair it
produced, so :meth:`pushforward.Flow.sample_and_log_prob` stays exact for inference surjections.
:attr:`Surjection.exact` says which kind a layer is; :func:`is_exact` checks a whole chain.

Reference: Nielsen, Jaini, Hoogeboom, Winther & Welling, "SurVAE Flows: Surjections to Bridge the Gap
between VAEs and Flows", NeurIPS 2020; Ho, Chen, Srinivas, Duan & Abbeel, "Flow++", ICML 2019
(variational dequantization); Huang, Dinh & Courville, "Augmented Normalizing Flows", 2020 (augmentation).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..nets.mlp import MLP
from .base import Transform, as_shape, sum_except_batch

__all__ = [
    "AbsoluteValue",
    "Augment",
    "MaxPool",
    "Slice",
    "Sort",
    "Surjection",
    "VariationalDequantization",
    "is_exact",
]

_LOG_2PI = math.log(2 * math.pi)


# ---------------------------------------------------------------------------------- pure formulas
def inverse_softplus(z: Tensor) -> tuple[Tensor, Tensor]:
    r""":math:`u = \log(e^z - 1)` (maps :math:`(0, \infty)` onto :math:`\mathbb R`) and the elementwise
    :math:`\log u'(z) = -\log(1 - e^{-z})`."""
    z = z.clamp_min(torch.finfo(z.dtype).tiny)
    log1mexp = torch.log(-torch.expm1(-z))
    return z + log1mexp, -log1mexp


def softplus(u: Tensor) -> tuple[Tensor, Tensor]:
    r""":math:`z = \log(1 + e^u)` and the elementwise :math:`\log z'(u) = \log\sigma(u)`."""
    return F.softplus(u), F.logsigmoid(u)


def sign_log_prob(positive: Tensor, logits: Tensor) -> Tensor:
    r""":math:`\log \mathrm{Bernoulli}(s; \sigma(\ell))` elementwise, ``positive`` the event :math:`s = +1`."""
    return torch.where(positive, F.logsigmoid(logits), F.logsigmoid(-logits))


def increments(y: Tensor) -> tuple[Tensor, Tensor]:
    r"""Ordered :math:`y_1 < \dots < y_N` (last dim) to :math:`(y_1, \log(y_2 - y_1), \dots)` in
    :math:`\mathbb R^N`, and the log-determinant :math:`-\sum_{i>1} \log(y_i - y_{i-1})` (batch,)."""
    gaps = (y[..., 1:] - y[..., :-1]).clamp_min(torch.finfo(y.dtype).tiny)
    log_gaps = gaps.log()
    return torch.cat([y[..., :1], log_gaps], -1), -log_gaps.flatten(1).sum(1)


def cumulate(u: Tensor) -> tuple[Tensor, Tensor]:
    r"""The inverse of :func:`increments`: :math:`y = \mathrm{cumsum}(u_1, e^{u_2}, \dots)` and its
    log-determinant :math:`\sum_{i>1} u_i`."""
    y = torch.cat([u[..., :1], u[..., 1:].exp()], -1).cumsum(-1)
    return y, u[..., 1:].flatten(1).sum(1)


def diag_normal_log_prob(x: Tensor, loc: Tensor, log_scale: Tensor) -> Tensor:
    r""":math:`\sum_i \log \mathcal N(x_i; \mu_i, e^{2 s_i})`, summed over all but the batch dimension."""
    u = (x - loc) * torch.exp(-log_scale)
    return sum_except_batch(-0.5 * u * u - log_scale - 0.5 * _LOG_2PI)


def half_normal_log_prob(e: Tensor, log_scale: Tensor) -> Tensor:
    r"""Elementwise :math:`\log \mathrm{HalfNormal}(e; \sigma) = \log 2 + \log\mathcal N(e; 0, \sigma^2)`,
    :math:`e \ge 0`."""
    u = e * torch.exp(-log_scale)
    return math.log(2.0) - 0.5 * u * u - log_scale - 0.5 * _LOG_2PI


def is_exact(transform: nn.Module) -> bool:
    """``False`` when ``transform`` (or any layer inside it) makes ``log_prob`` a stochastic bound."""
    return all(getattr(m, "exact", True) for m in transform.modules())


# ---------------------------------------------------------------------------------- base class
class Surjection(Transform):
    r"""Base class of surjective layers: ``forward(x) -> (z, contribution)``,
    ``inverse(z) -> (x, -contribution)``.

    The contribution takes the place of the log-determinant in :math:`\log p(x) = \log p_Z(z) +
    \sum_k \text{contribution}_k`. With :attr:`exact` ``True`` (inference surjections) the sum is the exact
    log-density; with ``False`` (generative surjections) ``forward`` is stochastic and the result is a
    one-sample estimate whose expectation is a lower bound (the ELBO). A surjection may change the number of
    scalars (:attr:`latent_shape` of another size): :attr:`Transform.changes_size` lifts the equal-size rule.

    Reference: Nielsen et al., "SurVAE Flows: Surjections to Bridge the Gap between VAEs and Flows", 2020.

    Example:
        >>> import torch
        >>> layer = Sort(5)
        >>> z, contribution = layer(torch.randn(3, 5))
        >>> layer.exact
        True
    """

    #: Whether ``log_prob`` through this layer is exact (``True``) or a stochastic lower bound (``False``).
    exact: bool = True
    changes_size = True
    analytic_inverse = True


class AbsoluteValue(Surjection):
    r"""The absolute value :math:`z = |x|` with a learned sign probability (exact).

    .. math:: \log p(x) = \log p_Z(u(|x|)) + \log u'(|x|) + \sum_i \log \pi_i^{[x_i > 0]}(1-\pi_i)^{[x_i<0]},
        \qquad \pi = \sigma(\ell),

    where :math:`u(z) = \log(e^z - 1)` maps :math:`(0,\infty)` onto :math:`\mathbb R` (``unconstrained=True``,
    so a normal base puts no mass outside the image of :math:`|\cdot|`). Sampling draws the signs. A
    density symmetric under sign flips needs only the half-space model: half the capacity of a bijective flow.

    Args:
        event_shape: Shape of one event.
        unconstrained: Follow :math:`|x|` by :math:`u` (keep ``True`` unless the next layer expects
            positive inputs).

    Reference: Nielsen et al., "SurVAE Flows", NeurIPS 2020, section 3 (absolute value surjection).

    Example:
        >>> import torch
        >>> from pushforward import Flow
        >>> flow = Flow(AbsoluteValue(2))
        >>> x = flow.sample((4,))
        >>> torch.allclose(flow.log_prob(x), flow.log_prob(-x))
        True
    """

    changes_size = False

    def __init__(self, event_shape: int | Sequence[int], *, unconstrained: bool = True) -> None:
        super().__init__(event_shape)
        self.unconstrained = bool(unconstrained)
        self.sign_logits = nn.Parameter(torch.zeros(self.event_shape))

    def forward(self, x: Tensor, context: Tensor | None = None) -> tuple[Tensor, Tensor]:
        z = x.abs()
        contribution = sum_except_batch(sign_log_prob(x > 0, self.sign_logits.expand_as(x)))
        if self.unconstrained:
            z, logd = inverse_softplus(z)
            contribution = contribution + sum_except_batch(logd)
        return z, contribution

    def inverse(self, z: Tensor, context: Tensor | None = None) -> tuple[Tensor, Tensor]:
        ladj = torch.zeros(z.shape[0], dtype=z.dtype, device=z.device)
        if self.unconstrained:
            z, logd = softplus(z)
            ladj = sum_except_batch(logd)
        logits = self.sign_logits.expand_as(z)
        positive = torch.rand_like(z) < torch.sigmoid(logits)
        x = torch.where(positive, z, -z)
        return x, ladj - sum_except_batch(sign_log_prob(positive, logits))


class Sort(Surjection):
    r"""Sorting the points of an exchangeable set (exact): :math:`z = \mathrm{sort}(x)`.

    An event is a set of :math:`N` points, shape ``(N,)`` or ``(N, d)``, sorted along the first event
    dimension by coordinate ``key``. An exchangeable density is the same on all :math:`N!` orderings, so

    .. math:: \log p(x) = \log p_Z(v(\mathrm{sort}(x))) + \log|\det v'| - \log N!,

    where :math:`v` maps the ordered key coordinates to :math:`(y_1, \log(y_2 - y_1), \dots)` in
    :math:`\mathbb R^N` (``unconstrained=True``; the other coordinates are unchanged). Sampling draws a
    uniform random ordering. Any flow after it models the sorted set; the result is exchangeable. With
    ``flatten=True`` the latent is the flat vector of the :math:`N d` sorted values (for vector flows).

    Reference: Nielsen et al., "SurVAE Flows", NeurIPS 2020, section 3 (sorting surjection).

    Example:
        >>> import torch
        >>> layer = Sort((6, 2))
        >>> x = torch.randn(4, 6, 2)
        >>> torch.allclose(layer(x)[0], layer(x[:, torch.randperm(6)])[0])
        True
    """

    changes_size = False

    def __init__(
        self,
        event_shape: int | Sequence[int],
        *,
        key: int = 0,
        unconstrained: bool = True,
        flatten: bool = False,
    ) -> None:
        shape = as_shape(event_shape)
        if len(shape) not in (1, 2) or shape[0] < 1:
            raise ValueError(f"Sort takes sets of shape (N,) or (N, d), got {shape}")
        super().__init__(shape, latent_shape=(math.prod(shape),) if flatten else None)
        self.flatten = bool(flatten)
        points_dim = shape[1] if len(shape) == 2 else 1
        if not 0 <= key < points_dim:
            raise ValueError(f"key must index a coordinate of the points (0..{points_dim - 1}), got {key}")
        self.key = int(key)
        self.unconstrained = bool(unconstrained)
        self.log_orderings = math.lgamma(shape[0] + 1)

    def _points(self, x: Tensor) -> Tensor:
        return x.reshape(x.shape[0], self.event_shape[0], -1)

    def _event(self, points: Tensor, shape: tuple[int, ...]) -> Tensor:
        return points.reshape(points.shape[0], *shape)

    def forward(self, x: Tensor, context: Tensor | None = None) -> tuple[Tensor, Tensor]:
        points = self._points(x)
        index = points[..., self.key].argsort(dim=1)
        points = points.gather(1, index.unsqueeze(-1).expand_as(points))
        contribution = torch.full((x.shape[0],), -self.log_orderings, dtype=x.dtype, device=x.device)
        if self.unconstrained:
            keys, ladj = increments(points[..., self.key])
            points = torch.cat([points[..., : self.key], keys.unsqueeze(-1), points[..., self.key + 1 :]], -1)
            contribution = contribution + ladj
        return self._event(points, self.latent_shape), contribution

    def inverse(self, z: Tensor, context: Tensor | None = None) -> tuple[Tensor, Tensor]:
        points = self._points(z)
        ladj = torch.full((z.shape[0],), self.log_orderings, dtype=z.dtype, device=z.device)
        if self.unconstrained:
            keys, logd = cumulate(points[..., self.key])
            points = torch.cat([points[..., : self.key], keys.unsqueeze(-1), points[..., self.key + 1 :]], -1)
            ladj = ladj + logd
        order = torch.rand(points.shape[:2], device=z.device).argsort(dim=1)  # a uniform random ordering
        points = points.gather(1, order.unsqueeze(-1).expand_as(points))
        return self._event(points, self.event_shape), ladj


class _Conditional(nn.Module):
    """A diagonal Gaussian :math:`\\mathcal N(\\mu(h), e^{2s(h)})` whose parameters an MLP predicts from ``h``
    (and the context); starts at the standard normal (zero-initialised output)."""

    def __init__(self, inputs: int, outputs: int, hidden: Sequence[int], context: int) -> None:
        super().__init__()
        self.outputs = outputs
        self.net = MLP(inputs, 2 * outputs, tuple(hidden), context=context) if inputs + context else None
        if self.net is None:
            self.params = nn.Parameter(torch.zeros(2 * outputs))

    def forward(self, h: Tensor, context: Tensor | None) -> tuple[Tensor, Tensor]:
        if self.net is None:
            p = self.params.expand(h.shape[0], -1)
        else:
            p = self.net(h, context)
        loc, log_scale = p.chunk(2, dim=-1)
        return loc, log_scale.clamp(-7.0, 7.0)


class Slice(Surjection):
    r"""Dropping dimensions in the inference direction (exact): :math:`z = x_{1:k}`, with the dropped part
    modelled by a learned conditional :math:`p(x_{k+1:D} \mid x_{1:k}) = \mathcal N(\mu(z), \sigma(z)^2)`.

    .. math:: \log p(x) = \log p_Z(x_{1:k}) + \log \mathcal N(x_{k+1:D}; \mu(x_{1:k}), \sigma(x_{1:k})^2).

    Put a :class:`~pushforward.transforms.Permutation` first to choose which features are kept. This is
    the multi-scale architecture's factor-out step written as a surjection.

    Args:
        features: Input features :math:`D`.
        keep: Features :math:`k` passed on (the first ``keep``).
        hidden: Hidden widths of the conditional's MLP.
        context: Context features the conditional also reads.

    Reference: Nielsen et al., "SurVAE Flows", NeurIPS 2020, section 3 (slicing); Dinh, Sohl-Dickstein &
    Bengio, "Density estimation using Real NVP", ICLR 2017 (factoring out).

    Example:
        >>> import torch
        >>> layer = Slice(4, keep=2)
        >>> z, contribution = layer(torch.randn(3, 4))
        >>> z.shape
        torch.Size([3, 2])
    """

    def __init__(
        self, features: int, keep: int, *, hidden: Sequence[int] = (32, 32), context: int = 0
    ) -> None:
        if not 0 < keep < features:
            raise ValueError(f"keep must be in 1..features-1 ({features - 1}), got {keep}")
        super().__init__(features, context, latent_shape=keep)
        self.keep = int(keep)
        self.conditional = _Conditional(keep, features - keep, hidden, context)

    def forward(self, x: Tensor, context: Tensor | None = None) -> tuple[Tensor, Tensor]:
        z, dropped = x[:, : self.keep], x[:, self.keep :]
        loc, log_scale = self.conditional(z, context)
        return z, diag_normal_log_prob(dropped, loc, log_scale)

    def inverse(self, z: Tensor, context: Tensor | None = None) -> tuple[Tensor, Tensor]:
        loc, log_scale = self.conditional(z, context)
        dropped = loc + log_scale.exp() * torch.randn_like(loc)
        return torch.cat([z, dropped], 1), -diag_normal_log_prob(dropped, loc, log_scale)


class Augment(Surjection):
    r"""Adding dimensions (augmentation; a lower bound): :math:`z = (x, e)`, :math:`e \sim q(e \mid x)`.

    .. math:: \log p(x) \ge \mathbb E_{q(e \mid x)}\big[\log p_Z(x, e) - \log q(e \mid x)\big],
        \qquad q(e \mid x) = \mathcal N(\mu(x), \sigma(x)^2),

    the gap being :math:`\mathrm{KL}(q(e \mid x) \,\|\, p(e \mid x))`. The generative direction drops
    :math:`e`. A flow on the wider space can use the extra dimensions to move mass around (augmented flows).

    Args:
        features: Data features :math:`D`.
        extra: Added dimensions.
        hidden: Hidden widths of :math:`q`'s MLP.
        context: Context features :math:`q` also reads.

    Reference: Huang, Dinh & Courville, "Augmented Normalizing Flows: Bridging the Gap Between Generative
    Flows and Latent Variable Models", 2020; Nielsen et al., "SurVAE Flows", NeurIPS 2020.

    Example:
        >>> import torch
        >>> layer = Augment(2, extra=2)
        >>> z, bound_term = layer(torch.randn(5, 2))
        >>> z.shape, layer.exact
        (torch.Size([5, 4]), False)
    """

    exact = False

    def __init__(
        self, features: int, extra: int, *, hidden: Sequence[int] = (32, 32), context: int = 0
    ) -> None:
        if features < 1 or extra < 1:
            raise ValueError(f"features and extra must be positive, got {features} and {extra}")
        super().__init__(features, context, latent_shape=features + extra)
        self.conditional = _Conditional(features, extra, hidden, context)

    def forward(self, x: Tensor, context: Tensor | None = None) -> tuple[Tensor, Tensor]:
        loc, log_scale = self.conditional(x, context)
        e = loc + log_scale.exp() * torch.randn_like(loc)
        return torch.cat([x, e], 1), -diag_normal_log_prob(e, loc, log_scale)

    def inverse(self, z: Tensor, context: Tensor | None = None) -> tuple[Tensor, Tensor]:
        x, e = z[:, : self.features], z[:, self.features :]
        loc, log_scale = self.conditional(x, context)
        return x, diag_normal_log_prob(e, loc, log_scale)


class VariationalDequantization(Surjection):
    r"""Variational dequantization as a surjection (a lower bound on the discrete log-likelihood).

    Inference direction: :math:`z = x + u`, :math:`u = \sigma(\mu(x) + \sigma(x)\,\varepsilon) \in (0,1)^D`,
    :math:`\varepsilon \sim \mathcal N(0, I)`; generative direction :math:`x = \lfloor z \rfloor`. So

    .. math:: \log P(x) \ge \mathbb E_{q(u \mid x)}[\log p_Z(x + u) - \log q(u \mid x)], \qquad
        \log q(u \mid x) = \log\mathcal N(h; \mu, \sigma^2) - \sum_i \log \sigma'(h_i),\ h = \mathrm{logit}(u),

    equal to the discrete log-probability when :math:`q(u \mid x) = p_Z(x + u) / P(x)`. ``x`` holds integers
    (as floats); ``log_prob`` of a flow built on it is the bound, in nats per event.

    Args:
        features: Number of discrete features.
        hidden: Hidden widths of :math:`q`'s MLP (reads :math:`x` and the context).
        context: Context features.

    Reference: Ho, Chen, Srinivas, Duan & Abbeel, "Flow++: Improving Flow-Based Generative Models with
    Variational Dequantization and Architecture Design", ICML 2019; Nielsen et al., "SurVAE Flows", 2020
    (dequantization as a generative surjection).

    Example:
        >>> import torch
        >>> layer = VariationalDequantization(3)
        >>> z, bound_term = layer(torch.randint(0, 5, (4, 3)).float())
        >>> bool(((z - z.floor()) > 0).all())
        True
    """

    exact = False
    changes_size = False

    def __init__(self, features: int, *, hidden: Sequence[int] = (32, 32), context: int = 0) -> None:
        super().__init__(features, context)
        self.conditional = _Conditional(features, features, hidden, context)

    def _log_q(self, h: Tensor, loc: Tensor, log_scale: Tensor) -> Tensor:
        return diag_normal_log_prob(h, loc, log_scale) + sum_except_batch(
            F.softplus(h) + F.softplus(-h)  # -log σ'(h)
        )

    def forward(self, x: Tensor, context: Tensor | None = None) -> tuple[Tensor, Tensor]:
        if not bool((x == x.floor()).all()):
            raise ValueError("VariationalDequantization takes integer values (as floats)")
        loc, log_scale = self.conditional(x, context)
        h = loc + log_scale.exp() * torch.randn_like(loc)
        return x + torch.sigmoid(h), -self._log_q(h, loc, log_scale)

    def inverse(self, z: Tensor, context: Tensor | None = None) -> tuple[Tensor, Tensor]:
        x = z.floor()
        u = (z - x).clamp(torch.finfo(z.dtype).eps, 1 - torch.finfo(z.dtype).eps)
        loc, log_scale = self.conditional(x, context)
        return x, self._log_q(torch.logit(u), loc, log_scale)


class MaxPool(Surjection):
    r"""Max-pooling of images (exact): :math:`z = \max` over each :math:`k_h \times k_w` block.

    The right inverse puts the block's maximum at a uniformly chosen position :math:`j^*` and every other
    entry at :math:`z - e_j`, :math:`e_j \sim \mathrm{HalfNormal}(\sigma_c)` (a learned scale per channel):

    .. math:: \log p(x) = \log p_Z(z) + \sum_{\text{blocks}} \Big[-\log K + \sum_{j \ne j^*}
        \log \mathrm{HalfNormal}(z - x_j; \sigma_c)\Big], \qquad K = k_h k_w.

    The inference direction is deterministic, so the contribution is exact (SurVAE's inference surjection;
    ties have probability zero).

    Args:
        event_shape: ``(C, H, W)``, with ``H`` and ``W`` divisible by the kernel.
        kernel: Block size, an int or ``(k_h, k_w)``.

    Reference: Nielsen et al., "SurVAE Flows", NeurIPS 2020, section 3 (max pooling surjection).

    Example:
        >>> import torch
        >>> layer = MaxPool((3, 4, 4), kernel=2)
        >>> z, contribution = layer(torch.randn(2, 3, 4, 4))
        >>> z.shape
        torch.Size([2, 3, 2, 2])
    """

    def __init__(self, event_shape: Sequence[int], *, kernel: int | Sequence[int] = 2) -> None:
        shape = as_shape(event_shape)
        kh, kw = (kernel, kernel) if isinstance(kernel, int) else tuple(int(k) for k in kernel)
        if len(shape) != 3 or kh < 1 or kw < 1 or shape[1] % kh or shape[2] % kw or kh * kw < 2:
            raise ValueError(
                f"MaxPool takes (C, H, W) with H, W divisible by a kernel of 2+ cells; got {shape}, {kernel}"
            )
        c, h, w = shape
        super().__init__(shape, latent_shape=(c, h // kh, w // kw))
        self.kernel = (kh, kw)
        self.log_scale = nn.Parameter(torch.zeros(c))

    def _blocks(self, x: Tensor) -> Tensor:
        """``(B, C, H, W)`` to ``(B, C, H/kh, W/kw, kh*kw)``."""
        b, c, h, w = x.shape
        kh, kw = self.kernel
        x = x.reshape(b, c, h // kh, kh, w // kw, kw).permute(0, 1, 2, 4, 3, 5)
        return x.reshape(b, c, h // kh, w // kw, kh * kw)

    def _image(self, blocks: Tensor) -> Tensor:
        b, c, hh, ww, _ = blocks.shape
        kh, kw = self.kernel
        x = blocks.reshape(b, c, hh, ww, kh, kw).permute(0, 1, 2, 4, 3, 5)
        return x.reshape(b, c, hh * kh, ww * kw)

    def _contribution(self, gaps: Tensor, is_max: Tensor) -> Tensor:
        log_scale = self.log_scale.view(1, -1, 1, 1, 1)
        lp = torch.where(is_max, torch.zeros_like(gaps), half_normal_log_prob(gaps, log_scale))
        blocks = math.prod(gaps.shape[1:4])
        return sum_except_batch(lp) - blocks * math.log(gaps.shape[-1])

    def forward(self, x: Tensor, context: Tensor | None = None) -> tuple[Tensor, Tensor]:
        blocks = self._blocks(x)
        z, index = blocks.max(-1)
        is_max = F.one_hot(index, blocks.shape[-1]).bool()
        return z, self._contribution(z.unsqueeze(-1) - blocks, is_max)

    def inverse(self, z: Tensor, context: Tensor | None = None) -> tuple[Tensor, Tensor]:
        k = self.kernel[0] * self.kernel[1]
        index = torch.randint(0, k, z.shape, device=z.device)
        is_max = F.one_hot(index, k).bool()
        scale = self.log_scale.exp().view(1, -1, 1, 1, 1)
        gaps = torch.where(
            is_max,
            torch.zeros((), dtype=z.dtype),
            scale * torch.randn(*z.shape, k, dtype=z.dtype, device=z.device).abs(),
        )
        x = self._image(z.unsqueeze(-1) - gaps)
        return x, -self._contribution(gaps, is_max)
