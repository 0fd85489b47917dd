"""Registry cases: continuous normalizing flows (exact trace, tight float64 tolerances, tiny dynamics)."""

from __future__ import annotations

from pushforward.transforms import ContinuousFlow

from . import Case

CASES = [
    Case(
        "continuous_flow",
        lambda: ContinuousFlow(2, hidden=(8,), activation="tanh", rtol=1e-12, atol=1e-12),
        atol=1e-6,
        inverse_atol=1e-6,
        perturb=0.3,
        batch=3,
    ),
    Case(
        "continuous_flow_context",
        lambda: ContinuousFlow(
            3, hidden=(8,), context=2, method="rk4", options={"step_size": 0.01}, time=0.5
        ),
        context=2,
        atol=1e-6,
        inverse_atol=1e-6,
        batch=3,
    ),
]
