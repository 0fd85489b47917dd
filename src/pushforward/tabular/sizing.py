"""How big the default tabular flow is and how fast it learns, from the size of the table: shared by
:class:`~pushforward.FlowDensity` and ``pushforward fit`` (this module needs no scikit-learn, so the command
line runs on the base install).

Example:
    >>> default_size(500)
    {'layers': 3, 'hidden': [32, 32], 'bins': 4}
"""

from __future__ import annotations

import math

__all__ = ["DEFAULT_LR", "MIN_STEPS", "STEP_RATE", "default_size", "default_steps"]

#: Adam learning rate of the default fits (``FlowDensity`` and the command line's data-sized NSF). On the
#: small tables of ``benchmarks/tabular_defaults.py`` 3e-3 beat 1e-3 by 0.4 to 1.7 nats per row under early
#: stopping, in fewer steps.
DEFAULT_LR = 3e-3
#: Steps per table value and the least number of steps of the default fit (see :func:`default_steps`).
STEP_RATE, MIN_STEPS = 0.02, 200


def default_size(n: int) -> dict:
    """NSF size for ``n`` training rows: 3 layers of width ``clip(2^round(log2(1.5 sqrt n)), 16, 128)`` (two
    hidden layers), 4 spline bins below 1000 rows, else 8."""
    width = int(min(max(2 ** round(math.log2(1.5 * math.sqrt(max(n, 1)))), 16), 128))
    return {"layers": 3, "hidden": [width, width], "bins": 4 if n < 1000 else 8}


def default_steps(n: int, d: int, batch: int) -> int:
    r"""Training steps of the default fit: 100 epochs, at least :data:`MIN_STEPS` (200) and at most
    :math:`\mathrm{clip}(0.02\,n d, 200, 3000)` (:data:`STEP_RATE` steps per table value). A step of the
    data-sized NSF costs about 18 ms of one core at 1,000 rows x 10 columns, so this keeps the default fit
    within its budget of 5 CPU-seconds per 1,000 rows of 10 columns (see
    ``benchmarks/results/tabular/README.md``: 250 steps took 4.9 to 5.0 CPU-s on a loaded machine, 400
    steps 7.1 to 7.7 and scored 0.1 to 0.2 nats per row better); early stopping often ends sooner."""
    cap = int(min(max(STEP_RATE * n * d, MIN_STEPS), 3000))
    return int(min(cap, max(MIN_STEPS, 100 * math.ceil(n / batch))))
