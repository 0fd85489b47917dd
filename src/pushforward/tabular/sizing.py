"""How big the default tabular flow is and how fast it learns, from the size of the table: shared by
:class:`~pushforward.FlowDensity` and ``pushforward fit`` (this module needs no scikit-learn, so the command
line runs on the base install).

Example:
    >>> default_size(500)
    {'layers': 3, 'hidden': [32, 32], 'bins': 4}
"""

from __future__ import annotations

import math

__all__ = ["DEFAULT_LR", "default_size"]

#: Adam learning rate of the default fits (``FlowDensity`` and the command line's data-sized NSF). On the
#: small tables of ``benchmarks/tabular_defaults.py`` 3e-3 beat 1e-3 by 0.4 to 1.7 nats per row under early
#: stopping, in fewer steps.
DEFAULT_LR = 3e-3


def default_size(n: int) -> dict:
    """NSF size for ``n`` training rows: 3 layers of width ``clip(2^round(log2(1.5 sqrt n)), 16, 128)`` (two
    hidden layers), 4 spline bins below 1000 rows, else 8."""
    width = int(min(max(2 ** round(math.log2(1.5 * math.sqrt(max(n, 1)))), 16), 128))
    return {"layers": 3, "hidden": [width, width], "bins": 4 if n < 1000 else 8}
