r"""Tabular models: :class:`FlowModel`, a preset flow trained on a table, whose chain starts with the
table's preprocessing (per-column measures, standardisation, whitening), saved in the one model file
format (:mod:`pushforward.io`)."""

from __future__ import annotations

import copy
import math
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor

from ..data.support import ColumnSupport, composition_groups, support_from_config, support_violations
from ..flows.core import Flow
from ..io import ModelFileError, load_with_config, save
from ..transforms import Compose, Standardize, Transform, Whiten
from .preprocessing import cell_log_prob, check_whitening, context_vector, kept_columns, support_maps

__all__ = ["CELL_POINTS", "FlowModel", "OutOfSupportWarning"]

#: Quasi-Monte Carlo points (scrambled Sobol, fixed seed) per row for the probability of a cell.
CELL_POINTS = 16


class _TrainMethod:
    """``FlowModel.train(x, preset, ...)`` on the class builds and trains a model (:meth:`FlowModel.fit`);
    ``model.train(mode)`` on an instance is :meth:`torch.nn.Module.train` (training/eval mode)."""

    def __get__(self, obj: Any, cls: type) -> Any:
        if obj is None:
            return cls.fit
        return torch.nn.Module.train.__get__(obj, cls)


class OutOfSupportWarning(UserWarning):
    """Rows scored ``-inf`` because a value lies outside its column's support; ``violations`` lists them
    (``{"row", "column", "value", "support"}`` dicts, see :func:`~pushforward.data.support.support_violations`)."""

    def __init__(self, message: str, violations: list[dict]) -> None:
        super().__init__(message)
        self.violations = violations


class FlowModel(Flow):
    r"""A preset flow fitted to a table, with its preprocessing as the first layers of its chain.

    The chain is :math:`f = f_{\text{preset}} \circ W \circ S \circ R \circ g`: per-column maps :math:`g`
    (:class:`~pushforward.transforms.ColumnMaps`: each column's support to the real line, see
    :mod:`pushforward.data.support`), log-ratios :math:`R` of compositions
    (:class:`~pushforward.transforms.LogRatio`), standardisation :math:`S`
    (:class:`~pushforward.transforms.Standardize`, training-split statistics) and, when trained with
    ``whiten=True``, whitening :math:`W` (:class:`~pushforward.transforms.Whiten`, the inverse Cholesky
    factor of the shrunk correlation matrix, :func:`whitening_matrix`). So, as for any
    :class:`~pushforward.Flow`, ``log_prob`` of a tensor is the log-density in the user's units,

    .. math:: \log p(v) = \log p_Z(f(v)) + \log|\det \partial f / \partial v|,

    of the *dequantised* row :math:`v` (the modelled columns: every column but the last part of each
    composition, which is the total minus the others). Given numpy rows or a ``DataFrame`` (columns matched
    by name), ``log_prob`` returns :meth:`log_likelihood`: the log-likelihood on each column's measure, where
    a row with point masses (discrete levels, exact zeros) scores the log-probability of its cell, estimated
    by :data:`CELL_POINTS` quasi-Monte Carlo points,

    .. math:: \log P(\text{cell}) \approx \log \frac{\prod_j |C_j|}{K} \sum_{k=1}^K p(v_k),

    and a row outside the support scores :math:`-\infty` with an :class:`OutOfSupportWarning`.

    Args:
        flow: The preset :class:`~pushforward.Flow` (its weights are the model's trainable parameters).
        preset, options: The preset name and its options (what the model file stores).
        columns: Names of all columns (modelled and determined), in the user's order.
        support: :class:`~pushforward.data.support.ColumnSupport` per column (``None``: every column real).
        mean, scale: Standardisation of the mapped columns; ``whiten``: the whitening matrix or ``None``.
        context_mean, context_scale, context_columns: Standardisation and names of the context columns.
        history, validation: Training history and the held-out score summary (JSON dicts).

    Reference: Papamakarios et al., "Normalizing Flows for Probabilistic Modeling and Inference", JMLR 2021.

    Example:
        >>> import numpy as np
        >>> x = np.random.default_rng(0).normal(size=(500, 2))
        >>> opts = {"layers": 2, "hidden": [16]}
        >>> model = FlowModel.train(x, "realnvp", options=opts, steps=20, progress=False)
        >>> model.log_prob(x[:3]).shape
        (3,)
        >>> model.log_prob(torch.as_tensor(x[:3], dtype=torch.float32)).shape
        torch.Size([3])
    """

    def __init__(
        self,
        flow: Flow,
        preset: str,
        options: dict | None = None,
        *,
        columns: list[str] | None = None,
        support: list | None = None,
        mean: Any = None,
        scale: Any = None,
        whiten: Any = None,
        context_mean: Any = None,
        context_scale: Any = None,
        context_columns: list[str] | None = None,
        history: dict | None = None,
        validation: dict | None = None,
    ) -> None:
        if not isinstance(flow, Flow):
            raise TypeError(f"flow must be a Flow, got {type(flow).__name__}")
        support = (
            [s if isinstance(s, ColumnSupport) else ColumnSupport(**s) for s in support] if support else None
        )
        groups = composition_groups(support) if support else []
        n_all = flow.features + len(groups)
        if support is not None and len(support) != n_all:
            raise ValueError(f"support lists {len(support)} columns but the model has {n_all}")
        if columns is not None and (len(columns) != n_all or not all(isinstance(c, str) for c in columns)):
            raise ValueError(f"columns must be {n_all} names, got {columns!r}")
        kept = kept_columns(n_all, groups)
        d = flow.features
        if support is not None and len(flow.event_shape) != 1:
            raise ValueError(f"column supports need flat rows; the event shape is {flow.event_shape}")
        layers: list[Transform] = support_maps(support, kept, groups) if support is not None else []
        loc = (
            torch.zeros(d, dtype=torch.float64)
            if mean is None
            else torch.as_tensor(mean, dtype=torch.float64)
        )
        sc = (
            torch.ones(d, dtype=torch.float64)
            if scale is None
            else torch.as_tensor(scale, dtype=torch.float64)
        )
        layers.append(
            Standardize(flow.event_shape, loc.reshape(flow.event_shape), sc.reshape(flow.event_shape))
        )
        if whiten is not None:
            layers.append(Whiten(d, 0.0, check_whitening(whiten, d)))
        dtype = flow.dtype or torch.get_default_dtype()
        prep = Compose(layers).to(dtype)
        super().__init__(Compose([prep, flow.transform]), flow.base)
        self._preset_flow = (
            flow,
        )  # a view of the last layer with the base, for the model file (no new parameters)
        self.preset = str(preset).lower()
        self.options = dict(options or {})
        self.columns = list(columns) if columns else None
        self.support = support
        self.kept = kept
        self.groups = groups
        c = flow.context_features
        self.register_buffer("context_loc", context_vector(context_mean, c, 0.0).to(dtype))
        self.register_buffer("context_scale", context_vector(context_scale, c, 1.0).to(dtype))
        if not bool((self.context_scale > 0).all()):
            raise ValueError("context_scale must be positive")
        self.context_columns = list(context_columns) if context_columns else None
        self.history = history
        self.validation = validation

    # ------------------------------------------------------------------ views
    @property
    def flow(self) -> Flow:
        """The preset flow (the last layers of the chain and the base), in standardised coordinates."""
        return self._preset_flow[0]

    @property
    def preprocessing(self) -> Compose:
        """The preprocessing layers (column maps, log-ratios, standardisation, whitening)."""
        return self.transform[0]  # type: ignore[return-value]

    def _layer(self, kind: type) -> Any:
        return next((t for t in self.preprocessing if isinstance(t, kind)), None)

    @property
    def mean(self) -> np.ndarray:
        """Standardisation location of the mapped columns (``float64``)."""
        return self._layer(Standardize).loc.detach().double().cpu().numpy().reshape(-1)

    @property
    def scale(self) -> np.ndarray:
        """Standardisation scale of the mapped columns (``float64``)."""
        return self._layer(Standardize).scale.detach().double().cpu().numpy().reshape(-1)

    @property
    def whiten(self) -> np.ndarray | None:
        """The whitening matrix :math:`W` (``float64``) or ``None``."""
        w = self._layer(Whiten)
        return None if w is None else w.matrix.detach().double().cpu().numpy()

    @property
    def n_columns(self) -> int:
        """Number of columns of one user row (modelled columns plus determined composition parts)."""
        return len(self.kept) + len(self.groups)

    def _context(self, context: Tensor | None, batch_shape: tuple[int, ...] | None) -> Tensor | None:
        ctx = super()._context(context, batch_shape)
        return None if ctx is None else (ctx - self.context_loc) / self.context_scale

    # ------------------------------------------------------------------ numpy rows
    def check_data(self, x: Any, name: str = "data") -> np.ndarray:
        """``x`` (array or ``DataFrame``, columns matched by name) as a finite ``float64`` array
        ``(N, n_columns)`` in the model's column order; raises ``ValueError``/``TypeError`` naming the problem."""
        if hasattr(x, "columns") and hasattr(x, "to_numpy"):
            names = [str(c) for c in x.columns]
            if self.columns is not None:
                missing = [c for c in self.columns if c not in names]
                unknown = [
                    c for c in names if c not in self.columns and c not in (self.context_columns or [])
                ]
                if missing or unknown:
                    raise ValueError(
                        f"{name}: "
                        + "; ".join(
                            p
                            for p in (
                                f"missing column(s) {', '.join(missing)}" if missing else "",
                                f"unknown column(s) {', '.join(unknown)}" if unknown else "",
                            )
                            if p
                        )
                        + f" (the model's columns: {', '.join(self.columns)})"
                    )
                x = x[self.columns]
            x = x.to_numpy()
        a = np.asarray(x)
        if a.dtype.kind not in "biuf":
            raise TypeError(f"{name} must be numeric, got dtype {a.dtype}")
        a = a.astype(np.float64)
        if a.ndim != 2 or a.shape[1] != self.n_columns:
            raise ValueError(f"{name} has shape {a.shape}; the model expects (rows, {self.n_columns})")
        if a.shape[0] == 0:
            raise ValueError(f"{name} has no rows")
        if not np.isfinite(a).all():
            raise ValueError(f"{name} contains NaN or infinite values")
        return a

    def _context_rows(self, context: Any, rows: int | None) -> Tensor | None:
        k = self.context_features
        if k == 0:
            if context is not None:
                raise ValueError("this model is unconditional but a context was given")
            return None
        if context is None:
            raise ValueError(
                f"this model is conditional: give {k} context columns ({', '.join(self.context_columns or [])})"
            )
        if hasattr(context, "columns") and self.context_columns is not None:
            missing = [c for c in self.context_columns if c not in map(str, context.columns)]
            if missing:
                raise ValueError(f"the context misses column(s) {', '.join(missing)}")
            context = context[self.context_columns]
        c = np.asarray(context, dtype=np.float64)
        if (
            c.ndim != 2
            or c.shape[1] != k
            or (rows is not None and c.shape[0] != rows)
            or not np.isfinite(c).all()
        ):
            raise ValueError(
                f"the context must be {rows if rows is not None else 'N'} finite rows of {k} columns, "
                f"got shape {c.shape}"
            )
        return torch.from_numpy(c).to(self.dtype or torch.float32)

    def support_violations(self, x: Any) -> list[dict]:
        """Values of ``x`` outside their column's support, by row and column (see
        :func:`~pushforward.data.support.support_violations`)."""
        a = self.check_data(x)
        return [] if self.support is None else support_violations(a, self.support, self.columns)

    # ------------------------------------------------------------------ density
    def log_prob(self, x: Any, context: Any = None, *, batch_size: int = 4096) -> Any:
        """A tensor: the log-density of the dequantised rows (the :class:`~pushforward.Flow` contract). Rows
        as numpy or a ``DataFrame``: :meth:`log_likelihood` (``float64`` numpy)."""
        if isinstance(x, Tensor):
            return super().log_prob(x, context)
        return self.log_likelihood(x, context, batch_size=batch_size)

    @torch.no_grad()
    def log_likelihood(self, x: Any, context: Any = None, *, batch_size: int = 4096) -> np.ndarray:
        """Log-likelihood of each row on its columns' measure (nats, ``float64``, ``(N,)``): log-density for
        continuous values, log-probability of the cell for point masses; ``-inf`` and an
        :class:`OutOfSupportWarning` for rows outside the support."""
        a = self.check_data(x)
        ctx = self._context_rows(context, a.shape[0])
        out = np.full(a.shape[0], -np.inf)
        bad = self.support_violations(a)
        if bad:
            shown = "; ".join(
                f"row {v['row']} column {v['column']} = {v['value']:g} ({v['support']})" for v in bad[:5]
            )
            warnings.warn(
                OutOfSupportWarning(
                    f"{len({v['row'] for v in bad})} row(s) lie outside the model's support and score -inf: {shown}"
                    + (f"; and {len(bad) - 5} more" if len(bad) > 5 else ""),
                    bad,
                ),
                stacklevel=3,
            )
        ok = np.ones(a.shape[0], bool)
        ok[[v["row"] for v in bad]] = False
        if ok.any():
            out[ok] = self._cell_log_prob(
                a[ok][:, self.kept], None if ctx is None else ctx[torch.from_numpy(ok)], batch_size
            )
        return out

    def _cell_log_prob(self, v: np.ndarray, ctx: Tensor | None, batch_size: int) -> np.ndarray:
        """Log-probability of each row's cell (log-density where it has no point mass)."""
        sup = [self.support[j] if self.support is not None else None for j in self.kept]

        def density(points: np.ndarray, rows: np.ndarray) -> np.ndarray:
            return self._density(points, None if ctx is None else ctx[torch.from_numpy(rows)], batch_size)

        return cell_log_prob(v, sup, density, points=CELL_POINTS)

    def _density(self, v: np.ndarray, ctx: Tensor | None, batch_size: int) -> np.ndarray:
        """Log-density of dequantised rows (finite ``float64`` numpy), in the model's dtype and on its device,
        with a ``float64`` retry for rows that overflow or round onto a bound in that dtype."""
        self.eval()
        dtype = self.dtype or torch.float32
        dev = self.context_loc.device
        lp = np.full(v.shape[0], -np.inf)
        t = torch.from_numpy(v).reshape(-1, *self.event_shape)
        for i in range(0, v.shape[0], batch_size):
            xb = t[i : i + batch_size].to(dtype)
            fine = torch.isfinite(xb.reshape(xb.shape[0], -1)).all(1)
            if bool(fine.any()):
                cb = None if ctx is None else ctx[i : i + batch_size][fine].to(dev)
                try:
                    out = super().log_prob(xb[fine].to(dev), cb)
                except ValueError:  # a value rounded onto a bound in this dtype: the float64 retry below
                    continue
                lp[i : i + batch_size][fine.numpy()] = out.double().cpu().numpy()
        bad = ~np.isfinite(lp)
        if bad.any() and dtype != torch.float64:
            m64 = copy.deepcopy(self).double().cpu()
            c64 = None if ctx is None else ctx[torch.from_numpy(bad)].double().cpu()
            lp[bad] = Flow.log_prob(m64, t[torch.from_numpy(bad)], c64).numpy()
            bad = ~np.isfinite(lp)
        if bad.any():
            warnings.warn(
                f"{int(bad.sum())} of {lp.size} rows have a non-finite log-likelihood even in float64 (far "
                "outside the data the model was fitted on); they are reported as -inf",
                RuntimeWarning,
                stacklevel=4,
            )
            lp[bad] = -np.inf
        return lp

    # ------------------------------------------------------------------ sampling
    @torch.no_grad()
    def sample_rows(self, n: int, *, seed: int | None = None, context: Any = None) -> np.ndarray:
        """``n`` rows in the user's units (``float64``, ``(n, n_columns)``), every value inside its column's
        support (point masses rounded to their value, determined parts filled in); for a conditional model,
        ``n`` rows for each of the ``m`` ``context`` rows, grouped by context row (``(m * n, n_columns)``)."""
        if not isinstance(n, (int, np.integer)) or isinstance(n, bool) or n <= 0:
            raise ValueError(f"the number of samples must be a positive integer, got {n!r}")
        m64 = (
            copy.deepcopy(self).double().cpu()
            if self.dtype != torch.float64 or self.context_loc.is_cuda
            else self
        )
        m64.eval()
        ctx = self._context_rows(context, None)
        with torch.random.fork_rng(devices=[]):
            if seed is not None:
                torch.manual_seed(seed)
            try:
                v = Flow.sample(m64, (int(n),), None if ctx is None else ctx.double())
            except NotImplementedError:
                raise ValueError(f"preset {self.preset!r} cannot sample (it has no inverse)") from None
        if ctx is not None:
            v = v.transpose(0, 1)
        return self.rows_from_dequantised(v.reshape(-1, len(self.kept)).cpu().numpy())

    def rows_from_dequantised(self, v: np.ndarray) -> np.ndarray:
        """Dequantised modelled columns ``(N, D')`` → rows of all columns in the user's units: determined
        composition parts filled in, every value rounded into its column's support (point masses to their
        value)."""
        v = np.asarray(v, dtype=np.float64).reshape(-1, len(self.kept))
        out = np.empty((v.shape[0], self.n_columns))
        out[:, self.kept] = v
        for cols, total in self.groups:
            out[:, cols[-1]] = total - out[:, cols[:-1]].sum(1)
        if self.support is not None:
            for j, s in enumerate(self.support):
                out[:, j] = s.round(out[:, j])
        return out

    def sample(self, sample_shape: Any = (), context: Any = None, *, seed: int | None = None) -> Any:
        """An ``int`` count: :meth:`sample_rows` (numpy rows in the user's units, rounded into the support);
        a shape tuple: the :class:`~pushforward.Flow` contract (dequantised tensor rows)."""
        if isinstance(sample_shape, (int, np.integer)) and not isinstance(sample_shape, bool):
            return self.sample_rows(int(sample_shape), seed=seed, context=context)
        return super().sample(sample_shape, context)

    # ------------------------------------------------------------------ training
    train = _TrainMethod()

    @classmethod
    def fit(cls, x: Any, preset: str, **kwargs: Any) -> FlowModel:
        """Build and train a model on the rows ``x``: see :func:`~pushforward.tabular.training.fit_flow_model`
        for the arguments (``FlowModel.train(x, preset, ...)`` is the same call)."""
        from .training import fit_flow_model

        return fit_flow_model(cls, x, preset, **kwargs)

    def score_summary(self, x: Any, context: Any = None) -> dict:
        """Mean, std, count and 1001 quantiles (levels 0, 0.001, ..., 1) of the log-likelihoods of ``x``."""
        return summarize_scores(self.log_likelihood(x, context))

    def validation_quantile(self, q: float) -> float:
        """The ``q``-quantile of the stored held-out log-likelihoods (interpolated on the 1001-point grid)."""
        return stored_quantile(self.validation, q)

    # ------------------------------------------------------------------ files
    def config(self) -> dict:
        """The JSON config of the model file (without format fields and checksum)."""
        w = self.whiten
        return {
            "preset": self.preset,
            "event_shape": list(self.flow.event_shape),
            "context": int(self.flow.context_features),
            "options": self.options,
            "dtype": str(self.dtype or torch.float32).replace("torch.", ""),
            "standardize": {
                "mean": self.mean.tolist(),
                "scale": self.scale.tolist(),
                **({"whiten": w.tolist()} if w is not None else {}),
            },
            "columns": self.columns,
            "history": _finite_history(self.history),
            "validation": self.validation,
            "support": [s.as_dict() for s in self.support] if self.support is not None else None,
            "context_standardize": {
                "mean": self.context_loc.double().cpu().tolist(),
                "scale": self.context_scale.double().cpu().tolist(),
                "columns": self.context_columns,
            },
        }

    def save(self, path: str | Path) -> None:
        """Write the model file (safetensors weights + JSON config), atomically."""
        save(self.flow, path, config=self.config())

    @classmethod
    def load(cls, path: str | Path, map_location: str | torch.device = "cpu") -> FlowModel:
        """Read a model file written by :meth:`save` (see :func:`pushforward.io.load_with_config`)."""
        flow, cfg = load_with_config(path, map_location)
        return cls.from_file(flow, cfg, path, map_location)

    @classmethod
    def from_file(
        cls, flow: Any, cfg: dict, path: str | Path, map_location: str | torch.device = "cpu"
    ) -> FlowModel:
        """The model of a tabular model file from what :func:`pushforward.io.load_with_config` read from it
        (the preset flow and the config); raises :class:`~pushforward.io.ModelFileError`."""
        if not isinstance(flow, Flow) or not isinstance(cfg.get("preset"), str):
            raise ModelFileError(f"{path}: not a tabular model file (write one with FlowModel.save)")
        std = cfg.get("standardize") or {}
        history = check_history(cfg.get("history"), path)
        validation = check_validation(cfg.get("validation"), path)
        ctx = cfg.get("context_standardize") or {}
        try:
            for v in (
                std.get("mean"),
                std.get("scale"),
                std.get("whiten"),
                ctx.get("mean"),
                ctx.get("scale"),
            ):
                if v is not None and not np.isfinite(np.asarray(v, dtype=np.float64)).all():
                    raise ValueError("non-finite statistics")
            model = cls(
                flow,
                cfg["preset"],
                cfg.get("options"),
                columns=cfg.get("columns"),
                support=support_from_config(cfg.get("support")),
                mean=std.get("mean"),
                scale=std.get("scale"),
                whiten=std.get("whiten"),
                context_mean=ctx.get("mean"),
                context_scale=ctx.get("scale"),
                context_columns=ctx.get("columns"),
                history=history,
                validation=validation,
            )
        except (ValueError, TypeError, RuntimeError) as e:
            raise ModelFileError(f"{path}: bad preprocessing in the config ({e})") from None
        return model.to(map_location).eval()


def summarize_scores(s: np.ndarray) -> dict:
    """Mean, std, count and 1001 quantiles (levels 0, 0.001, ..., 1) of the finite log-likelihoods ``s``."""
    finite = s[np.isfinite(s)]
    if finite.size == 0:
        raise ValueError("every log-likelihood is non-finite; the model is broken")
    return {
        "mean": float(finite.mean()),
        "std": float(finite.std()),
        "n": int(s.size),
        "quantiles": [float(q) for q in np.quantile(finite, np.linspace(0, 1, 1001))],
    }


def stored_quantile(validation: dict | None, q: float) -> float:
    """The ``q``-quantile of a score summary (:func:`summarize_scores`), interpolated on its 1001-point grid."""
    if not 0.0 <= q <= 1.0:
        raise ValueError(f"the quantile must be in [0, 1], got {q}")
    if not validation or "quantiles" not in validation:
        raise ValueError("this model stores no validation scores; calibrate on held-out data instead")
    return float(np.interp(q, np.linspace(0, 1, 1001), validation["quantiles"]))


def check_history(history: Any, path: str | Path) -> dict | None:
    """A model file's training history, checked (lists of numbers); raises ``ModelFileError``."""
    for key in ("steps", "train_loss", "val_loss"):
        seq = (history or {}).get(key) if isinstance(history, dict) else None
        if seq is not None and not (isinstance(seq, list) and all(v is None or _is_number(v) for v in seq)):
            raise ModelFileError(f"{path}: history {key} must be a list of numbers")
    return history


def check_validation(validation: Any, path: str | Path) -> dict | None:
    """A model file's held-out score summary (see :meth:`FlowModel.score_summary`), checked; raises
    ``ModelFileError``."""
    if validation is None:
        return None
    q = validation.get("quantiles") if isinstance(validation, dict) else None
    numbers = (
        (validation.get("mean"), validation.get("std"), *(q if isinstance(q, list) else [])) if q else ()
    )
    if not isinstance(q, list) or len(q) < 2 or not all(_is_number(v) for v in numbers):
        raise ModelFileError(f"{path}: bad validation summary in the config")
    return validation


def _is_number(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


def _finite_history(history: dict | None) -> dict | None:
    """JSON has no inf/NaN: replace them by None."""
    if history is None:
        return None

    def fix(v: Any) -> Any:
        if isinstance(v, float) and not math.isfinite(v):
            return None
        if isinstance(v, list):
            return [fix(u) for u in v]
        if isinstance(v, dict):
            return {k: fix(u) for k, u in v.items()}
        return v

    return fix(dict(history))
