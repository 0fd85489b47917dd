r"""Fast evaluation of a :class:`~pushforward.nets.MADE`: the one-pass autoregressive inverse.

Inverting an autoregressive layer :math:`z_d = \tau(x_d; \theta_d(x_{<d}))` is sequential: :math:`x_{\pi(k)}`
needs the parameters :math:`\theta_{\pi(k)}`, which need :math:`x_{\pi(1)}, \dots, x_{\pi(k-1)}`. The naive
inverse runs the whole MADE ``D`` times. But in a MADE (hidden units sorted by degree, see
:mod:`pushforward.nets.made`)

* a hidden unit of degree :math:`j` depends only on units of the previous layer of degree :math:`\le j`
  (the inputs of degree :math:`\le j` for the first layer), and
* the outputs of degree :math:`k` depend only on last-layer units of degree :math:`< k`,

so every masked weight is **block lower-triangular** in degree order. Processing the degrees in order,

.. math::
    \text{for } k = 1, \dots, D:\quad
    \theta_{\pi(k)} = W^{\text{out}}_{\pi(k),\,[\deg < k]}\, h^{(L)}_{[\deg < k]} + b, \quad
    x_{\pi(k)} = \tau^{-1}(z_{\pi(k)}; \theta_{\pi(k)}), \quad
    h^{(\ell)}_{[\deg = k]} = \sigma\big(W^{(\ell)}_{[\deg = k],\,[\deg \le k]}\, h^{(\ell-1)}_{[\deg \le k]} + b\big),

computes every hidden unit exactly **once**: the inverse costs the FLOPs of one (block-sparse) forward pass
plus ``D`` small kernel launches per layer, instead of ``D`` full passes. Only nonzero weight blocks are ever
multiplied, so the result equals the naive inverse up to floating-point summation order.

The hidden units of each degree are appended to a growing tensor with :func:`torch.cat` (no in-place writes)
when autograd records the inverse, so it is differentiable (``rsample`` of a MAF, the density of an IAF);
without autograd (sampling under ``torch.no_grad``, or nothing requiring a gradient) they are written into one
preallocated buffer per level instead, which saves the quadratic copying of the concatenations.

Supported: plain and residual MADEs, any order, context inputs, no hidden layer. Anything else (a custom
conditioner) makes :func:`supports_one_pass` return ``False`` and callers fall back to the naive inverse.

Reference: Germain, Gregor, Murray & Larochelle, "MADE: Masked Autoencoder for Distribution Estimation",
ICML 2015 (masks and degrees); Papamakarios, Pavlakou & Murray, "Masked Autoregressive Flow for Density
Estimation", NeurIPS 2017 (the sequential inverse this replaces).

Example:
    >>> from pushforward.nets import MADE
    >>> made = MADE(4, 2, hidden=(32, 32), zero_init=False)
    >>> invert = lambda d, z_d, p: (z_d - p[:, 0], -p[:, 1])  # a toy shift-only "transformer"
    >>> x, logd = made_one_pass_inverse(made, invert, torch.randn(8, 4))
    >>> x.shape, logd.shape
    (torch.Size([8, 4]), torch.Size([8, 4]))
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor, nn

from .made import MADE, MaskedLinear, _MaskedResidualBlock
from .masked_blocks import row_chunks  # noqa: F401  (re-exported: the block layout of a mask)

__all__ = [
    "MADEPlan",
    "made_one_pass_inverse",
    "supports_one_pass",
]

#: ``invert(feature, z_column, params) -> (x_column, logd_column)``, all of shape ``(B,)`` / ``(B, P)``.
Invert = Callable[[int, Tensor, Tensor], tuple[Tensor, Tensor]]


def _ends(degrees: Tensor, features: int) -> list[int]:
    """``ends[j]`` = number of units of degree ``≤ j`` for ``j = 0..D`` (units sorted by degree)."""
    return [int((degrees <= j).sum()) for j in range(features + 1)]


class MADEPlan:
    """The degree-block layout of a MADE: for every level, where each degree's block ends.

    Built by :func:`plan_for` for each inverse; plain Python ints only.
    """

    def __init__(self, made: MADE) -> None:
        D = made.features
        self.features = D
        self.order: list[int] = [int(i) for i in made.order]
        self.input_ends = list(range(D + 1))  # inputs in degree order: degree j is column j-1
        self.hidden_ends = [_ends(deg, D) for deg in made.hidden_degrees]
        self.residual = [isinstance(layer, _MaskedResidualBlock) for layer in made.layers]


def supports_one_pass(conditioner: nn.Module) -> bool:
    """Whether :func:`made_one_pass_inverse` handles this conditioner (a MADE with degree-sorted units).

    ``False`` for anything else (custom conditioners), for which callers must use the naive inverse.
    """
    # a subclass that redefines forward computes something else: only MADE's own forward is inverted here
    if not isinstance(conditioner, MADE) or type(conditioner).forward is not MADE.forward:
        return False
    if len(conditioner.hidden_degrees) != len(conditioner.layers):
        return False
    for deg in conditioner.hidden_degrees:
        if deg.numel() > 1 and not bool(torch.all(deg.diff() >= 0)):
            return False
    for layer in conditioner.layers:
        if not isinstance(layer, (MaskedLinear, _MaskedResidualBlock)):
            return False
    return isinstance(conditioner.output, MaskedLinear)


def plan_for(made: MADE) -> MADEPlan:
    """The degree-block layout of ``made`` (built per call: a few integer reductions per hidden layer)."""
    return MADEPlan(made)


def _masked(layer: MaskedLinear) -> Tensor:
    return layer.weight * layer.mask


class _Units:
    """The units of one level computed so far (in degree order), appended block by block: concatenated when
    autograd records (no in-place writes), else written into one preallocated ``(B, n)`` buffer."""

    __slots__ = ("buf", "end", "grown")

    def __init__(self, like: Tensor, n: int, record: bool) -> None:
        self.buf = None if record else like.new_empty(like.shape[0], n)
        self.grown = like.new_zeros(like.shape[0], 0)
        self.end = 0

    def append(self, block: Tensor) -> None:
        end = self.end + block.shape[1]
        if self.buf is None:
            self.grown = torch.cat([self.grown, block], 1)
        else:
            self.buf[:, self.end : end].copy_(block)
        self.end = end

    @property
    def values(self) -> Tensor:
        """``(B, end)``: every unit appended so far."""
        return self.grown if self.buf is None else self.buf[:, : self.end]


def made_one_pass_inverse(
    made: MADE, invert: Invert, z: Tensor, context: Tensor | None = None
) -> tuple[Tensor, Tensor]:
    r"""Invert an autoregressive layer whose conditioner is ``made`` in one pass over the hidden units.

    Args:
        made: The conditioner (see :func:`supports_one_pass`).
        invert: ``invert(d, z[:, d], params_d) -> (x_d, logd_d)``, the elementwise inverse of feature ``d``
            given its raw parameters ``params_d`` of shape ``(B, P)``.
        z: ``(B, D)`` latent values.
        context: ``(B, C)`` context, if the MADE is conditional.

    Returns:
        ``(x, logd)``, both ``(B, D)``: the data point and the elementwise log-derivatives of the inverse.
    """
    if z.dim() != 2 or z.shape[1] != made.features:
        raise ValueError(f"expected input of shape (batch, {made.features}), got {tuple(z.shape)}")
    plan = plan_for(made)
    D, P = made.features, made.out_per_feature
    B = z.shape[0]
    act = made.act

    ctx = None
    if made.context_net is not None:
        if context is None:
            raise ValueError(f"this MADE expects a context of {made.context} features, got None")
        if context.shape != (B, made.context):
            raise ValueError(f"context has shape {tuple(context.shape)}, expected ({B}, {made.context})")
        ctx = made.context_net(context)

    # masked weights; the first layer's columns (and the no-hidden output's) put the inputs in degree order
    order = made.order
    layers = list(made.layers)
    weights: list[tuple[Tensor, ...]] = []
    for i, layer in enumerate(layers):
        if isinstance(layer, _MaskedResidualBlock):
            weights.append((_masked(layer.first), layer.first.bias, _masked(layer.second), layer.second.bias))
        else:
            w = _masked(layer)
            if i == 0:
                w = w.index_select(1, order)
            weights.append((w, layer.bias))
    w_out = _masked(made.output)
    if not layers:
        w_out = w_out.index_select(1, order)
    b_out = made.output.bias

    # growing units, one per level: concatenated when autograd records, else written into buffers
    record = torch.is_grad_enabled() and (
        z.requires_grad
        or (context is not None and context.requires_grad)
        or any(p.requires_grad for p in made.parameters())
    )
    x_sorted = _Units(z, D, record)  # inputs in degree order
    widths = [len(deg) for deg in made.hidden_degrees]
    levels = [_Units(z, n, record) for n in widths]  # h^(l)
    res_in = [_Units(z, n, record) for n in widths]  # act(h^(l-1)) feeding a residual block
    res_mid = [_Units(z, n, record) for n in widths]  # act(first(act(h^(l-1))))
    hidden_ends = plan.hidden_ends

    def advance(j: int) -> None:
        """Compute the units of degree ``j`` of every hidden layer (inputs of degree ≤ j are known)."""
        prev, prev_end = x_sorted.values, plan.input_ends[j]
        prev_start = plan.input_ends[j - 1] if j > 0 else 0
        for i, layer_is_res in enumerate(plan.residual):
            ends = hidden_ends[i]
            s, e = (ends[j - 1] if j > 0 else 0), ends[j]
            if e > s:
                if layer_is_res:
                    w1, b1, w2, b2 = weights[i]
                    res_in[i].append(act(prev[:, prev_start:prev_end]))
                    mid = act(torch.addmm(b1[s:e], res_in[i].values, w1[s:e, :e].t()))
                    res_mid[i].append(mid)
                    block = prev[:, s:e] + torch.addmm(b2[s:e], res_mid[i].values, w2[s:e, :e].t())
                else:
                    w, b = weights[i]
                    pre = torch.addmm(b[s:e], prev[:, :prev_end], w[s:e, :prev_end].t())
                    if i == 0 and ctx is not None:
                        pre = pre + ctx[:, s:e]
                    block = act(pre)
                levels[i].append(block)
            prev, prev_start, prev_end = levels[i].values, s, e

    advance(0)  # units of degree 0 (only when D = 1): they see no input
    xs: list[Tensor | None] = [None] * D
    logds: list[Tensor | None] = [None] * D
    for k in range(1, D + 1):
        d = plan.order[k - 1]
        last = levels[-1].values if layers else x_sorted.values
        c = hidden_ends[-1][k - 1] if layers else k - 1
        rows = slice(d * P, (d + 1) * P)
        params = torch.addmm(b_out[rows], last[:, :c], w_out[rows, :c].t())
        if not layers and ctx is not None:
            params = params + ctx[:, rows]
        x_d, logd_d = invert(d, z[:, d], params)
        xs[d], logds[d] = x_d, logd_d
        if k < D:
            x_sorted.append(x_d.unsqueeze(1))
            advance(k)
    return torch.stack(xs, 1), torch.stack(logds, 1)  # type: ignore[arg-type]


# ------------------------------------------------------------------------------ block-sparse forward
