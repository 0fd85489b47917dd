r"""Linear-layer kernel backends: public PyTorch by default, oneDNN as an explicit opt-in.

Every dense product of the conditioner networks (:class:`~pushforward.nets.MLP`,
:class:`~pushforward.nets.MaskedLinear`, the block-triangular MADE layers) goes through :func:`linear` /
:func:`mm_nt`. Two backends compute the same fp32 product :math:`y = x W^\top + b`, differing only in the
summation order:

* ``"torch"`` (**the default**): ``F.linear`` / ``torch.addmm``, public PyTorch on every device and dtype.
* ``"onednn"`` (opt-in): fp32 CPU products of at least :data:`MIN_MACS` multiply-adds are sent to oneDNN's
  ``mkldnn::_linear_pointwise`` kernel (the one Inductor uses), forward and both backward products. This is a
  **private** PyTorch operator: it may change or vanish in any release, so it is never used unless asked
  for, and it is self-checked against ``F.linear`` on first use (when the check fails, the ``"torch"`` path
  runs). Whether it is faster depends on the CPU: it was ~2x faster than MKL's GEMM on an AVX-512 AMD
  Zen 5 core and ~1.5x *slower* for a MAF training step on an AVX2 Zen 3 core. Measure with
  ``benchmarks/speed.py`` before opting in.

Choose the backend with the environment variable ``PUSHFORWARD_BACKEND=onednn`` (read at import), with
:func:`set_backend`, or for a block of code with :func:`use_backend`. Higher-order gradients
(``create_graph=True``) work on both: the oneDNN backward then uses differentiable ops.

Example:
    >>> x, w = torch.randn(4, 3), torch.randn(2, 3)
    >>> backend()
    'torch'
    >>> with use_backend("onednn"):  # same values up to fp32 summation order
    ...     y = linear(x, w)
    >>> torch.allclose(y, x @ w.t(), atol=1e-5)
    True
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator

import torch
import torch.nn.functional as F
from torch import Tensor

__all__ = [
    "BACKENDS",
    "MIN_MACS",
    "available",
    "backend",
    "linear",
    "mm_nt",
    "onednn_active",
    "set_backend",
    "use_backend",
]

#: The kernel backends :func:`set_backend` accepts.
BACKENDS: tuple[str, ...] = ("torch", "onednn")

#: Smallest ``batch * in * out`` the oneDNN backend takes (below, its fixed per-call cost outweighs the kernel).
MIN_MACS: int = 1 << 20

_AVAILABLE: bool | None = None


def _check_name(name: object) -> str:
    if not isinstance(name, str) or name not in BACKENDS:
        raise ValueError(f"backend must be one of {BACKENDS}, got {name!r}")
    return name


def _from_env() -> str:
    value = os.environ.get("PUSHFORWARD_BACKEND", "torch").strip().lower() or "torch"
    if value not in BACKENDS:
        raise ValueError(f"PUSHFORWARD_BACKEND must be one of {BACKENDS}, got {value!r}")
    return value


_BACKEND: str = _from_env()


def backend() -> str:
    """The kernel backend in use: ``"torch"`` (default) or ``"onednn"``."""
    return _BACKEND


def set_backend(name: str) -> None:
    """Use ``name`` (``"torch"`` or ``"onednn"``, see the module docstring) for the whole process."""
    global _BACKEND
    _BACKEND = _check_name(name)


@contextlib.contextmanager
def use_backend(name: str) -> Iterator[None]:
    """Use backend ``name`` inside a ``with`` block, then restore the previous one."""
    global _BACKEND
    previous, _BACKEND = _BACKEND, _check_name(name)
    try:
        yield
    finally:
        _BACKEND = previous


def _op():
    return torch.ops.mkldnn._linear_pointwise


def available() -> bool:
    """Whether the oneDNN kernel exists in this PyTorch build and agrees with ``F.linear`` (checked once)."""
    global _AVAILABLE
    if _AVAILABLE is None:
        ok = False
        try:
            if torch.backends.mkldnn.is_available():
                g = torch.Generator().manual_seed(0)
                x = torch.randn(64, 48, generator=g)
                w = torch.randn(40, 48, generator=g)
                b = torch.randn(40, generator=g)
                ok = bool(
                    torch.allclose(_op()(x, w, b, "none", [], ""), F.linear(x, w, b), atol=1e-4, rtol=1e-4)
                )
                ok = ok and bool(
                    torch.allclose(_op()(x.t(), x.t(), None, "none", [], ""), x.t() @ x, atol=1e-3)
                )
        except Exception:  # op missing or changed in this build: keep the public path
            ok = False
        _AVAILABLE = ok
    return _AVAILABLE


def onednn_active() -> bool:
    """Whether the oneDNN backend is selected *and* usable here (eligible products then go to oneDNN)."""
    return _BACKEND == "onednn" and available()


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


def _eligible(a: Tensor, b: Tensor) -> bool:
    return (
        a.dim() == 2
        and a.dtype == torch.float32
        and b.dtype == torch.float32
        and a.device.type == "cpu"
        and b.device.type == "cpu"
        and a.shape[0] * b.shape[0] * b.shape[1] >= MIN_MACS
        and not a.is_mkldnn
    )


def linear(x: Tensor, weight: Tensor, bias: Tensor | None = None) -> Tensor:
    """``F.linear(x, weight, bias)`` by the selected backend (see the module docstring)."""
    if (
        _BACKEND == "onednn"
        and (bias is None or (bias.dtype == torch.float32 and bias.device.type == "cpu"))
        and weight.is_contiguous()
        and _eligible(x, weight)
        and available()
        and not torch.compiler.is_compiling()
    ):
        return _OneDNNLinear.apply(x, weight, bias)
    return F.linear(x, weight, bias)


def mm_nt(a: Tensor, b: Tensor, bias: Tensor | None = None) -> Tensor:
    """``a @ b.t() (+ bias)`` without autograd, for custom backward passes: ``torch.addmm`` / ``torch.mm``,
    or oneDNN under the ``"onednn"`` backend when eligible (``b`` contiguous or transposed contiguous)."""
    if (
        _BACKEND == "onednn"
        and (b.is_contiguous() or b.t().is_contiguous())
        and _eligible(a, b)
        and available()
    ):
        return _nt(_plain(a), b, bias)
    if bias is None:
        return torch.mm(a, b.t())
    return torch.addmm(bias, a, b.t())
