"""Training: one engine (:func:`train`) minimising a loss object (:mod:`~pushforward.train.losses`) under
one set of settings (:class:`TrainConfig`); :func:`fit` (maximum likelihood), :func:`fit_flow_matching` and
:func:`fit_images` are thin callers of it."""

from ..transforms.reversible import ReversibleCompose, saved_tensor_bytes
from .config import TrainConfig
from .engine import History, train
from .fit import evaluate_nll, fit, fit_flow_matching
from .losses import BitsPerDim, FlowMatching, MaximumLikelihood
from .step import TrainingDiverged, skip_nonfinite_step

__all__ = [
    "BitsPerDim",
    "FlowMatching",
    "History",
    "MaximumLikelihood",
    "ReversibleCompose",
    "TrainConfig",
    "TrainingDiverged",
    "evaluate_nll",
    "fit",
    "fit_flow_matching",
    "saved_tensor_bytes",
    "skip_nonfinite_step",
    "train",
]
