r"""Lossless compression with a discrete flow and an ANS entropy coder (the ``constriction`` package).

A discrete flow's ``log_prob`` is an exact log-pmf, so :math:`-\log_2 P(x)` bits is a code length an
entropy coder reaches to within a few bytes. :func:`encode` maps each integer image (or array) ``x`` to the
latent chunks :math:`z_k` of an :class:`~pushforward.flows.IntegerDiscreteFlow` and pushes every element,
coarsest chunk last, onto an asymmetric numeral systems (ANS) stack with the categorical table of its
discretized logistic mixture; :func:`decode` pops the coarsest chunk first, inverts that level, predicts
the next chunk's table from the recovered kept part, and so on down to the image (Hoogeboom et al. 2019,
Sec. 4). A categorical discrete flow (:func:`~pushforward.flows.DiscreteFlow`) is coded the same way with
its base's table. A flow whose base codes its own latent -- a base with ``encode_symbols(coder, z)`` and
``decode_symbols(coder)``, such as the autoregressive prior of :class:`~pushforward.flows.AutoregressiveIDF`
(pixels pushed last first, popped in raster order, each table from the already-decoded window) -- is
coded by its base: ``encode`` maps ``x`` to ``z`` and calls ``encode_symbols``, ``decode`` inverts the
transform on ``decode_symbols``' result.

Tables (:func:`~pushforward.distributions.discretized.mixture_tables`): each element is coded over the
window :math:`[c - R, c + R]` around the mixture mean :math:`c` (rounded), :math:`R \le 255` wide
enough for every component of non-negligible weight, plus one *escape* symbol carrying the mixture's
mass outside the window; an escaped value follows as a uniform 32-bit integer, so every integer is
codable. Tables are computed in float64 from the model; encoder and decoder compute them from the same
integers, so they agree on one machine and library build (see "Portability" below).

Stream format (version 2), compact because an image alone is often ~100 bytes of payload::

    format byte 0xF2 (1 byte) | model fingerprint (4 bytes) | flags (1 byte: dtype code in bits 0-2;
      bit 3 one shared stream; bit 4 the item shape is stored (it is neither the model's event shape nor,
      bit 7, that shape without its leading 1s); bit 5 more than one item; bit 6 metadata present)
    | [bit 4: ndim (1 byte) + shape of one item (ndim varints)] | [bit 5: item count (varint)]
    | [bit 6: metadata length (varint) + bytes]
    | the ANS payloads (one per item, or one in all with independent=False; 32-bit words, the last
      word's high zero bytes dropped), each but the last preceded by its length (varint)
    | check: the low 16 bits of the CRC-32 of everything before it and of the decoded items' bytes

One image of the model's shape thus costs 8 bytes beyond its payload. Refusal: a stream made with
another model is refused by the fingerprint (a random 32-bit match, :math:`2^{-32}`), and should its
fingerprint match, by the check after decoding (:math:`2^{-16}` more: :math:`2^{-48}` in all); a
truncated or corrupted stream is refused by the lengths, by the decoder (an invalid or unconsumed ANS
state) or, failing those, by the 16-bit check over the header, the payload *and the decoded pixels*, so
a damaged stream returns a wrong image with probability at most :math:`2^{-16} \approx 1.5 \cdot
10^{-5}`; it raises :class:`CodecError` otherwise.

Portability: the tables come from floating-point network outputs, so decode on the platform and library
versions that encoded; a different platform that rounds differently is caught by the CRC, not silently.

Reference: Duda, "Asymmetric numeral systems", 2009; Bamler, "Understanding Entropy Coding With Asymmetric
Numeral Systems (ANS): a Statistician's Perspective", 2022 (the ``constriction`` library); Hoogeboom,
Peters, van den Berg & Welling, "Integer Discrete Flows and Lossless Compression", NeurIPS 2019.

Example:
    >>> import numpy as np
    >>> from pushforward.flows import IDF
    >>> flow = IDF((1, 4, 4), levels=2, layers=1, hidden=(8,), components=2)
    >>> images = np.random.default_rng(0).integers(0, 256, (3, 4, 4), dtype=np.uint8)
    >>> data = encode(flow, images)
    >>> bool((decode(flow, data) == images).all())
    True
"""

from __future__ import annotations

import copy
import hashlib
import weakref
import zlib
from collections.abc import Sequence

import numpy as np
import torch
from torch import Tensor

from .distributions.discretized import Categorical, decode_table_group, encode_table_groups, mixture_tables
from .flows.core import Flow
from .flows.discrete import IntegerDiscreteFlow

__all__ = ["CodecError", "decode", "encode", "header_size", "model_fingerprint"]

FORMAT = 0xF2  # one byte: the stream format (version 2)
_CHECK_BYTES = 2
_DTYPES = [np.uint8, np.int8, np.uint16, np.int16, np.uint32, np.int32, np.int64]
_SHARED, _SHAPE, _MANY, _META, _SQUEEZED = 0x08, 0x10, 0x20, 0x40, 0x80  # flags beside the dtype (bits 0-2)


class CodecError(ValueError):
    """A stream that cannot be decoded: wrong format, another model, truncated or corrupted."""


def _constriction():
    try:
        import constriction
    except ImportError:  # pragma: no cover - depends on the environment
        raise ImportError(
            "the codec needs the 'constriction' package: pip install 'pushforward[codec]'"
        ) from None
    return constriction


# ------------------------------------------------------------------------------------------ helpers
def model_fingerprint(model: Flow) -> bytes:
    """4 bytes of SHA-256 over the model's class, event shape and every state tensor (name, dtype, bytes)."""
    h = hashlib.sha256(f"{type(model).__name__}|{tuple(model.event_shape)}".encode())
    for name, t in sorted(model.state_dict().items()):
        t = t.detach().cpu().contiguous()
        h.update(f"{name}|{t.dtype}|{tuple(t.shape)}|".encode())
        h.update(t.reshape(-1).view(torch.uint8).numpy().tobytes() if t.numel() else b"")
    return h.digest()[:4]


def _varint(n: int) -> bytes:
    out = bytearray()
    while True:
        b, n = n & 0x7F, n >> 7
        out.append(b | (0x80 if n else 0))
        if not n:
            return bytes(out)


class _Reader:
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


def _codes_itself(model: Flow) -> bool:
    """A flow whose base codes its own latent (``base.encode_symbols(coder, z)`` /
    ``base.decode_symbols(coder)``, e.g. an autoregressive prior)."""
    return isinstance(model, Flow) and hasattr(model.base, "encode_symbols")


def _check_model(model: Flow) -> None:
    if isinstance(model, IntegerDiscreteFlow) or _codes_itself(model):
        return
    if isinstance(model, Flow) and isinstance(model.base, Categorical):
        return
    raise TypeError(
        f"the codec takes an IntegerDiscreteFlow (pushforward.flows.IDF) or a categorical discrete flow "
        f"(pushforward.flows.DiscreteFlow), got {type(model).__name__}"
    )


def _as_items(model: Flow, images: object) -> np.ndarray:
    if isinstance(images, Tensor):
        images = images.detach().cpu().numpy()
    if not isinstance(images, np.ndarray):
        raise TypeError(f"images must be a numpy array or a torch tensor, got {type(images).__name__}")
    if images.size == 0:
        raise ValueError("nothing to encode: the input is empty")
    if images.dtype.kind == "f":
        if not np.isfinite(images).all() or not (images == np.round(images)).all():
            raise ValueError("images must hold integers (found non-integer, NaN or inf values)")
        images = images.astype(np.int64)
    if images.dtype.type not in _DTYPES:
        raise TypeError(f"unsupported dtype {images.dtype}; use one of {[np.dtype(d).name for d in _DTYPES]}")
    features = int(np.prod(model.event_shape))
    if images.ndim < 2 or int(np.prod(images.shape[1:])) != features:
        raise ValueError(
            f"images must have shape (N, ...) with {features} values per item (the model's event shape "
            f"{tuple(model.event_shape)}), got {images.shape}"
        )
    if isinstance(model.base, Categorical) and (images.min() < 0 or images.max() >= model.base.categories):
        raise ValueError(f"values must lie in [0, {model.base.categories - 1}] for this categorical flow")
    return images


def _chunk_params(model: Flow, k: int, kept: Tensor | None):
    return model.base.chunk_parameters(k, kept)


# ------------------------------------------------------------------------------------------- coding
def _encode_item(c, coder, model: Flow, x: Tensor) -> None:
    if _codes_itself(model):
        model.base.encode_symbols(coder, model.transform(x)[0])
        return
    family = c.stream.model.Categorical(perfect=False)
    if not isinstance(model, IntegerDiscreteFlow):
        z = model.transform(x)[0].reshape(-1).numpy().astype(np.int32)
        probs = torch.softmax(model.base.logits, -1).reshape(-1, model.base.categories).numpy()
        coder.encode_reverse(z, family, probs)
        return
    chunks, kept = model.latents(x)
    params = [_chunk_params(model, k, kept[k] if k < len(kept) else None) for k in range(len(chunks))]
    # the decoder pops the coarsest chunk first
    encode_table_groups(coder, [(z, *mixture_tables(*p)) for z, p in zip(chunks, params)][::-1])


def _decode_item(c, coder, model: Flow) -> Tensor:
    if _codes_itself(model):
        return model.transform.inverse(model.base.decode_symbols(coder))[0]
    family = c.stream.model.Categorical(perfect=False)
    dtype = torch.float64
    if not isinstance(model, IntegerDiscreteFlow):
        probs = torch.softmax(model.base.logits, -1).reshape(-1, model.base.categories).numpy()
        z = torch.from_numpy(coder.decode(family, probs).astype(np.float64)).reshape(1, -1)
        x = model.transform.inverse(z)[0]
    else:
        top = len(model.levels) - 1
        h: Tensor | None = None
        for k in range(top, -1, -1):
            zt = decode_table_group(coder, *mixture_tables(*_chunk_params(model, k, h if k < top else None)))
            zt = torch.from_numpy(zt.astype(np.float64)).reshape(1, *model.base.chunk_shapes[k]).to(dtype)
            h = zt if k == top else torch.cat([h, zt], 1)
            h = model.levels[k].inverse(h)[0]
        x = h
    return x


# ----------------------------------------------------------------------------------------------- api
_WORK: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def _working_copy(model: Flow, fingerprint: bytes) -> Flow:
    """A float64 copy of ``model`` in eval mode, cached per model while its fingerprint is unchanged."""
    _check_model(model)
    cached = _WORK.get(model)
    if cached is None or cached[0] != fingerprint:
        cached = (fingerprint, copy.deepcopy(model).double().eval())
        _WORK[model] = cached
    return cached[1]


def _words_to_bytes(words: np.ndarray) -> bytes:
    raw = words.astype("<u4").tobytes()
    return raw[: len(raw) - min(3, len(raw) - len(raw.rstrip(b"\0")))]  # the last word's high zero bytes


def _bytes_to_words(payload: bytes) -> np.ndarray:
    return np.frombuffer(payload + b"\0" * (-len(payload) % 4), dtype="<u4").astype(np.uint32)


def encode(
    model: Flow, images: np.ndarray | Tensor, *, independent: bool = True, metadata: bytes = b""
) -> bytes:
    """Compress integer ``images`` of shape ``(N, ...)`` (each item with as many values as the model's
    event) losslessly with ``model``. Every item is modelled on its own; with ``independent=True`` each
    also gets its own ANS payload (decodable alone), with ``independent=False`` the items share one ANS
    stream, which saves the few bytes per item that closing a stream costs. Returns the stream (see the
    module documentation for the format). ``metadata`` (e.g. file names) is stored verbatim, covered by
    the checksum, and returned by :func:`decode` with ``with_metadata=True``."""
    c = _constriction()
    if not isinstance(metadata, bytes):
        raise TypeError(f"metadata must be bytes, got {type(metadata).__name__}")
    items = _as_items(model, images)
    fingerprint = model_fingerprint(model)
    work = _working_copy(model, fingerprint)
    item_shape = tuple(int(d) for d in items.shape[1:])
    flags = _DTYPES.index(items.dtype.type) | (0 if independent else _SHARED)
    if item_shape == _squeezed(model.event_shape) != tuple(model.event_shape):
        flags |= _SQUEEZED
    elif item_shape != tuple(model.event_shape):
        flags |= _SHAPE
    flags |= _MANY if len(items) > 1 else 0
    flags |= _META if metadata else 0
    head = bytes([FORMAT]) + fingerprint + bytes([flags])
    if flags & _SHAPE:
        head += bytes([len(item_shape)]) + b"".join(_varint(d) for d in item_shape)
    if flags & _MANY:
        head += _varint(len(items))
    if flags & _META:
        head += _varint(len(metadata)) + metadata
    xs = [torch.from_numpy(item.astype(np.float64)).reshape(1, *model.event_shape) for item in items]
    body = [head]
    with torch.no_grad():
        if independent:
            for x in xs:
                coder = c.stream.stack.AnsCoder()
                _encode_item(c, coder, work, x)
                body.append(_words_to_bytes(coder.get_compressed()))
        else:
            coder = c.stream.stack.AnsCoder()
            for x in reversed(xs):  # a stack: the first item is pushed last and popped first
                _encode_item(c, coder, work, x)
            body.append(_words_to_bytes(coder.get_compressed()))
    # every payload but the last is preceded by its length; the last runs to the check
    out = body[0] + b"".join(_varint(len(p)) + p for p in body[1:-1]) + body[-1]
    return out + _check(out, items)


def _parse(data: bytes) -> tuple[dict, list[bytes]]:
    if not isinstance(data, (bytes, bytearray, memoryview)):
        raise TypeError(f"data must be bytes, got {type(data).__name__}")
    data = bytes(data)
    if not data:
        raise CodecError("empty stream")
    r = _Reader(data)
    (fmt,) = r.take(1, "header")
    if fmt != FORMAT:
        raise CodecError(
            f"not a pushforward compressed stream of format version 2 (first byte {fmt:#04x}, expected "
            f"{FORMAT:#04x})"
        )
    info: dict = {"fingerprint": r.take(4, "header")}
    (flags,) = r.take(1, "header")
    info["independent"] = not flags & _SHARED
    if (flags & _SQUEEZED and flags & _SHAPE) or flags & 0x07 >= len(_DTYPES):
        raise CodecError("corrupted stream header (flags)")
    info["dtype"] = np.dtype(_DTYPES[flags & 0x07])
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


def _squeezed(shape: Sequence[int]) -> tuple[int, ...]:
    """``shape`` without its leading 1s (an image ``(H, W)`` for a model of ``(1, H, W)``)."""
    shape = tuple(shape)
    while len(shape) > 1 and shape[0] == 1:
        shape = shape[1:]
    return shape


def _check(before: bytes, items: np.ndarray) -> bytes:
    """The stream's check: the low 16 bits of the CRC-32 of its bytes and of the items' bytes."""
    return (zlib.crc32(items.tobytes(), zlib.crc32(before)) & 0xFFFF).to_bytes(_CHECK_BYTES, "little")


def header_size(data: bytes) -> int:
    """Bytes of ``data`` that are neither ANS payload nor metadata: header, lengths and the checksum."""
    return _parse(data)[0]["header_bytes"]


def decode(model: Flow, data: bytes, *, with_metadata: bool = False) -> np.ndarray | tuple[np.ndarray, bytes]:
    """Decompress a stream made by :func:`encode` with the same ``model``: the items, ``(N, ...)``, in their
    original dtype and shape (and the metadata with ``with_metadata=True``). Raises :class:`CodecError` for
    another model's, a truncated or a corrupted stream."""
    c = _constriction()
    info, payloads = _parse(data)
    _check_model(model)
    if info["fingerprint"] != model_fingerprint(model):
        raise CodecError("this stream was made with another model (model fingerprint mismatch)")
    if info["shape"] is None:
        info["shape"] = tuple(model.event_shape)
    elif info["shape"] == "squeezed":
        info["shape"] = _squeezed(model.event_shape)
    if int(np.prod(info["shape"])) != int(np.prod(model.event_shape)):
        raise CodecError(f"corrupted stream: item shape {info['shape']} does not fit the model")
    work = _working_copy(model, info["fingerprint"])
    items = []
    with torch.no_grad():
        coders = [c.stream.stack.AnsCoder(_bytes_to_words(p)) for p in payloads]
        for i in range(info["count"]):
            coder = coders[i] if info["independent"] else coders[0]
            try:
                x = _decode_item(c, coder, work)
            except (ValueError, RuntimeError, OverflowError) as e:
                raise CodecError(
                    f"corrupted stream: decoding failed ({str(e).splitlines()[0][:200]})"
                ) from None
            items.append(x.reshape(info["shape"]).numpy())
            if info["independent"] and not coder.is_empty():
                raise CodecError("corrupted stream: data left over after decoding an item")
        if not coders[-1].is_empty():
            raise CodecError("corrupted stream: data left over after decoding every item")
    out = np.stack(items)
    info_dtype = info["dtype"]
    lim = np.iinfo(info_dtype)
    if out.min() < lim.min or out.max() > lim.max:
        raise CodecError("corrupted stream: decoded values do not fit the stored dtype")
    out = out.astype(info_dtype)
    if _check(bytes(data[: info["crc_at"]]), out) != bytes(data[info["crc_at"] :]):
        raise CodecError("corrupted stream: checksum mismatch")
    return (out, info["metadata"]) if with_metadata else out


def code_length_bits(model: Flow, images: Sequence) -> float:
    """The model's ideal code length of ``images`` in bits, :math:`-\\sum \\log_2 P(x)` (for comparing the
    stream's real size with)."""
    items = _as_items(model, np.asarray(images))
    x = torch.from_numpy(items.astype(np.float64)).reshape(-1, *model.event_shape)
    with torch.no_grad():
        return float(-_working_copy(model, model_fingerprint(model)).log_prob(x).sum() / np.log(2))
