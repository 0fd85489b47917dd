r"""Tabular models: :class:`FlowModel`, a preset flow trained on a table of data, with its standardisation,
whitening and per-column supports, saved in the one model file format (:mod:`pushforward.io`)."""

from __future__ import annotations

import copy
import math
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..flows.core import Flow
from ..io import ModelFileError, _json_safe, build_flow, load_model, save_model

__all__ = ["FlowModel", "whitening_matrix"]


class FlowModel:
    r"""A preset flow fitted to tabular data, with the standardisation that goes with it.

    Data rows :math:`x` are standardised as :math:`u = W (x - \mu) / \sigma` (training-split statistics)
    before the flow sees them, where :math:`W` is the identity or, when the model was trained with
    ``whiten=True``, the inverse Cholesky factor of the columns' (slightly shrunk) correlation matrix, a
    lower-triangular matrix with a positive diagonal. Densities in the units of the original data are

    .. math:: \log p_X(x) = \log p_U\!\left(W\frac{x - \mu}{\sigma}\right) - \sum_j \log \sigma_j
        + \sum_j \log W_{jj} .

    Whitening hands the flow data whose linear correlations are already removed, so its layers spend their
    capacity on what a Gaussian cannot express; on small tables with strongly correlated columns this is
    worth a large part of a nat per row (see ``benchmarks/tabular_defaults.py``).

    Attributes:
        flow: The trained :class:`~pushforward.Flow`.
        preset, options: The preset name and its options (what the model file stores).
        mean, scale: Standardisation (``float64`` arrays of length ``features``).
        whiten: The whitening matrix :math:`W` (``float64``, ``(features, features)``) or ``None``.
        history: The training :class:`~pushforward.History` as a dict (or ``None``).
        validation: Summary of held-out log-likelihoods: 1001 quantiles, mean, std, count (or ``None``).

    Example:
        >>> import numpy as np
        >>> x = np.random.default_rng(0).normal(size=(500, 2))
        >>> opts = {"layers": 2, "hidden": [16]}
        >>> model = FlowModel.train(x, "realnvp", options=opts, steps=20, progress=False)
        >>> model.log_prob(x[:3]).shape
        (3,)
    """

    def __init__(
        self,
        flow: Flow,
        preset: str,
        options: dict | None = None,
        *,
        mean: np.ndarray | None = None,
        scale: np.ndarray | None = None,
        columns: list[str] | None = None,
        history: dict | None = None,
        validation: dict | None = None,
        support: list | None = None,
        context_mean: np.ndarray | None = None,
        context_scale: np.ndarray | None = None,
        context_columns: list[str] | None = None,
        whiten: np.ndarray | None = None,
    ) -> None:
        self.flow = flow
        self.preset = preset
        self.options = dict(options or {})
        d = flow.features
        self.mean = np.zeros(d) if mean is None else np.asarray(mean, dtype=np.float64).reshape(d)
        self.scale = np.ones(d) if scale is None else np.asarray(scale, dtype=np.float64).reshape(d)
        self.whiten = None if whiten is None else _check_whitening(whiten, d)
        self.columns = list(columns) if columns else None
        self.history = history
        self.validation = validation
        self.support = list(support) if support else None
        if self.support is not None and len(self.support) != d:
            raise ValueError(f"support lists {len(self.support)} columns but the model has {d}")
        c = flow.context_features
        self.context_mean = (
            np.zeros(c) if context_mean is None else np.asarray(context_mean, float).reshape(c)
        )
        self.context_scale = (
            np.ones(c) if context_scale is None else np.asarray(context_scale, float).reshape(c)
        )
        self.context_columns = list(context_columns) if context_columns else None

    # ------------------------------------------------------------------ properties
    @property
    def features(self) -> int:
        """Number of columns of one data row."""
        return self.flow.features

    @property
    def log_scale_sum(self) -> float:
        """:math:`\\sum_j \\log\\sigma_j - \\sum_j \\log W_{jj}`, subtracted from the flow's log-density
        to give the log-density in original units."""
        w = 0.0 if self.whiten is None else float(np.log(np.diag(self.whiten)).sum())
        return float(np.log(self.scale).sum()) - w

    def _to_standard(self, a: np.ndarray) -> np.ndarray:
        """Rows (after the support map) → the flow's standardised coordinates, ``float64``."""
        u = (np.asarray(a, dtype=np.float64) - self.mean) / self.scale
        return u if self.whiten is None else u @ self.whiten.T

    def _from_standard(self, u: np.ndarray) -> np.ndarray:
        """Inverse of :meth:`_to_standard`."""
        if self.whiten is not None:
            from scipy.linalg import solve_triangular

            u = solve_triangular(self.whiten, u.T, lower=True).T
        return u * self.scale + self.mean

    def _device(self) -> torch.device:
        return next((p.device for p in self.flow.parameters()), torch.device("cpu"))

    def _dtype(self) -> torch.dtype:
        return self.flow.dtype or torch.get_default_dtype()

    def check_data(self, x: np.ndarray, name: str = "data") -> np.ndarray:
        """Return ``x`` as a finite ``float64`` array of shape ``(N, features)``, or raise ``ValueError``."""
        a = np.asarray(x)
        if a.dtype.kind not in "biuf":
            raise TypeError(f"{name} must be numeric, got dtype {a.dtype}")
        a = a.astype(np.float64)
        if a.ndim != 2 or a.shape[1] != self.features:
            raise ValueError(f"{name} has shape {a.shape}; the model expects (rows, {self.features})")
        if a.shape[0] == 0:
            raise ValueError(f"{name} has no rows")
        if not np.isfinite(a).all():
            raise ValueError(f"{name} contains NaN or infinite values")
        return a

    # ------------------------------------------------------------------ density and sampling
    def standardize(self, x: np.ndarray) -> torch.Tensor:
        """Rows in original units → standardised tensor ``(N, *event_shape)`` on the flow's device."""
        u = self._to_standard(x)
        t = torch.from_numpy(u).to(self._dtype())
        return t.reshape(-1, *self.flow.event_shape).to(self._device())

    def standardize_context(self, c: np.ndarray | None, rows: int) -> torch.Tensor | None:
        """Context rows (original units) → standardised tensor ``(rows, C)``; ``None`` for unconditional
        models. Raises ``ValueError`` for a missing, extra or mis-shaped context."""
        k = self.flow.context_features
        if k == 0:
            if c is not None:
                raise ValueError("this model is unconditional but a context was given")
            return None
        if c is None:
            names = ", ".join(self.context_columns or [])
            raise ValueError(f"this model is conditional: give {k} context columns ({names})")
        a = np.asarray(c, dtype=np.float64)
        if a.ndim != 2 or a.shape[1] != k or a.shape[0] != rows or not np.isfinite(a).all():
            raise ValueError(f"the context must be {rows} finite rows of {k} columns, got shape {a.shape}")
        u = (a - self.context_mean) / self.context_scale
        return torch.from_numpy(u).to(self._dtype()).to(self._device())

    @torch.no_grad()
    def log_prob(
        self, x: np.ndarray, batch_size: int = 4096, context: np.ndarray | None = None
    ) -> np.ndarray:
        """Log-density of each row of ``x`` (given its ``context`` row for a conditional model) in the
        units of the original data (``float64``, ``(N,)``)."""
        a = self.check_data(x)
        ctx = self.standardize_context(context, a.shape[0])
        ladj = np.zeros(a.shape[0])
        if self.support is not None:
            from ..data.support import to_unconstrained

            a, ladj = to_unconstrained(a, self.support)
            a = np.where(np.isfinite(ladj)[:, None], a, self.mean)  # rows outside the support: density 0
        self.flow.eval()
        with np.errstate(over="ignore", invalid="ignore"):
            u = self._to_standard(a)
        if not np.isfinite(u).all():
            raise ValueError("data has values too large to standardise (beyond the float64 range)")
        lp = np.full(a.shape[0], np.nan)
        for i in range(0, a.shape[0], batch_size):
            t = torch.from_numpy(u[i : i + batch_size]).to(self._dtype())
            ok = torch.isfinite(t).all(1)  # rows beyond the float32 range go the float64 way below
            if bool(ok.any()):
                x_ok = t[ok].reshape(-1, *self.flow.event_shape).to(self._device())
                c_ok = ctx[i : i + batch_size][ok.to(ctx.device)] if ctx is not None else None
                lp[i : i + batch_size][ok.numpy()] = self.flow.log_prob(x_ok, c_ok).double().cpu().numpy()
        bad = ~np.isfinite(lp)
        if bad.any() and self._dtype() != torch.float64:
            # far from the data a float32 log-density can overflow to -inf while the float64 one is finite
            flow64 = copy.deepcopy(self.flow).double()
            u64 = torch.from_numpy(u[bad]).reshape(-1, *self.flow.event_shape)
            c64 = ctx[torch.from_numpy(bad).to(ctx.device)].double() if ctx is not None else None
            lp[bad] = flow64.log_prob(u64.to(self._device()), c64).cpu().numpy()
            bad = ~np.isfinite(lp)
        if bad.any():
            warnings.warn(
                f"{int(bad.sum())} of {lp.size} rows have a non-finite log-likelihood even in float64 (far "
                "outside the data the model was fitted on); they are reported as -inf",
                RuntimeWarning,
                stacklevel=2,
            )
            lp[bad] = -np.inf
        return lp - self.log_scale_sum + ladj

    @torch.no_grad()
    def sample(self, n: int, seed: int | None = None, context: np.ndarray | None = None) -> np.ndarray:
        """``n`` rows drawn from the model, in original units (``float64``, shape ``(n, features)``); for a
        conditional model, ``n`` rows for each of the ``m`` ``context`` rows, grouped by context row
        (shape ``(m * n, features)``)."""
        if not isinstance(n, (int, np.integer)) or isinstance(n, bool) or n <= 0:
            raise ValueError(f"the number of samples must be a positive integer, got {n!r}")
        self.flow.eval()
        with torch.random.fork_rng(devices=[]):
            if seed is not None:
                torch.manual_seed(seed)
            rows = 0 if context is None else np.asarray(context).shape[0]
            ctx = self.standardize_context(context, rows)
            try:
                u = self.flow.sample((int(n),), ctx)
            except NotImplementedError:
                raise ValueError(f"preset {self.preset!r} cannot sample (it has no inverse)") from None
        if ctx is not None:
            u = u.transpose(0, 1)  # (contexts, n, ...) so that each context's rows are together
        u = u.reshape(-1, self.features).double().cpu().numpy()
        y = self._from_standard(u)
        if self.support is not None:
            from ..data.support import from_unconstrained

            y = from_unconstrained(y, self.support)
        return y

    # ------------------------------------------------------------------ training
    @classmethod
    def train(
        cls,
        x: np.ndarray,
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
        context: np.ndarray | None = None,
        context_columns: list[str] | None = None,
        whiten: bool = False,
        **fit_kwargs: Any,
    ) -> FlowModel:
        r"""Standardise, split off a validation set, build ``preset`` and fit it with :func:`pushforward.fit`.

        Args:
            x: Data rows, shape ``(N, D)`` (finite numbers).
            preset: A name in :data:`pushforward.flows.PRESETS`.
            options: Preset options (``layers``, ``hidden``, family options); JSON-style values.
            val_fraction: Fraction of rows held out (seeded shuffle) for early stopping, best-weights restore
                and the validation score summary used for anomaly thresholds; ``0`` disables.
            standardize: Scale each column to zero mean and unit variance (training-split statistics).
            whiten: Also decorrelate the standardised columns with the inverse Cholesky factor of their
                correlation matrix, shrunk towards the identity by :func:`whitening_matrix` (tabular data
                with ``D >= 2`` columns and a flat event shape only; needs ``standardize``).
            seed: Seeds the split, the initial weights and the batch order.
            columns: Column names to store in the model file.
            event_shape: Shape of one event when rows are flattened images etc.; default ``(D,)``.
            device, dtype: Where and in which precision to train.
            support: Per-column :class:`~pushforward.data.support.ColumnSupport` (``None``: every column
                real). Columns are mapped to the real line before standardisation; discrete columns are
                dequantised afresh in every batch (the validation split once, seeded).
            context: Conditioning rows ``(N, C)`` for a conditional model :math:`p(x \mid c)` (standardised
                with training statistics; the flow is built with ``context=C``). context_columns: their names.
            holdout: Use the last ``holdout`` rows as the validation split instead of a shuffled
                ``val_fraction`` (cross-fitting passes each fold this way).
            fit_kwargs: Passed to :func:`pushforward.fit` (``steps``, ``batch_size``, ``lr``, ``patience``,
                ``checkpoint``, ``resume``, ``distributed``, ``diagnostics``, ``progress``, ...).
        """
        from ..train.fit import fit

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
        shape = tuple(event_shape) if event_shape else (a.shape[1],)
        if math.prod(shape) != a.shape[1]:
            raise ValueError(
                f"event shape {shape} has {math.prod(shape)} values but the data has {a.shape[1]}"
            )
        rng = np.random.default_rng(seed)
        n_val = math.floor(val_fraction * a.shape[0])
        if a.shape[0] - n_val < 1:
            n_val = 0
        perm = rng.permutation(a.shape[0])
        tr, va = a[perm[n_val:]], (a[perm[:n_val]] if n_val else None)
        if holdout is not None:
            if not 0 < holdout < a.shape[0]:
                raise ValueError(f"holdout must leave rows on both sides, got {holdout} of {a.shape[0]}")
            tr, va = a[: a.shape[0] - holdout], a[a.shape[0] - holdout :]
            perm = np.arange(a.shape[0] - holdout, a.shape[0]).tolist() + list(range(a.shape[0] - holdout))
            perm, n_val = np.asarray(perm), holdout
        tr_u, va_u = tr, va
        if support is not None:
            tr_u, va_u = _unconstrained_split(tr, va, support, rng)
        if standardize:
            mean = tr_u.mean(0)
            scale = tr_u.std(0)
            scale = np.where(np.isfinite(scale) & (scale > 1e-12 * np.maximum(1.0, np.abs(mean))), scale, 1.0)
        else:
            mean, scale = np.zeros(a.shape[1]), np.ones(a.shape[1])
        w = None
        if whiten:
            if not standardize:
                raise ValueError("whiten=True needs standardize=True")
            if len(shape) != 1:
                raise ValueError(f"whiten=True is for flat rows; the event shape is {shape}")
            if a.shape[1] >= 2:
                w = whitening_matrix((tr_u - mean) / scale)
        opts = _json_safe(dict(options or {}), "options")
        with torch.random.fork_rng(devices=[]):
            if seed is not None:
                torch.manual_seed(seed)
            k = 0 if cx is None else cx.shape[1]
            flow = build_flow(preset, shape, context=k, options=opts).to(device=device, dtype=dtype)
            model = cls(
                flow,
                str(preset).lower(),
                opts,
                mean=mean,
                scale=scale,
                columns=columns,
                support=support,
                whiten=w,
            )
            if cx is not None:
                ctr = cx[perm[n_val:]]
                model.context_mean, model.context_columns = ctr.mean(0), context_columns
                model.context_scale = np.where(ctr.std(0) > 1e-12, ctr.std(0), 1.0)
            train_t = model.standardize(tr_u).cpu()
            val_t = model.standardize(va_u).cpu() if va is not None else None
            if torch.device(device).type != "cpu":
                train_t = train_t.to(device)
                val_t = val_t.to(device) if val_t is not None else None
            c_tr = c_va = None
            if cx is not None:
                c_tr = model.standardize_context(cx[perm[n_val:]], len(tr)).cpu()
                c_va = model.standardize_context(cx[perm[:n_val]], n_val).cpu() if va is not None else None
                train_t = (train_t, c_tr.to(train_t.device))
                val_t = (val_t, c_va.to(val_t.device)) if val_t is not None else None
            if support is not None and any(s.discrete for s in support):
                train_t = _dequantizing_loader(model, tr, fit_kwargs.get("batch_size", 256), seed, c_tr)
            history = fit(flow, train_t, val_t, seed=seed, **fit_kwargs)
        model.history = history.as_dict()
        c_sum = None if cx is None else (cx[perm[:n_val]] if va is not None else cx[perm[n_val:]])
        model.validation = model.score_summary(va if va is not None else tr, context=c_sum)
        model.validation["source"] = "validation" if va is not None else "train"
        return model

    def score_summary(self, x: np.ndarray, context: np.ndarray | None = None) -> dict:
        """Mean, std, count and 1001 quantiles (levels 0, 0.001, ..., 1) of the log-likelihoods of ``x``."""
        s = self.log_prob(x, context=context)
        finite = s[np.isfinite(s)]
        if finite.size == 0:
            raise ValueError("every log-likelihood is non-finite; the model is broken")
        return {
            "mean": float(finite.mean()),
            "std": float(finite.std()),
            "n": int(s.size),
            "quantiles": [float(q) for q in np.quantile(finite, np.linspace(0, 1, 1001))],
        }

    def validation_quantile(self, q: float) -> float:
        """The ``q``-quantile of the stored held-out log-likelihoods (interpolated on the 1001-point grid)."""
        if not 0.0 <= q <= 1.0:
            raise ValueError(f"the quantile must be in [0, 1], got {q}")
        if not self.validation or "quantiles" not in self.validation:
            raise ValueError("this model stores no validation scores; calibrate on held-out data instead")
        return float(np.interp(q, np.linspace(0, 1, 1001), self.validation["quantiles"]))

    # ------------------------------------------------------------------ files
    def config(self) -> dict:
        """The JSON config of the model file (without format fields and checksum)."""
        return {
            "preset": self.preset,
            "event_shape": list(self.flow.event_shape),
            "context": int(self.flow.context_features),
            "options": self.options,
            "dtype": str(self._dtype()).replace("torch.", ""),
            "standardize": {
                "mean": self.mean.tolist(),
                "scale": self.scale.tolist(),
                **({"whiten": self.whiten.tolist()} if self.whiten is not None else {}),
            },
            "columns": self.columns,
            "history": _finite_history(self.history),
            "validation": self.validation,
            "support": [s.as_dict() for s in self.support] if self.support is not None else None,
            "context_standardize": {
                "mean": self.context_mean.tolist(),
                "scale": self.context_scale.tolist(),
                "columns": self.context_columns,
            },
        }

    def save(self, path: str | Path) -> None:
        """Write the model file (safetensors weights + JSON config), atomically."""
        save_model(path, self.flow, self.config())

    @classmethod
    def load(cls, path: str | Path, map_location: str | torch.device = "cpu") -> FlowModel:
        """Read a model file written by :meth:`save` (see :func:`load_model`)."""
        from ..data.support import support_from_config

        flow, cfg = load_model(path, map_location)
        std = cfg.get("standardize") or {}
        columns = cfg.get("columns")
        if columns is not None and (
            len(columns) != flow.features or not all(isinstance(c, str) for c in columns)
        ):
            raise ModelFileError(f"{path}: columns must be {flow.features} names")
        history = cfg.get("history")
        for key in ("steps", "train_loss", "val_loss"):
            seq = (history or {}).get(key)
            if seq is not None and not (
                isinstance(seq, list) and all(v is None or _is_number(v) for v in seq)
            ):
                raise ModelFileError(f"{path}: history {key} must be a list of numbers")
        validation = cfg.get("validation")
        if validation is not None:
            q = validation.get("quantiles")
            numbers = (validation.get("mean"), validation.get("std"), *(q if isinstance(q, list) else []))
            if not isinstance(q, list) or len(q) < 2 or not all(_is_number(v) for v in numbers):
                raise ModelFileError(f"{path}: bad validation summary in the config")
        try:
            model = cls(
                flow,
                cfg["preset"],
                cfg.get("options"),
                mean=std.get("mean"),
                scale=std.get("scale"),
                columns=columns,
                history=history,
                validation=validation,
                support=support_from_config(cfg.get("support")),
                context_mean=(cfg.get("context_standardize") or {}).get("mean"),
                context_scale=(cfg.get("context_standardize") or {}).get("scale"),
                context_columns=(cfg.get("context_standardize") or {}).get("columns"),
                whiten=std.get("whiten"),
            )
        except (ValueError, TypeError) as e:
            raise ModelFileError(f"{path}: bad standardisation in the config ({e})") from None
        if not (np.isfinite(model.mean).all() and np.isfinite(model.scale).all() and (model.scale > 0).all()):
            raise ModelFileError(f"{path}: bad standardisation in the config")
        return model


def whitening_matrix(u: np.ndarray, shrinkage: float | None = None) -> np.ndarray:
    r"""The inverse Cholesky factor :math:`W = L^{-1}` of the shrunk correlation matrix of standardised rows.

    With :math:`\hat C` the sample correlation of the ``(N, D)`` rows ``u``, the shrunk estimate is
    :math:`C = (1 - \lambda)\hat C + \lambda I` with :math:`\lambda = \mathrm{clip}((D / N)^2, 10^{-3}, 0.5)`
    unless ``shrinkage`` is given: barely shrunk for tall tables (strong linear relations between columns
    are what whitening is for), and well conditioned for collinear or constant columns and for fewer rows
    than columns (a shrinkage target as in Ledoit and Wolf, "A well-conditioned estimator for
    large-dimensional covariance matrices", 2004). :math:`W C W^\top = I`; the rows :math:`W u` are
    decorrelated.

    Example:
        >>> import numpy as np
        >>> u = np.random.default_rng(0).normal(size=(1000, 2)) @ np.array([[1.0, 0.9], [0.0, 0.4]])
        >>> u = (u - u.mean(0)) / u.std(0)
        >>> w = whitening_matrix(u, shrinkage=0.0)
        >>> bool(np.allclose(np.cov((u @ w.T).T, bias=True), np.eye(2)))
        True
    """
    u = np.asarray(u, dtype=np.float64)
    n, d = u.shape
    lam = float(np.clip((d / n) ** 2, 1e-3, 0.5)) if shrinkage is None else float(shrinkage)
    if not 0.0 <= lam <= 1.0:
        raise ValueError(f"shrinkage must be in [0, 1], got {shrinkage}")
    c = np.cov(u.T, bias=True).reshape(d, d)
    s = np.sqrt(np.clip(np.diag(c), 1e-300, None))
    c = c / s[:, None] / s[None, :]
    c = (1.0 - lam) * c + lam * np.eye(d)
    try:
        low = np.linalg.cholesky(c)
    except np.linalg.LinAlgError:
        return np.eye(d)
    from scipy.linalg import solve_triangular

    return solve_triangular(low, np.eye(d), lower=True)


def _check_whitening(w: Any, d: int) -> np.ndarray:
    """``w`` as a ``(d, d)`` lower-triangular ``float64`` matrix with a finite, positive diagonal, or
    ``ValueError``."""
    a = np.asarray(w, dtype=np.float64)
    if a.shape != (d, d):
        raise ValueError(f"the whitening matrix must be ({d}, {d}), got shape {a.shape}")
    if not np.isfinite(a).all() or not (np.diag(a) > 0).all() or np.triu(a, 1).any():
        raise ValueError("the whitening matrix must be finite and lower-triangular with a positive diagonal")
    return a


def _unconstrained_split(
    tr: np.ndarray, va: np.ndarray | None, support: list, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray | None]:
    """Train and validation rows mapped to the real line (discrete columns dequantised once, seeded)."""
    from ..data.support import dequantize, to_unconstrained

    out = []
    for part in (tr, va):
        if part is None:
            out.append(None)
            continue
        y, ladj = to_unconstrained(dequantize(part, support, rng), support)
        if not np.isfinite(ladj).all():
            raise ValueError("some rows lie outside the declared column support")
        out.append(y)
    return out[0], out[1]


def _dequantizing_loader(
    model: FlowModel, rows: np.ndarray, batch_size: int, seed: int | None, context: torch.Tensor | None = None
):
    """A shuffling ``DataLoader`` whose batches are dequantised afresh, mapped and standardised (with their
    standardised ``context`` rows, if given)."""
    from torch.utils.data import DataLoader, TensorDataset

    from ..data.support import dequantize, to_unconstrained

    rng = np.random.default_rng(None if seed is None else seed + 1)

    def collate(items: list):
        batch = torch.stack([t[0] for t in items]).numpy()
        y, _ = to_unconstrained(dequantize(batch, model.support, rng), model.support)
        u = model.standardize(y).cpu()
        return (u, torch.stack([t[1] for t in items])) if context is not None else u

    g = torch.Generator()
    g.manual_seed(0 if seed is None else int(seed))
    tensors = [torch.from_numpy(np.ascontiguousarray(rows))] + ([context] if context is not None else [])
    ds = TensorDataset(*tensors)
    return DataLoader(ds, batch_size=int(batch_size), shuffle=True, collate_fn=collate, generator=g)


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
