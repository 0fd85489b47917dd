r"""Distributions on integers: the discretized logistic (mixture) and the categorical, as flow bases.

A *discretized* logistic puts on each integer :math:`k` the mass of the logistic density on
:math:`[k - \tfrac12, k + \tfrac12]`:

.. math:: P(k \mid \mu, s) = \sigma\!\left(\frac{k + \frac12 - \mu}{s}\right)
    - \sigma\!\left(\frac{k - \frac12 - \mu}{s}\right), \qquad \sum_{k \in \mathbb Z} P(k) = 1,

and a mixture weights :math:`M` of them with :math:`\operatorname{softmax}(\pi)`. The pmf is a smooth
function of :math:`k` read as a real number, so a straight-through rounded latent (see
:mod:`pushforward.transforms.discrete`) receives a gradient.

Reference: Salimans, Karpathy, Chen & Kingma, "PixelCNN++", ICLR 2017 (discretized logistic mixture);
Hoogeboom, Peters, van den Berg & Welling, "Integer Discrete Flows and Lossless Compression", NeurIPS 2019.
"""

from __future__ import annotations

import hashlib
import math
import weakref
from collections.abc import Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .base import Distribution, _sample_shape

__all__ = [
    "AutoregressiveLogisticMixture",
    "Categorical",
    "DiscretizedLogisticMixture",
    "discretized_logistic_cdf",
    "discretized_logistic_log_pmf",
    "discretized_logistic_mixture_log_pmf",
    "mixture_tables",
]


def discretized_logistic_log_pmf(z: Tensor, loc: Tensor, log_scale: Tensor) -> Tensor:
    r""":math:`\log P(z \mid \mu, s)` of the discretized logistic, elementwise (broadcasting).

    Computed as :math:`\log\big(\sigma(b) - \sigma(a)\big)` with :math:`a = (z - \frac12 - \mu)/s`,
    :math:`b = a + 1/s`, in the stable form :math:`\log\sigma(b) + \log(1 - e^{a - b}) + \log\sigma(-a)`
    (using :math:`\sigma(b) - \sigma(a) = \sigma(b)\,\sigma(-a)\,(1 - e^{a-b})`), accurate in both tails.

    Example:
        >>> k = torch.arange(-60.0, 61.0)
        >>> p = discretized_logistic_log_pmf(k, torch.tensor(0.3), torch.tensor(0.5)).exp().sum()
        >>> bool(abs(p - 1) < 1e-6)
        True
    """
    inv_s = torch.exp(-log_scale)
    a = (z - 0.5 - loc) * inv_s
    return F.logsigmoid(a + inv_s) + F.logsigmoid(-a) + torch.log(-torch.expm1(-inv_s))


def discretized_logistic_mixture_log_pmf(z: Tensor, logits: Tensor, loc: Tensor, log_scale: Tensor) -> Tensor:
    r""":math:`\log \sum_m \operatorname{softmax}(\pi)_m P(z \mid \mu_m, s_m)`; parameters carry the
    :math:`M` components in their last dimension, ``z`` has the batch shape (one fewer dimension).

    Example:
        >>> z = torch.zeros(4)
        >>> discretized_logistic_mixture_log_pmf(z, torch.zeros(4, 3), torch.zeros(4, 3), torch.zeros(4, 3)).shape
        torch.Size([4])
    """
    comp = discretized_logistic_log_pmf(z.unsqueeze(-1), loc, log_scale)
    return torch.logsumexp(comp + F.log_softmax(logits, -1), -1)


def discretized_logistic_cdf(k, logits, loc, log_scale):
    r""":math:`P(Z \le k - \frac12) = \sum_m w_m \sigma((k - \frac12 - \mu_m)/s_m)`: the mixture's mass below
    integer ``k``, i.e. the cumulative table an entropy coder needs (``k`` broadcasts against the
    parameters without their component dimension). Takes torch tensors or numpy arrays (the codec's
    per-pixel path), computing :math:`\sigma(t) = \frac12 + \frac12 \tanh(t/2)` either way.

    Example:
        >>> c = discretized_logistic_cdf(torch.tensor(0.0), torch.zeros(1), torch.zeros(1), torch.zeros(1))
        >>> round(float(c), 4)  # sigmoid(-1/2)
        0.3775
    """
    if isinstance(logits, np.ndarray):
        exp, tanh, top = np.exp, np.tanh, logits.max(-1, keepdims=True)
        log_scale = np.maximum(log_scale, -80.0)  # e^-80: a point mass already; keeps 1/s finite
    else:
        exp, tanh, top = torch.exp, torch.tanh, logits.amax(-1, keepdim=True)
        log_scale = log_scale.clamp_min(-80.0)
    e = exp(logits - top)
    w = e / e.sum(-1)[..., None]
    return (w * (0.5 + 0.5 * tanh(0.5 * (k[..., None] - 0.5 - loc) * exp(-log_scale)))).sum(-1)


class DiscretizedLogisticMixture(Distribution):
    r"""A learnable discretized logistic mixture per element, independent across the event:
    :math:`\log P(z) = \sum_i \log \sum_m w_{im} P(z_i \mid \mu_{im}, s_{im})` on :math:`\mathbb Z^D`.

    Args:
        event_shape: Shape of one event.
        components: Mixture components :math:`M` per element.
        loc: Initial location (components spread by ``spread`` around it).
        scale: Initial scale of every component.
        spread: Initial distance between neighbouring component locations.

    Reference: Salimans et al., "PixelCNN++", ICLR 2017; Hoogeboom et al., "Integer Discrete Flows and
    Lossless Compression", NeurIPS 2019.

    Example:
        >>> base = DiscretizedLogisticMixture(3, components=2)
        >>> z = base.sample((5,))
        >>> bool((z == z.round()).all()), base.log_prob(z).shape
        (True, torch.Size([5]))
    """

    def __init__(
        self,
        event_shape: int | Sequence[int],
        components: int = 1,
        *,
        loc: float = 0.0,
        scale: float = 1.0,
        spread: float = 1.0,
    ) -> None:
        super().__init__(event_shape)
        if not isinstance(components, int) or components < 1:
            raise ValueError(f"components must be a positive int, got {components!r}")
        if not scale > 0:
            raise ValueError(f"scale must be positive, got {scale!r}")
        shape = (*self.event_shape, components)
        offsets = spread * (torch.arange(components, dtype=torch.float32) - (components - 1) / 2)
        self.logits = nn.Parameter(torch.zeros(shape))
        self.loc = nn.Parameter((loc + offsets).expand(shape).clone())
        self.log_scale = nn.Parameter(torch.full(shape, math.log(scale)))

    def log_prob(self, z: Tensor) -> Tensor:
        return self._sum_event(discretized_logistic_mixture_log_pmf(z, self.logits, self.loc, self.log_scale))

    def rsample(self, sample_shape: int | Sequence[int] = ()) -> Tensor:
        return sample_discretized_logistic_mixture(
            _sample_shape(sample_shape), self.logits, self.loc, self.log_scale
        )


def sample_discretized_logistic_mixture(
    sample_shape: tuple[int, ...], logits: Tensor, loc: Tensor, log_scale: Tensor
) -> Tensor:
    """Integer draws of shape ``(*sample_shape, *logits.shape[:-1])`` (no gradient: the draw is discrete)."""
    with torch.no_grad():
        shape = (*sample_shape, *logits.shape)
        g = -torch.log(-torch.log(torch.rand(shape, dtype=loc.dtype, device=loc.device).clamp_min(1e-12)))
        m = (logits.expand(shape) + g).argmax(-1, keepdim=True)
        mu = loc.expand(shape).gather(-1, m).squeeze(-1)
        s = log_scale.expand(shape).gather(-1, m).squeeze(-1).exp()
        u = torch.rand(mu.shape, dtype=mu.dtype, device=mu.device).clamp(1e-7, 1 - 1e-7)
        return torch.round(mu + s * (torch.log(u) - torch.log1p(-u)))


class Categorical(Distribution):
    r"""Independent learnable categoricals on :math:`\{0, \dots, K-1\}^D`:
    :math:`\log P(z) = \sum_i \log \operatorname{softmax}(\ell_i)_{z_i}`.

    ``log_prob`` takes integer values stored in a floating tensor. So that a straight-through latent of a
    discrete flow gets a gradient, the table is read with circular linear interpolation: the value at an
    integer is exact, the derivative in :math:`z_i` is :math:`\log P(z_i + 1) - \log P(z_i)` (mod :math:`K`).

    Reference: Tran, Vafa, Agrawal, Dinh & Poole, "Discrete Flows: Invertible Generative Models of Discrete
    Data", NeurIPS 2019.

    Example:
        >>> base = Categorical(2, categories=3)
        >>> z = torch.tensor([[0.0, 2.0]])
        >>> base.log_prob(z)
        tensor([-2.1972], grad_fn=<SumBackward1>)
    """

    def __init__(self, features: int, categories: int) -> None:
        super().__init__(features)
        if not isinstance(categories, int) or categories < 2:
            raise ValueError(f"categories must be an int >= 2, got {categories!r}")
        self.categories = categories
        self.logits = nn.Parameter(torch.zeros(*self.event_shape, categories))

    def log_prob(self, z: Tensor) -> Tensor:
        table = F.log_softmax(self.logits, -1)
        k = z.detach().round()
        if not bool(((k >= 0) & (k < self.categories) & (k == z.detach())).all()):
            raise ValueError(f"Categorical.log_prob takes integers in [0, {self.categories - 1}]")
        idx = k.long()
        here = table.expand(*z.shape, self.categories).gather(-1, idx.unsqueeze(-1)).squeeze(-1)
        nxt = table.expand(*z.shape, self.categories).gather(-1, ((idx + 1) % self.categories).unsqueeze(-1))
        return self._sum_event(here + (z - k) * (nxt.squeeze(-1) - here))

    def encode_symbols(
        self, coder, k: int, z: Tensor, kept: Tensor | None, context: Tensor | None = None
    ) -> None:
        """Codec protocol (:mod:`pushforward.codec`): push the values ``z`` with their tables."""
        coder.push_categorical(z, torch.softmax(self.logits, -1).reshape(-1, self.categories).numpy())

    def decode_symbols(self, coder, k: int, kept: Tensor | None, context: Tensor | None = None) -> Tensor:
        """Codec protocol: pop the values pushed by :meth:`encode_symbols`, shaped ``(1, *event_shape)``."""
        probs = torch.softmax(self.logits, -1).reshape(-1, self.categories).numpy()
        return torch.from_numpy(coder.pop_categorical(probs)).reshape(1, *self.event_shape)

    def rsample(self, sample_shape: int | Sequence[int] = ()) -> Tensor:
        shape = _sample_shape(sample_shape)
        with torch.no_grad():
            probs = torch.softmax(self.logits, -1).reshape(-1, self.categories)
            n = math.prod(shape)
            draws = torch.multinomial(probs, n, replacement=True).T  # (n, D)
            return draws.reshape(*shape, *self.event_shape).to(self.logits.dtype)


# ------------------------------------------------------------------------------ autoregressive prior
class AutoregressiveLogisticMixture(Distribution):
    r"""A causal-context prior on integer images :math:`z \in \mathbb Z^{C \times H \times W}`: pixels in
    raster order, each pixel's :math:`C` values a discretized logistic mixture whose parameters a small
    network predicts from the already-seen pixels of a causal window (the ``window`` rows above, from
    ``window`` columns left to ``window`` columns right, and the ``window`` pixels to the left):

    .. math:: \log P(z) = \sum_{i,j} \sum_c \log \sum_m w_{ijcm}\, P\big(z_{cij} \mid \mu_{ijcm},
        s_{ijcm}\big), \qquad (w, \mu, s)_{ij} = g_\theta\big(z_{\mathcal N(i,j)}, i, j\big).

    The channels of one pixel are conditionally independent given the window. :math:`g_\theta` is a masked
    convolution over the window (a learned per-position bias on its output, as the position matters on
    aligned images) followed by a per-pixel MLP, so ``log_prob`` is one network pass over the image
    (PixelCNN with a one-layer receptive field), while sampling and decoding evaluate the MLP on one
    window per pixel (:meth:`pixel_parameters`): a sequential but cheap pass. :meth:`encode_symbols` and
    :meth:`decode_symbols` code a latent with an ANS coder (:mod:`pushforward.codec`); both evaluate the
    network pixel by pixel with the same arithmetic, so their tables agree bit for bit.

    Args:
        event_shape: ``(C, H, W)``.
        components: Mixture components :math:`M` per value.
        hidden: Widths: the masked convolution's output, then the MLP's hidden layers.
        window: Causal window radius (rows above, columns either side, pixels to the left).
        scale: The data's number of levels (256 for 8-bit): inputs are divided by it, locations
            multiplied.
        positional: Learn a bias per position on the first layer.

    References: van den Oord, Kalchbrenner, Vinyals, Espeholt, Graves & Kavukcuoglu, "Conditional Image
    Generation with PixelCNN Decoders", NeurIPS 2016; Salimans, Karpathy, Chen & Kingma, "PixelCNN++",
    ICLR 2017.

    Example:
        >>> prior = AutoregressiveLogisticMixture((1, 3, 3), components=2, hidden=(8,), window=1, scale=4.0)
        >>> z = prior.sample((2,))
        >>> z.shape, bool((z == z.round()).all())
        (torch.Size([2, 1, 3, 3]), True)
        >>> prior.log_prob(z).shape
        torch.Size([2])
    """

    def __init__(
        self,
        event_shape: Sequence[int],
        *,
        components: int = 5,
        hidden: Sequence[int] = (64, 64),
        window: int = 3,
        scale: float = 256.0,
        positional: bool = True,
    ) -> None:
        super().__init__(event_shape)
        if len(self.event_shape) != 3:
            raise ValueError(f"event_shape must be (C, H, W), got {self.event_shape}")
        if not isinstance(components, int) or components < 1:
            raise ValueError(f"components must be a positive int, got {components!r}")
        if not isinstance(window, int) or window < 1:
            raise ValueError(f"window must be a positive int, got {window!r}")
        hidden = tuple(int(h) for h in hidden)
        if not hidden or min(hidden) < 1:
            raise ValueError(f"hidden must be a non-empty list of positive widths, got {hidden!r}")
        if not scale > 0:
            raise ValueError(f"scale must be positive, got {scale!r}")
        C, H, W = self.event_shape
        self.components, self.window, self.scale = components, window, float(scale)
        kh, kw = window + 1, 2 * window + 1
        mask = torch.ones(kh, kw)
        mask[window, window:] = 0.0  # the current pixel and those to its right are not yet known
        self.register_buffer("mask", mask)
        # flat indices (within one channel's kh x kw window) of the causal positions, for the per-pixel path
        self.register_buffer("causal", mask.reshape(-1).nonzero().squeeze(-1), persistent=False)
        self.conv = nn.Conv2d(C, hidden[0], (kh, kw))
        self.position = nn.Parameter(torch.zeros(hidden[0], H, W)) if positional else None
        widths = (*hidden, 3 * C * components)
        self.mlp = nn.ModuleList(nn.Linear(a, b) for a, b in zip(widths[:-1], widths[1:]))
        with torch.no_grad():
            self.mlp[-1].weight.mul_(0.1)
            self.mlp[-1].bias.zero_()
        self.register_buffer("offsets", (torch.arange(components) + 0.5) / components)

    # ---------------------------------------------------------------- network
    def _head(self, h: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """MLP from first-layer features ``(..., hidden[0])`` to ``(logits, loc, log_scale)``, each
        ``(..., C, M)``."""
        for layer in self.mlp:
            h = layer(F.silu(h))
        C, M = self.event_shape[0], self.components
        out = h.reshape(*h.shape[:-1], 3, C, M)
        loc = self.scale * (self.offsets.to(h.dtype) + out[..., 1, :, :] / 16)
        log_scale = (out[..., 2, :, :] + math.log(self.scale / 16)).clamp_min(-3.0)
        return out[..., 0, :, :], loc, log_scale

    def parameters_of(self, z: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """``(logits, loc, log_scale)`` of every value of ``z`` ``(B, C, H, W)`` in one pass, each
        ``(B, C, H, W, M)``."""
        w = self.window
        zp = F.pad(z / self.scale, (w, w, w, 0))
        h = F.conv2d(zp, self.conv.weight * self.mask, self.conv.bias)
        if self.position is not None:
            h = h + self.position
        logits, loc, log_scale = self._head(h.permute(0, 2, 3, 1))  # (B, H, W, C, M)
        return tuple(p.permute(0, 3, 1, 2, 4) for p in (logits, loc, log_scale))  # type: ignore[return-value]

    def padded(self, z: Tensor) -> Tensor:
        """``z`` ``(B, C, H, W)`` scaled and zero-padded for :meth:`pixel_parameters`."""
        w = self.window
        return F.pad(z / self.scale, (w, w, w, 0))

    def pixel_parameters(self, zp: Tensor, i: int, j: int) -> tuple[Tensor, Tensor, Tensor]:
        """``(logits, loc, log_scale)``, each ``(B, C, M)``, of pixel ``(i, j)`` from the padded image ``zp``
        (:meth:`padded`; only the causal window of ``(i, j)`` is read)."""
        w = self.window
        C = self.event_shape[0]
        win = zp[:, :, i : i + w + 1, j : j + 2 * w + 1].reshape(zp.shape[0], C, -1)[:, :, self.causal]
        weight = self.conv.weight.reshape(self.conv.weight.shape[0], C, -1)[:, :, self.causal]
        h = win.reshape(zp.shape[0], -1) @ weight.reshape(weight.shape[0], -1).T + self.conv.bias
        if self.position is not None:
            h = h + self.position[:, i, j]
        return self._head(h)

    # ------------------------------------------------------------ distribution
    def log_prob(self, z: Tensor) -> Tensor:
        if z.dim() < 4 or tuple(z.shape[-3:]) != self.event_shape:
            raise ValueError(
                f"z must have shape (..., {', '.join(map(str, self.event_shape))}), got {tuple(z.shape)}"
            )
        batch = z.shape[:-3]
        z = z.reshape(-1, *self.event_shape)
        lp = discretized_logistic_mixture_log_pmf(z, *self.parameters_of(z))
        return lp.sum((-3, -2, -1)).reshape(batch)

    def rsample(self, sample_shape: int | Sequence[int] = ()) -> Tensor:
        shape = _sample_shape(sample_shape)
        n = math.prod(shape)
        C, H, W = self.event_shape
        with torch.no_grad():
            dtype = self.conv.weight.dtype
            z = torch.zeros(n, C, H, W, dtype=dtype, device=self.conv.weight.device)
            zp = self.padded(z)
            w = self.window
            for i in range(H):
                for j in range(W):
                    v = sample_discretized_logistic_mixture((), *self.pixel_parameters(zp, i, j))
                    z[:, :, i, j] = v
                    zp[:, :, i + w, j + w] = v / self.scale
        return z.reshape(*shape, C, H, W)

    # ------------------------------------------------------------------ coding
    def encode_symbols(
        self, coder, k: int, z: Tensor, kept: Tensor | None, context: Tensor | None = None
    ) -> None:
        """Codec protocol (:mod:`pushforward.codec`): push the integer latent ``z`` ``(1, C, H, W)`` (one
        chunk, ``k = 0``, nothing kept) onto the ``coder`` (a :class:`~pushforward.codec.stream.SymbolCoder`),
        last pixel first, so that :meth:`decode_symbols` pops it in raster order."""
        _single_chunk(k, kept, context)
        C, H, W = self.event_shape
        z = _float64(z).reshape(C, H, W)
        net = _PixelNet.of(self)
        zp = net.padded(z)
        for i in reversed(range(H)):
            for j in reversed(range(W)):
                coder.push_windowed(z[:, i, j], *net.tables(zp, i, j))

    def decode_symbols(self, coder, k: int, kept: Tensor | None, context: Tensor | None = None) -> Tensor:
        """Codec protocol: pop a latent ``(1, C, H, W)`` pushed by :meth:`encode_symbols`, pixel by pixel:
        each pixel's tables come from the window of the pixels already decoded."""
        _single_chunk(k, kept, context)
        C, H, W = self.event_shape
        net = _PixelNet.of(self)
        z = np.zeros((C, H, W))
        zp = net.padded(z)
        w = self.window
        for i in range(H):
            for j in range(W):
                v = coder.pop_windowed(*net.tables(zp, i, j))
                z[:, i, j] = v
                zp[:, i + w, j + w] = v / self.scale
        return torch.from_numpy(z).reshape(1, C, H, W)


def _single_chunk(k: int, kept, context) -> None:
    if k != 0 or kept is not None or context is not None:
        raise ValueError(
            "AutoregressiveLogisticMixture codes one unconditional chunk: k must be 0, kept and context None"
        )


_PIXEL_NETS: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()  # prior -> (weights hash, _PixelNet)


class _PixelNet:
    """The network of an :class:`AutoregressiveLogisticMixture` evaluated one pixel at a time in float64
    numpy, for coding: the encoder and the decoder call it with the same window values and shapes, so
    their tables agree bit for bit (a batched matrix product could sum in another order than one row's).
    Tables are cached by position and window content (on aligned images most windows are blank), and the
    evaluator itself per prior while its parameters are unchanged."""

    _CACHE_LIMIT = 200_000

    @classmethod
    def of(cls, prior: AutoregressiveLogisticMixture) -> _PixelNet:
        h = hashlib.sha1()
        for t in prior.state_dict().values():
            h.update(_float64(t).tobytes())
        key = h.digest()
        entry = _PIXEL_NETS.get(prior)
        if entry is None or entry[0] != key:
            entry = (key, cls(prior))
            _PIXEL_NETS[prior] = entry
        return entry[1]

    def __init__(self, prior: AutoregressiveLogisticMixture) -> None:
        self.cache: dict = {}
        C = prior.event_shape[0]
        weight = _float64(prior.conv.weight)
        self.first = weight.reshape(weight.shape[0], C, -1)[:, :, _float64(prior.causal).astype(np.int64)]
        self.first = self.first.reshape(weight.shape[0], -1)
        bias = _float64(prior.conv.bias)[:, None, None]
        if prior.position is not None:
            bias = bias + _float64(prior.position)
        self.bias = np.ascontiguousarray(bias.transpose(1, 2, 0))  # (H, W, hidden)
        self.mlp = [(_float64(m.weight), _float64(m.bias)) for m in prior.mlp]
        self.causal = _float64(prior.causal).astype(np.int64)
        self.w, self.scale, self.C, self.M = prior.window, prior.scale, C, prior.components
        self.offsets = _float64(prior.offsets)
        self.log_scale0 = math.log(prior.scale / 16)

    def padded(self, z: np.ndarray) -> np.ndarray:
        w = self.w
        return np.pad(z / self.scale, ((0, 0), (w, 0), (w, w)))

    def tables(self, zp: np.ndarray, i: int, j: int) -> tuple[np.ndarray, np.ndarray]:
        """:func:`mixture_tables` of pixel ``(i, j)`` of the padded image ``zp``."""
        w = self.w
        win = zp[:, i : i + w + 1, j : j + 2 * w + 1].reshape(self.C, -1)[:, self.causal].reshape(-1)
        key = (i, j, win.tobytes())
        out = self.cache.get(key)
        if out is None:
            if len(self.cache) >= self._CACHE_LIMIT:
                self.cache.clear()
            out = self.cache[key] = mixture_tables(*self.parameters(win, i, j))
        return out

    def parameters(self, win: np.ndarray, i: int, j: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        h = self.first @ win + self.bias[i, j]
        with np.errstate(over="ignore"):
            for weight, bias in self.mlp:
                h = weight @ (h / (1.0 + np.exp(-h))) + bias  # silu, then the layer
        out = h.reshape(3, self.C, self.M)
        loc = self.scale * (self.offsets + out[1] / 16)
        return out[0], loc, np.maximum(out[2] + self.log_scale0, -3.0)


# ------------------------------------------------------------------------ entropy-coding tables
#: Each value is coded over a window of at most [c - TABLE_RADIUS, c + TABLE_RADIUS] around its mixture mean c
#: (rounded) plus one escape symbol; an escaped value follows as two uniform 16-bit words (the codec's
#: ``SymbolCoder.push_windowed``).
TABLE_RADIUS = 255


def mixture_tables(logits, loc, log_scale) -> tuple[np.ndarray, np.ndarray]:
    r"""``(low, probs)`` for values with mixture parameters ``(..., M)`` (tensors or arrays): per value the
    first symbol of its window :math:`[c - R, c + R]` around the rounded mixture mean :math:`c`, and the
    ``(n, 2R + 2)`` probability table (the last column is the escape's mass), in float64 numpy. One radius
    :math:`R \le` ``TABLE_RADIUS`` serves the call: the reach of every component of weight at least
    :math:`10^{-9}` to 30 scales (a logistic tail of :math:`10^{-13}`), at least 4."""
    M = logits.shape[-1]
    logits, loc, log_scale = (_float64(p).reshape(-1, M) for p in (logits, loc, log_scale))
    e = np.exp(logits - logits.max(-1, keepdims=True))
    w = e / e.sum(-1, keepdims=True)
    center = np.clip(np.round((w * loc).sum(-1)), -(2.0**40), 2.0**40)
    with np.errstate(over="ignore"):  # a huge scale reaches past TABLE_RADIUS anyway
        reach = np.where(w >= 1e-9, np.abs(loc - center[:, None]) + 30.0 * np.exp(log_scale), 0.0).max()
    radius = int(np.clip(np.ceil(reach), 4, TABLE_RADIUS))
    low = center - radius
    edges = low[:, None] + np.arange(2 * radius + 2, dtype=np.float64)[None, :]
    cdf = discretized_logistic_cdf(edges, logits[:, None, :], loc[:, None, :], log_scale[:, None, :])
    probs = np.clip(np.diff(cdf, axis=1), 0.0, None)
    escape = np.clip(1.0 - (cdf[:, -1] - cdf[:, 0]), 0.0, None)
    return low.astype(np.int64), np.concatenate([probs, escape[:, None]], 1)


def _float64(p) -> np.ndarray:
    if isinstance(p, Tensor):
        return p.detach().cpu().double().numpy()
    return np.asarray(p, dtype=np.float64)
