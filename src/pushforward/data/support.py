r"""The measure of each column of a table: detection, overrides, dequantisation cells, rounding of samples.

Every column has a **support** and a **reference measure**, and a model's log-likelihood of a row is the
log-density with respect to the product of the columns' measures (one measure per kind below). A flow
models a continuous density on the real line, so each column is written as a *dequantised* continuous
variable :math:`v` on an interval :math:`(L, H)`, mapped to :math:`\mathbb{R}` by the bijections of
:class:`~pushforward.transforms.ColumnMaps` (log for one bound, logit for two); a value :math:`x` of
the column corresponds either to one point :math:`v = x` (continuous part) or to a **cell** :math:`[c^-,
c^+]` of :math:`v` (a point mass: a discrete level, an exact zero), whose probability is the integral of the
density of :math:`v` over the cell (Theis, van den Oord & Bethge, "A note on the evaluation of generative
models", ICLR 2016; Uria, Murray & Larochelle, "RNADE", NeurIPS 2013):

==================  =====================================  ===========================================
kind                support and measure                    log-likelihood of a value :math:`x`
==================  =====================================  ===========================================
``real``            :math:`\mathbb{R}`, Lebesgue           log-density
``positive``        :math:`x > a`, Lebesgue                log-density (:math:`v = x`, log map)
``nonnegative``     :math:`x \ge a`: a point mass at       :math:`\log P(x = a)` at :math:`a` (cell
                    :math:`a` plus Lebesgue on             :math:`(a - c, a]`), log-density above
                    :math:`x > a`
``interval``        :math:`a < x < b` (plus point masses   log-density inside, :math:`\log P` at an end
                    at an end listed in ``atoms``)         with a point mass (cell of width :math:`c`
                                                           beyond the end)
``count``           :math:`\{a, a + h, a + 2h, \dots\}`,   :math:`\log P(x)`, cell
                    counting measure                       :math:`[x - h/2, x + h/2]`
``integer``         :math:`h\mathbb{Z}`, counting          as ``count``, unbounded both ways
``categorical``     the listed ``levels``, counting        :math:`\log P(x)`, cell: the level's
                                                           Voronoi cell (midpoints to its neighbours)
``part``            one part of a composition: parts of    joint log-density of the first :math:`n-1`
                    ``group`` are positive and sum to      parts on the simplex (log-ratio map of
                    ``total``                              :class:`~pushforward.transforms.LogRatio`)
==================  =====================================  ===========================================

**Tails.** Every value inside the declared support has positive probability or density: unseen levels of a
count, and counts past the training maximum, lie in cells of the unbounded dequantised variable (log map,
so the tail is the flow's tail in :math:`\log(v - a + h/2)`); unseen values of a categorical column are
outside its support (declare them with ``categorical:L1:L2:...``). Values outside the support score
:math:`-\infty` and are reported (:func:`support_violations`).

**Detection** (:func:`detect_support`, the stated rule): integer-valued columns with two levels, or values
in :math:`\{0, 1\}`, are ``categorical``; other non-negative integer columns are ``count`` from 0 (any number
of levels: ages, years, test scores), integer columns with negatives ``integer``; non-integer columns with at
most :data:`MAX_LEVELS` distinct values (and more than ``2 * MAX_LEVELS`` rows) are ``categorical``. Other
columns are continuous: **shares** — all values in :math:`[0, 1]` and the maximum above 0.5 — are
``interval`` :math:`(0, 1)`; **percentages** — all values in :math:`[0, 100]`, the maximum above 75 and the
minimum below 10 — are ``interval`` :math:`(0, 100)`; exact 0s or ends of such intervals become point masses.
Otherwise a positive minimum gives ``positive`` from 0, a minimum of exactly 0 ``nonnegative`` (point
mass at 0), anything else ``real``. **Compositions**: two or more strictly positive continuous columns whose
row sums agree to a relative :math:`10^{-6}` (tried on all such columns, on those :math:`\le 1` and on those
:math:`\le 100`) become ``part`` columns of one group. The cell width :math:`c` of a point mass at a bound is
the median distance of the other values from that bound (capped at a quarter of an interval's width).

Example:
    >>> import numpy as np
    >>> rng = np.random.default_rng(0)
    >>> x = np.stack([rng.gamma(2.0, size=60), rng.integers(0, 2, size=60), rng.poisson(3.0, size=60)], 1)
    >>> [s.kind for s in detect_support(x)]
    ['positive', 'categorical', 'count']
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

__all__ = [
    "MAX_LEVELS",
    "ColumnSupport",
    "composition_groups",
    "dequantize",
    "describe_support",
    "detect_support",
    "parse_support",
    "support_from_config",
    "support_violations",
]

#: Non-integer columns with at most this many distinct values are detected as categorical.
MAX_LEVELS = 20
KINDS = ("real", "positive", "nonnegative", "interval", "count", "integer", "categorical", "part")
#: Kinds whose every value is a point mass (a cell of the dequantised variable).
DISCRETE_KINDS = ("count", "integer", "categorical")
_TOL = 1e-9


def _finite(v: object, name: str) -> float:
    if (
        isinstance(v, bool)
        or not isinstance(v, (int, float, np.integer, np.floating))
        or not math.isfinite(v)
    ):
        raise ValueError(f"{name} must be a finite number, got {v!r}")
    return float(v)


@dataclass
class ColumnSupport:
    """The support and reference measure of one column (see the module documentation for the kinds).

    Attributes:
        kind: One of ``real``, ``positive``, ``nonnegative``, ``interval``, ``count``, ``integer``,
            ``categorical``, ``part``.
        low, high: Bounds (``positive``/``nonnegative``/``count``: ``low``; ``interval``: both).
        atoms: Ends of an ``interval`` that carry a point mass.
        pad: Cell width of a point mass at a bound (``nonnegative``, ``interval`` atoms).
        step: Lattice step of ``count``/``integer`` (default 1).
        levels: The values of a ``categorical`` column (sorted).
        group, total: A ``part``'s composition index and the constant sum of its parts.
    """

    kind: str = "real"
    low: float | None = None
    high: float | None = None
    atoms: list[float] = field(default_factory=list)
    pad: float | None = None
    step: float | None = None
    levels: list[float] | None = None
    group: int | None = None
    total: float | None = None

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise ValueError(f"unknown support kind {self.kind!r}; valid kinds: {', '.join(KINDS)}")
        if self.kind in ("positive", "nonnegative", "interval", "count"):
            self.low = 0.0 if self.low is None else _finite(self.low, "low")
        if self.kind == "interval":
            self.high = 1.0 if self.high is None else _finite(self.high, "high")
            if not self.low < self.high:
                raise ValueError(f"interval support needs low < high, got [{self.low}, {self.high}]")
        if not isinstance(self.atoms, list):
            raise TypeError(f"atoms must be a list, got {type(self.atoms).__name__}")
        self.atoms = sorted({_finite(a, "atom") for a in self.atoms})
        if self.kind == "nonnegative":
            self.atoms = [self.low]
        if any(a not in (self.low, self.high) for a in self.atoms) or (
            self.atoms
            and self.kind
            not in (
                "interval",
                "nonnegative",
            )
        ):
            raise ValueError(
                f"point masses of a {self.kind} column can only sit at its bounds, got {self.atoms}"
            )
        if self.atoms:
            self.pad = _finite(1.0 if self.pad is None else self.pad, "pad")
            if not self.pad > 0:
                raise ValueError(f"the cell width of a point mass must be positive, got {self.pad}")
        if self.kind in ("count", "integer"):
            self.step = _finite(1.0 if self.step is None else self.step, "step")
            if not self.step > 0:
                raise ValueError(f"a lattice step must be positive, got {self.step}")
        if self.kind == "categorical":
            if not isinstance(self.levels, (list, tuple)) or len(self.levels) < 2:
                raise ValueError("a categorical column needs a list of at least 2 levels")
            self.levels = sorted({_finite(v, "level") for v in self.levels})
            if len(self.levels) < 2:
                raise ValueError("a categorical column needs at least 2 distinct levels")
        if self.kind == "part":
            if (
                isinstance(self.group, bool)
                or not isinstance(self.group, (int, np.integer))
                or self.group < 0
            ):
                raise ValueError(f"a part needs a group index >= 0, got {self.group!r}")
            self.total = _finite(self.total, "total")
            if not self.total > 0:
                raise ValueError(f"a composition's total must be positive, got {self.total}")

    # ------------------------------------------------------------------ properties
    @property
    def discrete(self) -> bool:
        """Whether every value of the column is a point mass."""
        return self.kind in DISCRETE_KINDS

    @property
    def has_atoms(self) -> bool:
        """Whether some values of the column are point masses."""
        return self.discrete or bool(self.atoms)

    def domain(self) -> tuple[str, float, float]:
        """``(map kind, L, H)``: the interval of the dequantised variable and the map of
        :class:`~pushforward.transforms.ColumnMaps` that takes it to the real line."""
        if self.kind in ("positive", "nonnegative"):
            return "lower", self.low - (self.pad if self.atoms else 0.0), 0.0
        if self.kind == "interval":
            lo = self.low - (self.pad if self.low in self.atoms else 0.0)
            hi = self.high + (self.pad if self.high in self.atoms else 0.0)
            return "interval", lo, hi
        if self.kind == "count":
            return "lower", self.low - self.step / 2, 0.0
        if self.kind == "categorical":
            edges = self._edges()
            return "interval", float(edges[0]), float(edges[-1])
        return "real", 0.0, 0.0

    def _edges(self) -> np.ndarray:
        lv = np.asarray(self.levels)
        mids = (lv[1:] + lv[:-1]) / 2
        return np.concatenate([[lv[0] - (mids[0] - lv[0])], mids, [lv[-1] + (lv[-1] - mids[-1])]])

    # ------------------------------------------------------------------ vectorised over one column
    def inside(self, x: np.ndarray) -> np.ndarray:
        """Which values lie in the support (``part``: each value positive; the sum is checked per group)."""
        x = np.asarray(x, dtype=np.float64)
        ok = np.isfinite(x)
        k = self.kind
        if k in ("positive", "part"):
            return ok & (x > (self.low if k == "positive" else 0.0))
        if k == "nonnegative":
            return ok & (x >= self.low)
        if k == "interval":
            inner = (x > self.low) & (x < self.high)
            return ok & (inner | np.isin(x, self.atoms))
        if k in ("count", "integer"):
            base = self.low if k == "count" else 0.0
            t = (x - base) / self.step
            on = np.abs(t - np.round(t)) <= _TOL * np.maximum(1.0, np.abs(t))
            return ok & on & ((x >= self.low) if k == "count" else True)
        if k == "categorical":
            lv = np.asarray(self.levels)
            return ok & (np.abs(x[:, None] - lv[None, :]) <= _TOL * np.maximum(1.0, np.abs(lv))).any(1)
        return ok

    def cells(self, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """``(lo, hi)`` of each value's cell of the dequantised variable; NaN for values of the continuous
        part (values must be inside the support)."""
        x = np.asarray(x, dtype=np.float64)
        lo, hi = np.full_like(x, np.nan), np.full_like(x, np.nan)
        if self.kind in ("count", "integer"):
            lo, hi = x - self.step / 2, x + self.step / 2
        elif self.kind == "categorical":
            edges = self._edges()
            i = np.abs(x[:, None] - np.asarray(self.levels)[None, :]).argmin(1)
            lo, hi = edges[i], edges[i + 1]
        elif self.atoms:
            top = self.high if self.high in self.atoms else math.nan
            at_low, at_high = x == self.low, x == top
            lo = np.where(at_low, self.low - self.pad, np.where(at_high, top, np.nan))
            hi = np.where(at_low, self.low, np.where(at_high, top + self.pad, np.nan))
        return lo, hi

    def round(self, v: np.ndarray) -> np.ndarray:
        """Dequantised values (from the model) → values of the support: cells to their point mass, the
        continuous part kept strictly inside its bounds."""
        v = np.asarray(v, dtype=np.float64)
        k = self.kind
        if k in ("count", "integer"):
            base = self.low if k == "count" else 0.0
            out = base + np.round((v - base) / self.step) * self.step
            return np.maximum(out, self.low) if k == "count" else out
        if k == "categorical":
            return np.asarray(self.levels)[
                np.clip(np.searchsorted(self._edges()[1:-1], v), 0, len(self.levels) - 1)
            ]
        if k in ("positive", "nonnegative"):
            above = np.maximum(v, np.nextafter(self.low, np.inf))
            return np.where(v <= self.low, self.low, above) if self.atoms else above
        if k == "interval":
            out = np.clip(v, np.nextafter(self.low, np.inf), np.nextafter(self.high, -np.inf))
            if self.low in self.atoms:
                out = np.where(v <= self.low, self.low, out)
            if self.high in self.atoms:
                out = np.where(v >= self.high, self.high, out)
            return out
        return v

    # ------------------------------------------------------------------ text
    def as_dict(self) -> dict:
        """A JSON-serialisable dictionary (see :func:`support_from_config`)."""
        return {k: v for k, v in self.__dict__.items() if v is not None and v != []}

    def describe(self) -> str:
        """A short human-readable description, e.g. ``count {0, 1, 2, ...}`` or ``positive (> 0)``."""
        k = self.kind
        if k == "categorical":
            lv = self.levels
            shown = ", ".join(f"{v:g}" for v in lv[:6]) + (", ..." if len(lv) > 6 else "")
            return f"{'binary' if len(lv) == 2 else f'categorical, {len(lv)} levels'} {{{shown}}}"
        if k == "count":
            return f"count {{{self.low:g}, {self.low + self.step:g}, ...}} (dequantised, log-probability)"
        if k == "integer":
            return f"integer (multiples of {self.step:g}; dequantised, log-probability)"
        if k == "positive":
            return f"positive (> {self.low:g})"
        if k == "nonnegative":
            return f"non-negative: point mass at {self.low:g} plus a density above it"
        if k == "interval":
            masses = f", point mass at {', '.join(f'{a:g}' for a in self.atoms)}" if self.atoms else ""
            return f"interval ({self.low:g}, {self.high:g}){masses}"
        if k == "part":
            return f"part of composition {self.group} (parts sum to {self.total:g})"
        return "real"


# ---------------------------------------------------------------------------------- detection
#: Integers at or beyond 2**52 have no room for a unit-width bin in float64 (v ± 1/2 rounds onto v's
#: neighbours), so a column holding one is detected as continuous, not as integers or counts.
_LARGEST_BINNED_INTEGER = 2.0**52


def _integer_valued(col: np.ndarray) -> bool:
    if col.size and float(np.max(np.abs(col))) >= _LARGEST_BINNED_INTEGER:
        return False
    return bool(np.all(np.abs(col - np.round(col)) <= _TOL * np.maximum(1.0, np.abs(col))))


def _pad(distances: np.ndarray, cap: float = math.inf) -> float:
    d = distances[distances > 0]
    return float(min(np.median(d), cap)) if d.size else 1.0


def _detect_column(col: np.ndarray) -> ColumnSupport:
    values = np.unique(col)
    if values.size >= 2 and _integer_valued(values):
        if values.size == 2:
            return ColumnSupport("categorical", levels=values.tolist())
        if values.min() >= 0:
            return ColumnSupport("count", low=0.0)
        return ColumnSupport("integer")
    if 2 <= values.size <= MAX_LEVELS and col.size > 2 * MAX_LEVELS:
        return ColumnSupport("categorical", levels=values.tolist())
    lo, hi = float(col.min()), float(col.max())
    for top, rule in ((1.0, lambda: hi > 0.5), (100.0, lambda: hi > 75 and lo < 10)):
        if lo >= 0 and hi <= top and rule():
            atoms = [a for a in (0.0, top) if np.any(col == a)]
            inner = col[(col > 0) & (col < top)]
            pad = min(_pad(inner), _pad(top - inner)) if inner.size else 0.25 * top
            return ColumnSupport("interval", low=0.0, high=top, atoms=atoms, pad=min(pad, 0.25 * top))
    if lo > 0:
        return ColumnSupport("positive", low=0.0)
    if lo == 0:
        return ColumnSupport("nonnegative", low=0.0, pad=_pad(col))
    return ColumnSupport("real")


def _detect_compositions(a: np.ndarray, out: list[ColumnSupport]) -> None:
    """Mark groups of strictly positive continuous columns with a constant row sum as ``part`` columns
    (every subset of up to 12 candidates, largest first; beyond 12 candidates the sets of all of them,
    of those <= 1 and of those <= 100)."""
    from itertools import combinations

    cand = [
        j
        for j, s in enumerate(out)
        if s.kind in ("positive", "interval") and not s.atoms and a[:, j].min() > 0
    ]
    if len(cand) <= 12:
        subsets = (list(c) for r in range(len(cand), 1, -1) for c in combinations(cand, r))
    else:
        subsets = iter([[j for j in cand if a[:, j].max() <= top] for top in (math.inf, 1.0, 100.0)])
    group, used = 0, set()
    for cols in subsets:
        if len(cols) < 2 or used & set(cols):
            continue
        s = a[:, cols].sum(1)
        total = float(np.median(s))
        if total > 0 and np.all(np.abs(s - total) <= 1e-6 * total):
            for c in (1.0, 100.0):
                total = c if abs(total - c) <= 1e-6 * c else total
            for j in cols:
                out[j] = ColumnSupport("part", group=group, total=total)
            used |= set(cols)
            group += 1


def detect_support(x: np.ndarray) -> list[ColumnSupport]:
    """Each column's measure by the rule of the module documentation (compositions included)."""
    a = np.asarray(x, dtype=np.float64)
    if a.ndim != 2 or a.shape[0] == 0:
        raise ValueError(f"data must be a non-empty 2-D array (rows, columns), got shape {a.shape}")
    if not np.isfinite(a).all():
        raise ValueError("data contains NaN or infinite values")
    out = [_detect_column(col) for col in a.T]
    _detect_compositions(a, out)
    return out


# ---------------------------------------------------------------------------------- overrides
def parse_support(spec: str | dict | None, columns: Sequence[str], x: np.ndarray) -> list[ColumnSupport]:
    """Detected supports with overrides: ``spec`` maps a column (name or 0-based index) to ``auto``,
    ``real``, ``positive[:LOW]``, ``nonnegative[:LOW]``, ``interval:LOW:HIGH``, ``count[:LOW]``,
    ``integer``, ``categorical[:L1:L2:...]`` (levels from the data when not listed; ``discrete`` and
    ``binary`` are aliases) or ``part:TOTAL`` (all ``part`` columns with one total form a composition).

    As a string: ``"age=count,sex=categorical,score=interval:0:10"``; ``"none"`` makes every column real.
    Data outside an override's support raise ``ValueError``.
    """
    a = np.asarray(x, dtype=np.float64)
    names = list(columns)
    if spec is None or spec == "auto":
        return detect_support(a)
    if spec == "none":
        return [ColumnSupport("real") for _ in names]
    if isinstance(spec, str):
        items = {}
        for part in filter(None, (p.strip() for p in spec.split(","))):
            if "=" not in part:
                raise ValueError(f"support entry {part!r} must look like COLUMN=KIND")
            k, v = part.split("=", 1)
            items[k.strip()] = v.strip()
        spec = items
    if not isinstance(spec, dict):
        raise TypeError(f"support must be 'auto', 'none', a string or a dict, got {type(spec).__name__}")
    out = detect_support(a)
    groups: dict[float, int] = {}
    for key, value in spec.items():
        j = _column_index(key, names)
        out[j] = _parse_kind(str(value), a[:, j], names[j], groups)
    bad = support_violations(a, out, names)
    if bad:
        v = bad[0]
        raise ValueError(
            f"column {v['column']}: {len(bad)} value(s) lie outside the support {v['support']}, first at row "
            f"{v['row']} ({v['value']:g})"
        )
    return out


def _column_index(key: object, names: list[str]) -> int:
    if isinstance(key, (int, np.integer)) and not isinstance(key, bool) and 0 <= key < len(names):
        return int(key)
    if str(key) in names:
        return names.index(str(key))
    if str(key).isdigit() and int(str(key)) < len(names):
        return int(str(key))
    raise ValueError(f"support names an unknown column {key!r}; columns: {', '.join(names)}")


def _parse_kind(text: str, col: np.ndarray, name: str, groups: dict[float, int]) -> ColumnSupport:
    parts = text.split(":")
    kind = parts[0].strip().lower()
    try:
        nums = [float(p) for p in parts[1:]]
    except ValueError:
        raise ValueError(f"column {name}: bad support {text!r} (bounds must be numbers)") from None
    try:
        if kind == "auto":
            return _detect_column(col)
        if kind == "real":
            return ColumnSupport("real")
        if kind in ("positive", "count"):
            return ColumnSupport(kind, low=nums[0] if nums else 0.0)
        if kind == "nonnegative":
            lo = nums[0] if nums else 0.0
            return ColumnSupport("nonnegative", low=lo, pad=_pad(col - lo))
        if kind == "integer":
            return ColumnSupport("integer")
        if kind == "interval":
            if len(nums) != 2:
                raise ValueError("interval support needs interval:LOW:HIGH")
            lo, hi = nums
            atoms = [e for e in (lo, hi) if np.any(col == e)]
            inner = col[(col > lo) & (col < hi)]
            pad = min(_pad(inner - lo), _pad(hi - inner), 0.25 * (hi - lo))
            return ColumnSupport("interval", low=lo, high=hi, atoms=atoms, pad=pad)
        if kind in ("categorical", "discrete", "binary"):
            return ColumnSupport("categorical", levels=nums or np.unique(col).tolist())
        if kind == "part":
            total = nums[0] if nums else 1.0
            return ColumnSupport("part", group=groups.setdefault(total, 1000 + len(groups)), total=total)
    except ValueError as e:
        raise ValueError(f"column {name}: {e}") from None
    raise ValueError(
        f"column {name}: unknown support {text!r}; valid: auto, real, positive[:LOW], nonnegative[:LOW], "
        "interval:LOW:HIGH, count[:LOW], integer, categorical[:L1:L2:...], part:TOTAL"
    )


def support_from_config(items: Sequence[dict] | None) -> list[ColumnSupport] | None:
    """Supports from their :meth:`ColumnSupport.as_dict` forms (``None`` stays ``None``); old model
    files' discrete columns (``levels`` on an interval) read as categorical."""
    if items is None:
        return None
    if not isinstance(items, (list, tuple)):
        raise ValueError("support must be a list of column descriptions")
    out = []
    for d in items:
        if not isinstance(d, dict):
            raise ValueError("each column support must be a dict")
        d = dict(d)
        if d.get("levels") is not None and d.get("kind") != "categorical":
            d = {"kind": "categorical", "levels": d["levels"]}
        allowed = set(ColumnSupport.__dataclass_fields__)
        if not set(d) <= allowed:
            raise ValueError(f"unknown support fields {sorted(set(d) - allowed)}")
        out.append(ColumnSupport(**d))
    return out


def describe_support(supports: Sequence[ColumnSupport], columns: Sequence[str]) -> list[str]:
    """One line per non-real column: ``name: description``."""
    return [f"{n}: {s.describe()}" for n, s in zip(columns, supports, strict=True) if s.kind != "real"]


def composition_groups(supports: Sequence[ColumnSupport]) -> list[tuple[list[int], float]]:
    """``(column indices, total)`` of each composition, in group order (raises on a one-part group or
    parts of one group with different totals)."""
    groups: dict[int, tuple[list[int], float]] = {}
    for j, s in enumerate(supports):
        if s.kind == "part":
            cols, total = groups.setdefault(int(s.group), ([], float(s.total)))
            if total != s.total:
                raise ValueError(f"composition {s.group} has parts with different totals")
            cols.append(j)
    for g, (cols, _) in groups.items():
        if len(cols) < 2:
            raise ValueError(f"composition {g} has a single part; a composition needs at least 2 columns")
    return [groups[g] for g in sorted(groups)]


def support_violations(
    x: np.ndarray,
    supports: Sequence[ColumnSupport],
    columns: Sequence[str] | None = None,
    *,
    rtol: float = 1e-6,
) -> list[dict]:
    """Every value outside its column's support, as ``{"row", "column", "value", "support"}`` dicts (0-based
    rows; ``column`` by name when ``columns`` is given); for a composition whose parts do not sum to its
    total (relative ``rtol``), one entry per row naming the group's first column and the sum."""
    a = np.asarray(x, dtype=np.float64)
    names = list(columns) if columns is not None else [str(j) for j in range(a.shape[1])]
    out = []
    for j, s in enumerate(supports):
        for i in np.flatnonzero(~s.inside(a[:, j])):
            out.append({"row": int(i), "column": names[j], "value": float(a[i, j]), "support": s.describe()})
    for cols, total in composition_groups(supports):
        sums = a[:, cols].sum(1)
        for i in np.flatnonzero(~(np.abs(sums - total) <= rtol * total)):
            out.append(
                {
                    "row": int(i),
                    "column": names[cols[0]],
                    "value": float(sums[i]),
                    "support": f"parts {', '.join(names[c] for c in cols)} sum to {total:g}",
                }
            )
    return sorted(out, key=lambda v: (v["row"], v["column"]))


def dequantize(x: np.ndarray, supports: Sequence[ColumnSupport], rng: np.random.Generator) -> np.ndarray:
    """``x`` with each point mass replaced by a uniform draw from its cell (other values unchanged)."""
    a = np.array(x, dtype=np.float64, copy=True)
    for j, s in enumerate(supports):
        if s.has_atoms:
            lo, hi = s.cells(a[:, j])
            at = np.isfinite(lo)
            u = rng.random(int(at.sum()))
            a[at, j] = lo[at] + np.clip(u, 1e-6, 1 - 1e-6) * (hi[at] - lo[at])
    return a
