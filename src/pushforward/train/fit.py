"""The thin callers of the training engine (:func:`pushforward.train.train`): :func:`fit` (maximum likelihood,
:class:`~pushforward.train.losses.MaximumLikelihood`) and :func:`fit_flow_matching` (continuous flows,
:class:`~pushforward.train.losses.FlowMatching`; the maths is in :mod:`pushforward.train.flow_matching`)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import torch
from torch import Tensor, nn
from torch.utils.data import DataLoader

from ..flows.core import Flow
from .config import TrainConfig
from .data import Data, as_loader, unpack
from .engine import History
from .engine import train as run_training
from .losses import FlowMatching, MaximumLikelihood

__all__ = ["EmbeddedFlow", "History", "evaluate_nll", "fit", "fit_flow_matching"]

#: Adam's peak rate of :func:`fit_flow_matching` unless given (a regression loss; TrainConfig's ``2e-3`` was
#: chosen for maximum likelihood).
FLOW_MATCHING_LR = 1e-3


@torch.no_grad()
def evaluate_nll(flow: nn.Module, data: Data, batch_size: int = 1024) -> float:
    """Mean negative log-likelihood (nats per sample) of ``data`` under ``flow``, in eval mode.

    Example:
        >>> from pushforward.flows import RealNVP
        >>> evaluate_nll(RealNVP(2, layers=1, hidden=(4,)), torch.zeros(5, 2)) > 0
        True
    """
    was_training = flow.training
    flow.eval()
    params = list(flow.parameters())
    device = params[0].device if params else None
    total, count = 0.0, 0
    try:
        for batch in as_loader(data, flow, batch_size, shuffle=False):
            parts = unpack(batch, device)
            lp = flow.log_prob(parts[0], parts[1] if len(parts) > 1 else None)
            total += float(-lp.sum())
            count += lp.numel()
    finally:
        flow.train(was_training)
    if count == 0:
        raise ValueError("no rows to evaluate (empty data)")
    return total / count


def fit(
    flow: nn.Module,
    train: Data,
    val: Data | None = None,
    *,
    config: TrainConfig | None = None,
    progress: bool = True,
    optimizer: torch.optim.Optimizer | None = None,
    callback: Callable[[int, float], None] | None = None,
    checkpoint: str | Path | None = None,
    checkpoint_every: int | None = None,
    resume: bool = False,
    distributed: bool = False,
    diagnostics: bool = False,
    fingerprint: str | None = None,
    **settings: object,
) -> History:
    """Fit ``flow`` by maximum likelihood (in place).

    Args:
        flow: The flow to train: a :class:`~pushforward.Flow`, or any module offering ``log_prob(x,
            context)``, ``forward = log_prob``, ``event_shape``, ``context_features``, ``features``, ``dtype``;
            a ``penalty()`` method, when present, is added to the training loss.
        train: Training data: a tensor / numpy array of shape ``(N, *event_shape)``, a ``(data, context)``
            tuple for conditional flows, or a ``DataLoader`` yielding ``x`` or ``(x, context)``.
        val: Optional validation data in the same forms; enables early stopping and best-weights restore.
        config: A :class:`~pushforward.train.config.TrainConfig`; ``settings`` override its fields, e.g.
            ``steps=2000, batch_size=512, lr=2e-3, patience=10, seed=0`` (an unknown name is a ``TypeError``,
            a value that cannot work a ``ValueError``, before any step).
        progress: Show a progress bar (loss in nats per row).
        optimizer, callback, checkpoint, checkpoint_every, resume, distributed, fingerprint: See
            :func:`pushforward.train.train`.
        diagnostics: After training, run :func:`pushforward.analysis.diagnostics.invertibility` on (up to
            4096 rows of) the validation data, or the training data without ``val``; stored in
            ``History.diagnostics``.

    Returns:
        A :class:`~pushforward.train.History` (losses in nats per row).

    Raises:
        TrainingDiverged: see :func:`pushforward.train.train`.

    Example:
        >>> from pushforward.flows import RealNVP
        >>> from pushforward.data import toy
        >>> flow = RealNVP(2, layers=2, hidden=(16, 16))
        >>> history = fit(flow, toy("moons", 500), steps=20, progress=False)
    """
    cfg = (config or TrainConfig()).replace(**settings).validate()
    history = run_training(
        flow,
        MaximumLikelihood(),
        train,
        val,
        cfg,
        checkpoint=checkpoint,
        checkpoint_every=checkpoint_every,
        resume=resume,
        fingerprint=fingerprint,
        distributed=distributed,
        progress=progress,
        callback=callback,
        optimizer=optimizer,
    )
    if diagnostics:
        from ..analysis.diagnostics import invertibility

        device = next(iter(flow.parameters())).device
        source = val if val is not None else train
        loader = source if isinstance(source, DataLoader) else as_loader(source, flow, 4096, shuffle=False)
        parts = unpack(next(iter(loader)), device)
        history.diagnostics = invertibility(flow, parts[0], parts[1] if len(parts) > 1 else None).as_dict()
    return history


class EmbeddedFlow(nn.Module):
    """A conditional flow of continuous layers and an embedding network applied to the context first,
    trained together by flow matching (:meth:`flow_inputs` is what
    :class:`~pushforward.train.losses.FlowMatching` calls).

    Example:
        >>> from pushforward.flows import FFJORD
        >>> m = EmbeddedFlow(FFJORD(2, context=3, hidden=(8,)), nn.Linear(5, 3))
        >>> m.flow_inputs(torch.zeros(4, 2), torch.zeros(4, 5))[2].shape
        torch.Size([4, 3])
    """

    def __init__(self, flow: Flow, embedding: nn.Module) -> None:
        super().__init__()
        if not isinstance(embedding, nn.Module):
            raise TypeError(f"embedding must be an nn.Module, got {type(embedding).__name__}")
        self.flow, self.embedding = flow, embedding
        self.event_shape = flow.event_shape
        self.context_features = flow.context_features

    def flow_inputs(self, x: Tensor, context: Tensor | None) -> tuple[Flow, Tensor, Tensor | None]:
        """``(flow, x, embedded context)``."""
        return self.flow, x, (self.embedding(context) if context is not None else None)


def fit_flow_matching(
    flow: Flow,
    train: Data,
    val: Data | None = None,
    *,
    sigma_min: float = 1e-4,
    time_exponent: float = 0.0,
    embedding: nn.Module | None = None,
    config: TrainConfig | None = None,
    checkpoint: str | Path | None = None,
    resume: bool = False,
    progress: bool = False,
    callback=None,
    **settings: object,
) -> History:
    r"""Train the continuous flow ``flow`` (in place) by conditional flow matching: a thin caller of
    :func:`pushforward.train.train` with the :class:`~pushforward.train.losses.FlowMatching` loss.

    The loss is :func:`~pushforward.train.flow_matching.flow_matching_loss` (optimal-transport path,
    :math:`\sigma_{\min}`); see :mod:`pushforward.train.flow_matching` for the direction convention.
    Afterwards ``flow.log_prob`` (the exact ODE log-density) and ``flow.sample`` work as for a
    maximum-likelihood FFJORD.

    Args:
        flow: A :class:`Flow` whose transform is a :class:`~pushforward.transforms.ContinuousFlow` or a
            ``Compose`` of them (the ``FFJORD`` preset); its dynamics must accept one time per row (the
            default :class:`~pushforward.transforms.TimeMLP` does).
        train: Data ``(N, D)`` (tensor or array), or a ``(data, context)`` tuple for a conditional flow, or a
            ``DataLoader`` yielding ``x`` or ``(x, context)``.
        val: Validation data in the same forms: early stopping on the validation loss (computed with base
            draws and times fixed once, so it is deterministic) and best-weights restore.
        sigma_min: :math:`\sigma_{\min}` of the path, in ``[0, 1)``.
        time_exponent: :math:`\beta` of the time density :math:`\propto s^\beta` (0: uniform).
        embedding: Optional network applied to the context before the flow sees it, trained jointly (the
            contexts in ``train``/``val`` are then its inputs: pass ``DataLoader`` objects).
        config: A :class:`~pushforward.train.config.TrainConfig` (default: its defaults with ``lr``
            ``FLOW_MATCHING_LR``, 1e-3); ``settings`` (any of its fields, e.g. ``steps=2000, lr=3e-3,
            ema=0.999``) override it. ``seed`` seeds shuffling, base draws and times
            and leaves the global RNG untouched.
        checkpoint, resume, progress, callback: See :func:`pushforward.train.train`.

    Returns:
        A :class:`~pushforward.train.History` (flow-matching loss per evaluation round).

    Raises:
        TrainingDiverged: too many non-finite batches, non-finite weights or no finite validation loss.

    Example:
        >>> from pushforward.flows import FFJORD
        >>> from pushforward.data import toy
        >>> flow = FFJORD(2, hidden=(32, 32), trace="exact")
        >>> history = fit_flow_matching(flow, toy("8gaussians", 1000), steps=20, seed=0)
        >>> flow.log_prob(torch.zeros(1, 2)).shape
        torch.Size([1])
    """
    loss = FlowMatching(sigma_min=sigma_min, time_exponent=time_exponent)
    cfg = (config or TrainConfig(lr=FLOW_MATCHING_LR)).replace(**settings).validate()
    model = EmbeddedFlow(flow, embedding) if embedding is not None else flow
    history = run_training(
        model,
        loss,
        train,
        val,
        cfg,
        checkpoint=checkpoint,
        resume=resume,
        progress=progress,
        callback=callback,
    )
    flow.eval()
    return history
