"""Kernel backends (nets/fast_linear.py): the default path is public PyTorch only; the opt-in oneDNN backend
gives the same results; block-triangular MADE layers equal the dense masked layers."""

from __future__ import annotations

import pytest
import torch

from pushforward.flows import MAF, NSF, RealNVP
from pushforward.nets import MADE, fast_linear, masked_blocks
from pushforward.nets.masked_blocks import LayerPlan


def _perturbed(flow, dtype=torch.float32, seed=0):
    torch.manual_seed(seed)
    flow = flow.to(dtype)
    with torch.no_grad():
        for p in flow.parameters():
            p.add_(0.05 * torch.randn_like(p))
    return flow


def _flows():
    # wide enough that every product passes fast_linear.MIN_MACS and the MADE layers are split into blocks
    return {
        "maf": lambda: MAF(12, layers=2, hidden=(256, 256)),
        "nsf-ar": lambda: NSF(12, layers=2, hidden=(256, 256), bins=4),
        "realnvp": lambda: RealNVP(12, layers=2, hidden=(256, 256)),
    }


def _run(flow, x):
    lp = flow.log_prob(x)
    grads = torch.autograd.grad(lp.sum(), list(flow.parameters()))
    torch.manual_seed(3)
    with torch.no_grad():
        s = flow.sample((64,))
    return lp.detach(), grads, s


def test_default_backend_is_public_torch(monkeypatch):
    """Nothing on the default path touches the private oneDNN operator."""
    assert fast_linear.backend() == "torch"

    def forbidden():
        raise AssertionError("private op called on the default path")

    monkeypatch.setattr(fast_linear, "_op", forbidden)
    x = torch.randn(512, 12)
    for make in _flows().values():
        _run(_perturbed(make()), x)


@pytest.mark.parametrize("name", sorted(_flows()))
def test_backends_agree(name):
    """Forcing each backend gives the same log-densities, gradients and samples (fp32 summation order)."""
    if not fast_linear.available():
        pytest.skip("oneDNN kernel not in this PyTorch build")
    flow = _perturbed(_flows()[name]())
    x = torch.randn(512, 12, generator=torch.Generator().manual_seed(1))
    calls = []
    real = fast_linear._op

    def counting():
        calls.append(1)
        return real()

    with fast_linear.use_backend("torch"):
        ref = _run(flow, x)
    assert fast_linear.backend() == "torch"
    with fast_linear.use_backend("onednn"):
        fast_linear._op = counting
        try:
            got = _run(flow, x)
        finally:
            fast_linear._op = real
    assert calls, "the oneDNN backend was selected but never used"
    torch.testing.assert_close(got[0], ref[0], rtol=1e-4, atol=1e-4)
    for a, b in zip(got[1], ref[1]):
        torch.testing.assert_close(a, b, rtol=1e-3, atol=1e-4)
    torch.testing.assert_close(got[2], ref[2], rtol=1e-4, atol=1e-4)


def test_backend_names_checked(monkeypatch):
    with pytest.raises(ValueError, match="backend"):
        fast_linear.set_backend("mkl")
    with pytest.raises(ValueError, match="backend"):
        with fast_linear.use_backend("cuda"):
            pass
    monkeypatch.setenv("PUSHFORWARD_BACKEND", "fast")
    with pytest.raises(ValueError, match="PUSHFORWARD_BACKEND"):
        fast_linear._from_env()
    monkeypatch.setenv("PUSHFORWARD_BACKEND", "oneDNN")
    assert fast_linear._from_env() == "onednn"
    assert fast_linear.backend() == "torch"


@pytest.fixture
def threads():
    """Set torch's intra-op thread count inside a test; restored afterwards."""
    before = torch.get_num_threads()
    yield torch.set_num_threads
    torch.set_num_threads(before)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("residual", [False, True])
def test_block_triangular_layers_used_and_equal(dtype, residual, monkeypatch, threads):
    """At benchmark sizes the MADE splits its layers into row blocks, with the dense layers' values/grads."""
    threads(1)
    # 3 parameters per feature: a 129-row output layer, split in two ranges like the hidden layers
    made = _perturbed(MADE(43, 3, (512, 512), residual=residual, zero_init=False), dtype)
    x = torch.randn(512, 43, dtype=dtype, generator=torch.Generator().manual_seed(0), requires_grad=True)
    used = []
    real = masked_blocks._BlockTriangularLinear.apply

    def spy(*args):
        used.append(1)
        return real(*args)

    monkeypatch.setattr(masked_blocks._BlockTriangularLinear, "apply", spy)
    outs = []
    for block in (False, True):
        made.block_sparse = block
        y = made(x)
        outs.append((y, torch.autograd.grad(y.tanh().sum(), [x, *made.parameters()])))
    assert len(used) >= 3  # first, hidden and output layers
    tol = {"rtol": 1e-4, "atol": 1e-4} if dtype == torch.float32 else {"rtol": 1e-10, "atol": 1e-10}
    torch.testing.assert_close(outs[1][0], outs[0][0], **tol)
    for a, b in zip(outs[1][1], outs[0][1]):
        torch.testing.assert_close(a, b, **tol)


def test_thin_layers_stay_one_product(threads):
    """Fewer than 2 * BLOCK_ROWS rows: no row ranges (one dense masked product), more: ranges that skip work."""
    threads(1)
    made = MADE(43, 2, (512, 512))  # output layer: 86 rows
    assert made.output.plan.chunks == []
    assert len(made.layers[1].plan.chunks) == 8 and made.layers[1].plan.skipped > 0
    assert len(MADE(43, 3, (512, 512)).output.plan.chunks) == 2  # 129 rows


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_ranges_thicken_with_threads(threads, dtype):
    """At T threads a range has at least BLOCK_ROWS * T rows; from 8 threads a 512-row layer is dense. The plan
    follows the thread count set after construction, and the values do not depend on it."""
    made = _perturbed(MADE(43, 2, (512, 512), zero_init=False), dtype)
    x = torch.randn(512, 43, dtype=dtype, generator=torch.Generator().manual_seed(0))
    seen = {}
    for t, n in ((1, 8), (2, 4), (4, 2), (8, 0)):
        threads(t)
        plan = made.layers[1].plan
        assert len(plan.chunks) == n
        assert all(r1 - r0 >= masked_blocks.BLOCK_ROWS * t for r0, r1, _ in plan.chunks)
        seen[t] = made(x)
    tol = 1e-12 if dtype == torch.float64 else 1e-5  # summation order only
    for t in (2, 4, 8):
        torch.testing.assert_close(seen[t], seen[1], rtol=tol, atol=tol)


def test_loaded_mask_replans(threads):
    """A state dict with another mask rebuilds the plans (the loaded mask, not the constructed one, is used)."""
    threads(1)
    a, b = MADE(43, 2, (512, 512), order="natural"), MADE(43, 2, (512, 512), order="random", seed=3)
    before = a.layers[0].plan.chunks
    a.load_state_dict(b.state_dict())
    assert a.layers[0].plan.chunks == LayerPlan(b.layers[0].mask, 64).chunks != before


def test_small_layers_stay_dense(monkeypatch):
    """A 2-D MADE skips too little work for row blocks to pay: the dense masked product runs."""
    monkeypatch.setattr(masked_blocks._BlockTriangularLinear, "apply", None)  # would fail if called
    made = MADE(2, 2, (128, 128), zero_init=False)
    made(torch.randn(512, 2)).sum().backward()


@pytest.mark.slow
def test_compiled_made_keeps_the_blocks(monkeypatch, threads):
    """Under torch.compile the masked layers are still evaluated block by block (the traced form, whose
    backward the compiler derives) and agree with the eager block layers in values and gradients."""
    threads(1)
    monkeypatch.setattr(masked_blocks, "BLOCK_MIN_SKIPPED_MACS", 0)  # small shapes: force the block path
    monkeypatch.setattr(masked_blocks, "BLOCK_ROWS", 8)
    made = _perturbed(MADE(6, 2, (32, 32), zero_init=False))
    assert made.layers[1].plan.chunks
    traced = []
    real = masked_blocks._traced_blocks

    def spy(*args):
        traced.append(1)
        return real(*args)

    monkeypatch.setattr(masked_blocks, "_traced_blocks", spy)
    torch.compiler.reset()
    compiled = torch.compile(made, dynamic=False)
    x = torch.randn(16, 6, generator=torch.Generator().manual_seed(4), requires_grad=True)
    outs = []
    for fn in (made, compiled):
        y = fn(x)
        outs.append((y, torch.autograd.grad(y.sin().sum(), [x, *made.parameters()])))
    torch.compiler.reset()
    assert len(traced) >= 2  # both hidden layers traced block by block
    torch.testing.assert_close(outs[1][0], outs[0][0], rtol=1e-5, atol=1e-5)
    for a, b in zip(outs[1][1], outs[0][1]):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-5)
