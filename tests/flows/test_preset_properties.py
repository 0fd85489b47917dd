"""The audit as a property test: every preset in ``flows.PRESETS``, in float32 and float64, with its
parameters perturbed away from the identity (where every check is trivial).

* ``log_prob`` of samples is finite and equals the log-density ``sample_and_log_prob`` returns;
* the round trip ``inverse(forward(x))`` returns ``x`` within a tolerance that follows the dtype;
* in 2-D (float64) the density integrates to 1 within 1e-3 on a grid wide enough for heavy tails.

Models are small so that the whole module runs in CI; the FFJORD quadrature is marked slow.
"""

from __future__ import annotations

import math

import pytest
import torch

from pushforward.flows import PRESETS

from .quadrature import mass_2d, perturbed

DTYPES = [torch.float32, torch.float64]
IMAGE = {"realnvp_image", "glow"}

#: Small models of every preset (vector presets on 2 features; image presets on their smallest images).
OPTIONS: dict[str, dict] = {
    "nice": dict(layers=2, hidden=(8, 8)),
    "realnvp": dict(layers=2, hidden=(8, 8)),
    "maf": dict(layers=2, hidden=(8, 8)),
    "iaf": dict(layers=2, hidden=(8, 8)),
    "nsf": dict(layers=2, hidden=(8, 8), bins=4),
    "naf": dict(layers=2, hidden=(8, 8), units=4),
    "bnaf": dict(layers=2, hidden=(4, 4)),
    "planar": dict(layers=3),
    "radial": dict(layers=3),
    "sylvester": dict(layers=2),
    "realnvp_image": dict(scales=1, layers=1, hidden=(4,)),
    "glow": dict(levels=1, steps=1, hidden=(4,)),
    "residual": dict(layers=2, hidden=(8, 8)),
    "ffjord": dict(hidden=(8,), rtol=1e-7, atol=1e-7),
}
SHAPES = {"realnvp_image": (1, 1, 2), "glow": (1, 2, 2)}
#: Perturbation of the parameters: large enough to leave the identity, mild enough that a deep-sigmoid
#: flow (NAF) is not saturated in float32 (where its inverse would rightly refuse to answer) and that the
#: image preset keeps its mass within |logit x| < 27, the float64 range of the quadrature on the square.
SCALE = {"naf": 0.1, "realnvp_image": 0.1}


def test_every_preset_is_covered():
    assert set(OPTIONS) == set(PRESETS), set(PRESETS) ^ set(OPTIONS)


def _data(name: str, n: int, dtype: torch.dtype, generator: torch.Generator) -> torch.Tensor:
    if name in IMAGE:
        return (
            torch.rand(n, *SHAPES[name], generator=generator, dtype=torch.float64).clamp(0.01, 0.99).to(dtype)
        )
    return torch.randn(n, 2, generator=generator, dtype=torch.float64).to(dtype)


def _flow(name: str, dtype: torch.dtype, seed: int = 0):
    torch.manual_seed(seed)
    first = SHAPES.get(name, 2)
    options = dict(OPTIONS[name])
    if name == "ffjord" and dtype == torch.float32:
        options.update(rtol=1e-5, atol=1e-5)  # the solver cannot reach 1e-7 in float32
    flow = PRESETS[name](first, **options).to(dtype)
    g = torch.Generator().manual_seed(seed + 1)
    with torch.no_grad():
        flow.log_prob(_data(name, 64, dtype, g))  # data-dependent initialisation (ActNorm)
    perturbed(flow, SCALE.get(name, 0.3), seed)
    return flow.eval()


def _tol(dtype: torch.dtype) -> float:
    return 200 * math.sqrt(torch.finfo(dtype).eps)  # 0.07 in float32 (log-density units), 3e-6 in float64


@pytest.mark.parametrize("dtype", DTYPES, ids=["float32", "float64"])
@pytest.mark.parametrize("name", sorted(OPTIONS))
def test_samples_log_prob_and_round_trip(name, dtype):
    flow = _flow(name, dtype)
    torch.manual_seed(2)
    with torch.no_grad():
        x, lp_sample = flow.sample_and_log_prob((16 if name == "bnaf" else 64,))  # BNAF inverts by bisection
        assert x.dtype == dtype and bool(torch.isfinite(x).all())
        lp = flow.log_prob(x)
        assert bool(torch.isfinite(lp).all()), f"{name}: non-finite log_prob of its own samples"
        tol = _tol(dtype)
        err = (lp - lp_sample).abs() / (1 + lp.abs())
        assert float(err.max()) < tol, (name, float(err.max()))
        z, _ = flow.transform(x.reshape(-1, *flow.event_shape))
        back, _ = flow.transform.inverse(z)
    scale = 1 + x.abs().flatten(1).amax(1)
    gap = (back.reshape(x.shape) - x).abs().flatten(1).amax(1) / scale
    assert float(gap.max()) < tol, (name, float(gap.max()))


def _mass(name: str) -> float:
    flow = _flow(name, torch.float64)
    if name == "realnvp_image":  # a density on the open square: integrate in t = logit(x)
        f = torch.nn.functional

        def log_prob(t):
            jac = (f.logsigmoid(t) + f.logsigmoid(-t)).sum(-1)
            return flow.log_prob(torch.sigmoid(t).reshape(-1, *SHAPES[name])) + jac

        return mass_2d(log_prob, half_width=4.0)  # |t| <= 27: sigmoid(t) stays below 1 in float64
    return mass_2d(flow.log_prob)


MASS_FAST = sorted(set(OPTIONS) - {"glow", "ffjord"})


@pytest.mark.parametrize("name", MASS_FAST)
def test_2d_mass_is_one(name):
    assert abs(_mass(name) - 1.0) < 1e-3


@pytest.mark.slow
def test_2d_mass_is_one_ffjord():
    assert abs(_mass("ffjord") - 1.0) < 1e-3


def test_glow_has_no_2d_case():
    # Glow squeezes before its first step, so its smallest image is 2x2 (4-D): its normalisation is covered
    # by the shared checks above and the image tests, not by a 2-D grid
    with pytest.raises(ValueError):
        PRESETS["glow"]((1, 1, 2), **OPTIONS["glow"])
