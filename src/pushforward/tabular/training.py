r"""Training a :class:`~pushforward.tabular.FlowModel`: split, dequantise, fit the preprocessing on the
training rows, then train the whole chain by maximum likelihood with :func:`pushforward.fit`."""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import torch
from torch import Tensor

from ..data.support import composition_groups, dequantize, support_violations
from ..io import _json_safe, build_flow
from ..transforms import Compose
from .preprocessing import WHITEN_THRESHOLD, gaussian_dependence, kept_columns, support_maps, whitening_matrix

__all__ = ["fit_flow_model"]


def fit_flow_model(
    cls: type,
    x: Any,
    preset: str,
    *,
    options: dict | None = None,
    val_fraction: float = 0.1,
    standardize: bool = True,
    seed: int | None = 0,
    columns: list[str] | None = None,
    event_shape: tuple[int, ...] | None = None,
    device: str | torch.device = "cpu",
    dtype: torch.dtype = torch.float32,
    support: list | None = None,
    holdout: int | None = None,
    context: Any = None,
    context_columns: list[str] | None = None,
    whiten: bool | str = False,
    **fit_kwargs: Any,
) -> Any:
    r"""Split off a validation set, fit the preprocessing on the training rows, build ``preset`` and train
    the whole chain (a ``cls``, i.e. :class:`~pushforward.tabular.FlowModel`) by maximum likelihood with
    :func:`pushforward.fit`.

    Args:
        x: Data rows ``(N, D)`` (finite numbers).
        preset: A name in :data:`pushforward.flows.PRESETS`.
        options: Preset options (``layers``, ``hidden``, family options); JSON-style values.
        val_fraction: Fraction of rows held out (seeded shuffle) for early stopping, best-weights restore
            and the validation score summary used for anomaly thresholds; ``0`` disables.
        standardize: Scale each mapped column to zero mean and unit variance (training-split statistics).
        whiten: Also decorrelate the standardised columns (:func:`whitening_matrix`; flat rows, ``D >= 2``;
            needs ``standardize``). ``"auto"``: when :func:`gaussian_dependence` of the standardised
            training columns exceeds :data:`WHITEN_THRESHOLD`.
        seed: Seeds the split, the initial weights, the dequantisation noise and the batch order.
        columns: Column names, stored in the model (rows are matched by name at scoring time).
        event_shape: Shape of one event when rows are flattened images etc.; default ``(D,)``.
        device, dtype: Where and in which precision to train.
        support: Per-column :class:`~pushforward.data.support.ColumnSupport` (``None``: every column real).
            Point masses are dequantised afresh in every batch (the validation split once, seeded).
        context: Conditioning rows ``(N, C)`` for :math:`p(x \mid c)`; context_columns: their names.
        holdout: Use the last ``holdout`` rows as the validation split instead of a shuffled
            ``val_fraction`` (cross-fitting passes each fold this way).
        fit_kwargs: Passed to :func:`pushforward.fit` (``steps``, ``batch_size``, ``lr``, ``patience``, ...).

    Example:
        >>> from pushforward.data.support import detect_support
        >>> from pushforward.tabular import FlowModel
        >>> rng = np.random.default_rng(0)
        >>> x = np.column_stack([rng.normal(size=300), rng.poisson(3.0, 300)])
        >>> m = fit_flow_model(FlowModel, x, "realnvp", support=detect_support(x), steps=10, progress=False)
        >>> m.support_violations(m.sample(50, seed=0))
        []
    """
    from ..train.fit import fit

    a, cx = _check_rows(x, context, val_fraction)
    if support is not None:
        if event_shape and len(tuple(event_shape)) != 1:
            raise ValueError("column supports need flat rows (no event_shape)")
        bad = support_violations(a, support, columns)
        if bad:
            v = bad[0]
            raise ValueError(
                f"{len(bad)} value(s) lie outside the declared column support, first at row {v['row']}, "
                f"column {v['column']} = {v['value']:g} ({v['support']})"
            )
    groups = composition_groups(support) if support else []
    kept = kept_columns(a.shape[1], groups)
    shape = tuple(event_shape) if event_shape else (len(kept),)
    if math.prod(shape) != len(kept):
        raise ValueError(f"event shape {shape} has {math.prod(shape)} values but the data has {len(kept)}")
    rng = np.random.default_rng(seed)
    tr_idx, va_idx = _split(a.shape[0], val_fraction, holdout, rng)
    deq = (lambda rows: dequantize(rows, support, rng)[:, kept]) if support else (lambda rows: rows[:, kept])
    tr_v, va_v = deq(a[tr_idx]), (deq(a[va_idx]) if len(va_idx) else None)
    opts = _json_safe(dict(options or {}), "options")
    with torch.random.fork_rng(devices=[]):
        if seed is not None:
            torch.manual_seed(seed)
        inner = build_flow(preset, shape, context=0 if cx is None else cx.shape[1], options=opts)
        u = torch.from_numpy(tr_v).reshape(-1, *shape)
        if support is not None:
            u = Compose(support_maps(support, kept, groups))(u)[0]
        stats = _statistics(u.reshape(len(tr_v), -1), standardize, whiten, shape)
        if cx is not None:
            sd = cx[tr_idx].std(0)
            stats.update(context_mean=cx[tr_idx].mean(0), context_scale=np.where(sd > 1e-12, sd, 1.0))
        model = cls(
            inner.to(dtype),
            preset,
            opts,
            columns=columns,
            support=support,
            context_columns=context_columns,
            **stats,
        ).to(device=device)
        dev = torch.device(device)
        c_tr = None if cx is None else torch.from_numpy(cx[tr_idx]).to(dtype)
        if support is not None and any(s.has_atoms for s in support):
            batch = fit_kwargs.get("batch_size", 256)
            train_data: Any = _dequantizing_loader(a[tr_idx], support, kept, shape, batch, seed, dtype, c_tr)
        else:
            t = torch.from_numpy(tr_v).reshape(-1, *shape).to(dtype=dtype, device=dev)
            train_data = t if c_tr is None else (t, c_tr.to(dev))
        val_data = None
        if va_v is not None:
            t = torch.from_numpy(va_v).reshape(-1, *shape).to(dtype=dtype, device=dev)
            val_data = t if cx is None else (t, torch.from_numpy(cx[va_idx]).to(dtype=dtype, device=dev))
        history = fit(model, train_data, val_data, seed=seed, **fit_kwargs)
    model.history = history.as_dict()
    rows = va_idx if len(va_idx) else tr_idx
    model.validation = model.score_summary(a[rows], context=None if cx is None else cx[rows])
    model.validation["source"] = "validation" if len(va_idx) else "train"
    return model


def _check_rows(x: Any, context: Any, val_fraction: float) -> tuple[np.ndarray, np.ndarray | None]:
    a = np.asarray(x)
    if a.dtype.kind not in "biuf":
        raise TypeError(f"data must be numeric, got dtype {a.dtype}")
    a = a.astype(np.float64)
    if a.ndim != 2 or a.shape[0] == 0 or a.shape[1] == 0:
        raise ValueError(f"data must be a non-empty 2-D array (rows, columns), got shape {a.shape}")
    if not np.isfinite(a).all():
        raise ValueError("data contains NaN or infinite values")
    if not 0.0 <= val_fraction < 1.0:
        raise ValueError(f"val_fraction must be in [0, 1), got {val_fraction}")
    cx = None
    if context is not None:
        cx = np.asarray(context, dtype=np.float64)
        if cx.ndim != 2 or cx.shape[0] != a.shape[0] or cx.shape[1] == 0 or not np.isfinite(cx).all():
            raise ValueError(f"context must be {a.shape[0]} finite rows (N, C), got shape {cx.shape}")
    return a, cx


def _split(n: int, val_fraction: float, holdout: int | None, rng: np.random.Generator):
    """Training and validation row indices (a seeded shuffle, or the last ``holdout`` rows)."""
    if holdout is not None:
        if not 0 < holdout < n:
            raise ValueError(f"holdout must leave rows on both sides, got {holdout} of {n}")
        return np.arange(n - holdout), np.arange(n - holdout, n)
    n_val = math.floor(val_fraction * n)
    if n - n_val < 1:
        n_val = 0
    perm = rng.permutation(n)
    return perm[n_val:], perm[:n_val]


def _statistics(u: Tensor, standardize: bool, whiten: bool | str, shape: tuple[int, ...]) -> dict:
    """Standardisation and whitening of the mapped training rows ``u`` (``mean``/``scale``/``whiten``)."""
    if whiten not in (True, False, "auto"):
        raise ValueError(f"whiten must be True, False or 'auto', got {whiten!r}")
    if not standardize:
        if whiten is True:
            raise ValueError("whiten=True needs standardize=True")
        return {}
    if whiten is True and len(shape) != 1:
        raise ValueError(f"whiten=True is for flat rows; the event shape is {shape}")
    mean, sd = u.mean(0), u.std(0, unbiased=False)
    scale = torch.where(
        torch.isfinite(sd) & (sd > 1e-12 * mean.abs().clamp_min(1.0)), sd, torch.ones_like(sd)
    )
    out: dict = {"mean": mean, "scale": scale}
    if len(shape) == 1 and u.shape[1] >= 2 and whiten:
        z = ((u - mean) / scale).numpy()
        if whiten is True or gaussian_dependence(z) > WHITEN_THRESHOLD:
            out["whiten"] = whitening_matrix(z)
    return out


def _dequantizing_loader(
    rows: np.ndarray,
    support: list,
    kept: list[int],
    shape: tuple[int, ...],
    batch_size: int,
    seed: int | None,
    dtype: torch.dtype,
    context: Tensor | None = None,
):
    """A shuffling ``DataLoader`` of raw rows whose point masses are dequantised afresh in every batch."""
    from torch.utils.data import DataLoader, TensorDataset

    rng = np.random.default_rng(None if seed is None else seed + 1)

    def collate(items: list):
        batch = torch.stack([t[0] for t in items]).numpy()
        v = torch.from_numpy(dequantize(batch, support, rng)[:, kept]).reshape(-1, *shape).to(dtype)
        return (v, torch.stack([t[1] for t in items])) if context is not None else (v,)

    g = torch.Generator()
    g.manual_seed(0 if seed is None else int(seed))
    tensors = [torch.from_numpy(np.ascontiguousarray(rows))] + ([context] if context is not None else [])
    return DataLoader(
        TensorDataset(*tensors), batch_size=int(batch_size), shuffle=True, collate_fn=collate, generator=g
    )
