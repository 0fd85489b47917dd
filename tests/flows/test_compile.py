"""torch.compile as an opt-in: the hot path of the MAF / NSF / RealNVP presets traces as one graph."""

from __future__ import annotations

import pytest
import torch

from pushforward.checks import set_validation, validation_enabled
from pushforward.flows import MAF, NSF, RealNVP

PRESETS = {
    "maf": lambda: MAF(5, layers=2, hidden=(16, 16)),
    "nsf-ar": lambda: NSF(5, layers=2, hidden=(16, 16), bins=4),
    "nsf-c": lambda: NSF(5, layers=2, hidden=(16, 16), bins=4, variant="coupling"),
    "realnvp": lambda: RealNVP(5, layers=2, hidden=(16, 16)),
}


@pytest.mark.slow
@pytest.mark.parametrize("name", sorted(PRESETS))
def test_no_graph_breaks_in_hot_path(name):
    """Dynamo traces the transform (the per-call work) and, without validation, all of log_prob, whole."""
    torch._dynamo.reset()
    flow = PRESETS[name]()
    x = torch.randn(32, 5)
    hot = torch._dynamo.explain(flow.transform)(x)
    assert hot.graph_break_count == 0, [str(b.reason)[:200] for b in hot.break_reasons]
    assert hot.graph_count == 1
    before = validation_enabled()
    set_validation(False)  # the finite-value check is data dependent: it is the one break of log_prob
    try:
        full = torch._dynamo.explain(flow.log_prob)(x)
    finally:
        set_validation(before)
    assert full.graph_break_count == 0, [str(b.reason)[:200] for b in full.break_reasons]
