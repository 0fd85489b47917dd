r"""The ensemble of tabular models that ``FlowDensity(ensemble=K)`` fits, as one model that saves in the one
file format: :class:`FlowModelEnsemble`, an :class:`~pushforward.flows.Ensemble` of
:class:`~pushforward.tabular.FlowModel` members with the members' numpy API (columns by name, scores on
each column's measure, rows rounded into the support).

The density is the members' average, :math:`p(v) = \frac1K \sum_k p_k(v)`, so a row's log-likelihood is
:math:`\operatorname{logsumexp}_k \log p_k(v) - \log K` with each :math:`\log p_k` on the columns' measure
(cell probabilities for point masses, see :meth:`FlowModel.log_likelihood`); a sample picks a member
uniformly, then draws a row from it.

Reference: Lakshminarayanan, Pritzel & Blundell, "Simple and Scalable Predictive Uncertainty Estimation using
Deep Ensembles", NeurIPS 2017.

Example:
    >>> import numpy as np
    >>> from pushforward.tabular import FlowModel
    >>> x = np.random.default_rng(0).normal(size=(200, 2))
    >>> opts = {"layers": 1, "hidden": [8]}
    >>> members = [FlowModel.fit(x, "realnvp", options=opts, steps=5, seed=s, progress=False) for s in (0, 1)]
    >>> ens = FlowModelEnsemble(members)
    >>> ens.log_likelihood(x[:3]).shape, ens.sample_rows(4, seed=0).shape
    ((3,), (4, 2))
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..flows.mixture import Ensemble
from ..io import ModelFileError, load_with_config, save
from .model import (
    FlowModel,
    OutOfSupportWarning,
    _finite_history,
    check_history,
    check_validation,
    stored_quantile,
)

__all__ = ["FlowModelEnsemble", "ensemble_log_likelihood", "ensemble_rows", "load_model_file"]


def ensemble_log_likelihood(
    models: Sequence[FlowModel], x: Any, context: Any = None, *, batch_size: int = 4096
) -> np.ndarray:
    r""":math:`\operatorname{logsumexp}_k \log p_k(x) - \log K` of the rows ``x`` (``float64``, ``(N,)``), each
    :math:`\log p_k` being :meth:`FlowModel.log_likelihood`; rows outside the support score ``-inf`` with one
    :class:`~pushforward.tabular.OutOfSupportWarning` (the members share the support)."""
    scores = [models[0].log_likelihood(x, context, batch_size=batch_size)]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", OutOfSupportWarning)
        scores += [m.log_likelihood(x, context, batch_size=batch_size) for m in models[1:]]
    s = np.stack(scores)
    top = s.max(0)
    shift = np.where(np.isfinite(top), top, 0.0)  # rows where every member scores -inf stay -inf
    with np.errstate(divide="ignore"):
        return np.log(np.exp(s - shift).sum(0)) + shift - math.log(len(models))


def ensemble_rows(
    models: Sequence[FlowModel], n: int, rng: np.random.Generator, context: Any = None
) -> np.ndarray:
    """``n`` rows drawn from the equal-weight ensemble (``(n, n_columns)``), each from a uniformly chosen
    member; for a conditional ensemble ``n`` rows per context row, grouped by context row (``(m * n,
    n_columns)``), as :meth:`FlowModel.sample_rows`. ``rng`` chooses the members and seeds their draws."""
    if isinstance(n, bool) or not isinstance(n, (int, np.integer)) or n < 1:
        raise ValueError(f"the number of samples must be a positive integer, got {n!r}")
    k, cols = len(models), models[0].n_columns
    if context is None:
        which = rng.integers(0, k, int(n))
        out = np.empty((int(n), cols))
        for i, m in enumerate(models):
            rows = which == i
            if rows.any():
                out[rows] = m.sample_rows(int(rows.sum()), seed=int(rng.integers(0, 2**31 - 1)))
        return out
    m_rows = len(context)
    which = rng.integers(0, k, (m_rows, int(n)))
    out = np.empty((m_rows, int(n), cols))
    for i, m in enumerate(models):
        draws = m.sample_rows(int(n), seed=int(rng.integers(0, 2**31 - 1)), context=context)
        draws = draws.reshape(m_rows, int(n), cols)
        out[which == i] = draws[which == i]
    return out.reshape(m_rows * int(n), cols)


class FlowModelEnsemble(Ensemble):
    r"""Equally weighted :class:`~pushforward.tabular.FlowModel` members fitted to one table (the cross-fitted
    flows of ``FlowDensity(ensemble=K)``), with the :class:`FlowModel` API that the command line uses.

    ``log_prob`` of a tensor is the ensemble's log-density of dequantised rows (:class:`Ensemble`); of numpy
    rows or a ``DataFrame``, :meth:`log_likelihood`. ``sample(n)`` with an ``int`` gives rows in the user's
    units (:meth:`sample_rows`), with a shape tuple the :class:`Ensemble`'s tensor draws. :meth:`save` writes
    one model file (:func:`pushforward.io.save`); :func:`load_model_file` reads it back with the held-out
    score summary (``validation``) and the members' histories.

    Args:
        members: The fitted models: same columns, supports and context columns.

    Attributes:
        validation: Held-out score summary (:func:`~pushforward.tabular.model.summarize_scores`, e.g. of
            the out-of-fold scores of a cross-fit) for anomaly thresholds, or ``None``.

    Example:
        >>> import numpy as np
        >>> x = np.random.default_rng(1).normal(size=(200, 2))
        >>> opts = {"layers": 1, "hidden": [8]}
        >>> ens = FlowModelEnsemble([FlowModel.fit(x, "maf", options=opts, steps=5, seed=s, progress=False)
        ...                          for s in (0, 1, 2)])
        >>> ens.save("ensemble.safetensors")
        >>> again = load_model_file("ensemble.safetensors")
        >>> bool(np.allclose(again.log_likelihood(x[:5]), ens.log_likelihood(x[:5]))), len(again.members)
        (True, 3)
    """

    def __init__(self, members: Sequence[FlowModel]) -> None:
        members = list(members)
        for m in members:
            if not isinstance(m, FlowModel):
                raise TypeError(f"members must be FlowModels, got {type(m).__name__}")
        super().__init__(members)
        first = members[0]
        for m in members[1:]:
            same_support = (m.support is None) == (first.support is None) and (
                m.support is None or [s.as_dict() for s in m.support] == [s.as_dict() for s in first.support]
            )
            if m.columns != first.columns or m.context_columns != first.context_columns or not same_support:
                raise ValueError("ensemble members must share their columns, supports and context columns")
        self.validation: dict | None = None

    # ------------------------------------------------------------------ the FlowModel views
    @property
    def flow(self):
        """The first member's preset flow (every member has the same event and context shape)."""
        return self.members[0].flow

    @property
    def columns(self) -> list[str] | None:
        """Names of the columns (shared by the members)."""
        return self.members[0].columns

    @property
    def context_columns(self) -> list[str] | None:
        """Names of the context columns of a conditional ensemble."""
        return self.members[0].context_columns

    @property
    def support(self) -> list | None:
        """The column supports (shared by the members)."""
        return self.members[0].support

    @property
    def n_columns(self) -> int:
        """Number of columns of one user row."""
        return self.members[0].n_columns

    @property
    def preset(self) -> str:
        """The members' preset name."""
        return self.members[0].preset

    def check_data(self, x: Any, name: str = "data") -> np.ndarray:
        """See :meth:`FlowModel.check_data`."""
        return self.members[0].check_data(x, name)

    def support_violations(self, x: Any) -> list[dict]:
        """See :meth:`FlowModel.support_violations`."""
        return self.members[0].support_violations(x)

    # ------------------------------------------------------------------ density and samples
    def log_prob(self, x: Any, context: Any = None, *, batch_size: int = 4096) -> Any:
        """A tensor: the ensemble's log-density of dequantised rows; numpy rows or a ``DataFrame``:
        :meth:`log_likelihood`."""
        if isinstance(x, torch.Tensor):
            return super().log_prob(x, context)
        return self.log_likelihood(x, context, batch_size=batch_size)

    def log_likelihood(self, x: Any, context: Any = None, *, batch_size: int = 4096) -> np.ndarray:
        """Log-likelihood of each row on its columns' measure (:func:`ensemble_log_likelihood`)."""
        return ensemble_log_likelihood(list(self.members), x, context, batch_size=batch_size)

    def sample_rows(self, n: int, *, seed: int | None = None, context: Any = None) -> np.ndarray:
        """Rows in the user's units from uniformly chosen members (:func:`ensemble_rows`)."""
        return ensemble_rows(list(self.members), n, np.random.default_rng(seed), context)

    def sample(self, sample_shape: Any = (), context: Any = None, *, seed: int | None = None) -> Any:
        """An ``int``: :meth:`sample_rows`; a shape tuple: the :class:`Ensemble`'s tensor samples."""
        if isinstance(sample_shape, (int, np.integer)) and not isinstance(sample_shape, bool):
            return self.sample_rows(int(sample_shape), seed=seed, context=context)
        return super().sample(sample_shape, context)

    def validation_quantile(self, q: float) -> float:
        """The ``q``-quantile of :attr:`validation`."""
        return stored_quantile(self.validation, q)

    # ------------------------------------------------------------------ files
    def save(self, path: str | Path) -> None:
        """Write one model file (:func:`pushforward.io.save`): the members as registered modules, and
        ``validation`` and each member's history and held-out summary as config fields."""
        portable = FlowModelEnsemble([_portable(m) for m in self.members])
        members = [{"history": _finite_history(m.history), "validation": m.validation} for m in self.members]
        save(portable, path, config={"validation": self.validation, "members": members})


def _portable(m: FlowModel) -> FlowModel:
    """``m`` rebuilt from constructor arguments a model file holds (supports as dicts, the whitening matrix
    as a tensor); the fitted statistics come with the weights (buffers)."""
    w = m.whiten
    out = FlowModel(
        m.flow,
        m.preset,
        m.options,
        columns=m.columns,
        support=[s.as_dict() for s in m.support] if m.support is not None else None,
        whiten=None if w is None else torch.from_numpy(w),
        context_columns=m.context_columns,
    )
    out.load_state_dict(m.state_dict())
    return out


def load_model_file(
    path: str | Path, map_location: str | torch.device = "cpu"
) -> FlowModel | FlowModelEnsemble:
    """The tabular model in a model file: a :class:`FlowModel` (written by ``pushforward fit`` or
    :meth:`FlowModel.save`) or a :class:`FlowModelEnsemble` (written by :meth:`FlowModelEnsemble.save`, e.g.
    ``FlowDensity(ensemble=K).save``). Raises :class:`~pushforward.io.ModelFileError` for anything else."""
    model, cfg = load_with_config(path, map_location)
    if not isinstance(model, FlowModelEnsemble):
        return FlowModel.from_file(model, cfg, path, map_location)
    members = cfg.get("members")
    if members is not None and (not isinstance(members, list) or len(members) != len(model.members)):
        raise ModelFileError(f"{path}: 'members' must list one entry per ensemble member")
    for m, meta in zip(model.members, members or []):
        if not isinstance(meta, dict):
            raise ModelFileError(f"{path}: each 'members' entry must be a JSON object")
        m.history = check_history(meta.get("history"), path)
        m.validation = check_validation(meta.get("validation"), path)
    model.validation = check_validation(cfg.get("validation"), path)
    return model.eval()
