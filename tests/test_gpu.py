"""Every preset on CUDA: moved with ``.to("cuda")``, same log-densities as on CPU, sampling, a short fit and
model files. Marked ``gpu``; skipped where no CUDA device exists (CI never needs one)::

    pytest -m gpu tests/test_gpu.py
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from pushforward.flows import PRESETS
from pushforward.io import build_flow
from pushforward.tabular import FlowModel

pytestmark = [
    pytest.mark.gpu,
    pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device"),
]

VECTOR = sorted(k for k in PRESETS if k not in ("realnvp_image", "glow"))
IMAGE = ["realnvp_image", "glow"]
STOCHASTIC = {"ffjord", "residual"}  # random trace / log-det estimators: values differ between RNG streams


def _small(name: str) -> dict:
    opts: dict = {"layers": 2}
    if name in ("realnvp_image", "glow"):
        return {}
    if name not in ("planar", "radial", "sylvester"):
        opts["hidden"] = [16, 16]
    return opts


def _perturb(flow, seed=0):
    torch.manual_seed(seed)
    with torch.no_grad():
        for p in flow.parameters():
            p.add_(0.02 * torch.randn_like(p))
    return flow


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("name", VECTOR)
def test_vector_preset_on_cuda(name, dtype):
    torch.manual_seed(0)
    cpu = _perturb(build_flow(name, 3, options=_small(name)).to(dtype))
    x = torch.randn(64, 3, dtype=dtype)
    ref = cpu.log_prob(x).detach()
    gpu = cpu.to("cuda")
    assert all(p.device.type == "cuda" for p in gpu.parameters())
    lp = gpu.log_prob(x.to("cuda"))
    assert lp.device.type == "cuda"
    tol = 1e-3 if dtype == torch.float32 else 1e-8
    if name in STOCHASTIC:
        assert bool(torch.isfinite(lp).all())
    else:
        torch.testing.assert_close(lp.detach().cpu(), ref, rtol=tol, atol=tol)
    (-lp.mean()).backward()  # gradients flow on the device
    assert all(p.grad is None or p.grad.device.type == "cuda" for p in gpu.parameters())
    s = gpu.sample((16,))
    assert s.device.type == "cuda" and s.shape == (16, 3) and bool(torch.isfinite(s).all())


@pytest.mark.parametrize("name", IMAGE)
def test_image_preset_on_cuda(name):
    torch.manual_seed(0)
    flow = build_flow(name, (1, 8, 8), options=_small(name)).to("cuda")
    x = torch.rand(4, 1, 8, 8, device="cuda")
    lp = flow.log_prob(x)
    assert lp.shape == (4,) and bool(torch.isfinite(lp).all())
    assert flow.sample((2,)).device.type == "cuda"


@pytest.mark.parametrize("name", ["maf", "nsf", "realnvp"])
def test_fit_and_model_file_on_cuda(name, tmp_path):
    rng = np.random.default_rng(0)
    x = rng.normal(size=(512, 3)) @ np.array([[1.0, 0.5, 0.0], [0.0, 1.0, 0.3], [0.0, 0.0, 1.0]])
    model = FlowModel.train(x, name, options=_small(name), device="cuda", steps=30, progress=False)
    assert next(model.flow.parameters()).device.type == "cuda"
    lp = model.log_prob(x[:50])
    assert np.isfinite(lp).all()
    path = tmp_path / "model.safetensors"
    model.save(path)
    back = FlowModel.load(path, map_location="cuda")
    assert next(back.flow.parameters()).device.type == "cuda"
    np.testing.assert_allclose(back.log_prob(x[:50]), lp, rtol=1e-5, atol=1e-5)
    cpu = FlowModel.load(path)  # and back on the CPU
    np.testing.assert_allclose(cpu.log_prob(x[:50]), lp, rtol=1e-4, atol=1e-4)
    assert model.sample(20, seed=1).shape == (20, 3)
