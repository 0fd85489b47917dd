"""The contract-test registry: every exported transform, with how to build it and feed it.

Each module in this package (one per transform family, e.g. ``elementwise.py``, ``coupling.py``) defines
``CASES: list[Case]``; :data:`REGISTRY` collects them all, keyed by case name. ``tests/test_contract.py``
runs one parametrised contract over every case, and fails when a Transform class exported in
``pushforward.transforms.__all__`` appears in no case.
"""

from __future__ import annotations

import importlib
import pkgutil
from collections.abc import Callable
from dataclasses import dataclass, field

import torch
from torch import Tensor

from pushforward.transforms import Transform

Sampler = Callable[[int, torch.Generator], Tensor]
LadjReference = Callable[[Transform, Tensor, "Tensor | None"], Tensor]


@dataclass(frozen=True)
class Case:
    """How to test one transform configuration.

    Attributes:
        name: Unique case name (test id).
        factory: Builds the transform (float32 defaults are fine: the test converts to float64). Must
            leave it ready to use (e.g. ActNorm initialised on a batch).
        sampler: ``(n, generator) -> x`` in float64 within the transform's domain; default standard normal
            of the event shape.
        context: Context features passed (0 = none).
        atol: Tolerance of the ladj-vs-Jacobian and inverse-ladj checks.
        inverse_atol: Tolerance of the round trip.
        perturb: Std of the Gaussian noise added to every parameter before testing, so identity-initialised
            layers are tested away from the identity. 0 to keep the factory's parameters.
        reference_ladj: Override of the reference log-determinant ``(t, x, context) -> (batch,)``; the default
            is ``slogdet`` of the float64 autograd Jacobian of the flattened map (manifold transforms pass
            their volume ratio here).
        batch: Batch size used.
        slow: Mark the case as slow.
        skip: Names of checks that do not apply, mapped to the reason (``"roundtrip"``, ``"jacobian"``,
            ``"inverse_ladj"``, ``"gradients"``, ``"state_dict"``, ``"batch_consistency"``, ``"context"``).
        kind: ``"bijection"``; ``"exact_surjection"`` or ``"stochastic_surjection"`` for the layers of
            :mod:`pushforward.transforms.surjective`, ``"markov"`` for the Markov-kernel layers of
            :mod:`pushforward.transforms.stochastic`, ``"discrete"`` for bijections of integers. Layers that are
            not bijections skip the round-trip and Jacobian checks and get theirs in
            ``tests/test_contract_surjections.py``; discrete ones (``sampler`` draws integers) are skipped by
            ``tests/test_contract.py`` and checked by ``tests/discrete/test_discrete_contract.py`` (bit-exact
            round trip, ladj 0, integer/range validation).
        support: For discrete cases, the inclusive range ``(low, high)`` of valid values, or None for all
            integers.
    """

    name: str
    factory: Callable[[], Transform]
    sampler: Sampler | None = None
    context: int = 0
    atol: float = 1e-6
    inverse_atol: float = 1e-6
    perturb: float = 0.1
    reference_ladj: LadjReference | None = None
    batch: int = 4
    slow: bool = False
    skip: dict[str, str] = field(default_factory=dict)
    kind: str = "bijection"
    support: tuple[int, int] | None = None


def _collect() -> dict[str, Case]:
    cases: dict[str, Case] = {}
    for info in sorted(pkgutil.iter_modules(__path__), key=lambda m: m.name):
        module = importlib.import_module(f"{__name__}.{info.name}")
        for case in getattr(module, "CASES", []):
            if case.name in cases:
                raise RuntimeError(f"duplicate registry case name {case.name!r} in {info.name}")
            cases[case.name] = case
    return cases


def uniform_sampler(low: float, high: float, *shape: int) -> Sampler:
    """Sampler of values uniform in ``(low, high)`` with event shape ``shape``."""

    def sample(n: int, g: torch.Generator) -> Tensor:
        return low + (high - low) * torch.rand(n, *shape, generator=g, dtype=torch.float64)

    return sample


def normal_sampler(*shape: int, scale: float = 1.0) -> Sampler:
    """Sampler of standard normal values (times ``scale``) with event shape ``shape``."""

    def sample(n: int, g: torch.Generator) -> Tensor:
        return scale * torch.randn(n, *shape, generator=g, dtype=torch.float64)

    return sample


def integer_sampler(low: int, high: int, *shape: int) -> Sampler:
    """Sampler of integers uniform in ``[low, high]`` (as float64) with event shape ``shape``."""

    def sample(n: int, g: torch.Generator) -> Tensor:
        return torch.randint(low, high + 1, (n, *shape), generator=g).double()

    return sample


def warmed(t: Transform, *shape: int, n: int = 64) -> Transform:
    """Run ``t`` once in training mode on a random batch (data-dependent init), then return it in eval mode."""
    g = torch.Generator().manual_seed(123)
    with torch.no_grad():
        t.train()
        t(2.0 * torch.randn(n, *shape, generator=g) + 0.5)
    return t.eval()


REGISTRY: dict[str, Case] = _collect()  # last: the family modules import the helpers above
