r"""A scikit-learn density estimator backed by any pushforward flow preset.

Example:
    >>> import numpy as np
    >>> from pushforward import FlowDensity
    >>> X = np.random.default_rng(0).normal(size=(500, 3))
    >>> est = FlowDensity(flow="realnvp", layers=2, hidden=(16,), steps=50, ensemble=1).fit(X)
    >>> est.score_samples(X[:2]).shape, est.sample(4).shape
    ((2,), (4, 3))
"""

from __future__ import annotations

import math
import numbers
from pathlib import Path

import numpy as np
from sklearn.base import BaseEstimator, DensityMixin
from sklearn.utils.validation import check_is_fitted, validate_data

from .tabular.sizing import DEFAULT_LR, default_size

__all__ = ["FlowDensity"]


class FlowDensity(DensityMixin, BaseEstimator):
    r"""Normalizing-flow density estimation with the scikit-learn API, with defaults sized to the data.

    ``fit`` maps each column to the real line according to its support (see
    :mod:`pushforward.data.support`: log for positive columns, logit for intervals, dequantisation for
    discrete columns), standardises the columns and, where it helps, whitens them (see ``whiten``), and
    trains ``ensemble`` flows by maximum likelihood with
    :func:`pushforward.fit`, cross-fitted: flow :math:`k` is trained on all rows but fold :math:`k` and early
    stopped (best weights restored) on fold :math:`k`. The fitted density is the mixture

    .. math:: p(x) = \frac1K \sum_{k=1}^K p_k(x), \qquad
        \log p_k(x) = \log p_{U,k}\!\left(\frac{g(x) - \mu}{\sigma}\right) - \sum_j \log\sigma_j
        + \log|\det \partial g / \partial x|,

    a real density on the data space, in the units of the original data. Each row's score under the flow that
    did not see it (``oof_scores_``) calibrates anomaly thresholds without a separate split.

    Defaults adapt to the rows :math:`n` and columns :math:`d`: NSF (autoregressive rational-quadratic
    splines) with 3 layers of width :math:`\mathrm{clip}(2^{\mathrm{round}(\log_2 1.5\sqrt{n})}, 16, 128)`,
    4 spline bins below 1000 rows (8 above), Adam at rate :data:`DEFAULT_LR` with weight decay
    :math:`10^{-4}`, batches of
    :math:`\mathrm{clip}(n/8, 32, 256)` rows, evaluation every epoch and early stopping after ``patience``
    evaluations without improvement, and ``K`` cross-fitted flows from :func:`default_ensemble` (5 for
    small tables, 3 up to 5000 rows, then one flow with a ``validation_fraction`` split). After fitting,
    the flows are kept in ``float64`` so that a row's score does not depend on the rows it is scored with.

    Args:
        flow: Preset name from :data:`pushforward.flows.PRESETS` (``None``: ``"nsf"``; stored in ``flow_``).
        layers, hidden: Size of the flow (``None``: chosen from the data as above).
        options: Extra family options for the preset (a dict), e.g. ``{"bins": 8}``.
        steps: Maximum training steps per flow (``None``: ``max(1000, 100 epochs)``, capped at 5000).
        batch_size: Rows per batch (``None``: from the data).
        lr, weight_decay: Adam settings.
        validation_fraction: Held-out fraction when ``ensemble == 1`` (0 disables early stopping).
        patience: Early stopping patience in evaluation rounds (``None`` disables).
        ensemble: Number of cross-fitted flows ``K`` (``None``: :func:`default_ensemble`).
        support: ``"auto"`` (detected, see :func:`~pushforward.data.support.detect_support`), ``"none"``
            (every column real), or overrides: a dict or ``"col=kind,..."`` string (see
            :func:`~pushforward.data.support.parse_support`; columns by 0-based index or DataFrame name).
        standardize: Standardise the columns before fitting.
        whiten: Also decorrelate the standardised columns (inverse Cholesky factor of their shrunk
            correlation matrix, see :class:`~pushforward.tabular.FlowModel`) so that the flow models what a
            Gaussian cannot. ``"auto"`` (default) decides by held-out likelihood: the first flow is trained
            both ways and the better one on its held-out rows (fold 0, or the validation split when
            ``ensemble == 1``) is kept, and the other flows are trained that way; one extra flow's cost.
            In ``benchmarks/tabular_defaults.py`` whitening wins on diabetes and breast_cancer (strong
            linear relations between columns, after the log of the positive ones) and loses on wine, by
            0.6 to 1.3 nats per row on the first fold either way. ``True``/``False`` force it. Needs
            ``standardize``.
        random_state: Seed (``int``, default 0) for folds, initial weights and batches; ``None`` for a random one.
        device: ``"auto"`` (CUDA when available, as in the command line), ``"cpu"``, ``"cuda"``, ...
        progress: Show a progress bar.

    Attributes:
        flow_: The resolved preset. ``models_``: the fitted :class:`~pushforward.tabular.FlowModel` s; ``model_``
        the first. ``support_``: the column supports. ``history_``: the first flow's training history.
        ``oof_scores_``: out-of-fold log-likelihood of each training row (``ensemble > 1``).
        ``whiten_``: whether the columns were whitened; ``whiten_scores_``: with ``whiten="auto"``, the
        held-out mean log-likelihood (nats per row) of the first flow trained each way, keyed by
        ``True``/``False``.

    Reference: Papamakarios et al., "Normalizing Flows for Probabilistic Modeling and Inference", JMLR 2021;
    Durkan et al., "Neural Spline Flows", NeurIPS 2019.

    Example:
        >>> import numpy as np
        >>> from sklearn.model_selection import GridSearchCV
        >>> X = np.random.default_rng(0).normal(size=(300, 2))
        >>> search = GridSearchCV(FlowDensity(hidden=(8,), steps=5), {"layers": [1, 2]}, cv=2)
        >>> sorted(search.fit(X).best_params_)
        ['layers']
    """

    def __init__(
        self,
        flow: str | None = None,
        *,
        layers: int | None = None,
        hidden: tuple[int, ...] | None = None,
        options: dict | None = None,
        steps: int | None = None,
        batch_size: int | None = None,
        lr: float = DEFAULT_LR,
        weight_decay: float = 1e-4,
        validation_fraction: float = 0.1,
        patience: int | None = 10,
        ensemble: int | None = None,
        support: str | dict | None = "auto",
        standardize: bool = True,
        whiten: bool | str = "auto",
        random_state: int | None = 0,
        device: str = "auto",
        progress: bool = False,
    ) -> None:
        self.flow = flow
        self.layers = layers
        self.hidden = hidden
        self.options = options
        self.steps = steps
        self.batch_size = batch_size
        self.lr = lr
        self.weight_decay = weight_decay
        self.validation_fraction = validation_fraction
        self.patience = patience
        self.ensemble = ensemble
        self.support = support
        self.standardize = standardize
        self.whiten = whiten
        self.random_state = random_state
        self.device = device
        self.progress = progress

    # ------------------------------------------------------------------ helpers
    def _resolve_flow(self) -> str:
        from .flows import PRESETS

        if self.flow is None:
            return "nsf" if "nsf" in PRESETS else "realnvp"
        if not isinstance(self.flow, str):
            raise TypeError(f"flow must be a preset name (str) or None, got {type(self.flow).__name__}")
        if self.flow.lower() not in PRESETS:
            raise ValueError(f"unknown flow preset {self.flow!r}; available: {', '.join(sorted(PRESETS))}")
        return self.flow.lower()

    def _check_params(self) -> None:
        def positive_int(name: str, v: object, allow_none: bool = False) -> None:
            if v is None and allow_none:
                return
            if isinstance(v, bool) or not isinstance(v, numbers.Integral) or v <= 0:
                raise ValueError(f"{name} must be a positive integer, got {v!r}")

        positive_int("steps", self.steps, allow_none=True)
        positive_int("batch_size", self.batch_size, allow_none=True)
        positive_int("layers", self.layers, allow_none=True)
        positive_int("patience", self.patience, allow_none=True)
        positive_int("ensemble", self.ensemble, allow_none=True)
        if not isinstance(self.lr, numbers.Real) or not self.lr > 0:
            raise ValueError(f"lr must be a positive number, got {self.lr!r}")
        if not isinstance(self.weight_decay, numbers.Real) or not self.weight_decay >= 0:
            raise ValueError(f"weight_decay must be a non-negative number, got {self.weight_decay!r}")
        if not isinstance(self.validation_fraction, numbers.Real) or not 0 <= self.validation_fraction < 1:
            raise ValueError(f"validation_fraction must be in [0, 1), got {self.validation_fraction!r}")
        if self.hidden is not None:
            h = (self.hidden,) if isinstance(self.hidden, numbers.Integral) else self.hidden
            if not all(isinstance(u, numbers.Integral) and u > 0 for u in h):
                raise ValueError(f"hidden must be positive integers, got {self.hidden!r}")
        if self.options is not None and not isinstance(self.options, dict):
            raise TypeError(f"options must be a dict, got {type(self.options).__name__}")

    def _seed(self) -> int:
        rs = self.random_state
        if rs is None:
            return int(np.random.default_rng().integers(0, 2**31 - 1))
        if isinstance(rs, np.random.RandomState):
            return int(rs.randint(0, 2**31 - 1))
        if isinstance(rs, bool) or not isinstance(rs, numbers.Integral):
            raise ValueError(f"random_state must be an int, a RandomState or None, got {rs!r}")
        return int(rs)

    def _device(self):
        import torch

        if self.device == "auto":
            return torch.device("cuda" if torch.cuda.is_available() else "cpu")
        return torch.device(self.device)

    def _options(self, preset: str, n: int) -> dict:
        options = dict(self.options or {})
        if self.layers is not None:
            options["layers"] = int(self.layers)
        if self.hidden is not None:
            options["hidden"] = (
                [int(self.hidden)]
                if isinstance(self.hidden, numbers.Integral)
                else [int(u) for u in self.hidden]
            )
        if preset == "nsf" and self.flow is None:
            auto = default_size(n)
            for key, value in auto.items():
                if key not in options and not (key == "layers" and self.layers is not None):
                    options[key] = value
        return options

    # ------------------------------------------------------------------ API
    def fit(self, X, y=None) -> FlowDensity:
        """Fit the flows to the rows of ``X`` (``y`` is ignored)."""
        import torch

        from .data.support import parse_support
        from .tabular import FlowModel

        self._check_params()
        names = _column_names(X)
        X = validate_data(self, X, dtype=np.float64, ensure_min_samples=2, reset=True)
        n, d = X.shape
        preset = self._resolve_flow()
        options = self._options(preset, n)
        support = parse_support(self.support, names or [str(j) for j in range(d)], X)
        if all(s.kind == "real" and not s.discrete for s in support):
            support = None
        seed = self._seed()
        k = self.ensemble if self.ensemble is not None else default_ensemble(n, d)
        k = int(min(k, n // 2)) if k > 1 else 1
        batch = int(self.batch_size or min(256, max(32, n // 8)))
        per_epoch = math.ceil(n * (1 - 1 / max(k, 2)) / batch)
        steps = int(self.steps or min(5000, max(1000, 100 * per_epoch)))
        fit_kwargs = dict(
            steps=steps,
            batch_size=batch,
            lr=float(self.lr),
            weight_decay=float(self.weight_decay),
            patience=self.patience,
            eval_every=max(per_epoch, 5),
            progress=bool(self.progress),
        )
        common = dict(
            options=options,
            standardize=bool(self.standardize),
            device=self._device(),
            columns=names,
            support=support,
            **fit_kwargs,
        )
        if self.whiten not in (True, False, "auto"):
            raise ValueError(f"whiten must be True, False or 'auto', got {self.whiten!r}")
        choices = [False]
        if self.standardize and d >= 2 and self.whiten is not False:
            choices = [True, False] if self.whiten == "auto" else [True]
        models = []
        oof = np.full(n, np.nan)
        folds = np.random.default_rng(seed).permutation(n) % k if k > 1 else None

        def train(i: int, whiten: bool):
            if k == 1:
                return FlowModel.train(
                    X,
                    preset,
                    val_fraction=float(self.validation_fraction),
                    seed=seed,
                    whiten=whiten,
                    **common,
                )
            rows = np.concatenate([X[folds != i], X[folds == i]])
            return FlowModel.train(
                rows,
                preset,
                val_fraction=0.0,
                seed=seed + i,
                holdout=int((folds == i).sum()),
                whiten=whiten,
                **common,
            )

        def held_out_score(m) -> float:
            # k == 1: the validation split's mean (the training rows' when validation_fraction is 0)
            s = m.log_prob(X[folds == 0]) if k > 1 else np.array([m.validation["mean"]])
            return float(np.mean(s)) if np.isfinite(s).all() else -np.inf

        try:
            first = {w: train(0, w) for w in choices}
            scores = {w: held_out_score(m) for w, m in first.items()} if len(choices) > 1 else {}
            whiten = max(choices, key=lambda w: (scores.get(w, 0.0), not w))  # a tie keeps the simpler model
            models.append(first[whiten])
            for i in range(1, k):
                models.append(train(i, whiten))
        except ValueError as e:
            if d == 1 and "n_features" not in str(e):
                raise ValueError(f"preset {preset!r} cannot model data with n_features = 1: {e}") from None
            raise
        for m in models:  # float64 scoring: a row's score does not depend on the rows it is batched with
            m.flow.to(torch.float64)
        if k > 1:
            for i, m in enumerate(models):
                oof[folds == i] = m.log_prob(X[folds == i])
            self.oof_scores_ = oof
        self.flow_ = preset
        self.whiten_ = bool(whiten)
        self.whiten_scores_ = scores
        self.models_ = models
        self.model_ = models[0]
        self.support_ = support
        self.history_ = models[0].history
        return self

    def score_samples(self, X) -> np.ndarray:
        """Log-density of each row of ``X`` in the units of the original data (nats)."""
        from scipy.special import logsumexp

        check_is_fitted(self, "model_")
        X = validate_data(self, X, dtype=np.float64, reset=False)
        models = getattr(self, "models_", [self.model_])
        scores = np.stack([m.log_prob(X) for m in models])
        return logsumexp(scores, axis=0) - math.log(len(models))

    def score(self, X, y=None) -> float:
        """Mean log-likelihood per row of ``X`` (nats; higher is better), as in ``GaussianMixture.score``."""
        return float(np.mean(self.score_samples(X)))

    def sample(self, n_samples: int = 1, random_state: int | None = None) -> np.ndarray:
        """``n_samples`` rows drawn from the fitted mixture, shape ``(n_samples, n_features_in_)``."""
        check_is_fitted(self, "model_")
        if isinstance(n_samples, bool) or not isinstance(n_samples, numbers.Integral) or n_samples < 1:
            raise ValueError(f"n_samples must be a positive integer, got {n_samples!r}")
        models = getattr(self, "models_", [self.model_])
        rng = np.random.default_rng(random_state)
        which = rng.integers(0, len(models), int(n_samples))
        out = np.empty((int(n_samples), self.n_features_in_))
        for i, m in enumerate(models):
            rows = which == i
            if rows.any():
                seed = None if random_state is None else int(rng.integers(0, 2**31 - 1))
                out[rows] = m.sample(int(rows.sum()), seed=seed)
        return out

    # ------------------------------------------------------------------ files
    def save(self, path: str | Path) -> None:
        """Write the fitted model as a pushforward model file (see :mod:`pushforward.io`).

        Model files hold one flow: fit with ``ensemble=1`` to save (an ensemble raises ``ValueError``).
        """
        check_is_fitted(self, "model_")
        if len(getattr(self, "models_", [self.model_])) > 1:
            raise ValueError(
                f"this estimator is an ensemble of {len(self.models_)} flows and a model file holds one; "
                "fit with ensemble=1 to save it"
            )
        self.model_.save(path)

    @classmethod
    def load(cls, path: str | Path) -> FlowDensity:
        """A fitted estimator from a model file (training settings other than the flow are defaults)."""
        from .tabular import FlowModel

        model = FlowModel.load(path)
        est = cls(
            flow=model.preset,
            options={k: v for k, v in model.options.items() if k not in ("layers", "hidden")} or None,
            layers=model.options.get("layers"),
            hidden=tuple(model.options["hidden"]) if "hidden" in model.options else None,
            ensemble=1,
        )
        est.flow_, est.model_, est.history_ = model.preset, model, model.history
        est.models_, est.support_ = [model], model.support
        est.whiten_, est.whiten_scores_ = model.whiten is not None, {}
        est.n_features_in_ = model.features
        return est

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.non_deterministic = self.random_state is None
        return tags


def default_ensemble(n: int, d: int) -> int:
    """Cross-fitted flows for ``n`` rows of ``d`` columns: 5 up to 5000 values (``n d``), 3 up to 5000 rows,
    then 1 (a single flow with a validation split) — keeping the default fit within about 30 CPU-seconds."""
    if n * d <= 5000:
        return 5
    return 3 if n < 5000 else 1


def _column_names(X) -> list[str] | None:
    cols = getattr(X, "columns", None)
    return [str(c) for c in cols] if cols is not None else None
