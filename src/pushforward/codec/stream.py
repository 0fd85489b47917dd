r"""The codec's stream format, model fingerprint and symbol coder (shared by every coder of the package).

Stream format (version 2), compact because an image alone is often ~100 bytes of payload; integers
little-endian, varints LEB128::

    format byte 0xF2 (1 byte) | model fingerprint (4 bytes) | flags (1 byte: dtype code in bits 0-2;
      bit 3 one shared stream; bit 4 the item shape is stored (it is neither the model's event shape nor,
      bit 7, that shape without its leading 1s); bit 5 more than one item; bit 6 metadata present)
    | [bit 4: ndim (1 byte) + shape of one item (ndim varints)] | [bit 5: item count (varint)]
    | [bit 6: metadata length (varint) + bytes]
    | the payloads (one per item, or one in all with a shared stream), each but the last preceded by its
      length (varint); the last runs to the check
    | check: the low 16 bits of the CRC-32 of everything before it and of the decoded items' bytes

One item of the model's shape thus costs 8 bytes beyond its payload. Refusal: a stream made with another
model is refused by the fingerprint (a random 32-bit match, :math:`2^{-32}`), and should its fingerprint
match, by the check after decoding (:math:`2^{-16}` more: :math:`2^{-48}` in all); a truncated or
corrupted stream is refused by the lengths, by the decoder (an invalid or unconsumed ANS state) or, failing
those, by the 16-bit check over the header, the payload *and the decoded items*, so a damaged stream
returns a wrong item with probability at most :math:`2^{-16} \approx 1.5 \cdot 10^{-5}`; it raises
:class:`CodecError` otherwise.

A payload is the coder's: the discrete coder writes the ANS words (32-bit, the last word's high zero bytes
dropped); the bits-back coder first writes how many words of its initial bits it left out (a varint).

:class:`SymbolCoder` wraps ``constriction``'s ANS stack with the symbol families the models need: windowed
tables with an escape (every integer is codable), categorical tables, uniform integers of per-element
sizes, and Gaussians on a fine grid. A base distribution codes its own symbols through it (the protocol
``base.encode_symbols(coder, k, z, kept, context)`` / ``base.decode_symbols(coder, k, kept, context)``).

Reference: Duda, "Asymmetric numeral systems", 2009; Bamler, "Understanding Entropy Coding With Asymmetric
Numeral Systems (ANS): a Statistician's Perspective", 2022 (the ``constriction`` library).

Example:
    >>> import numpy as np
    >>> coder = SymbolCoder()
    >>> coder.push_uniform(np.array([3, 0, 6]), np.array([4, 1, 7]))
    >>> coder.pop_uniform(np.array([4, 1, 7])).tolist()
    [3, 0, 6]
"""

from __future__ import annotations

import hashlib
import zlib

import numpy as np
import torch
from torch import Tensor

from ..distributions.discretized import mixture_tables

__all__ = [
    "CodecError",
    "SymbolCoder",
    "bytes_to_words",
    "model_fingerprint",
    "parse",
    "resolve_shape",
    "words_to_bytes",
    "write",
]

FORMAT = 0xF2  # one byte: the stream format (version 2)
DTYPES = [np.uint8, np.int8, np.uint16, np.int16, np.uint32, np.int32, np.int64]
_CHECK_BYTES = 2
_SHARED, _SHAPE, _MANY, _META, _SQUEEZED = 0x08, 0x10, 0x20, 0x40, 0x80  # flags beside the dtype (bits 0-2)
_MAX_UNIFORM = 1 << 24  # constriction's largest uniform alphabet
_GAUSS_RADIUS = 128  # coarse bins each side of a Gaussian's mean


class CodecError(ValueError):
    """A stream that cannot be decoded: wrong format, another model, truncated or corrupted."""


def constriction():
    """The ``constriction`` module, or a clear ImportError naming the extra that installs it."""
    try:
        import constriction
    except ImportError:  # pragma: no cover - depends on the environment
        raise ImportError(
            "the codec needs the 'constriction' package: pip install 'pushforward[codec]'"
        ) from None
    return constriction


def model_fingerprint(model) -> bytes:
    """4 bytes of SHA-256 over the model's class, event shape and every state tensor (name, dtype, bytes)."""
    h = hashlib.sha256(f"{type(model).__name__}|{tuple(model.event_shape)}".encode())
    for name, t in sorted(model.state_dict().items()):
        t = t.detach().cpu().contiguous()
        h.update(f"{name}|{t.dtype}|{tuple(t.shape)}|".encode())
        h.update(t.reshape(-1).view(torch.uint8).numpy().tobytes() if t.numel() else b"")
    return h.digest()[:4]


# ------------------------------------------------------------------------------------------ bytes
def varint(n: int) -> bytes:
    """LEB128 encoding of a non-negative integer."""
    out = bytearray()
    while True:
        b, n = n & 0x7F, n >> 7
        out.append(b | (0x80 if n else 0))
        if not n:
            return bytes(out)


class Reader:
    """Reads a stream front to back; running out of bytes is a :class:`CodecError` naming the part."""

    def __init__(self, data: bytes) -> None:
        self.data, self.pos = data, 0

    def take(self, n: int, what: str) -> bytes:
        if self.pos + n > len(self.data):
            raise CodecError(f"truncated stream: it ends inside the {what}")
        out = self.data[self.pos : self.pos + n]
        self.pos += n
        return out

    def varint(self, what: str) -> int:
        n = shift = 0
        while True:
            (b,) = self.take(1, what)
            n |= (b & 0x7F) << shift
            shift += 7
            if not b & 0x80:
                return n
            if shift > 63:
                raise CodecError(f"corrupted stream: the {what} is not a valid number")


def words_to_bytes(words: np.ndarray) -> bytes:
    """ANS words as little-endian bytes, the last word's high zero bytes dropped."""
    raw = np.asarray(words).astype("<u4").tobytes()
    return raw[: len(raw) - min(3, len(raw) - len(raw.rstrip(b"\0")))]


def bytes_to_words(payload: bytes) -> np.ndarray:
    """The inverse of :func:`words_to_bytes`."""
    return np.frombuffer(payload + b"\0" * (-len(payload) % 4), dtype="<u4").astype(np.uint32)


def _squeezed(shape) -> tuple[int, ...]:
    """``shape`` without its leading 1s (an image ``(H, W)`` for a model of ``(1, H, W)``)."""
    shape = tuple(int(d) for d in shape)
    while len(shape) > 1 and shape[0] == 1:
        shape = shape[1:]
    return shape


def _check(before: bytes, items: np.ndarray) -> bytes:
    """The stream's check: the low 16 bits of the CRC-32 of its bytes and of the items' bytes."""
    return (zlib.crc32(items.tobytes(), zlib.crc32(before)) & 0xFFFF).to_bytes(_CHECK_BYTES, "little")


def write(
    fingerprint: bytes,
    items: np.ndarray,
    payloads: list[bytes],
    independent: bool,
    metadata: bytes,
    event_shape,
) -> bytes:
    """The stream of ``payloads`` (one per item, or one shared) for ``items`` of a model whose event shape
    is ``event_shape`` (the check covers the items' bytes)."""
    item_shape = tuple(int(d) for d in items.shape[1:])
    event_shape = tuple(int(d) for d in event_shape)
    flags = DTYPES.index(items.dtype.type) | (0 if independent else _SHARED)
    if item_shape == _squeezed(event_shape) != event_shape:
        flags |= _SQUEEZED
    elif item_shape != event_shape:
        flags |= _SHAPE
    flags |= _MANY if len(items) > 1 else 0
    flags |= _META if metadata else 0
    head = bytes([FORMAT]) + fingerprint + bytes([flags])
    if flags & _SHAPE:
        head += bytes([len(item_shape)]) + b"".join(varint(d) for d in item_shape)
    if flags & _MANY:
        head += varint(len(items))
    if flags & _META:
        head += varint(len(metadata)) + metadata
    out = head + b"".join(varint(len(p)) + p for p in payloads[:-1]) + payloads[-1]
    return out + _check(out, items)


def parse(data: bytes) -> tuple[dict, list[bytes]]:
    """``(info, payloads)`` of a stream; a malformed or truncated one is a :class:`CodecError`.
    ``info["shape"]`` is the stored item shape, ``None`` for the model's event shape or ``"squeezed"`` for
    that shape without its leading 1s (see :func:`resolve_shape`)."""
    if not isinstance(data, (bytes, bytearray, memoryview)):
        raise TypeError(f"data must be bytes, got {type(data).__name__}")
    data = bytes(data)
    if not data:
        raise CodecError("empty stream")
    r = Reader(data)
    (fmt,) = r.take(1, "header")
    if fmt != FORMAT:
        raise CodecError(
            f"not a pushforward compressed stream of format version 2 (first byte {fmt:#04x}, expected "
            f"{FORMAT:#04x})"
        )
    info: dict = {"fingerprint": r.take(4, "header")}
    (flags,) = r.take(1, "header")
    info["independent"] = not flags & _SHARED
    if (flags & _SQUEEZED and flags & _SHAPE) or flags & 0x07 >= len(DTYPES):
        raise CodecError("corrupted stream header (flags)")
    info["dtype"] = np.dtype(DTYPES[flags & 0x07])
    info["shape"] = "squeezed" if flags & _SQUEEZED else None
    if flags & _SHAPE:
        (ndim,) = r.take(1, "header")
        if ndim > 8:
            raise CodecError("corrupted stream header (rank)")
        info["shape"] = tuple(r.varint("header") for _ in range(ndim))
    info["count"] = r.varint("header") if flags & _MANY else 1
    # an independent item takes at least one byte; items of a shared stream can take far less
    limit = len(data) if info["independent"] else 1024 * len(data)
    if info["count"] == 0 or info["count"] > limit or (flags & _MANY and info["count"] == 1):
        raise CodecError("corrupted stream header (item count)")
    info["metadata"] = r.take(r.varint("header"), "metadata") if flags & _META else b""
    n_payloads = info["count"] if info["independent"] else 1
    payloads = [r.take(r.varint("item length"), "item payload") for _ in range(n_payloads - 1)]
    end = len(data) - _CHECK_BYTES
    if end < r.pos:
        raise CodecError("truncated stream: it ends inside the header or the check")
    payloads.append(r.take(end - r.pos, "item payload"))
    info["crc_at"] = end
    info["header_bytes"] = len(data) - sum(len(p) for p in payloads) - len(info["metadata"])
    return info, payloads


def resolve_shape(info: dict, event_shape) -> tuple[int, ...]:
    """The item shape of a parsed stream for a model of ``event_shape``."""
    if info["shape"] is None:
        return tuple(int(d) for d in event_shape)
    if info["shape"] == "squeezed":
        return _squeezed(event_shape)
    return info["shape"]


def check_crc(data: bytes, info: dict, items: np.ndarray) -> None:
    """Raise :class:`CodecError` unless the stream's check matches its bytes and the decoded ``items``."""
    if _check(bytes(data[: info["crc_at"]]), items) != bytes(data[info["crc_at"] :]):
        raise CodecError("corrupted stream: checksum mismatch")


# ------------------------------------------------------------------------------------ symbol coder
def _flat_int(values, what: str) -> np.ndarray:
    out = np.asarray(values.detach().cpu().numpy() if isinstance(values, Tensor) else values)
    out = out.reshape(-1)
    if out.dtype.kind == "f":
        if not np.isfinite(out).all() or not (out == np.round(out)).all():
            raise ValueError(f"{what} must be integers")
    return out.astype(np.int64)


def gaussian_window(
    loc: np.ndarray, scale: np.ndarray, step: float
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    r"""``(shift, low, probs)`` for coding integers :math:`n` (the grid :math:`n\,\delta`, ``step`` =
    :math:`\delta`) under :math:`\mathcal N(\mu, \sigma^2)`: the coarse part :math:`n \gg s` is coded
    with a windowed table of 256 coarse bins of :math:`2^s` grid steps (:math:`\sigma/32 < 2^s\delta \le
    \sigma/16`, so the window spans at least :math:`\pm 4\sigma`; the mass of a bin is a difference of
    normal CDFs) and an escape, the :math:`s` low bits uniformly (a loss below 0.001 bits per value)."""
    loc, scale = np.asarray(loc, np.float64).reshape(-1), np.asarray(scale, np.float64).reshape(-1)
    shift = np.clip(np.floor(np.log2(scale / step)) - 4, 0, 20).astype(np.int64)
    width = np.ldexp(step, shift)
    low = np.round(loc / width) - _GAUSS_RADIUS
    edges = (low[:, None] + np.arange(2 * _GAUSS_RADIUS + 2)[None, :]) * width[:, None]
    cdf = torch.special.ndtr(torch.from_numpy((edges - loc[:, None]) / scale[:, None])).numpy()
    probs = np.clip(np.diff(cdf, axis=1), 0.0, None)
    escape = np.clip(1.0 - (cdf[:, -1] - cdf[:, 0]), 0.0, None)
    return shift, low.astype(np.int64), np.concatenate([probs, escape[:, None]], 1)


class SymbolCoder:
    """An ANS stack (``constriction.stream.stack.AnsCoder``) with the symbol families of the codec.

    ``push_*`` encodes (pushes onto the stack), ``pop_*`` decodes (pops) the same symbols in the same order:
    a ``pop`` undoes the ``push`` just before it, and the reverse holds too (bits-back coding pops first).
    Every family takes its parameters per element; integers are ``int64`` numpy arrays.

    Args:
        words: Initial content of the stack (32-bit words), e.g. a received payload.
    """

    def __init__(self, words: np.ndarray | None = None) -> None:
        c = constriction()
        self._model = c.stream.model
        words = np.zeros(0, np.uint32) if words is None else np.asarray(words, np.uint32)
        self.ans = c.stream.stack.AnsCoder(words) if words.size else c.stream.stack.AnsCoder()
        self._categorical = self._model.Categorical(perfect=False)
        self._uniform = self._model.Uniform()
        self._word = self._model.Uniform(1 << 16)

    def words(self) -> np.ndarray:
        """The stack's content as 32-bit words (bottom first)."""
        return np.asarray(self.ans.get_compressed(), np.uint32)

    def is_empty(self) -> bool:
        return bool(self.ans.is_empty())

    # -------------------------------------------------------------------------------- uniform
    def push_uniform(self, values, sizes) -> None:
        """Push ``values[i]`` uniform on ``{0, ..., sizes[i] - 1}`` (sizes of 1 cost nothing)."""
        values, sizes = _flat_int(values, "uniform symbols"), _flat_int(sizes, "uniform sizes")
        if (sizes < 1).any() or (sizes > _MAX_UNIFORM).any():
            raise ValueError(
                f"uniform alphabet sizes must lie in [1, 2**24], got {sizes.min()}..{sizes.max()}"
            )
        if (values < 0).any() or (values >= sizes).any():
            raise ValueError("a uniform symbol lies outside its alphabet")
        keep = sizes > 1
        if keep.any():
            self.ans.encode_reverse(
                values[keep].astype(np.int32), self._uniform, sizes[keep].astype(np.int32)
            )

    def pop_uniform(self, sizes) -> np.ndarray:
        """Pop symbols uniform on ``{0, ..., sizes[i] - 1}``."""
        sizes = _flat_int(sizes, "uniform sizes")
        if (sizes < 1).any() or (sizes > _MAX_UNIFORM).any():
            raise ValueError(
                f"uniform alphabet sizes must lie in [1, 2**24], got {sizes.min()}..{sizes.max()}"
            )
        out = np.zeros(sizes.shape, np.int64)
        keep = sizes > 1
        if keep.any():
            out[keep] = self.ans.decode(self._uniform, sizes[keep].astype(np.int32))
        return out

    # ---------------------------------------------------------------------------- tables
    def push_categorical(self, values, probs: np.ndarray) -> None:
        """Push ``values[i]`` under the row ``probs[i]`` (need not be normalised)."""
        self.ans.encode_reverse(_flat_int(values, "categorical symbols").astype(np.int32), self._categorical,
                                np.ascontiguousarray(probs, np.float64))  # fmt: skip

    def pop_categorical(self, probs: np.ndarray) -> np.ndarray:
        """Pop symbols under the rows of ``probs``."""
        return self.ans.decode(self._categorical, np.ascontiguousarray(probs, np.float64)).astype(np.int64)

    def push_windowed(self, values, low: np.ndarray, probs: np.ndarray) -> None:
        """Push integers ``values[i]`` with the table ``probs[i]`` over ``low[i] + (0, ..., W - 2)`` whose
        last column is the escape: a value outside the window follows as a uniform 32-bit integer."""
        z = _flat_int(values, "values")
        W = probs.shape[1]
        sym = z - low
        esc = (sym < 0) | (sym > W - 2)
        if esc.any():
            if (z[esc] < -(1 << 31)).any() or (z[esc] >= (1 << 31)).any():
                raise ValueError("a value exceeds the codec's 32-bit escape range")
            u = (z[esc] + (1 << 31)).astype(np.uint64)
            raw = np.stack([u >> np.uint64(16), u & np.uint64(0xFFFF)], 1).reshape(-1).astype(np.int32)
            self.ans.encode_reverse(raw, self._word)
        sym[esc] = W - 1
        self.push_categorical(sym, probs)

    def pop_windowed(self, low: np.ndarray, probs: np.ndarray) -> np.ndarray:
        """Pop integers pushed by :meth:`push_windowed` with the same tables."""
        sym = self.pop_categorical(probs)
        W = probs.shape[1]
        z = low + sym
        esc = sym == W - 1
        if esc.any():
            raw = self.ans.decode(self._word, 2 * int(esc.sum())).astype(np.int64).reshape(-1, 2)
            z[esc] = ((raw[:, 0] << 16) | raw[:, 1]) - (1 << 31)
        return z

    # ---------------------------------------------------------------------- distributions
    def push_logistic_mixture(self, values, logits: Tensor, loc: Tensor, log_scale: Tensor) -> None:
        """Push integers under discretized logistic mixtures (parameters ``(..., M)`` per element), with
        the tables of :func:`~pushforward.distributions.discretized.mixture_tables`."""
        self.push_windowed(values, *mixture_tables(logits, loc, log_scale))

    def pop_logistic_mixture(self, logits: Tensor, loc: Tensor, log_scale: Tensor) -> np.ndarray:
        """Pop integers pushed by :meth:`push_logistic_mixture` with the same parameters."""
        return self.pop_windowed(*mixture_tables(logits, loc, log_scale))

    def push_gaussian(self, values, loc, scale, step: float, *, escape: bool = True) -> None:
        r"""Push grid indices :math:`n` (points :math:`n\delta`) under :math:`\mathcal N(\mu_i, \sigma_i^2)`
        discretised on the grid (see :func:`gaussian_window`). With ``escape=False`` only the window
        (at least :math:`\pm 4\sigma`) is codable: a value outside it is a ValueError, and a pop never leaves it."""
        n = _flat_int(values, "grid indices")
        shift, low, probs = gaussian_window(loc, scale, step)
        self.push_uniform(n & ((1 << shift) - 1), 1 << shift)
        if escape:
            self.push_windowed(n >> shift, low, probs)
            return
        sym = (n >> shift) - low
        if (sym < 0).any() or (sym > probs.shape[1] - 2).any():
            raise ValueError("a value lies outside the Gaussian's window")
        self.push_categorical(sym, probs[:, :-1])

    def pop_gaussian(self, loc, scale, step: float, *, escape: bool = True) -> np.ndarray:
        """Pop grid indices pushed by :meth:`push_gaussian` with the same parameters."""
        shift, low, probs = gaussian_window(loc, scale, step)
        coarse = self.pop_windowed(low, probs) if escape else low + self.pop_categorical(probs[:, :-1])
        return (coarse << shift) + self.pop_uniform(1 << shift)
