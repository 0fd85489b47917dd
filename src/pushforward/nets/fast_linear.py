r"""Dense fp32 CPU matrix products through oneDNN, with autograd.

PyTorch's CPU ``F.linear`` / ``torch.mm`` call the BLAS it was built with (MKL in the official wheels). On some
CPUs that BLAS runs a narrow code path: on AMD Zen 4/5, MKL's fp32 GEMM uses its AVX2 kernels and reached
~95 GFLOP/s on one core, while oneDNN (also shipped in every x86 PyTorch wheel, used by Inductor) runs its
AVX-512 kernels at ~200 GFLOP/s on the same shapes (512x512x512, one thread). :func:`linear` is
``F.linear`` computed by oneDNN's ``mkldnn::_linear_pointwise`` kernel, forward and backward (the two
backward products are again oneDNN GEMMs); the result is the same fp32 product up to summation order.

It is used only where it pays and is safe, else it is exactly ``F.linear``:

* CPU, float32, 2-D input, at least :data:`MIN_MACS` multiply-adds (oneDNN has ~10 µs of fixed cost per call),
* weights contiguous (oneDNN takes a slow reference path for arbitrary strides),
* the kernel exists in this PyTorch build and passed a self-check against ``F.linear`` on first use,
* ``ENABLED`` is true (``PUSHFORWARD_ONEDNN=0`` in the environment switches it off).

Higher-order gradients (``create_graph=True``) are supported: the backward then uses differentiable ops.
"""

from __future__ import annotations

import os

import torch
import torch.nn.functional as F
from torch import Tensor

__all__ = ["ENABLED", "MIN_MACS", "available", "linear", "mm_nt"]

#: Route eligible fp32 CPU linear layers through oneDNN (see the module docstring).
ENABLED: bool = os.environ.get("PUSHFORWARD_ONEDNN", "1") not in ("0", "false", "False", "")

#: Smallest ``batch * in * out`` sent to oneDNN (below, its fixed per-call cost outweighs the faster kernel).
MIN_MACS: int = 1 << 20

_AVAILABLE: bool | None = None


def _op():
    return torch.ops.mkldnn._linear_pointwise


def available() -> bool:
    """Whether the oneDNN kernel exists here and agrees with ``F.linear`` (checked once)."""
    global _AVAILABLE
    if _AVAILABLE is None:
        ok = False
        try:
            if torch.backends.mkldnn.is_available():
                g = torch.Generator().manual_seed(0)
                x = torch.randn(64, 48, generator=g)
                w = torch.randn(40, 48, generator=g)
                b = torch.randn(40, generator=g)
                ok = bool(torch.allclose(_op()(x, w, b, "none", [], ""), F.linear(x, w, b), atol=1e-4, rtol=1e-4))
                ok = ok and bool(torch.allclose(_op()(x.t(), x.t(), None, "none", [], ""), x.t() @ x, atol=1e-3))
        except Exception:  # op missing or changed in this build: keep the default path
            ok = False
        _AVAILABLE = ok
    return _AVAILABLE


def _nt(a: Tensor, b: Tensor, bias: Tensor | None = None) -> Tensor:
    """``a @ b.t() (+ bias)`` by oneDNN; ``a`` and ``b`` contiguous or transposes of contiguous tensors."""
    return _op()(a, b, bias, "none", [], "")


def _plain(t: Tensor) -> Tensor:
    """``t`` if it is contiguous or the transpose of a contiguous matrix (both fast for oneDNN), else a copy."""
    if t.is_contiguous() or t.t().is_contiguous():
        return t
    return t.contiguous()


class _OneDNNLinear(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x: Tensor, weight: Tensor, bias: Tensor | None) -> Tensor:  # type: ignore[override]
        x = _plain(x)
        ctx.save_for_backward(x, weight)
        ctx.has_bias = bias is not None
        return _nt(x, weight, bias)

    @staticmethod
    def backward(ctx, gy: Tensor):  # type: ignore[override]
        x, weight = ctx.saved_tensors
        gx = gw = gb = None
        if torch.is_grad_enabled():  # create_graph=True: differentiable ops
            if ctx.needs_input_grad[0]:
                gx = gy @ weight
            if ctx.needs_input_grad[1]:
                gw = gy.t() @ x
        else:
            gy = _plain(gy)
            if ctx.needs_input_grad[0]:
                gx = _nt(gy, _plain(weight.t()))
            if ctx.needs_input_grad[1]:
                gw = _nt(gy.t(), x.t())
        if ctx.has_bias and ctx.needs_input_grad[2]:
            gb = gy.sum(0)
        return gx, gw, gb


def use_onednn(x: Tensor, weight: Tensor) -> bool:
    """Whether :func:`linear` would send ``x @ weight.t()`` to oneDNN."""
    return (
        ENABLED
        and x.dim() == 2
        and x.dtype == torch.float32
        and weight.dtype == torch.float32
        and x.device.type == "cpu"
        and weight.device.type == "cpu"
        and x.shape[0] * weight.shape[0] * weight.shape[1] >= MIN_MACS
        and weight.is_contiguous()
        and not x.is_mkldnn
        and available()
    )


def linear(x: Tensor, weight: Tensor, bias: Tensor | None = None) -> Tensor:
    """``F.linear(x, weight, bias)``, by oneDNN when that is faster and safe (see the module docstring)."""
    if bias is not None and (bias.dtype != torch.float32 or bias.device.type != "cpu"):
        return F.linear(x, weight, bias)
    if use_onednn(x, weight):
        return _OneDNNLinear.apply(x, weight, bias)
    return F.linear(x, weight, bias)


def mm_nt(a: Tensor, b: Tensor, bias: Tensor | None = None) -> Tensor:
    """``a @ b.t() (+ bias)`` without autograd, by oneDNN when eligible (``b`` contiguous or transposed
    contiguous, ``a`` any 2-D tensor), else by ``torch.addmm`` / ``torch.mm``. For custom backward passes."""
    if (
        ENABLED
        and a.dtype == torch.float32
        and b.dtype == torch.float32
        and a.device.type == "cpu"
        and a.shape[0] * b.shape[0] * b.shape[1] >= MIN_MACS
        and (b.is_contiguous() or b.t().is_contiguous())
        and available()
    ):
        return _nt(_plain(a), b, bias)
    if bias is None:
        return torch.mm(a, b.t())
    return torch.addmm(bias, a, b.t())
