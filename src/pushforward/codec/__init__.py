r"""Lossless compression with flows and an ANS entropy coder (the ``constriction`` package).

A flow's likelihood is a code length. Two coders share one compact stream format
(:mod:`~pushforward.codec.stream`, version 2: a format byte, the model's fingerprint, a flags byte, the
item shape, count and metadata only when needed; one payload per item or one shared; a 16-bit check over
the stream and the decoded items -- 8 bytes beyond the payload for one image):

* **discrete** (:mod:`~pushforward.codec.discrete`): an integer discrete flow
  (:class:`~pushforward.flows.IDF`, :class:`~pushforward.flows.AutoregressiveIDF`) or a categorical one
  (:func:`~pushforward.flows.DiscreteFlow`) has an exact pmf; its latent is pushed by its base,
  :math:`-\log_2 P(x)` bits plus a few bytes per stream.
* **bits-back** (:mod:`~pushforward.codec.bitsback`): a continuous image flow wrapped in a
  :class:`~pushforward.flows.dequantization.DequantizedFlow` (Glow, RealNVPImage) codes an image through its
  dequantization noise, :math:`-\log_2 p(x + u) + \log_2 q(u \mid x)` bits per image in a chain of
  images, plus a one-off initial-bits cost.

:func:`encode` / :func:`decode` pick the coder from the model. A stream made with another model
(fingerprint), a truncated stream (lengths, the decoder), or a corrupted one (the decoder, else the 16-bit
check, which also covers the decoded items) is refused with :class:`CodecError`; a damaged stream returns a
wrong image with probability at most :math:`2^{-16}` (see :mod:`~pushforward.codec.stream`).

Portability: tables come from floating-point network outputs (float64, on one thread for the bits-back
coder), so decode on the platform and library versions that encoded; a platform that rounds differently is
caught by the check, not silently.

Reference: Duda, "Asymmetric numeral systems", 2009; Bamler, "Understanding Entropy Coding With Asymmetric
Numeral Systems (ANS): a Statistician's Perspective", 2022 (the ``constriction`` library); Hoogeboom,
Peters, van den Berg & Welling, "Integer Discrete Flows and Lossless Compression", NeurIPS 2019; Townsend,
Bird & Barber, "Practical lossless compression with latent variables using bits back coding", ICLR 2019.

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
import weakref
from collections.abc import Sequence

import numpy as np
import torch
from torch import Tensor

from ..distributions.discretized import Categorical
from ..flows.core import Flow
from ..flows.dequantization import DequantizedFlow
from . import bitsback, discrete
from .stream import DTYPES as _DTYPES
from .stream import (
    CodecError,
    SymbolCoder,
    bytes_to_words,
    check_crc,
    model_fingerprint,
    parse,
    resolve_shape,
    words_to_bytes,
)
from .stream import write as _write

__all__ = ["CodecError", "code_length_bits", "decode", "encode", "header_size", "model_fingerprint"]


def _check_model(model) -> None:
    if isinstance(model, DequantizedFlow):
        bitsback.check_model(model)
    else:
        discrete.check_model(model)


def _as_items(model, images: object) -> np.ndarray:
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
    base = getattr(model, "base", None)
    if isinstance(base, Categorical) and (images.min() < 0 or images.max() >= base.categories):
        raise ValueError(f"values must lie in [0, {base.categories - 1}] for this categorical flow")
    if isinstance(model, DequantizedFlow) and (images.min() < 0 or images.max() >= model.levels):
        raise ValueError(f"pixel values must lie in [0, {model.levels - 1}] for this model")
    return images


_WORK: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def _working_copy(model, fingerprint: bytes):
    """A float64 copy of ``model`` in eval mode, cached per model while its fingerprint is unchanged."""
    _check_model(model)
    cached = _WORK.get(model)
    if cached is None or cached[0] != fingerprint:
        cached = (fingerprint, copy.deepcopy(model).double().eval())
        _WORK[model] = cached
    return cached[1]


def _encode_discrete(work: Flow, xs: list[Tensor], independent: bool) -> list[bytes]:
    if independent:
        out = []
        for x in xs:
            coder = SymbolCoder()
            discrete.encode_item(coder, work, x)
            out.append(words_to_bytes(coder.words()))
        return out
    coder = SymbolCoder()
    for x in reversed(xs):  # a stack: the first item is pushed last and popped first
        discrete.encode_item(coder, work, x)
    return [words_to_bytes(coder.words())]


def _decode_discrete(work: Flow, payloads: list[bytes], count: int, independent: bool) -> list[Tensor]:
    coders = [SymbolCoder(bytes_to_words(p)) for p in payloads]
    items = []
    for i in range(count):
        coder = coders[i] if independent else coders[0]
        items.append(discrete.decode_item(coder, work))
        if independent and not coder.is_empty():
            raise CodecError("corrupted stream: data left over after decoding an item")
    if not coders[-1].is_empty():
        raise CodecError("corrupted stream: data left over after decoding every item")
    return items


def encode(
    model: Flow | DequantizedFlow,
    images: np.ndarray | Tensor,
    *,
    independent: bool = True,
    metadata: bytes = b"",
) -> bytes:
    """Compress integer ``images`` of shape ``(N, ...)`` (each item with as many values as the model's
    event) losslessly with ``model`` (a discrete flow, or a :class:`~pushforward.flows.dequantization.DequantizedFlow`
    for bits-back coding). Every item is modelled on its own; with ``independent=True`` each also gets its
    own payload (decodable alone), with ``independent=False`` the items share one ANS stack (a bits-back
    chain pays its initial bits once). ``metadata`` (e.g. file names) is stored verbatim, covered by the
    checksum, and returned by :func:`decode` with ``with_metadata=True``."""
    if not isinstance(metadata, bytes):
        raise TypeError(f"metadata must be bytes, got {type(metadata).__name__}")
    _check_model(model)
    items = _as_items(model, images)
    fingerprint = model_fingerprint(model)
    work = _working_copy(model, fingerprint)
    xs = [torch.from_numpy(item.astype(np.float64)).reshape(1, *model.event_shape) for item in items]
    with torch.no_grad():
        if isinstance(model, DequantizedFlow):
            payloads = bitsback.encode_payloads(work, xs, independent)
        else:
            payloads = _encode_discrete(work, xs, independent)
    return _write(fingerprint, items, payloads, independent, metadata, model.event_shape)


def header_size(data: bytes) -> int:
    """Bytes of ``data`` that are neither payload nor metadata: header, lengths and the checksum."""
    return parse(data)[0]["header_bytes"]


def decode(model, data: bytes, *, with_metadata: bool = False) -> np.ndarray | tuple[np.ndarray, bytes]:
    """Decompress a stream made by :func:`encode` with the same ``model``: the items, ``(N, ...)``, in their
    original dtype and shape (and the metadata with ``with_metadata=True``). Raises :class:`CodecError` for
    another model's, a truncated or a corrupted stream."""
    info, payloads = parse(data)
    _check_model(model)
    if info["fingerprint"] != model_fingerprint(model):
        raise CodecError("this stream was made with another model (model fingerprint mismatch)")
    info["shape"] = resolve_shape(info, model.event_shape)
    if int(np.prod(info["shape"])) != int(np.prod(model.event_shape)):
        raise CodecError(f"corrupted stream: item shape {info['shape']} does not fit the model")
    work = _working_copy(model, info["fingerprint"])
    with torch.no_grad():
        try:
            if isinstance(model, DequantizedFlow):
                xs = bitsback.decode_payloads(work, payloads, info["count"], info["independent"])
            else:
                xs = _decode_discrete(work, payloads, info["count"], info["independent"])
        except CodecError:
            raise
        except (ValueError, RuntimeError, OverflowError, IndexError) as e:
            raise CodecError(f"corrupted stream: decoding failed ({str(e).splitlines()[0][:200]})") from None
    out = np.stack([x.reshape(info["shape"]).numpy() for x in xs])
    lim = np.iinfo(info["dtype"])
    if out.min() < lim.min or out.max() > lim.max:
        raise CodecError("corrupted stream: decoded values do not fit the stored dtype")
    out = out.astype(info["dtype"])
    check_crc(data, info, out)
    return (out, info["metadata"]) if with_metadata else out


def code_length_bits(model, images: Sequence) -> float:
    r"""The model's ideal code length of ``images`` in bits: :math:`-\sum \log_2 P(x)` for a discrete flow;
    for a :class:`~pushforward.flows.dequantization.DequantizedFlow` the one-sample bits-back estimate
    :math:`\sum -\log_2 p(x + u) + \log_2 q(u \mid x)` (its bits/dim times the pixels)."""
    items = _as_items(model, np.asarray(images))
    x = torch.from_numpy(items.astype(np.float64)).reshape(-1, *model.event_shape)
    work = _working_copy(model, model_fingerprint(model))
    with torch.no_grad():
        if isinstance(model, DequantizedFlow):
            return float(work.bits_per_dim(x).sum()) * int(np.prod(model.event_shape))
        return float(-work.log_prob(x).sum() / np.log(2))
