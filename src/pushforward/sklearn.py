r"""A scikit-learn density estimator backed by any pushforward flow preset.

Example:
    >>> import numpy as np
    >>> from pushforward import FlowDensity
    >>> X = np.random.default_rng(0).normal(size=(500, 3))
    >>> est = FlowDensity(flow="realnvp", layers=2, hidden=(16,), steps=50, random_state=0).fit(X)
    >>> est.score_samples(X[:2]).shape, est.sample(4).shape
    ((2,), (4, 3))
"""

from __future__ import annotations

import numbers
from pathlib import Path

import numpy as np
from sklearn.base import BaseEstimator, DensityMixin
from sklearn.utils.validation import check_is_fitted, validate_data

__all__ = ["FlowDensity"]


class FlowDensity(DensityMixin, BaseEstimator):
    r"""Normalizing-flow density estimation with the scikit-learn API.

    ``fit`` standardises the columns (training statistics), holds out a seeded validation split for early
    stopping and best-weights restore, builds ``PRESETS[flow]`` and trains it by maximum likelihood with
    :func:`pushforward.fit`. Densities are reported in the units of the original data:

    .. math:: \log p_X(x) = \log p_U\!\left(\frac{x - \mu}{\sigma}\right) - \sum_j \log\sigma_j,

    where :math:`p_U` is the flow's density of the standardised data.

    Args:
        flow: Preset name from :data:`pushforward.flows.PRESETS`. ``None`` (default) picks ``"nsf"`` when that
            preset is available and ``"realnvp"`` otherwise; the choice is stored in ``flow_``.
        layers: Number of layers (``None``: the preset's default).
        hidden: Hidden units of the conditioners, e.g. ``(64, 64)`` (``None``: the preset's default).
        options: Extra family options for the preset (a dict).
        steps: Training steps.
        batch_size, lr, weight_decay: Optimisation settings.
        validation_fraction: Fraction of rows held out for validation (0 disables).
        patience: Early stopping patience in evaluation rounds (``None`` disables).
        standardize: Standardise the columns before fitting.
        random_state: Seed (``int``) for the split, initial weights and batches; ``None`` for a random one.
        device: ``"cpu"``, ``"cuda"``, ...
        progress: Show a progress bar.

    Attributes:
        flow_: The resolved preset name. ``model_``: the fitted :class:`~pushforward.io.FlowModel`.
        history_: The training history (dict). ``n_features_in_``: number of columns.

    Reference: Papamakarios et al., "Normalizing Flows for Probabilistic Modeling and Inference", JMLR 2021.

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
        steps: int = 1000,
        batch_size: int = 256,
        lr: float = 1e-3,
        weight_decay: float = 0.0,
        validation_fraction: float = 0.1,
        patience: int | None = None,
        standardize: bool = True,
        random_state: int | None = None,
        device: str = "cpu",
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
        self.standardize = standardize
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

        positive_int("steps", self.steps)
        positive_int("batch_size", self.batch_size)
        positive_int("layers", self.layers, allow_none=True)
        positive_int("patience", self.patience, allow_none=True)
        if not isinstance(self.lr, numbers.Real) or not self.lr > 0:
            raise ValueError(f"lr must be a positive number, got {self.lr!r}")
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

    # ------------------------------------------------------------------ API
    def fit(self, X, y=None) -> FlowDensity:
        """Fit the flow to the rows of ``X`` (``y`` is ignored)."""
        from .io import FlowModel

        self._check_params()
        X = validate_data(self, X, dtype=np.float64, ensure_min_samples=2, reset=True)
        preset = self._resolve_flow()
        options = dict(self.options or {})
        if self.layers is not None:
            options["layers"] = int(self.layers)
        if self.hidden is not None:
            options["hidden"] = (
                [int(self.hidden)]
                if isinstance(self.hidden, numbers.Integral)
                else [int(u) for u in self.hidden]
            )
        try:
            model = FlowModel.train(
                X,
                preset,
                options=options,
                val_fraction=float(self.validation_fraction),
                standardize=bool(self.standardize),
                seed=self._seed(),
                device=self.device,
                steps=int(self.steps),
                batch_size=int(self.batch_size),
                lr=float(self.lr),
                weight_decay=float(self.weight_decay),
                patience=self.patience,
                progress=bool(self.progress),
            )
        except ValueError as e:
            if X.shape[1] == 1 and "n_features" not in str(e):
                raise ValueError(f"preset {preset!r} cannot model data with n_features = 1: {e}") from None
            raise
        self.flow_ = preset
        self.model_ = model
        self.history_ = model.history
        return self

    def score_samples(self, X) -> np.ndarray:
        """Log-density of each row of ``X`` in the units of the original data (nats)."""
        check_is_fitted(self, "model_")
        X = validate_data(self, X, dtype=np.float64, reset=False)
        return self.model_.log_prob(X)

    def score(self, X, y=None) -> float:
        """Mean log-likelihood per row of ``X`` (nats; higher is better), as in ``GaussianMixture.score``."""
        return float(np.mean(self.score_samples(X)))

    def sample(self, n_samples: int = 1, random_state: int | None = None) -> np.ndarray:
        """``n_samples`` rows drawn from the fitted density, shape ``(n_samples, n_features_in_)``."""
        check_is_fitted(self, "model_")
        if isinstance(n_samples, bool) or not isinstance(n_samples, numbers.Integral) or n_samples < 1:
            raise ValueError(f"n_samples must be a positive integer, got {n_samples!r}")
        return self.model_.sample(int(n_samples), seed=random_state)

    # ------------------------------------------------------------------ files
    def save(self, path: str | Path) -> None:
        """Write the fitted model as a pushforward model file (see :mod:`pushforward.io`)."""
        check_is_fitted(self, "model_")
        self.model_.save(path)

    @classmethod
    def load(cls, path: str | Path) -> FlowDensity:
        """A fitted estimator from a model file (training settings other than the flow are defaults)."""
        from .io import FlowModel

        model = FlowModel.load(path)
        est = cls(
            flow=model.preset,
            options={k: v for k, v in model.options.items() if k not in ("layers", "hidden")} or None,
            layers=model.options.get("layers"),
            hidden=tuple(model.options["hidden"]) if "hidden" in model.options else None,
        )
        est.flow_, est.model_, est.history_ = model.preset, model, model.history
        est.n_features_in_ = model.features
        return est

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.non_deterministic = self.random_state is None
        return tags
