r"""The one guarded optimisation step shared by every training loop, and the error raised on divergence.

A step computes :math:`\nabla_\theta L`, clips it to a maximum norm and applies the optimizer, unless the
loss or the gradient norm is not finite: such a step is *skipped* (the gradients are cleared and the
parameters left as they were). A run that skips most of its steps has diverged; the training engine
(:func:`pushforward.train.train`) then raises :class:`TrainingDiverged` instead of returning a model that
only looks trained.

Gradient clipping by global norm follows Pascanu, Mikolov & Bengio, "On the difficulty of training
recurrent neural networks", ICML 2013.

Example:
    >>> import torch
    >>> w = torch.nn.Parameter(torch.ones(2))
    >>> opt = torch.optim.SGD([w], lr=0.1)
    >>> skip_nonfinite_step((w**2).sum(), [w], opt, clip_grad=1.0)
    True
    >>> skip_nonfinite_step(w.sum() * float("nan"), [w], opt, clip_grad=1.0)
    False
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import Tensor

__all__ = ["TrainingDiverged", "skip_nonfinite_step"]


class TrainingDiverged(RuntimeError):
    """Training diverged: most steps were skipped as non-finite, or no finite validation score was reached.

    Attributes:
        skipped: Number of skipped steps.
        steps: Number of steps run.
        best_val_loss: Best validation loss seen (``inf`` when none was finite, ``nan`` without validation).
        history: The training history up to the failure (a :class:`pushforward.History`), or ``None``.

    Example:
        >>> try:
        ...     raise TrainingDiverged("training diverged", skipped=9, steps=10)
        ... except RuntimeError as e:
        ...     print(e.skipped, e.steps)
        9 10
    """

    def __init__(
        self, message: str, *, skipped: int, steps: int, best_val_loss: float = math.nan, history=None
    ) -> None:
        super().__init__(message)
        self.skipped, self.steps, self.best_val_loss, self.history = skipped, steps, best_val_loss, history


def skip_nonfinite_step(
    loss: Tensor,
    params: Sequence[Tensor],
    optimizer: torch.optim.Optimizer,
    clip_grad: float | None = None,
    *,
    finite: bool | None = None,
) -> bool:
    """Backpropagate ``loss``, clip the gradient norm to ``clip_grad`` and step ``optimizer``.

    The step is skipped (gradients cleared, parameters unchanged) when the loss or the gradient norm is
    not finite. ``finite`` overrides the loss check (e.g. a verdict agreed across distributed ranks, so
    that every rank skips together). Returns whether the step was applied.

    Example:
        >>> w = torch.nn.Parameter(torch.zeros(1))
        >>> opt = torch.optim.SGD([w], lr=1.0)
        >>> skip_nonfinite_step(torch.log(w).sum(), [w], opt)  # loss -inf: skipped
        False
    """
    optimizer.zero_grad(set_to_none=True)
    if finite is None:
        finite = bool(torch.isfinite(loss.detach()).all())
    if not finite:
        return False
    loss.backward()
    max_norm = clip_grad if clip_grad is not None else math.inf
    norm = torch.nn.utils.clip_grad_norm_(list(params), max_norm)
    if not bool(torch.isfinite(norm)):
        optimizer.zero_grad(set_to_none=True)
        return False
    optimizer.step()
    return True
