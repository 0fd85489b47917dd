r"""Safe model files and :class:`FlowModel`, a preset flow trained on a table of data.

A model file is one `safetensors <https://huggingface.co/docs/safetensors>`_ file: the weights are its
tensors, and a JSON config sits in its header metadata under the key ``"pushforward"``::

    {"format": "pushforward-model", "format_version": 1, "pushforward_version": "0.1.0",
     "preset": "realnvp", "event_shape": [2], "context": 0, "options": {"layers": 8, "hidden": [64, 64]},
     "standardize": {"mean": [...], "scale": [...]}, "columns": ["a", "b"], "history": {...},
     "validation": {"quantiles": [...], "mean": -2.1, "std": 0.9, "n": 200}, "dtype": "float32",
     "sha256": "..."}

Loading parses the header as JSON, rebuilds the flow with
``PRESETS[preset](features, context=..., **options)``
and copies the tensors in with a strict ``load_state_dict``: nothing is ever unpickled, and no name in the
file is ever imported or called (presets are looked up in :data:`~pushforward.flows.PRESETS`, dtypes in an
allow-list). ``sha256`` covers the config (without the hash) and every tensor's name, dtype, shape and bytes.

What the hash protects, and what it does not: it is an *unkeyed* checksum, so it detects accidental
corruption (a flipped bit, a truncated copy, an edit that forgot to update it), but anyone who edits a file
can recompute it. It is not a signature: a file from an untrusted source must be treated as hostile. Loading
is therefore defensive on its own, before and independently of the hash: every config field is
type-checked, the declared sizes are bounded *by the file's own tensors* (no integer option may exceed the
number of scalars stored in the file, layer/level counts and list lengths may not exceed the number of
tensors, consecutive hidden sizes and the first hidden size times the input width may not exceed the stored
scalars, at most 2**24 features), tensor dtypes are allow-listed, and the flow the config describes must have
exactly the tensor names and shapes stored in the file. Any failure raises :class:`ModelFileError` with a
one-line reason, and never allocates more than a small multiple of the file's own size.

Example:
    >>> import numpy as np
    >>> x = np.random.default_rng(0).normal(size=(200, 2))
    >>> model = FlowModel.train(x, "realnvp", options={"layers": 2, "hidden": [8]}, steps=5, progress=False)
    >>> model.save("model.safetensors")
    >>> FlowModel.load("model.safetensors").log_prob(x[:5]).shape
    (5,)
"""

from __future__ import annotations

import copy
import hashlib
import json
import math
import struct
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch

from .flows.core import Flow

__all__ = [
    "FORMAT_VERSION",
    "FlowModel",
    "ModelFileError",
    "build_flow",
    "load_model",
    "save_model",
    "whitening_matrix",
]

FORMAT_VERSION = 1
_KEY = "pushforward"
_MAX_HEADER = 100 * 2**20
_MAX_FEATURES = 2**24
#: Floating dtypes a model file may declare for its flow (an allow-list: nothing else is looked up).
MODEL_DTYPES = {"float32": torch.float32, "float64": torch.float64}
#: safetensors dtypes a model file may store (parameters and buffers: floats, integer and boolean masks).
_TENSOR_DTYPES = {"F16", "BF16", "F32", "F64", "I64", "I32", "I16", "I8", "U8", "BOOL"}
#: Options that count repeated blocks: each block stores at least one tensor.
_COUNT_OPTIONS = {"layers", "levels", "steps", "scales", "depth", "blocks", "reflections"}


class ModelFileError(ValueError):
    """A model file that is missing pieces, truncated, tampered with or from an unknown preset."""


def _presets() -> dict[str, Callable[..., Flow]]:
    from .flows import PRESETS

    return PRESETS


def _json_safe(value: Any, name: str) -> Any:
    """Options must survive JSON: numbers, strings, booleans, None, lists and string-keyed dicts."""
    if isinstance(value, bool) or value is None or isinstance(value, str):
        return value
    if isinstance(value, int):
        return int(value)
    if isinstance(value, float):
        if not math.isfinite(value):
            raise ValueError(f"option {name} must be finite, got {value}")
        return float(value)
    if isinstance(value, (np.integer, np.floating)):
        return _json_safe(value.item(), name)
    if isinstance(value, (list, tuple)):
        return [_json_safe(v, name) for v in value]
    if isinstance(value, dict):
        return {str(k): _json_safe(v, f"{name}.{k}") for k, v in value.items()}
    raise TypeError(
        f"option {name} has type {type(value).__name__}; model files only hold numbers, strings, booleans, "
        "lists and dicts"
    )


def _restore_option(value: Any) -> Any:
    return tuple(_restore_option(v) for v in value) if isinstance(value, list) else value


def build_flow(
    preset: str, event_shape: int | tuple[int, ...], *, context: int = 0, options: dict | None = None
) -> Flow:
    """Build ``PRESETS[preset]`` for data of ``event_shape`` (an int for vectors) with JSON-style options.

    Lists in ``options`` become tuples (e.g. ``hidden``). Raises ``ValueError`` naming the problem for an
    unknown preset or options the preset does not accept.
    """
    presets = _presets()
    name = str(preset).lower()
    if name not in presets:
        raise ValueError(f"unknown flow preset {preset!r}; available: {', '.join(sorted(presets))}")
    shape = tuple(event_shape) if isinstance(event_shape, (tuple, list)) else (int(event_shape),)
    features: int | tuple[int, ...] = shape[0] if len(shape) == 1 else shape
    if not isinstance(options or {}, dict):
        raise TypeError(f"options must be a dict, got {type(options).__name__}")
    kwargs = {k: _restore_option(v) for k, v in (options or {}).items()}
    if "base" in kwargs:  # takes a Distribution object, which JSON cannot describe
        raise ValueError(
            "option 'base' cannot be set here: it takes a Distribution object; build the flow in Python"
        )
    try:
        flow = presets[name](features, context=context, **kwargs)
    except TypeError as e:
        raise ValueError(
            f"preset {name!r} rejected its options {sorted(kwargs)}: {e}; valid options: "
            f"{', '.join(_preset_options(presets[name]))}"
        ) from None
    except (
        ValueError,
        RuntimeError,
        IndexError,
        KeyError,
        AttributeError,
        ZeroDivisionError,
        OverflowError,
    ) as e:
        msg = str(e).splitlines()[0] if str(e) else type(e).__name__
        raise ValueError(f"cannot build preset {name!r} for event shape {shape}: {msg}") from None
    if not isinstance(flow, Flow):
        raise ValueError(f"preset {name!r} did not return a Flow")
    return flow


def _preset_options(preset: Callable[..., Flow]) -> list[str]:
    """The keyword options a preset accepts (besides ``features`` and ``context``)."""
    import inspect

    params = inspect.signature(preset).parameters.values()
    return [p.name for p in params if p.kind == p.KEYWORD_ONLY and p.name != "context"]


# ---------------------------------------------------------------------------------------------- files
def _one_line(e: BaseException) -> str:
    return " ".join(str(e).split())[:300] or type(e).__name__


def _digest(config: dict, tensors: dict[str, torch.Tensor]) -> str:
    h = hashlib.sha256()
    body = {k: v for k, v in config.items() if k != "sha256"}
    h.update(json.dumps(body, sort_keys=True, separators=(",", ":")).encode())
    for name in sorted(tensors):
        t = tensors[name].contiguous()
        h.update(f"{name}|{t.dtype}|{tuple(t.shape)}|".encode())
        h.update(t.reshape(-1).view(torch.uint8).numpy().tobytes() if t.numel() else b"")
    return h.hexdigest()


def save_model(path: str | Path, flow: Flow, config: dict) -> None:
    """Write ``flow``'s weights and ``config`` (JSON-serialisable) to one safetensors file, atomically."""
    from safetensors.torch import save

    from ._version import __version__
    from .train.checkpoint import atomic_write_bytes

    tensors = {k: v.detach().cpu().contiguous().clone() for k, v in flow.state_dict().items()}
    cfg = dict(config)
    cfg.update(format="pushforward-model", format_version=FORMAT_VERSION, pushforward_version=__version__)
    cfg = _json_safe(cfg, "config")
    cfg["sha256"] = _digest(cfg, tensors)
    data = save(tensors, metadata={_KEY: json.dumps(cfg, allow_nan=False)})
    atomic_write_bytes(path, data)


def _read_header(raw: bytes, path: Path) -> dict:
    if len(raw) < 8:
        raise ModelFileError(f"{path}: truncated model file ({len(raw)} bytes)")
    (n,) = struct.unpack("<Q", raw[:8])
    if n > _MAX_HEADER or 8 + n > len(raw):
        raise ModelFileError(f"{path}: not a pushforward model file, or truncated (bad safetensors header)")
    try:
        header = json.loads(raw[8 : 8 + n].decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError):
        raise ModelFileError(f"{path}: corrupted header (not valid JSON)") from None
    if not isinstance(header, dict):
        raise ModelFileError(f"{path}: corrupted header")
    return header


def _is_int(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _tensor_table(header: dict, path: Path) -> dict[str, tuple[str, tuple[int, ...]]]:
    """Name → (dtype, shape) of every tensor the safetensors header declares; dtypes allow-listed."""
    table = {}
    for name, info in header.items():
        if name == "__metadata__":
            continue
        if not isinstance(info, dict) or not isinstance(info.get("shape"), list):
            raise ModelFileError(f"{path}: corrupted header entry for tensor {name!r}")
        dtype, shape = info.get("dtype"), info["shape"]
        if dtype not in _TENSOR_DTYPES:
            raise ModelFileError(f"{path}: tensor {name!r} has dtype {dtype!r}, not allowed in model files")
        if not all(_is_int(d) and 0 <= d < 2**40 for d in shape):
            raise ModelFileError(f"{path}: tensor {name!r} has a bad shape {shape!r}")
        table[name] = (dtype, tuple(shape))
    return table


def _ints_in(value: Any) -> list[int]:
    if _is_int(value):
        return [value]
    if isinstance(value, list):
        return [i for v in value for i in _ints_in(v)]
    if isinstance(value, dict):
        return [i for v in value.values() for i in _ints_in(v)]
    return []


def _check_config(cfg: dict, table: dict[str, tuple[str, tuple[int, ...]]], path: Path) -> None:
    """Type-check the config and bound every size it declares by the tensors stored in the file.

    Raises :class:`ModelFileError` naming the first problem. Runs before anything is built.
    """

    def bad(msg: str) -> ModelFileError:
        return ModelFileError(f"{path}: {msg}")

    version = cfg.get("format_version")
    if not _is_int(version):
        raise bad(f"format_version must be an integer, got {version!r}")
    if version > FORMAT_VERSION:
        raise bad(f"written by a newer pushforward (format {version}); please upgrade")
    for key in ("preset", "event_shape"):
        if key not in cfg:
            raise bad(f"the config lacks {key!r}")
    if not isinstance(cfg["preset"], str):
        raise bad(f"preset must be a name, got {cfg['preset']!r}")
    shape = cfg["event_shape"]
    if not isinstance(shape, list) or not shape or not all(_is_int(d) and 0 < d <= 2**16 for d in shape):
        raise bad(f"event_shape must be a list of positive integers (at most 65536), got {shape!r}")
    n_tensors = len(table)
    n_scalars = sum(math.prod(s) for _, s in table.values())
    features = math.prod(shape)
    if features > min(_MAX_FEATURES, max(n_scalars, 1)):
        raise bad(f"event_shape {shape} has {features} values, more than the file's weights can describe")
    context = cfg.get("context", 0)
    if not _is_int(context) or not 0 <= context <= max(n_scalars, 1):
        raise bad(f"context must be a non-negative integer the weights can describe, got {context!r}")
    dtype = cfg.get("dtype", "float32")
    if not isinstance(dtype, str) or dtype not in MODEL_DTYPES:
        raise bad(f"dtype {dtype!r} is not allowed; model files use one of {sorted(MODEL_DTYPES)}")
    options = cfg.get("options") or {}
    if not isinstance(options, dict):
        raise bad(f"options must be a JSON object, got {type(options).__name__}")
    for key, value in options.items():
        ints = _ints_in(value)
        if any(abs(i) > n_scalars for i in ints):
            raise bad(f"option {key}={value!r} exceeds the {n_scalars} scalars stored in the file")
        if key in _COUNT_OPTIONS and any(i > n_tensors for i in ints):
            raise bad(f"option {key}={value!r} asks for more blocks than the {n_tensors} tensors in the file")
        if isinstance(value, list):
            if len(value) > n_tensors:
                raise bad(
                    f"option {key} has {len(value)} entries, more than the {n_tensors} tensors in the file"
                )
            sizes = [v for v in value if _is_int(v)]
            pairs = [*zip(sizes, sizes[1:]), (sizes[0], max(1, shape[0] // 2))] if sizes else []
            if any(a * b > n_scalars for a, b in pairs):
                raise bad(
                    f"option {key}={value!r} implies more weights than the {n_scalars} stored in the file"
                )
    for key, kind in (("history", dict), ("validation", dict), ("standardize", dict), ("columns", list)):
        if cfg.get(key) is not None and not isinstance(cfg[key], kind):
            raise bad(f"{key} must be a JSON {'object' if kind is dict else 'array'} or null")


def _check_weights(flow: Flow, tensors: dict[str, torch.Tensor], preset: str, path: Path) -> None:
    """The flow's state must have exactly the file's tensor names and shapes."""
    want = {k: tuple(v.shape) for k, v in flow.state_dict().items()}
    have = {k: tuple(v.shape) for k, v in tensors.items()}
    if want == have:
        return
    missing, extra = sorted(set(want) - set(have)), sorted(set(have) - set(want))
    if missing or extra:
        detail = f"missing {missing[:3]}" if missing else f"unexpected {extra[:3]}"
    else:
        k = next(k for k in sorted(want) if want[k] != have[k])
        detail = f"{k} has shape {list(have[k])} in the file but the config implies {list(want[k])}"
    raise ModelFileError(f"{path}: the weights do not fit preset {preset!r}: {detail}")


def load_model(path: str | Path, map_location: str | torch.device = "cpu") -> tuple[Flow, dict]:
    """Read a model file: rebuild the flow from its config and load the weights (never unpickles).

    Returns:
        ``(flow, config)``, the flow in eval mode.

    Raises:
        FileNotFoundError: No such file.
        ModelFileError: Truncated, tampered, wrong format, unknown preset or mismatched weights.
    """
    from safetensors.torch import load

    p = Path(path)
    if not p.exists():
        raise FileNotFoundError(f"{p}: no such model file")
    if p.is_dir():
        raise ModelFileError(f"{p}: is a directory, not a model file")
    raw = p.read_bytes()
    header = _read_header(raw, p)
    meta = header.get("__metadata__") or {}
    if _KEY not in meta:
        raise ModelFileError(f"{p}: not a pushforward model file (no '{_KEY}' config in the header)")
    try:
        cfg = json.loads(meta[_KEY])
    except (TypeError, json.JSONDecodeError):
        raise ModelFileError(f"{p}: the config is corrupted (not valid JSON)") from None
    if not isinstance(cfg, dict) or cfg.get("format") != "pushforward-model":
        raise ModelFileError(f"{p}: not a pushforward model file")
    table = _tensor_table(header, p)
    _check_config(cfg, table, p)  # before anything is built or any weight is read
    try:
        tensors = load(raw)
    except Exception as e:  # safetensors raises its own error type for damaged payloads
        raise ModelFileError(f"{p}: corrupted or truncated weights ({str(e).splitlines()[0]})") from None
    if cfg.get("sha256") != _digest(cfg, tensors):
        raise ModelFileError(f"{p}: checksum mismatch; the file was modified or corrupted")
    try:
        flow = build_flow(
            cfg["preset"],
            tuple(cfg["event_shape"]),
            context=cfg.get("context", 0),
            options=cfg.get("options"),
        )
    except (ValueError, TypeError, OverflowError, MemoryError) as e:
        raise ModelFileError(f"{p}: {_one_line(e)}") from None
    _check_weights(flow, tensors, cfg["preset"], p)
    flow = flow.to(MODEL_DTYPES[cfg.get("dtype", "float32")])
    try:
        flow.load_state_dict(tensors, strict=True)
    except RuntimeError as e:
        first = " ".join(str(e).split())[:300]
        raise ModelFileError(f"{p}: the weights do not fit preset {cfg['preset']!r}: {first}") from None
    flow.to(map_location).eval()
    return flow, cfg


# ---------------------------------------------------------------------------------------------- model
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
            from .data.support import to_unconstrained

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
            from .data.support import from_unconstrained

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
        from .train.fit import fit

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
        from .data.support import support_from_config

        flow, cfg = load_model(path, map_location)
        std = cfg.get("standardize") or {}
        columns = cfg.get("columns")
        if columns is not None and (
            len(columns) != flow.features or not all(isinstance(c, str) for c in columns)
        ):
            raise ModelFileError(f"{path}: columns must be {flow.features} names")
        history = cfg.get("history")
        for key in ("steps", "train_nll", "val_nll"):
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
    from .data.support import dequantize, to_unconstrained

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

    from .data.support import dequantize, to_unconstrained

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
