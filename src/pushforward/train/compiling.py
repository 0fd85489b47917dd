r"""``torch.compile`` for the training engine: the loss (forward and, through AOTAutograd, backward) of the
full-size batches as one compiled graph, used only where a measured break-even says it pays.

Compiling costs a fixed time :math:`C` once (seconds to minutes: tracing, then generating and building C++
or Triton kernels); each later step then takes :math:`t_c` instead of the eager :math:`t_e`. Over a run of
:math:`N` steps compiling pays when

.. math:: N\,(t_e - t_c) > C .

``TrainConfig.compile`` chooses: ``False`` (eager), ``True`` (compile whatever the run's length; a failure to
compile falls back to eager with a warning), or ``"auto"`` (the default): compile only a path measured faster
when compiled (maximum likelihood of a preset listed in :data:`MEASURED_GAIN`, from
``benchmarks/compile_breakeven.py``; anything else stays eager), and only when the run's planned steps times the
conservative saving per step, from eager steps timed in this very run, exceed the worst compile time measured
with a safety factor. Short runs (tests, quick fits) therefore never compile. Only the full-size batch shape is
compiled, with static shapes (``dynamic=False``); the last, partial batch of an epoch runs eagerly instead of
recompiling.

Reference: Ansel et al., "PyTorch 2: Faster Machine Learning Through Dynamic Python Bytecode Transformation
and Graph Compilation", ASPLOS 2024.

Example:
    >>> from pushforward.flows import MAF
    >>> from pushforward.train.losses import MaximumLikelihood
    >>> plan = CompilePlan.choose(MAF(2, layers=1, hidden=(8,)), MaximumLikelihood(), "auto", steps=100)
    >>> plan.mode
    'eager'
"""

from __future__ import annotations

import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field

import torch
from torch import Tensor, nn

__all__ = ["COMPILE_CHOICES", "MEASURED_GAIN", "CompilePlan", "compile_loss", "model_path"]

COMPILE_CHOICES = ("auto", True, False)

#: Measured by ``benchmarks/compile_breakeven.py`` (``benchmarks/results/issue31/compile_breakeven_1thread.*``;
#: AVX2 Zen 3, 1 thread, load average 3-12 on 2 cores): per model path, **half** the smallest fraction of the
#: eager step that compiling saved over the two sizes measured (D=43 and D=2; at that load the savings are
#: noisy, hence the half). Only paths whose compiled step was faster at every size are listed: MAF is not
#: (at D=43 its compiled step, with the block-triangular layers traced block by block, saved 0.5-0.8 % in two
#: quiet runs: not beyond noise; with the layers traced dense it was 5.6-9.3 % slower), nor is anything
#: unmeasured; "auto" keeps those eager. NSF-AR's saving was re-measured with the traced block layers at low
#: load: 19.4-19.5 % (12.6 % traced dense), ``compile_breakeven_traced_blocks_s4*``.
MEASURED_GAIN: dict[str, float] = {
    "NSF-autoregressive": 0.5 * 0.189,
    "NSF-coupling": 0.5 * 0.283,
    "RealNVP": 0.5 * 0.154,
}

#: The longest cold compile measured (NSF coupling at D=43: 208 s of wall time, loss forward + backward, at
#: load average 9-12 on 2 cores), times 1.5 for slower or busier machines.
COMPILE_SECONDS_BOUND = 1.5 * 208.0

#: Eager steps timed before "auto" decides (the decision uses their median).
PROBE_STEPS = 8


def model_path(model: nn.Module) -> str:
    """The name under which a model's compiled gain is measured: the class name, with NSF's variant
    (``"NSF-coupling"`` when it is built of couplings, else ``"NSF-autoregressive"``).

    Example:
        >>> from pushforward.flows import NSF
        >>> model_path(NSF(3, layers=1, hidden=(8,), variant="coupling"))
        'NSF-coupling'
    """
    name = type(model).__name__
    if name == "NSF":
        coupling = any(type(m).__name__ == "Coupling" for m in model.modules())
        return f"NSF-{'coupling' if coupling else 'autoregressive'}"
    return name


def compile_loss(model: nn.Module, loss: Callable) -> Callable[[tuple], Tensor]:
    """``batch -> loss(model, batch)`` under ``torch.compile`` (default mode, static shapes)."""

    def objective(batch: tuple) -> Tensor:
        return loss(model, batch)

    return torch.compile(objective, dynamic=False)


@dataclass
class CompilePlan:
    """What the engine does about compiling during one run; :meth:`loss` is called for every training step.

    ``mode`` is ``"eager"``, ``"probe"`` (auto: timing eager steps before deciding) or ``"compiled"``.
    """

    mode: str
    model: nn.Module
    objective: Callable
    steps: int
    gain: float = 0.0
    shape: tuple | None = None
    compiled: Callable | None = None
    eager_times: list[float] = field(default_factory=list)
    compile_seconds: float | None = None
    rows: int = 0

    @classmethod
    def choose(cls, model: nn.Module, objective: Callable, setting: object, *, steps: int) -> CompilePlan:
        """The plan for ``setting`` (``TrainConfig.compile``) and a run of ``steps`` steps."""
        if setting is False:
            return cls("eager", model, objective, steps)
        if setting is True:
            return cls("compiled", model, objective, steps)
        from .losses import MaximumLikelihood  # the objective the gains were measured with

        measured = type(objective) is MaximumLikelihood
        gain = MEASURED_GAIN.get(model_path(model), 0.0) if measured else 0.0
        if gain <= 0.0:  # not measured faster when compiled
            return cls("eager", model, objective, steps)
        return cls("probe", model, objective, steps, gain=gain)

    def loss(self, batch: tuple) -> Tensor:
        """The loss of ``batch``, compiled or eager per the plan."""
        rows = batch[0].shape[0] if batch and batch[0].dim() else 0
        self.rows = max(self.rows, rows)
        if self.mode == "compiled":
            if self.shape is None and rows == self.rows:  # never compile a partial batch's shape
                return self._first_compiled(batch)
            if _shape(batch) == self.shape:
                return self.compiled(batch)  # type: ignore[misc]
        return self.objective(self.model, batch)  # eager; or a partial batch: eager, no recompile

    def after_step(self, step: int, seconds: float) -> None:
        """Record the wall time of training step ``step`` (1-based); "auto" decides after
        :data:`PROBE_STEPS` eager steps whether the rest of the run pays for compiling."""
        if self.mode != "probe":
            return
        self.eager_times.append(seconds)
        if len(self.eager_times) >= PROBE_STEPS:
            t_eager = sorted(self.eager_times)[len(self.eager_times) // 2]
            saved = (self.steps - step) * t_eager * self.gain
            self.mode = "compiled" if saved > COMPILE_SECONDS_BOUND else "eager"

    def _first_compiled(self, batch: tuple) -> Tensor:
        """Compile on the first full batch (forward and backward, outside the step), or fall back to eager
        with a warning if compiling fails."""
        start = time.perf_counter()
        try:
            compiled = compile_loss(self.model, self.objective)
            probe = compiled(batch)
            if probe.requires_grad:
                params = [p for p in self.model.parameters() if p.requires_grad]
                torch.autograd.grad(probe, params, allow_unused=True)  # builds the backward kernels
        except Exception as e:  # any compiler failure: train eagerly instead
            warnings.warn(
                f"torch.compile failed ({type(e).__name__}: {str(e)[:300]}); training eagerly",
                RuntimeWarning,
                stacklevel=3,
            )
            self.mode = "eager"
            return self.objective(self.model, batch)
        self.compile_seconds = time.perf_counter() - start
        self.compiled, self.shape = compiled, _shape(batch)
        return compiled(batch)


def _shape(batch: tuple) -> tuple:
    return tuple((tuple(t.shape), t.dtype, t.device) for t in batch)
