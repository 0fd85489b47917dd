"""Registry cases: invertible residual blocks (exact log-det mode; the stochastic modes are tested in
``tests/transforms/test_residual.py``)."""

from __future__ import annotations

from pushforward.transforms import ResidualBlock

from . import Case

CASES = [
    # perturb=0: the factory's random weights are already far from the identity, and perturbing them would
    # leave the stored power-iteration vectors stale (the spectral bound then no longer holds exactly).
    Case("residual_block", lambda: ResidualBlock(3, hidden=(16, 16), ladj_mode="exact").eval(), perturb=0.0),
    Case(
        "residual_block_context",
        lambda: ResidualBlock(
            3, hidden=(8,), context=2, ladj_mode="exact", coeff=0.9, activation="elu"
        ).eval(),
        context=2,
        perturb=0.0,
    ),
    Case(
        "residual_block_eval_exact",
        lambda: ResidualBlock(4, hidden=(16,), ladj_mode="roulette", eval_ladj_mode="exact").eval(),
        perturb=0.0,
    ),
]
