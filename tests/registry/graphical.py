"""Registry cases: autoregressive layers with a graphical conditioner on a fixed DAG (exact bijections)."""

from __future__ import annotations

import torch

from pushforward.nets import GraphicalConditioner
from pushforward.transformers import AffineTransformer, RQSTransformer
from pushforward.transforms import MaskedAutoregressive

from . import Case

# edges 2 → 0, 2 → 1, 0 → 3, 1 → 3 (not in the natural order, so the inverse must follow the graph)
DAG = torch.tensor([[0, 0, 0, 1], [0, 0, 0, 1], [1, 1, 0, 0], [0, 0, 0, 0]], dtype=torch.float32)


def _layer(transformer, context: int = 0) -> MaskedAutoregressive:
    net = GraphicalConditioner(4, transformer.params_per_feature, (8,), context=context, structure=DAG)
    return MaskedAutoregressive(4, transformer, context=context, conditioner=net)


CASES = [
    Case("graphical_affine", lambda: _layer(AffineTransformer())),
    Case("graphical_spline", lambda: _layer(RQSTransformer(4)), atol=1e-5),
    Case("graphical_context", lambda: _layer(AffineTransformer(), context=2), context=2),
]
