r"""Memory-saving backpropagation through stacks of invertible layers.

Standard autograd stores every intermediate activation of a ``K``-layer stack for the backward pass, so
activation memory grows like ``K``. A stack of bijections with exact inverses does not need them: in the
backward pass each layer's input is *recomputed* from its output with the layer's inverse, the layer is
re-run locally under autograd, and the vector-Jacobian product is taken there (Dinh, "Primer on Normalizing
Flows", "reducing backprop memory footprint"). Only the stack's final output is kept, so activation memory is
``O(1)`` in ``K`` at the price of one extra inverse and one extra forward per layer.

Reference: Gomez, Ren, Urtasun & Grosse, "The Reversible Residual Network: Backpropagation Without Storing
Activations", NeurIPS 2017; used for flows in Glow's code (Kingma & Dhariwal 2018) and MintNet
(Song, Meng & Ermon 2019).
"""

from __future__ import annotations

from collections.abc import Iterable

import torch
from torch import Tensor

from .base import Compose, Transform
from .elementwise import BatchNorm

__all__ = ["ReversibleCompose", "saved_tensor_bytes"]


class _ReversibleFunction(torch.autograd.Function):
    """``(x, context, *params) -> (z, ladj)`` through ``stack`` without storing intermediate activations."""

    @staticmethod
    def forward(ctx, stack: ReversibleCompose, x: Tensor, context: Tensor | None, *params: Tensor):  # type: ignore[override]
        with torch.no_grad():
            z, ladj = Compose.forward(stack, x, context)
        ctx.stack = stack
        ctx.has_context = context is not None
        ctx.save_for_backward(z, *([context] if context is not None else []))
        return z, ladj

    @staticmethod
    def backward(ctx, grad_z: Tensor, grad_ladj: Tensor):  # type: ignore[override]
        stack: ReversibleCompose = ctx.stack
        saved = ctx.saved_tensors
        y = saved[0]
        context = saved[1] if ctx.has_context else None
        params = [p for p in stack.parameters() if p.requires_grad]
        index = {id(p): i for i, p in enumerate(params)}
        grads: list[Tensor | None] = [None] * len(params)
        need_ctx = context is not None and ctx.needs_input_grad[2]
        grad_ctx: Tensor | None = None
        g = grad_z
        for layer in reversed(stack.transforms):
            with torch.no_grad():
                x_prev, _ = layer.inverse(y, context)
            with torch.enable_grad():
                xi = x_prev.detach().requires_grad_(True)
                ci = context.detach().requires_grad_(True) if need_ctx else context  # type: ignore[union-attr]
                yi, li = layer(xi, ci)
                lp = [p for p in layer.parameters() if p.requires_grad]
                inputs = [xi, *lp] + ([ci] if need_ctx else [])
                # a layer's ladj can be constant (Squeeze, permutations): only outputs with a graph take part
                pairs = [(o, go) for o, go in ((yi, g), (li, grad_ladj)) if o.requires_grad]
                if pairs:
                    outs, grad_outs = zip(*pairs)
                    out = torch.autograd.grad(outs, inputs, grad_outs, allow_unused=True)
                else:
                    out = (None,) * len(inputs)
            g = out[0] if out[0] is not None else torch.zeros_like(xi)
            for p, gp in zip(lp, out[1 : 1 + len(lp)]):
                if gp is not None:
                    k = index[id(p)]
                    grads[k] = gp if grads[k] is None else grads[k] + gp
            if need_ctx and out[-1] is not None:
                grad_ctx = out[-1] if grad_ctx is None else grad_ctx + out[-1]
            y = x_prev
        return (None, g, grad_ctx, *grads)


class ReversibleCompose(Compose):
    r"""A :class:`~pushforward.transforms.Compose` whose backward pass recomputes activations by inversion.

    Same map, log-determinant and inverse as :class:`~pushforward.transforms.Compose`; in training (when
    gradients are needed) :meth:`forward` runs through a custom autograd function that keeps only the output
    :math:`z = f_K \circ \dots \circ f_1(x)`. Backward walks the layers in reverse: for layer :math:`k`,
    :math:`h_{k-1} = f_k^{-1}(h_k)` is reconstructed, :math:`f_k` is re-run on it under autograd, and the
    vector-Jacobian products

    .. math:: \bar h_{k-1} = \bar h_k \frac{\partial f_k}{\partial h_{k-1}}
        + \bar\ell \frac{\partial \ell_k}{\partial h_{k-1}}, \qquad
        \bar\theta_k = \bar h_k \frac{\partial f_k}{\partial \theta_k}
        + \bar\ell\frac{\partial \ell_k}{\partial \theta_k}

    (with :math:`\ell = \sum_k \ell_k` the total ladj) give the exact gradients — equal to standard
    backpropagation up to the round-off of the reconstruction. Every layer needs an exact, analytic inverse
    and a deterministic forward; :class:`~pushforward.transforms.BatchNorm` (whose training-mode map is not
    the map its inverse undoes) is rejected. Second derivatives through the stack are not supported.

    Reference: Gomez et al., "The Reversible Residual Network: Backpropagation Without Storing
    Activations", NeurIPS 2017.

    Example:
        >>> from pushforward.transforms import ActNorm, InvConv1x1
        >>> stack = ReversibleCompose([ActNorm((2, 4, 4)), InvConv1x1((2, 4, 4))])
        >>> z, ladj = stack(torch.randn(8, 2, 4, 4))
        >>> (z.square().sum() - ladj.sum()).backward()
    """

    def __init__(self, transforms: Iterable[Transform]) -> None:
        super().__init__(transforms)
        for t in self.transforms:
            if not t.analytic_inverse:
                raise ValueError(
                    f"{type(t).__name__} has no analytic inverse; it cannot be recomputed exactly"
                )
            if any(isinstance(m, BatchNorm) for m in t.modules()):
                raise ValueError(
                    "BatchNorm's training-mode map is not invertible from its output; use ActNorm"
                )

    def forward(self, x: Tensor, context: Tensor | None = None) -> tuple[Tensor, Tensor]:
        params = [p for p in self.parameters() if p.requires_grad]
        needs_grad = x.requires_grad or bool(params) or (context is not None and context.requires_grad)
        if not (torch.is_grad_enabled() and needs_grad):
            return Compose.forward(self, x, context)
        if self.training:  # data-dependent initialisation (ActNorm) happens on a plain forward, once
            for m in self.modules():
                init = getattr(m, "initialized", None)
                if isinstance(init, Tensor) and not bool(init):
                    with torch.no_grad():
                        Compose.forward(self, x, context)
                    break
        return _ReversibleFunction.apply(self, x, context, *params)


def saved_tensor_bytes(fn, *args, **kwargs) -> tuple[object, int]:
    """Run ``fn(*args, **kwargs)`` and return its result and the bytes autograd saved for backward.

    Counts every tensor packed by autograd during the call (storages shared by several saved tensors are
    counted once): the activation memory a later ``backward`` would need.
    """
    seen: dict[int, int] = {}

    def pack(t: Tensor) -> Tensor:
        try:
            key = t.untyped_storage().data_ptr()
            seen[key] = max(seen.get(key, 0), t.untyped_storage().nbytes())
        except RuntimeError:  # tensors without storage
            pass
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        out = fn(*args, **kwargs)
    return out, sum(seen.values())
