r"""Bits-back coding of a continuous image flow: a :class:`~pushforward.flows.dequantization.DequantizedFlow` (Glow,
RealNVPImage, ...) as a lossless codec, its dequantizer as the approximate posterior.

Everything lives on fine grids of integers: the dequantization noise :math:`u \in (0, 1)^D` on steps of
:math:`2^{-k}` (``PRECISION`` :math:`k = 12`), the flow's input :math:`y = (x + u)/L` on steps of
:math:`\delta = 1/(L 2^k)`, i.e. :math:`n = 2^k x + 2^k u`, and every later layer on the same step
:math:`\delta`. To encode an image :math:`x`:

1. *decode* :math:`u` from the stack under :math:`q(u \mid x)` (uniform, or the variational
   dequantizer's flow run in its decoding direction: Gaussian :math:`\varepsilon`, couplings, sigmoid);
2. encode :math:`n = 2^k x + 2^k u` under the flow, layer by layer, then its latent under the base
   (a diagonal Gaussian discretised on the grid: a windowed table of bins of about :math:`\sigma/16`
   and uniform low bits).

Decoding runs the same steps backwards and ends by re-encoding :math:`u`, which gives the stack back its
bits. Each layer is an exact bijection between grids, coded with uniform symbols (local bits-back per
layer; the Jacobian of a coupling is triangular, so the layers compose):

* elementwise affine maps given the passed part (affine/additive couplings, ActNorm),
  :math:`y \approx a x + t`, use the modular affine transform: with :math:`a \approx R/S`
  (:math:`S = 2^{12}`), pop :math:`r < R`, :math:`m = R x + r`, :math:`y' = \lfloor m/S \rfloor`, push
  :math:`m \bmod S`; net :math:`-\log_2 a` bits, exactly invertible (Zhang et al. 2021, iFlow);
* the invertible 1x1 convolution :math:`W = P L U` is a diagonal (the same transform), integer shears
  (rounded sums of exactly recovered values) and a permutation;
* the logit (the sigmoid of the dequantizer) maps grid cell :math:`j` onto the latent grid points of
  :math:`[\operatorname{logit}(j\delta), \operatorname{logit}((j+1)\delta))`, one popped uniformly: its
  log-derivative comes back as bits. The two end cells are open (every latent point beyond them belongs to
  them); their offset is coded with the density of a uniform value in the cell, :math:`\propto e^{-d}`.

Code length: :math:`-\log_2 p(y) + \log_2 q(u \mid x)` bits per image (the bits/dim of
:meth:`~pushforward.flows.dequantization.DequantizedFlow.bits_per_dim` times :math:`D`), plus the
rounding of the grids,
once the stack holds enough bits to decode :math:`u` from. **Initial bits**: the first image of a stack
decodes its noise from a fixed pseudo-random sequence (known to both sides; the part a stream leaves untouched
is not stored). It pays for every initial bit it disturbs: the deepest the stack goes below its start (the
noise and the layers pop bits before the base pushes the latent) plus what it leaves, about
:math:`D\,(k + 20)` bits on MNIST (30-35 bits per pixel). Coding one image alone pays that every time; a
chain of images (``independent=False``) pays it once.

Determinism: tables and network outputs are computed in float64 on one thread; encoder and decoder see
bit-identical inputs, so decoding is exact on the machine (and library builds) that encoded. Another
machine must round float64 convolutions identically (same torch build and CPU kernels); a mismatch is
refused by the stream's CRC, never returned as a wrong image.

Reference: Townsend, Bird & Barber, "Practical lossless compression with latent variables using bits back
coding", ICLR 2019; Ho, Lohn & Abbeel, "Compression with Flows via Local Bits-Back Coding", NeurIPS 2019;
Zhang, Zhang, Yuan, Sun & Li, "iFlow: Numerically Invertible Flows for Efficient Lossless Compression via a
Uniform Coder", NeurIPS 2021.

Example:
    >>> import torch
    >>> from pushforward.flows import Glow
    >>> from pushforward.flows.dequantization import DequantizedFlow
    >>> model = DequantizedFlow(Glow((1, 4, 4), levels=1, steps=1, hidden=(8,)), levels=4).double().eval()
    >>> x = torch.randint(0, 4, (1, 1, 4, 4)).double()
    >>> payload = encode_payloads(model, [x], independent=True)
    >>> bool((decode_payloads(model, payload, 1, True)[0] == x).all())
    True
"""

from __future__ import annotations

import contextlib
import math

import numpy as np
import torch
from torch import Tensor

from ..distributions.base import StandardNormal
from ..flows.dequantization import DequantizedFlow
from ..flows.image import ScaleNormal
from ..transforms.base import Compose, Transform
from ..transforms.coupling import AdditiveCoupling, AffineCoupling
from ..transforms.elementwise import ActNorm, Logit
from ..transforms.image import InvConv1x1, MultiScale, Squeeze
from ..transforms.reversible import ReversibleCompose
from .stream import CodecError, Reader, SymbolCoder, bytes_to_words, varint, words_to_bytes

__all__ = ["PRECISION", "check_model", "decode_payloads", "encode_payloads"]

#: Bits of the dequantization noise below one pixel level (the grid step of u is 2**-PRECISION).
PRECISION = 12
_S = 1 << 12  # denominator of the modular affine transform
_LOGIT_RANGE = 16.0  # the logit's latent grid is truncated to [-16, 16]
_SEED = 0x5EED  # of the initial bits


# ------------------------------------------------------------------------------------------ checks
def _layers(t: Transform) -> list[Transform]:
    if isinstance(t, (Compose, ReversibleCompose)):
        return [s for part in t.transforms for s in _layers(part)]
    if isinstance(t, MultiScale):
        return [t, *[s for level in t.levels for s in _layers(level)]]
    return [t]


_SUPPORTED = (AffineCoupling, AdditiveCoupling, ActNorm, InvConv1x1, Squeeze, MultiScale, Logit)


def check_model(model: DequantizedFlow) -> None:
    """TypeError unless every layer, the base and the dequantizer of ``model`` can be bits-back coded."""
    if not isinstance(model, DequantizedFlow):
        raise TypeError(f"bits-back coding takes a DequantizedFlow, got {type(model).__name__}")
    if model.context_features:
        raise TypeError("bits-back coding needs an unconditional model (this one takes a context)")
    flows = [("flow", model.flow.transform)]
    if model.dequantizer is not None:
        flows.append(("dequantizer", model.dequantizer.flow))
    for name, t in flows:
        for layer in _layers(t):
            if not isinstance(layer, _SUPPORTED):
                raise TypeError(
                    f"bits-back coding does not support the {name}'s layer {type(layer).__name__} "
                    f"(supported: {', '.join(c.__name__ for c in _SUPPORTED)})"
                )
            if isinstance(layer, Logit) and layer.alpha != 0.0:
                raise TypeError("bits-back coding needs Logit(alpha=0)")
    if not isinstance(model.flow.base, (ScaleNormal, StandardNormal)):
        raise TypeError(
            f"bits-back coding needs a ScaleNormal or StandardNormal base, got {type(model.flow.base).__name__}"
        )


# ----------------------------------------------------------------------------- modular affine map
def _ratio(a: Tensor) -> np.ndarray:
    """Numerators :math:`R \\approx a S` of the scale factors ``a`` (positive)."""
    a = a.detach().reshape(-1).numpy()
    if not np.isfinite(a).all() or (a <= 0).any():
        raise ValueError("a scale factor is not positive and finite")
    R = np.maximum(np.round(a * _S), 1).astype(np.int64)
    if (R > 1 << 24).any():
        raise ValueError(f"a scale factor exceeds {(1 << 24) / _S:g}: too large for bits-back coding")
    return R


def _mat_push(coder: SymbolCoder, n: np.ndarray, R: np.ndarray) -> np.ndarray:
    """Encode direction: :math:`y' \\approx (R/S)\\,n` (pops the remainder choice, pushes the carry)."""
    m = n * R + coder.pop_uniform(R)
    coder.push_uniform(m % _S, np.full_like(m, _S))
    return m // _S


def _mat_pop(coder: SymbolCoder, v: np.ndarray, R: np.ndarray) -> np.ndarray:
    """Decode direction, the exact inverse of :func:`_mat_push`."""
    m = v * _S + coder.pop_uniform(np.full_like(v, _S))
    coder.push_uniform(m % R, R)
    return m // R


# ---------------------------------------------------------------------------------- layer coding
def _affine_params(t: Transform, n: Tensor, step: float, ctx: Tensor | None):
    """``(transformed mask, a, shift in grid steps)`` of an elementwise-affine layer at the passed part of
    ``n``: the layer evaluated (one batch of two) with the transformed entries set to 0 and to 1."""
    x = n.to(torch.float64) * step
    if isinstance(t, ActNorm):
        passed = torch.zeros(n.shape[1:], dtype=torch.bool)
    else:
        passed = t.mask.expand(n.shape[1:])
    probe = torch.cat([torch.where(passed, x, 0.0), torch.where(passed, x, 1.0)])
    y = t(probe, None if ctx is None else ctx.expand(2, *ctx.shape[1:]))[0]
    a, shift = (y[1] - y[0])[~passed], torch.round(y[0][~passed] / step)
    return ~passed, a, shift.to(torch.int64)


def _affine(t, coder, n: Tensor, step: float, ctx, encode: bool) -> Tensor:
    tr, a, shift = _affine_params(t, n, step, ctx)
    R = _ratio(a)
    out = n.clone()
    vals = n[0][tr].numpy()
    if encode:
        out[0][tr] = torch.from_numpy(_mat_push(coder, vals, R)) + shift
    else:
        out[0][tr] = torch.from_numpy(_mat_pop(coder, vals - shift.numpy(), R))
    return out


def _shear(coef: Tensor, values: Tensor, js) -> Tensor:
    """``round(sum_j coef[j] * values[:, j])`` over ``js`` in that order (one summation order for both
    directions: the same floating-point result)."""
    acc = torch.zeros(values.shape[0:1] + values.shape[2:], dtype=torch.float64)
    for j in js:
        acc = acc + float(coef[j]) * values[:, j].to(torch.float64)
    return torch.round(acc).to(torch.int64)


def _invconv(t: InvConv1x1, coder, n: Tensor, encode: bool) -> Tensor:
    lower, upper = (f.detach().to(torch.float64) for f in t.lu.factors())
    perm = t.lu.permutation.argmax(1)  # (P w)_i = w_{perm[i]}
    C = n.shape[1]
    d = torch.diagonal(upper)
    R = np.repeat(_ratio(d.abs()), n[0, 0].numel())
    sign = d.sign().to(torch.int64)
    if encode:
        mag = torch.from_numpy(_mat_push(coder, n[0].reshape(-1).numpy(), R)).reshape(n.shape)
        v = torch.stack([sign[i] * mag[:, i] + _shear(upper[i], n, range(i + 1, C)) for i in range(C)], 1)
        w = v.clone()
        for i in range(C):
            w[:, i] = v[:, i] + _shear(lower[i], v, range(i))
        return w[:, perm]
    w = torch.empty_like(n)
    w[:, perm] = n
    v = w.clone()
    for i in range(C):
        v[:, i] = w[:, i] - _shear(lower[i], v, range(i))
    # undo the diagonal: its carries are popped at once, each channel's input follows from the later ones
    carry = coder.pop_uniform(np.full(n.numel(), _S)).reshape(n.shape)
    x = torch.empty_like(n)
    rem = np.empty(n.shape, np.int64)
    Rc = R.reshape(n.shape)
    for i in range(C - 1, -1, -1):
        mag = (sign[i] * (v[:, i] - _shear(upper[i], x, range(i + 1, C)))).numpy()
        m = mag * _S + carry[:, i]
        x[:, i] = torch.from_numpy(m // Rc[:, i])
        rem[:, i] = m % Rc[:, i]
    coder.push_uniform(rem, R)
    return x


def _logit_bounds(j: np.ndarray, cells: int, step: float) -> np.ndarray:
    """First latent grid index of cell ``j``: ``ceil(logit(j / cells) / step)``, the ends at +-16."""
    p = torch.from_numpy(j.astype(np.float64) / cells)
    b = torch.logit(p.clamp(0.0, 1.0)).clamp(-_LOGIT_RANGE, _LOGIT_RANGE).numpy()
    b = np.where(j <= 0, -_LOGIT_RANGE, np.where(j >= cells, _LOGIT_RANGE, b))
    return np.ceil(b / step).astype(np.int64)


def _end_code(step: float, count: int) -> tuple[int, np.ndarray, np.ndarray]:
    """``(shift, low, probs)`` for the offset of a point below the top (above the bottom) of an end cell:
    a uniform value in the cell has a logit density proportional to :math:`e^{-d}` at distance :math:`d`,
    coded as geometric coarse bins of about 1/16 (an escape beyond 16) and uniform low bits."""
    shift = max(0, math.floor(math.log2(1.0 / (16.0 * step))))
    width = math.ldexp(step, shift)
    bins = math.ceil(16.0 / width)
    mass = np.exp(-width * np.arange(bins)) * -math.expm1(-width)
    probs = np.append(mass, 1e-7)[None, :].repeat(count, 0)
    return shift, np.zeros(count, np.int64), probs


def _pop_end(coder: SymbolCoder, count: int, step: float) -> np.ndarray:
    shift, low, probs = _end_code(step, count)
    coarse = coder.pop_windowed(low, probs)
    return (coarse << shift) + coder.pop_uniform(np.full(count, 1 << shift))


def _push_end(coder: SymbolCoder, r: np.ndarray, step: float) -> None:
    shift, low, probs = _end_code(step, len(r))
    coder.push_uniform(r & ((1 << shift) - 1), np.full(len(r), 1 << shift))
    coder.push_windowed(r >> shift, low, probs)


def _logit(coder, n: Tensor, step: float, cells: int, encode: bool) -> Tensor:
    """Cells ``0..cells-1`` of (0, 1) <-> latent grid points of their logit images: an interior cell's points
    are popped uniformly; the end cells take every point beyond them (so that every latent integer has a
    cell: the dequantizer's latent is decoded from arbitrary bits), their offset coded by :func:`_push_end`."""
    if encode:
        j = n.reshape(-1).numpy()
        if (j < 0).any() or (j >= cells).any():
            raise ValueError("a value lies outside (0, 1)")
        lo, hi = _logit_bounds(j, cells, step), _logit_bounds(j + 1, cells, step)
        if (hi <= lo).any():
            raise ValueError("the logit grid is too coarse for the input grid")
        end = (j == 0) | (j == cells - 1)
        z = lo + np.where(end, 0, coder.pop_uniform(np.where(end, 1, hi - lo)))
        if end.any():
            r = _pop_end(coder, int(end.sum()), step)
            z[end] = np.where(j[end] == 0, hi[end] - 1 - r, lo[end] + r)
        return torch.from_numpy(z).reshape(n.shape)
    z = n.reshape(-1).numpy()
    j = np.floor(torch.sigmoid(torch.from_numpy(z * step)).numpy() * cells).astype(np.int64)
    j = np.clip(j, 0, cells - 1)
    for _ in range(64):  # a few steps at most: the guess is within a cell or two
        lo, hi = _logit_bounds(j, cells, step), _logit_bounds(j + 1, cells, step)
        move = np.where(z < lo, -1, np.where(z >= hi, 1, 0))
        move[(j == 0) & (move < 0)] = 0
        move[(j == cells - 1) & (move > 0)] = 0
        if not move.any():
            break
        j = j + move
    end = (j == 0) | (j == cells - 1)
    if end.any():
        r = np.where(j[end] == 0, hi[end] - 1 - z[end], z[end] - lo[end])
        if (r < 0).any():
            raise ValueError("a point lies outside its end cell")
        _push_end(coder, r, step)
    # refuses a point outside its cell (a corrupted stream)
    coder.push_uniform(np.where(end, 0, z - lo), np.where(end, 1, hi - lo))
    return torch.from_numpy(j).reshape(n.shape)


def _code(t: Transform, coder, n: Tensor, step: float, ctx, encode: bool, cells: int) -> Tensor:
    """Run layer ``t`` on grid indices ``n`` (batch 1): ``encode`` maps data to latent (pushing), else the
    latent back to data (popping). ``cells`` is the number of input cells of a Logit."""
    if isinstance(t, (Compose, ReversibleCompose)):
        parts = t.transforms if encode else list(reversed(t.transforms))
        for part in parts:
            n = _code(part, coder, n, step, ctx, encode, cells)
        return n
    if isinstance(t, MultiScale):
        return _multiscale(t, coder, n, step, ctx, encode)
    if isinstance(t, Squeeze):
        f = t.forward if encode else t.inverse
        return f(n.to(torch.float64))[0].round().to(torch.int64)
    if isinstance(t, Logit):
        return _logit(coder, n, step, cells, encode)
    if isinstance(t, InvConv1x1):
        return _invconv(t, coder, n, encode)
    if isinstance(t, (AffineCoupling, AdditiveCoupling, ActNorm)):
        return _affine(t, coder, n, step, ctx, encode)
    raise TypeError(f"bits-back coding does not support {type(t).__name__}")  # pragma: no cover


def _multiscale(t: MultiScale, coder, n: Tensor, step: float, ctx, encode: bool) -> Tensor:
    top = len(t.levels) - 1
    if encode:
        out, h = [], n
        for k, level in enumerate(t.levels):
            h = _code(level, coder, h, step, ctx, True, 0)
            if k < top:
                keep = h.shape[1] - t.factor_out[k]
                out.append(h[:, keep:].reshape(1, -1))
                h = h[:, :keep]
        return torch.cat([*out, h.reshape(1, -1)], 1)
    parts = list(n.split(t.chunk_sizes, 1))
    h = parts[-1].reshape(1, *t.chunk_shapes[-1])
    for k in range(top, -1, -1):
        if k < top:
            h = torch.cat([h, parts[k].reshape(1, *t.chunk_shapes[k])], 1)
        h = _code(t.levels[k], coder, h, step, ctx, False, 0)
    return h


def _base_params(base, features: int) -> tuple[np.ndarray, np.ndarray]:
    if isinstance(base, StandardNormal):
        return np.zeros(features), np.ones(features)
    locs, scales = [], []
    for shape, mu, ls in zip(base.chunk_shapes, base.loc, base.log_scale):
        locs.append(mu.detach().expand(shape).reshape(-1))
        scales.append(ls.detach().exp().expand(shape).reshape(-1))
    return torch.cat(locs).numpy(), torch.cat(scales).numpy()


# ------------------------------------------------------------------------------------ the coder
def _steps(model: DequantizedFlow) -> tuple[int, float]:
    cells = model.levels << PRECISION
    return cells, 1.0 / cells


def _noise(model: DequantizedFlow, coder: SymbolCoder, x: Tensor, n_u: Tensor | None) -> Tensor:
    """Decode (``n_u`` None) or encode the noise cells ``n_u`` of image ``x`` under :math:`q(u \\mid x)`."""
    size = 1 << PRECISION
    deq = model.dequantizer
    if deq is None:
        if n_u is None:
            return torch.from_numpy(coder.pop_uniform(np.full(x.numel(), size))).reshape(x.shape)
        coder.push_uniform(n_u.reshape(-1).numpy(), np.full(x.numel(), size))
        return n_u
    step = 1.0 / size
    ctx = x / deq.levels - 0.5
    zero, one = np.zeros(x.numel()), np.ones(x.numel())
    if n_u is None:
        eps = torch.from_numpy(coder.pop_gaussian(zero, one, step, escape=False)).reshape(x.shape)
        h = _code(deq.flow, coder, eps, step, ctx, False, size)
        return _logit(coder, h, step, size, False)
    h = _logit(coder, n_u, step, size, True)
    eps = _code(deq.flow, coder, h, step, ctx, True, size)
    coder.push_gaussian(eps.reshape(-1).numpy(), zero, one, step, escape=False)
    return n_u


def encode_item(coder: SymbolCoder, model: DequantizedFlow, x: Tensor) -> None:
    """Push image ``x`` (``(1, C, H, W)``, integer values in float64) by bits-back coding."""
    cells, step = _steps(model)
    n_u = _noise(model, coder, x, None)
    n = (x.to(torch.int64) << PRECISION) + n_u
    z = _code(model.flow.transform, coder, n, step, None, True, cells)
    coder.push_gaussian(z.reshape(-1).numpy(), *_base_params(model.flow.base, z.numel()), step)


def decode_item(coder: SymbolCoder, model: DequantizedFlow) -> Tensor:
    """Pop an image pushed by :func:`encode_item` (and give the stack its noise bits back)."""
    cells, step = _steps(model)
    D = math.prod(model.event_shape)
    z = torch.from_numpy(coder.pop_gaussian(*_base_params(model.flow.base, D), step)).reshape(1, D)
    n = _code(model.flow.transform, coder, z, step, None, False, cells).reshape(1, *model.event_shape)
    x = n >> PRECISION
    if (x < 0).any() or (x >= model.levels).any():
        raise CodecError("corrupted stream: a decoded pixel is out of range")
    _noise(model, coder, x.to(torch.float64), n - (x << PRECISION))
    return x.to(torch.float64)


def initial_words(model: DequantizedFlow) -> np.ndarray:
    """The fixed pseudo-random initial bits (32-bit words) a stack starts from: enough to decode one
    image's noise from. Both sides generate them; only the part a stream changed is stored."""
    D = math.prod(model.event_shape)
    words = np.random.default_rng(_SEED).integers(
        1, 1 << 32, D * (PRECISION + 96) // 32 + 64, dtype=np.uint64
    )
    return words.astype(np.uint32)


@contextlib.contextmanager
def _one_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(threads)


def _payload(coder: SymbolCoder, initial: np.ndarray) -> bytes:
    words = coder.words()
    n = min(len(words), len(initial)) - 1
    same = words[:n] == initial[:n]
    kept = n if same.all() else int(np.argmin(same))
    return varint(kept) + words_to_bytes(words[kept:])


def _coder(payload: bytes, initial: np.ndarray) -> SymbolCoder:
    r = Reader(payload)
    kept = r.varint("initial-bits count")
    if kept > len(initial):
        raise CodecError("corrupted stream: the initial-bits count is too large")
    return SymbolCoder(np.concatenate([initial[:kept], bytes_to_words(payload[r.pos :])]))


def encode_payloads(model: DequantizedFlow, xs: list[Tensor], independent: bool) -> list[bytes]:
    """The payloads of images ``xs`` (each ``(1, C, H, W)``, float64): one per image, or one chain."""
    initial = initial_words(model)
    with _one_thread():
        if independent:
            out = []
            for x in xs:
                coder = SymbolCoder(initial)
                encode_item(coder, model, x)
                out.append(_payload(coder, initial))
            return out
        coder = SymbolCoder(initial)
        for x in reversed(xs):  # a stack: the first image is pushed last and popped first
            encode_item(coder, model, x)
        return [_payload(coder, initial)]


def decode_payloads(
    model: DequantizedFlow, payloads: list[bytes], count: int, independent: bool
) -> list[Tensor]:
    """The images of :func:`encode_payloads`' payloads; the stack must end as the initial bits."""
    initial = initial_words(model)
    with _one_thread():
        coders = [_coder(p, initial) for p in payloads]
        items = []
        for i in range(count):
            coder = coders[i] if independent else coders[0]
            items.append(decode_item(coder, model))
            if independent and not np.array_equal(coder.words(), initial):
                raise CodecError("corrupted stream: the stack does not end at its initial bits")
        if not independent and not np.array_equal(coders[0].words(), initial):
            raise CodecError("corrupted stream: the stack does not end at its initial bits")
    return items
