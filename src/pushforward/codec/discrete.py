r"""The discrete coder: an integer or categorical discrete flow's exact pmf on an ANS stack.

:func:`encode_item` maps an integer image ``x`` to the latent chunks :math:`z_k` of an
:class:`~pushforward.flows.IntegerDiscreteFlow` and lets the base push every chunk, finest first, coarsest
last; :func:`decode_item` has the base pop the coarsest chunk first, inverts that level, and hands the
recovered kept part to the base for the next chunk, down to the image (Hoogeboom et al. 2019, Sec. 4).
A categorical discrete flow (:func:`~pushforward.flows.DiscreteFlow`) and an
:class:`~pushforward.flows.AutoregressiveIDF` (integer couplings, possibly none, in front of an
:class:`~pushforward.distributions.AutoregressiveLogisticMixture`, which pushes the last pixel first and pops
in raster order, each pixel's tables from the already-decoded window) are one chunk under their base:
``x`` is mapped to ``z``, the base pushes it; decoding inverts the transform on the popped ``z``.

The base decides how its symbols are coded (an autoregressive base codes element by element): it
implements ``encode_symbols(coder, k, z, kept, context=None)`` (push chunk ``k`` given its kept part)
and ``decode_symbols(coder, k, kept, context=None) -> Tensor`` (pop it, shaped ``(1, *chunk_shape)``),
with ``coder`` a :class:`~pushforward.codec.stream.SymbolCoder`.

Tables are computed in float64 from the model; encoder and decoder compute them from the same integers, so
they agree on one machine and library build.

Reference: Hoogeboom, Peters, van den Berg & Welling, "Integer Discrete Flows and Lossless Compression",
NeurIPS 2019; Tran, Vafa, Agrawal, Dinh & Poole, "Discrete Flows: Invertible Generative Models of Discrete
Data", NeurIPS 2019.

Example:
    >>> import torch
    >>> from pushforward.flows import IDF
    >>> from pushforward.codec.stream import SymbolCoder
    >>> flow = IDF((1, 4, 4), levels=2, layers=1, hidden=(8,), components=2).double().eval()
    >>> x = torch.randint(0, 256, (1, 1, 4, 4)).double()
    >>> coder = SymbolCoder()
    >>> with torch.no_grad():
    ...     encode_item(coder, flow, x)
    ...     bool((decode_item(coder, flow) == x).all())
    True
"""

from __future__ import annotations

import torch
from torch import Tensor

from ..distributions.discretized import Categorical
from ..flows.core import Flow
from ..flows.discrete import AutoregressiveIDF, IntegerDiscreteFlow
from .stream import SymbolCoder

__all__ = ["check_model", "decode_item", "encode_item"]


def check_model(model: Flow) -> None:
    """TypeError unless ``model`` is an integer discrete flow (multi-scale, or with an autoregressive prior)
    or a categorical one whose base codes symbols."""
    if not (
        isinstance(model, (IntegerDiscreteFlow, AutoregressiveIDF))  # integer transforms only
        or (isinstance(model, Flow) and isinstance(model.base, Categorical))
    ):
        raise TypeError(
            "the codec takes an IntegerDiscreteFlow (pushforward.flows.IDF), an AutoregressiveIDF, a "
            "categorical discrete flow (pushforward.flows.DiscreteFlow) or, for bits-back coding, a "
            "DequantizedFlow; "
            f"got {type(model).__name__}"
        )
    if not (hasattr(model.base, "encode_symbols") and hasattr(model.base, "decode_symbols")):
        raise TypeError(
            f"the base {type(model.base).__name__} does not implement encode_symbols/decode_symbols"
        )


def encode_item(coder: SymbolCoder, model: Flow, x: Tensor) -> None:
    """Push one item ``x`` of shape ``(1, *event_shape)`` (float64, integer values)."""
    if not isinstance(model, IntegerDiscreteFlow):
        model.base.encode_symbols(coder, 0, model.transform(x)[0], None)
        return
    chunks, kept = model.latents(x)
    for k, z in enumerate(chunks):  # finest first: the decoder pops the coarsest first
        model.base.encode_symbols(coder, k, z, kept[k] if k < len(kept) else None)


def decode_item(coder: SymbolCoder, model: Flow) -> Tensor:
    """Pop one item pushed by :func:`encode_item`; returns ``(1, *event_shape)`` in float64."""
    if not isinstance(model, IntegerDiscreteFlow):
        z = model.base.decode_symbols(coder, 0, None)  # (1, *base.event_shape)
        return model.transform.inverse(z.to(torch.float64))[0]
    top = len(model.levels) - 1
    h: Tensor | None = None
    for k in range(top, -1, -1):
        z = model.base.decode_symbols(coder, k, h if k < top else None).to(torch.float64)
        h = z if k == top else torch.cat([h, z], 1)
        h = model.levels[k].inverse(h)[0]
    return h
