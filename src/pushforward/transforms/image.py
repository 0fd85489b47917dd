r"""Image transforms: squeeze, image coupling masks, invertible 1x1 convolution and multi-scale factor-out.

All transforms here take image batches ``(B, C, H, W)`` (event shape ``(C, H, W)``) and map data → latent.
The convolutional bijections with larger kernels (Fourier/periodic and masked "emerging" convolutions)
live in :mod:`pushforward.transforms.conv`.

Multi-scale layout
------------------
:class:`MultiScale` returns a **flat** latent ``(B, D)``: the chunks factored out at each scale,
flattened and concatenated from the finest scale (first) to the coarsest (last). The chunk sizes and
shapes are in :attr:`MultiScale.chunk_shapes`, so a per-scale base distribution
(:class:`pushforward.flows.image.ScaleNormal`) and conceptual compression can address each scale.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .base import Transform, as_shape
from .linear import LUMatrix

__all__ = [
    "InvConv1x1",
    "MultiScale",
    "Squeeze",
    "channel_mask",
    "checkerboard_mask",
    "squeeze",
    "unsqueeze",
]


def image_shape(shape: int | Sequence[int], name: str = "shape") -> tuple[int, int, int]:
    """An image event shape ``(C, H, W)`` of positive sizes, as a tuple (``ValueError`` otherwise)."""
    s = as_shape(shape)
    if len(s) != 3 or any(d <= 0 for d in s):
        raise ValueError(f"{name} must be an image shape (C, H, W) of positive sizes, got {s}")
    return s  # type: ignore[return-value]


# -------------------------------------------------------------------------------------------- squeeze
def squeeze(x: Tensor, factor: int = 2) -> Tensor:
    r"""Space-to-depth: ``(B, C, H, W) -> (B, C f², H/f, W/f)``.

    Output channel ``c f² + a f + b`` at position ``(i, j)`` holds input pixel ``(c, f i + a, f j + b)``:
    each ``f x f`` block becomes the channel vector of one output position, in row-major order inside the
    block. For ``f = 2`` and a 4x4 single-channel image whose blocks are numbered as in Dinh's "Primer on
    Normalizing Flows" (``1 2 5 6 / 3 4 7 8 / 9 10 13 14 / 11 12 15 16``), output position ``(0, 0)`` holds
    ``1 2 3 4``,
    ``(0, 1)`` holds ``5 6 7 8``, ``(1, 0)`` holds ``9 10 11 12`` and ``(1, 1)`` holds ``13 14 15 16``.
    """
    return F.pixel_unshuffle(x, factor)


def unsqueeze(z: Tensor, factor: int = 2) -> Tensor:
    """Depth-to-space, the exact inverse of :func:`squeeze`."""
    return F.pixel_shuffle(z, factor)


class Squeeze(Transform):
    r"""RealNVP's squeezing operation: every ``f x f`` spatial block becomes ``f²`` channels.

    .. math:: z_{c f^2 + a f + b,\, i,\, j} = x_{c,\, f i + a,\, f j + b}, \qquad \log|\det J| = 0

    (a permutation of the scalars). With that picture — a 4x4 image whose 2x2 blocks are
    numbered ``1 2 5 6 / 3 4 7 8 / 9 10 13 14 / 11 12 15 16`` — the output is 4 channels of 2x2 and output
    position ``(i, j)`` carries block ``(i, j)``'s four pixels as channels ``0..3`` in row-major order
    (``1, 2, 3, 4`` at ``(0, 0)``); channel 0 is ``[[1, 5], [9, 13]]``.

    Reference: Dinh, Sohl-Dickstein & Bengio, "Density estimation using Real NVP", ICLR 2017 (Fig. 3).

    Example:
        >>> sq = Squeeze((1, 4, 4))
        >>> sq(torch.randn(2, 1, 4, 4))[0].shape
        torch.Size([2, 4, 2, 2])
    """

    def __init__(self, shape: Sequence[int], factor: int = 2) -> None:
        c, h, w = image_shape(shape)
        if not isinstance(factor, int) or factor < 1:
            raise TypeError(f"factor must be a positive int, got {factor!r}")
        if h % factor or w % factor:
            raise ValueError(f"cannot squeeze a {h}x{w} image by {factor}: sizes must be divisible")
        super().__init__((c, h, w), latent_shape=(c * factor * factor, h // factor, w // factor))
        self.factor = factor

    def forward(self, x: Tensor, context: Tensor | None = None) -> tuple[Tensor, Tensor]:
        return squeeze(x, self.factor), x.new_zeros(x.shape[0])

    def inverse(self, z: Tensor, context: Tensor | None = None) -> tuple[Tensor, Tensor]:
        return unsqueeze(z, self.factor), z.new_zeros(z.shape[0])

    def extra_repr(self) -> str:
        return f"{super().extra_repr()}, factor={self.factor}"


# ---------------------------------------------------------------------------------------------- masks
def checkerboard_mask(shape: Sequence[int], parity: int = 0) -> Tensor:
    """Boolean ``(C, H, W)`` mask passing pixels with ``(i + j) % 2 == parity`` (all channels alike)."""
    c, h, w = image_shape(shape)
    if parity not in (0, 1):
        raise ValueError(f"parity must be 0 or 1, got {parity!r}")
    ij = torch.arange(h).view(h, 1) + torch.arange(w).view(1, w)
    return ((ij % 2) == parity).expand(c, h, w).clone()


def channel_mask(shape: Sequence[int], first: bool = True) -> Tensor:
    """Boolean ``(C, H, W)`` mask passing the first ``⌊C/2⌋`` channels (or the last ``⌈C/2⌉``)."""
    c, h, w = image_shape(shape)
    if c < 2:
        raise ValueError(f"a channel mask needs at least 2 channels, got {c}")
    m = (torch.arange(c) < c // 2).view(c, 1, 1).expand(c, h, w).clone()
    return m if first else ~m


# ---------------------------------------------------------------------------------------- 1x1 conv
class InvConv1x1(Transform):
    r"""Glow's invertible 1x1 convolution: the same invertible ``C x C`` matrix at every pixel.

    .. math:: z_{:, i, j} = W x_{:, i, j}, \qquad \log|\det J| = H\, W \log|\det W|,

    with :math:`W = P L (U + \operatorname{diag}(s e^{u}))` in LU form
    (:class:`~pushforward.transforms.linear.LUMatrix`), so :math:`\log|\det W| = \sum_c u_c`; the inverse
    applies :math:`W^{-1}` per pixel.

    Reference: Kingma & Dhariwal, "Glow: Generative Flow with Invertible 1x1 Convolutions", NeurIPS 2018.

    Example:
        >>> conv = InvConv1x1((4, 8, 8))
        >>> z, ladj = conv(torch.randn(2, 4, 8, 8))
    """

    def __init__(self, shape: Sequence[int], *, init: str = "orthogonal", seed: int | None = None) -> None:
        c, h, w = image_shape(shape)
        super().__init__((c, h, w))
        self.lu = LUMatrix(c, init=init, seed=seed)

    def _ladj(self, x: Tensor) -> Tensor:
        return (self.event_shape[1] * self.event_shape[2] * self.lu.logabsdet()).expand(x.shape[0])

    def forward(self, x: Tensor, context: Tensor | None = None) -> tuple[Tensor, Tensor]:
        return torch.einsum("oc,bchw->bohw", self.lu.matrix(), x), self._ladj(x)

    def inverse(self, z: Tensor, context: Tensor | None = None) -> tuple[Tensor, Tensor]:
        return torch.einsum("oc,bchw->bohw", self.lu.inverse_matrix(), z), -self._ladj(z)


# ---------------------------------------------------------------------------------------- multi-scale
class MultiScale(Transform):
    r"""Multi-scale architecture with factor-out: a cascade of levels, each handing half its channels to
    the latent and the rest to the next, coarser level.

    Level :math:`k` is a transform :math:`g_k` from image shape :math:`s_k` to :math:`(C_k, H_k, W_k)`; its
    output is split along channels into :math:`(h_k, z_k)` = (first ``C_k - out_k`` channels, last ``out_k``);
    :math:`z_k` is *factored out* and :math:`h_k` is the input of level :math:`k+1` (the last level factors
    out everything). The latent is the flat concatenation :math:`z = (\operatorname{vec} z_1, \dots,
    \operatorname{vec} z_K)`, finest scale first. The Jacobian is block-triangular, so

    .. math:: \log|\det J| = \sum_k \log|\det \partial g_k / \partial h_{k-1}|,

    and the inverse runs the levels in reverse, re-attaching each factored chunk. A base distribution with
    one set of parameters per chunk (:class:`pushforward.flows.image.ScaleNormal`) gives the per-scale
    priors of RealNVP and Glow while remaining a proper density on the assembled latent.

    Args:
        levels: The level transforms; level ``k+1``'s event shape must be level ``k``'s kept part.
        factor_out: Channels factored out after each level but the last (default: half, rounded down).

    Reference: Dinh, Sohl-Dickstein & Bengio, "Density estimation using Real NVP", ICLR 2017 (Sec. 3.6);
    Kingma & Dhariwal, "Glow", NeurIPS 2018.

    Example:
        >>> ms = MultiScale([Squeeze((1, 4, 4)), Squeeze((2, 2, 2))])
        >>> ms(torch.randn(3, 1, 4, 4))[0].shape
        torch.Size([3, 16])
    """

    def __init__(self, levels: Sequence[Transform], factor_out: Sequence[int] | None = None) -> None:
        levels = list(levels)
        if not levels:
            raise ValueError("MultiScale needs at least one level")
        for t in levels:
            if not isinstance(t, Transform):
                raise TypeError(f"MultiScale levels must be Transforms, got {type(t).__name__}")
            if len(t.event_shape) != 3 or len(t.latent_shape) != 3:
                raise ValueError(f"every level must map images to images, got {type(t).__name__}")
        if factor_out is None:
            factor_out = [t.latent_shape[0] // 2 for t in levels[:-1]]
        factor_out = [int(k) for k in factor_out]
        if len(factor_out) != len(levels) - 1:
            raise ValueError(f"factor_out needs {len(levels) - 1} entries, got {len(factor_out)}")
        chunks: list[tuple[int, int, int]] = []
        for k, (t, nxt) in enumerate(itertools.pairwise(levels)):
            c, h, w = t.latent_shape
            if not 0 < factor_out[k] < c:
                raise ValueError(f"level {k} has {c} channels; cannot factor out {factor_out[k]}")
            keep = (c - factor_out[k], h, w)
            if nxt.event_shape != keep:
                raise ValueError(f"level {k + 1} expects {nxt.event_shape} but receives {keep}")
            chunks.append((factor_out[k], h, w))
        chunks.append(levels[-1].latent_shape)  # type: ignore[arg-type]
        D = math.prod(levels[0].event_shape)
        if sum(math.prod(s) for s in chunks) != D:
            raise ValueError("the factored chunks do not add up to the input size")
        super().__init__(levels[0].event_shape, max(t.context_features for t in levels), (D,))
        self.levels = nn.ModuleList(levels)
        self.factor_out = factor_out
        self.chunk_shapes: list[tuple[int, int, int]] = chunks
        self.chunk_sizes: list[int] = [math.prod(s) for s in chunks]
        self.analytic_inverse = all(t.analytic_inverse for t in levels)

    def forward(self, x: Tensor, context: Tensor | None = None) -> tuple[Tensor, Tensor]:
        B = x.shape[0]
        out: list[Tensor] = []
        ladj = x.new_zeros(B)
        h = x
        for k, level in enumerate(self.levels):
            h, l = level(h, context)
            ladj = ladj + l
            if k < len(self.levels) - 1:
                keep = h.shape[1] - self.factor_out[k]
                out.append(h[:, keep:].reshape(B, -1))
                h = h[:, :keep]
        out.append(h.reshape(B, -1))
        return torch.cat(out, 1), ladj

    def inverse(self, z: Tensor, context: Tensor | None = None) -> tuple[Tensor, Tensor]:
        if not isinstance(z, Tensor) or z.dim() != 2 or z.shape[1] != self.latent_shape[0]:
            raise ValueError(f"MultiScale.inverse input must have shape (batch, {self.latent_shape[0]})")
        B = z.shape[0]
        parts = list(z.split(self.chunk_sizes, 1))
        ladj = z.new_zeros(B)
        h = parts[-1].reshape(B, *self.chunk_shapes[-1])
        for k in range(len(self.levels) - 1, -1, -1):
            if k < len(self.levels) - 1:
                h = torch.cat([h, parts[k].reshape(B, *self.chunk_shapes[k])], 1)
            h, l = self.levels[k].inverse(h, context)
            ladj = ladj + l
        return h, ladj

    def split_latent(self, z: Tensor) -> list[Tensor]:
        """The per-scale chunks of a flat latent ``(B, D)``, reshaped to their image shapes."""
        return [p.reshape(z.shape[0], *s) for p, s in zip(z.split(self.chunk_sizes, 1), self.chunk_shapes)]

    def extra_repr(self) -> str:
        return f"{super().extra_repr()}, chunks={self.chunk_shapes}"
