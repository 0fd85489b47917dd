r"""The codec's stream format, model fingerprint and symbol coder (shared by every coder of the package).

Stream format (version 1), all integers little-endian::

    b"PFZ" | version (1 byte) | model fingerprint (4 bytes)
    | dtype code, +128 for one shared stream (1 byte) | ndim (1 byte)
    | shape of one item (ndim varints) | item count (varint) | metadata length (varint) + bytes
    | per item (one in all with independent=False): payload length (varint) + payload
    | CRC-32 of everything before it and of the original items' bytes (4 bytes)

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

from ..distributions.discretized import discretized_logistic_cdf

__all__ = [
    "RADIUS",
    "CodecError",
    "SymbolCoder",
    "bytes_to_words",
    "model_fingerprint",
    "parse",
    "words_to_bytes",
    "write",
]

MAGIC = b"PFZ"
VERSION = 1
RADIUS = 255
DTYPES = [np.uint8, np.int8, np.uint16, np.int16, np.uint32, np.int32, np.int64]
_SHARED = 0x80  # dtype-byte flag: all items share one ANS stream
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


def write(fingerprint: bytes, items: np.ndarray, payloads: list[bytes], independent: bool, metadata: bytes):
    """The stream of ``payloads`` (one per item, or one shared) for ``items`` (the CRC covers their bytes)."""
    code = DTYPES.index(items.dtype.type) | (0 if independent else _SHARED)
    head = MAGIC + bytes([VERSION]) + fingerprint + bytes([code, items.ndim - 1])
    head += b"".join(varint(int(d)) for d in items.shape[1:]) + varint(items.shape[0])
    head += varint(len(metadata)) + metadata
    out = head + b"".join(varint(len(p)) + p for p in payloads)
    crc = zlib.crc32(items.tobytes(), zlib.crc32(out))
    return out + crc.to_bytes(4, "little")


def parse(data: bytes) -> tuple[dict, list[bytes]]:
    """``(info, payloads)`` of a stream; a malformed or truncated one is a :class:`CodecError`."""
    if not isinstance(data, (bytes, bytearray, memoryview)):
        raise TypeError(f"data must be bytes, got {type(data).__name__}")
    data = bytes(data)
    if not data:
        raise CodecError("empty stream")
    r = Reader(data)
    if r.take(3, "header") != MAGIC:
        raise CodecError("not a pushforward compressed stream (bad magic bytes)")
    (version,) = r.take(1, "header")
    if version != VERSION:
        raise CodecError(f"unsupported stream format version {version} (this library reads {VERSION})")
    info: dict = {"fingerprint": r.take(4, "header")}
    code, ndim = r.take(2, "header")
    info["independent"] = not code & _SHARED
    code &= ~_SHARED
    if code >= len(DTYPES) or ndim > 8:
        raise CodecError("corrupted stream header (dtype or rank)")
    info["dtype"] = np.dtype(DTYPES[code])
    info["shape"] = tuple(r.varint("header") for _ in range(ndim))
    info["count"] = r.varint("header")
    # an independent item takes at least its length byte; items of a shared stream can take far less
    limit = len(data) if info["independent"] else 1024 * len(data)
    if info["count"] == 0 or info["count"] > limit:
        raise CodecError("corrupted stream header (item count)")
    info["metadata"] = r.take(r.varint("header"), "metadata")
    n_payloads = info["count"] if info["independent"] else 1
    payloads = [r.take(r.varint("item length"), "item payload") for _ in range(n_payloads)]
    info["crc_at"] = r.pos
    r.take(4, "checksum")
    if r.pos != len(data):
        raise CodecError(f"corrupted stream: {len(data) - r.pos} unexpected bytes after the checksum")
    info["header_bytes"] = len(data) - sum(len(p) for p in payloads) - len(info["metadata"])
    return info, payloads


def check_crc(data: bytes, info: dict, items: np.ndarray) -> None:
    """Raise :class:`CodecError` unless the stream's CRC matches its bytes and the decoded ``items``."""
    crc = zlib.crc32(items.tobytes(), zlib.crc32(bytes(data[: info["crc_at"]])))
    if crc.to_bytes(4, "little") != bytes(data[info["crc_at"] :]):
        raise CodecError("corrupted stream: checksum mismatch")


# ------------------------------------------------------------------------------------ symbol coder
def _flat_int(values, what: str) -> np.ndarray:
    out = np.asarray(values.detach().cpu().numpy() if isinstance(values, Tensor) else values)
    out = out.reshape(-1)
    if out.dtype.kind == "f":
        if not np.isfinite(out).all() or not (out == np.round(out)).all():
            raise ValueError(f"{what} must be integers")
    return out.astype(np.int64)


def mixture_window(logits: Tensor, loc: Tensor, log_scale: Tensor) -> tuple[np.ndarray, np.ndarray]:
    """``(low, probs)`` of a discretized logistic mixture: per element the first integer of its window
    :math:`[c - R, c + R]` around the rounded mixture mean :math:`c` and the ``(n, 2R + 2)`` table (the last
    column is the mass outside the window, the escape)."""
    M = logits.shape[-1]
    logits, loc, log_scale = (p.reshape(-1, M) for p in (logits, loc, log_scale))
    center = torch.round((torch.softmax(logits, -1) * loc).sum(-1)).clamp(-(2.0**40), 2.0**40)
    low = center - RADIUS
    edges = low[:, None] + torch.arange(2 * RADIUS + 2, dtype=loc.dtype)[None, :]
    cdf = discretized_logistic_cdf(edges, logits[:, None, :], loc[:, None, :], log_scale[:, None, :])
    probs = torch.diff(cdf, dim=1).clamp_min(0.0)
    escape = (1.0 - (cdf[:, -1] - cdf[:, 0])).clamp_min(0.0)
    return low.numpy().astype(np.int64), torch.cat([probs, escape[:, None]], 1).numpy()


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
        """Push integers under discretized logistic mixtures (parameters ``(..., M)`` per element)."""
        self.push_windowed(values, *mixture_window(logits, loc, log_scale))

    def pop_logistic_mixture(self, logits: Tensor, loc: Tensor, log_scale: Tensor) -> np.ndarray:
        """Pop integers pushed by :meth:`push_logistic_mixture` with the same parameters."""
        return self.pop_windowed(*mixture_window(logits, loc, log_scale))

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
