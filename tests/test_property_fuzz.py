"""Property-based fuzz of the public API (``hypothesis``): every preset × entry point × hostile value (shapes,
dtypes, NaN/inf, huge values, wrong types, bool-as-int, bad contexts and sample shapes) either returns a
finite result of the right shape or raises a clear ``ValueError`` / ``TypeError`` (or ``NotImplementedError``
for a preset without that direction). Counted failures: *ugly* crashes (any other exception) and *silent*
results (NaN, or inf without a warning, from an input in the support).

Sized for CI (derandomised, a fixed number of examples, under a minute); ``benchmarks/fuzz.py`` runs the same
harness with many more examples and reports the counts. Model files are fuzzed in tests/test_model_file_fuzz.py.
"""

from __future__ import annotations

import math
import warnings
from collections import Counter
from dataclasses import dataclass, field

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pushforward.flows import PRESETS

from .small_presets import IMAGE, SMALL

CLEAN = (ValueError, TypeError, NotImplementedError)  # library errors (ConvergenceError, ...) are ValueErrors

CONDITIONAL = ("realnvp", "maf", "nsf", "glow")
DENSITY = ("log_prob", "call", "forward", "inverse")
SAMPLING = ("sample", "sample_and_log_prob")

_FLOWS: dict[tuple[str, torch.dtype, int], torch.nn.Module] = {}


def flow_for(name: str, dtype: torch.dtype, context: int):
    """A small preset, weights perturbed away from the identity (0.1·randn), in eval mode; cached."""
    key = (name, dtype, context)
    if key not in _FLOWS:
        torch.manual_seed(0)
        if name in IMAGE:
            flow = PRESETS[name]((1, 4, 4), context=context, **IMAGE[name])
        else:
            flow = PRESETS[name](3, context=context, **SMALL[name])
        with torch.no_grad():
            for p in flow.parameters():
                p.add_(0.1 * torch.randn_like(p))
        _FLOWS[key] = flow.to(dtype).eval()
    return _FLOWS[key]


# ---------------------------------------------------------------------------------------- strategies
VALUES = st.one_of(
    st.floats(-3, 3, width=32),
    st.sampled_from(
        [0.0, 1e-30, 0.5, 1.0, -1.0, 1e6, -1e6, 1e30, -1e30, 3e38, float("nan"), float("inf"), -float("inf")]
    ),
)
DTYPES = [torch.float32, torch.float64, torch.float16, torch.int64, torch.bool, torch.complex64]


@st.composite
def tensors(draw, event: tuple[int, ...], dtype: torch.dtype, image: bool):
    """Mostly well-formed ``(batch, *event)`` tensors of the flow's dtype; sometimes another shape or dtype;
    values from a hostile set (NaN, inf, 1e30, 3e38, out of (0, 1) for images)."""
    batch = draw(st.integers(0, 4))
    shape: tuple[int, ...] = (batch, *event)
    kind = draw(st.integers(0, 9))
    if kind == 0:
        shape = tuple(draw(st.lists(st.integers(0, 4), min_size=0, max_size=4)))
    elif kind == 1:
        shape = (batch, *(s + draw(st.integers(-1, 1)) if s > 1 else s for s in event))
    elif kind == 2:
        shape = (2, batch, *event)  # an extra batch dimension
    dt = draw(st.sampled_from(DTYPES)) if draw(st.integers(0, 5)) == 0 else dtype
    n = math.prod(shape)
    if draw(st.booleans()):
        base = torch.rand(shape, dtype=torch.float64) if image else torch.randn(shape, dtype=torch.float64)
        values = base.reshape(-1)
        for i in draw(st.lists(st.integers(0, max(n - 1, 0)), max_size=3)) if n else []:
            values[i] = draw(VALUES)
        t = values.reshape(shape)
    else:
        t = torch.tensor(draw(st.lists(VALUES, min_size=n, max_size=n)), dtype=torch.float64).reshape(shape)
    if dt in (torch.int64, torch.bool):
        t = torch.nan_to_num(t, nan=0.0, posinf=1.0, neginf=-1.0).clamp(-1e6, 1e6)
    return t.to(dt)


NON_TENSORS = st.sampled_from(
    [None, "x", 3, True, 2.5, [[0.0, 0.0, 0.0]], np.zeros((2, 3)), np.zeros((2, 1, 4, 4))]
)
SAMPLE_SHAPES = st.one_of(
    st.integers(-3, 5),
    st.sampled_from(
        [10**12, 2**40, (10**7, 10**7), 2.5, "3", True, False, None, (2, -1), (0,), (), torch.Size([2])]
    ),
    st.sampled_from([np.int64(2), torch.tensor(3), torch.tensor([2, 1]), torch.tensor(2.5), [2, True]]),
    st.lists(st.integers(0, 3), max_size=3).map(tuple),
)


@st.composite
def contexts(draw, flow, batch: int):
    k = flow.context_features
    dtype = flow.dtype
    choice = draw(st.integers(0, 9))
    if not k:
        return None if choice < 9 else torch.zeros(batch, 2, dtype=dtype)
    options = [
        lambda: torch.randn(batch, k, dtype=dtype),
        lambda: torch.randn(batch, k, dtype=dtype),
        lambda: torch.randn(batch, k, dtype=dtype),
        lambda: torch.randn(k, dtype=dtype),
        lambda: None,
        lambda: torch.full((batch, k), float("nan"), dtype=dtype),
        lambda: torch.randn(batch + 1, k, dtype=dtype),
        lambda: torch.randn(batch, k + 1, dtype=dtype),
        lambda: torch.randn(batch, k, dtype=torch.float64 if dtype == torch.float32 else torch.float32),
        lambda: np.zeros((batch, k)),
    ]
    return options[choice]()


@dataclass
class Case:
    name: str
    dtype: torch.dtype
    context: int
    method: str
    arg: object
    ctx: object = None

    def __repr__(self) -> str:
        a = self.arg
        desc = f"tensor{tuple(a.shape)} {a.dtype}" if isinstance(a, torch.Tensor) else repr(a)[:60]
        c = (
            f"tensor{tuple(self.ctx.shape)} {self.ctx.dtype}"
            if isinstance(self.ctx, torch.Tensor)
            else repr(self.ctx)
        )
        return f"{self.name}/{self.dtype}/ctx{self.context}.{self.method}({desc}, context={c})"


@st.composite
def cases(draw, methods: tuple[str, ...]):
    name = draw(st.sampled_from(sorted(PRESETS)))
    context = 2 if name in CONDITIONAL and draw(st.booleans()) else 0
    dtype = draw(st.sampled_from([torch.float32, torch.float64]))
    flow = flow_for(name, dtype, context)
    method = draw(st.sampled_from(methods))
    if method in SAMPLING:
        arg = draw(SAMPLE_SHAPES)
        batch = draw(st.integers(1, 3))
    else:
        event = flow.event_shape if method != "inverse" else flow.transform.latent_shape
        arg = (
            draw(st.one_of(tensors(tuple(event), dtype, name in IMAGE), NON_TENSORS))
            if draw(st.integers(0, 7))
            else draw(NON_TENSORS)
        )
        batch = arg.shape[0] if isinstance(arg, torch.Tensor) and arg.dim() else 1
    return Case(name, dtype, context, method, arg, draw(contexts(flow, batch)))


# ---------------------------------------------------------------------------------------- the property
def in_support(case: Case, flow) -> bool:
    """Whether the input is a finite tensor of the right dtype, in the data's support (images: (0, 1))."""
    x = case.arg
    if not isinstance(x, torch.Tensor) or x.dtype != case.dtype or not bool(torch.isfinite(x).all()):
        return False
    return not (case.name in IMAGE and case.method != "inverse" and bool(((x <= 0) | (x >= 1)).any()))


def run(case: Case) -> str:
    """``"ok"``, ``"refused"`` (a clean error), ``"ugly"`` (another exception) or ``"silent"`` (NaN or an
    unannounced inf from an input in the support)."""
    flow = flow_for(case.name, case.dtype, case.context)
    calls = {
        "log_prob": lambda: flow.log_prob(case.arg, case.ctx),
        "call": lambda: flow.transform(case.arg, case.ctx),
        "forward": lambda: flow.transform.forward(case.arg, case.ctx),
        "inverse": lambda: flow.transform.inverse(case.arg, case.ctx),
        "sample": lambda: flow.sample(case.arg, case.ctx),
        "sample_and_log_prob": lambda: flow.sample_and_log_prob(case.arg, case.ctx),
    }
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            with torch.no_grad():
                out = calls[case.method]()
        except CLEAN as e:
            return "refused" if str(e).strip() else "ugly"
        except Exception:  # counting every other exception is the point
            return "ugly"
    warned = any(issubclass(w.category, RuntimeWarning) for w in caught)
    outs = out if isinstance(out, tuple) else (out,)
    if any(bool(torch.isnan(t).any()) for t in outs):
        return "silent" if case.method in SAMPLING or in_support(case, flow) else "ok"
    if any(not bool(torch.isfinite(t).all()) for t in outs) and not warned:
        return "silent" if case.method in SAMPLING or in_support(case, flow) else "ok"
    return "ok"


@dataclass
class Tally:
    counts: Counter = field(default_factory=Counter)
    bad: list[tuple[str, Case]] = field(default_factory=list)

    def record(self, case: Case) -> None:
        outcome = run(case)
        self.counts[outcome] += 1
        if outcome in ("ugly", "silent"):
            self.bad.append((outcome, case))


CI = settings(
    max_examples=150, deadline=None, derandomize=True, suppress_health_check=list(HealthCheck), database=None
)


@pytest.mark.parametrize("methods", [DENSITY, SAMPLING], ids=["density", "sampling"])
def test_public_api_has_no_ugly_crash_and_no_silent_result(methods):
    torch.set_num_threads(1)
    tally = Tally()

    @CI
    @given(case=cases(methods))
    def explore(case):
        tally.record(case)

    explore()
    assert not tally.bad, [f"{o}: {c!r}" for o, c in tally.bad[:10]]
    assert tally.counts["refused"] > 10 and tally.counts["ok"] > 10, tally.counts  # both sides exercised
