r"""Masked linear layers evaluated block by block: the zero blocks of a block-triangular mask are skipped.

A MADE's masked weights (hidden units sorted by degree) are block lower-triangular: the rows of a range need
only a prefix of the input columns. :func:`masked_linear` multiplies each row range by its column prefix when
that saves enough work (:data:`BLOCK_MIN_SKIPPED_MACS`, a count of multiply-adds, the same rule on every
machine), and skips the masking itself when the mask is all ones. Results equal the dense product up to
floating-point summation order. Public PyTorch ops unless the ``"onednn"`` backend is chosen
(:mod:`pushforward.nets.fast_linear`).

Example:
    >>> import torch
    >>> mask = torch.tril(torch.ones(4, 4))
    >>> w, b, h = torch.randn(4, 4), torch.zeros(4), torch.randn(3, 4)
    >>> y = masked_linear(h, w, b, mask, LayerPlan(mask))
    >>> bool(torch.allclose(y, h @ (w * mask).T))
    True
"""

from __future__ import annotations

import torch
from torch import Tensor

from . import fast_linear
from .fast_linear import mm_nt

__all__ = [
    "BLOCK_MIN_SKIPPED_MACS",
    "BLOCK_ROWS",
    "LayerPlan",
    "masked_linear",
    "row_chunks",
    "rows_per_range",
]


def row_chunks(mask: Tensor, chunks: int) -> list[tuple[int, int, int]]:
    """Split the rows of a (block-triangular) mask into ``chunks`` contiguous ranges ``(r0, r1, m)``, ``m``
    being one past the last column any row of the range uses: the range needs only ``x[:, :m]``."""
    used = mask.detach().to("cpu").bool()  # plain ints for the plan, whatever the mask's device
    rows, cols = used.shape
    col_idx = torch.arange(1, cols + 1).expand(rows, cols)
    last = torch.where(used, col_idx, torch.zeros_like(col_idx)).amax(1)  # (rows,) one past last used column
    out = []
    bounds = [round(i * rows / chunks) for i in range(chunks + 1)]
    for r0, r1 in zip(bounds[:-1], bounds[1:]):
        if r1 > r0:
            out.append((r0, r1, int(last[r0:r1].max())))
    return out


class _BlockTriangularLinear(torch.autograd.Function):
    """``y = h (W ⊙ M)ᵀ + b`` multiplying only the used columns of each row range (see :func:`row_chunks`)."""

    @staticmethod
    def forward(ctx, h: Tensor, weight: Tensor, bias: Tensor, mask: Tensor, chunks: list):  # type: ignore[override]
        wm = weight * mask
        ys = []
        for r0, r1, m in chunks:
            if m == 0:
                ys.append(bias[r0:r1].expand(h.shape[0], r1 - r0))
            else:
                ys.append(torch.addmm(bias[r0:r1], h[:, :m], wm[r0:r1, :m].t()))
        ctx.save_for_backward(h, wm, mask)
        ctx.chunks = chunks
        return torch.cat(ys, 1)

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, gy: Tensor):  # type: ignore[override]
        h, wm, mask = ctx.saved_tensors
        gh = gw = gb = None
        if ctx.needs_input_grad[0]:
            gh = h.new_zeros(h.shape)
            for r0, r1, m in ctx.chunks:
                if m:
                    gh[:, :m].addmm_(gy[:, r0:r1], wm[r0:r1, :m])
        if ctx.needs_input_grad[1]:
            gw = torch.zeros_like(wm)
            for r0, r1, m in ctx.chunks:
                if m:
                    torch.mm(gy[:, r0:r1].t(), h[:, :m], out=gw[r0:r1, :m])
            gw.mul_(mask)
        if ctx.needs_input_grad[2]:
            gb = gy.sum(0)
        return gh, gw, gb, None, None


class _BlockTriangularLinearOneDNN(torch.autograd.Function):
    """:class:`_BlockTriangularLinear` with every product done by oneDNN (:mod:`.fast_linear`): the masked
    weight of each row range is materialised contiguous once (``W[r0:r1, :m] ⊙ M[r0:r1, :m]``, as oneDNN needs
    plain layouts), and the weight gradient multiplies row ranges of ``gyᵀ`` by column prefixes of ``hᵀ``."""

    @staticmethod
    def forward(ctx, h: Tensor, weight: Tensor, bias: Tensor, mask: Tensor, chunks: list):  # type: ignore[override]
        ws = [weight[r0:r1, :m] * mask[r0:r1, :m] if m else None for r0, r1, m in chunks]
        ys = []
        for (r0, r1, m), w in zip(chunks, ws):
            if w is None:
                ys.append(bias[r0:r1].expand(h.shape[0], r1 - r0))
            else:
                ys.append(mm_nt(h[:, :m], w, bias[r0:r1]))
        ctx.save_for_backward(h, mask)
        ctx.ws = ws
        ctx.chunks = chunks
        ctx.wshape = weight.shape
        return torch.cat(ys, 1)

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, gy: Tensor):  # type: ignore[override]
        h, mask = ctx.saved_tensors
        ws, chunks = ctx.ws, ctx.chunks
        gh = gw = gb = None
        if ctx.needs_input_grad[0]:
            gh = h.new_zeros(h.shape)
        if ctx.needs_input_grad[1]:
            gw = h.new_zeros(ctx.wshape)
        for (r0, r1, m), w in zip(chunks, ws):
            if w is None:
                continue
            g = gy[:, r0:r1].contiguous()  # (B, rows): g.t() is a plain transposed layout for oneDNN
            if gh is not None:
                gh[:, :m] += mm_nt(g, w.t())
            if gw is not None:  # gyᵀ h over the used columns, masked inside the range
                torch.mul(mm_nt(g.t(), h[:, :m].contiguous().t()), mask[r0:r1, :m], out=gw[r0:r1, :m])
        if ctx.needs_input_grad[2]:
            gb = gy.sum(0)
        ctx.ws = None
        return gh, gw, gb, None, None


#: A masked layer is evaluated block by block only when the skipped multiply-adds, ``batch * skipped``, reach
#: this many (each row range costs one more kernel launch forward and two backward; below this the dense
#: product is cheaper on any hardware). A count of work, not a timing: the same on every machine.
BLOCK_MIN_SKIPPED_MACS: int = 1 << 21

#: Rows per range of the block-triangular split **per intra-op thread** (at most 8 ranges per layer): at ``T``
#: threads a range has at least ``BLOCK_ROWS * T`` rows (:func:`rows_per_range`), so each thread's share of a
#: range's product stays as thick as at one thread; a layer of fewer than two ranges' rows stays one dense
#: product (a MAF output layer of 86 rows, 1 thread: log_prob 4-5 % faster as one product, training step equal,
#: on AVX2 and on ATen's scalar build). At 2 threads, ranges of 128 rows ran 3-10 % faster than ranges of 64
#: and 0-4 % faster than dense layers (MAF and NSF-AR, AVX2; issue 31, ``benchmarks/ab_kernels.py``); from
#: 8 threads a 512-row layer is one dense product, as in plain PyTorch.
BLOCK_ROWS: int = 64


def rows_per_range(threads: int | None = None) -> int:
    """The fewest rows a range of the block-triangular split has at ``threads`` intra-op threads (default: the
    current ``torch.get_num_threads()``): :data:`BLOCK_ROWS` per thread.

    Example:
        >>> rows_per_range(1), rows_per_range(2)
        (64, 128)
    """
    t = torch.get_num_threads() if threads is None else int(threads)
    return BLOCK_ROWS * max(1, t)


class LayerPlan:
    """How to evaluate one masked layer: its row ranges (of at least ``rows`` rows, default
    :func:`rows_per_range` at the current thread count), the multiply-adds per sample they skip, and whether
    the mask is all ones (then the product is a plain ``F.linear``, no masking at all)."""

    __slots__ = ("all_ones", "chunks", "skipped")

    def __init__(self, mask: Tensor, rows: int | None = None) -> None:
        min_rows = rows_per_range() if rows is None else int(rows)
        rows, cols = mask.shape
        self.all_ones = bool(mask.all())
        n = min(8, rows // min_rows)  # floor: a layer of fewer than 2 * min_rows rows stays one product
        chunks = row_chunks(mask, n) if n > 1 and not self.all_ones else []
        skipped = sum((r1 - r0) * (cols - m) for r0, r1, m in chunks)
        # worth it only when some range skips a sizeable part of the columns
        self.chunks = chunks if skipped > 0.2 * rows * cols else []
        self.skipped = skipped if self.chunks else 0


def _traced_blocks(h: Tensor, weight: Tensor, bias: Tensor, mask: Tensor, chunks: list) -> Tensor:
    # the block evaluation in plain differentiable ops, for torch.compile, which derives (and fuses) a backward
    # that skips the same zero blocks: one product per row range, concatenated
    wm = weight * mask
    return torch.cat([torch.addmm(bias[r0:r1], h[:, :m], wm[r0:r1, :m].t()) for r0, r1, m in chunks], dim=1)


def masked_linear(
    h: Tensor, weight: Tensor, bias: Tensor, mask: Tensor, plan: LayerPlan, traced: bool = False
) -> Tensor:
    """``h (W ⊙ M)ᵀ + b`` (``plan = LayerPlan(mask)``), skipping the all-zero blocks of the masked weight
    when that saves enough work (:data:`BLOCK_MIN_SKIPPED_MACS`; CPU only) and the masking itself when the
    mask is all ones; exact up to floating-point summation order. Public PyTorch ops unless the ``"onednn"``
    backend is selected (:mod:`pushforward.nets.fast_linear`). ``traced=True`` (under ``torch.compile``)
    writes the block evaluation with plain differentiable ops instead of a hand-written backward."""
    if plan.all_ones:
        return fast_linear.linear(h, weight, bias)
    if (
        not plan.chunks
        or h.dim() != 2
        or h.device.type != "cpu"  # on a GPU one dense kernel beats several launches at these sizes
        or h.shape[0] * plan.skipped < BLOCK_MIN_SKIPPED_MACS
    ):
        return fast_linear.linear(h, weight * mask, bias)
    if traced:
        return _traced_blocks(h, weight, bias, mask, plan.chunks)
    if h.dtype == torch.float32 and fast_linear.onednn_active():
        return _BlockTriangularLinearOneDNN.apply(h, weight, bias, mask, plan.chunks)
    return _BlockTriangularLinear.apply(h, weight, bias, mask, plan.chunks)
