"""Registry cases: the Markov-kernel layers of stochastic normalizing flows (kind ``"markov"``)."""

from __future__ import annotations

import torch
from torch import nn

from pushforward.registry import Registered
from pushforward.transforms import Affine, Compose, Langevin, MetropolisHastings

from . import Case

_MARKOV = {
    "roundtrip": "a Markov kernel is not invertible; its path weights are tested in test_stochastic",
    "jacobian": "the path weight is not a log-determinant",
    "batch_consistency": "draws noise",
    "state_dict": "draws noise (seeded state_dict check in test_contract_surjections)",
}


class Quadratic(Registered, nn.Module):
    """``log p̃(x) = -½ Σ (x − 0.5)² / 0.8²``, a target for the registry's Markov layers."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return -0.5 * (((x - 0.5) / 0.8) ** 2).sum(-1)


CASES = [
    Case("langevin", lambda: Langevin(3, Quadratic(), step_size=0.05, steps=2), kind="markov", skip=_MARKOV),
    Case(
        "metropolis_hastings",
        lambda: Compose([Affine(3), MetropolisHastings(3, Quadratic(), scale=0.3, steps=3)]),
        kind="markov",
        skip=_MARKOV,
    ),
]
