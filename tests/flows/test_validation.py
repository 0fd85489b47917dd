"""Flow entry points validate their arguments: sample shapes, tensor types, event shapes, NaN/inf."""

import numpy as np
import pytest
import torch

import pushforward
from pushforward import checks
from pushforward.checks import check_sample_shape
from pushforward.flows import FFJORD, RealNVP


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_transform_call_validates_like_log_prob(dtype):
    torch.manual_seed(0)
    flow = RealNVP(3, layers=2, hidden=(8,)).to(dtype)
    with pytest.raises(ValueError, match="shape"):
        flow.transform(torch.randn(4, 4, dtype=dtype))  # used to drop a column silently
    with pytest.raises(TypeError, match=r"torch\.Tensor"):
        flow.transform(np.zeros((4, 3)))
    with pytest.raises(TypeError, match=r"torch\.Tensor"):
        flow.transform([[0.0, 0.0, 0.0]])
    with pytest.raises(ValueError, match="non-finite"):
        flow.transform(torch.tensor([[float("nan"), 0.0, 0.0]], dtype=dtype))
    with pytest.raises(ValueError, match="shape"):
        flow.transform(torch.randn(2, 4, 3, dtype=dtype))
    x = torch.randn(5, 3, dtype=dtype)
    z, ladj = flow.transform(x)
    assert z.shape == (5, 3) and ladj.shape == (5,)
    torch.testing.assert_close(flow.log_prob(x), flow.base.log_prob(z) + ladj)


def test_conditional_transform_checks_context():
    flow = RealNVP(2, context=3, layers=2, hidden=(8,))
    with pytest.raises(ValueError, match="context"):
        flow.transform(torch.randn(4, 2))
    with pytest.raises(ValueError, match="rows"):
        flow.transform(torch.randn(4, 2), torch.randn(5, 3))
    assert flow.transform(torch.randn(4, 2), torch.randn(4, 3))[0].shape == (4, 2)


@pytest.mark.parametrize(
    "shape, error",
    [
        (-1, ValueError),
        ((2, -3), ValueError),
        (2.5, TypeError),
        ("3", TypeError),
        ((2.0,), TypeError),
        (True, TypeError),
        (None, TypeError),
    ],
)
def test_bad_sample_shapes_are_refused(shape, error):
    flow = RealNVP(2, layers=2, hidden=(8,))
    with pytest.raises(error, match="sample_shape"):
        flow.sample(shape)
    with pytest.raises(error, match="sample_shape"):
        flow.sample_and_log_prob(shape)


def test_good_sample_shapes():
    assert check_sample_shape(np.int64(3)) == (3,)
    assert check_sample_shape(torch.Size([2, 3])) == (2, 3)
    assert check_sample_shape(torch.tensor([2, 3])) == (2, 3)
    flow = RealNVP(2, layers=2, hidden=(8,))
    assert flow.sample([2, 3]).shape == (2, 3, 2)


def test_huge_conditional_draw_is_refused_before_allocating():
    flow = RealNVP(3, context=2, layers=2, hidden=(8,))
    with pytest.raises(ValueError, match="smaller batches"):
        flow.sample(10**12, torch.zeros(5, 2))  # was "integer multiplication overflow" / a huge allocation
    with pytest.raises(ValueError, match="smaller batches"):
        RealNVP(3, layers=2, hidden=(8,)).sample((10**6, 10**6))


def test_ffjord_solver_underflow_is_a_clear_error():
    pytest.importorskip("torchdiffeq")
    torch.manual_seed(0)
    flow = FFJORD(2)
    with torch.no_grad():
        for p in flow.parameters():
            p.fill_(float("inf"))  # the adaptive step size underflows at once (stiff weights take minutes)
    with pytest.raises(ValueError, match="ODE solver failed"):
        flow.log_prob(torch.randn(4, 2))


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("direction", ["forward", "inverse"])
def test_transform_methods_validate_dtype_device_and_values(dtype, direction):
    """``transform.inverse`` used to accept anything (161 ugly crashes, 104 silent results of 812 calls)."""
    flow = RealNVP(3, context=2, layers=2, hidden=(8,)).to(dtype)
    call = getattr(flow.transform, direction)
    ctx = torch.zeros(4, 2, dtype=dtype)
    other = torch.float64 if dtype == torch.float32 else torch.float32
    with pytest.raises(TypeError, match="floating"):
        call(torch.zeros(4, 3, dtype=torch.int64), ctx)
    with pytest.raises(TypeError, match="floating"):
        call(torch.zeros(4, 3, dtype=torch.bool), ctx)
    with pytest.raises(TypeError, match=f"dtype {other}"):
        call(torch.zeros(4, 3, dtype=other), ctx)
    with pytest.raises(ValueError, match=r"device meta.*device cpu"):
        call(torch.zeros(4, 3, dtype=dtype, device="meta"), ctx)
    with pytest.raises(ValueError, match="non-finite"):
        call(torch.tensor([[float("inf"), 0.0, 0.0]], dtype=dtype), ctx[:1])
    with pytest.raises(ValueError, match=r"context.*non-finite"):
        call(torch.zeros(4, 3, dtype=dtype), torch.full((4, 2), float("nan"), dtype=dtype))
    with pytest.raises(TypeError, match="context has dtype"):
        call(torch.zeros(4, 3, dtype=dtype), ctx.to(other))
    out, ladj = call(torch.randn(4, 3, dtype=dtype), ctx)
    assert bool(torch.isfinite(out).all() and torch.isfinite(ladj).all())


def test_flow_methods_name_both_devices():
    flow = RealNVP(2, context=1, layers=2, hidden=(8,))
    meta = torch.zeros(3, 2, device="meta")
    with pytest.raises(ValueError, match=r"device meta.*device cpu"):
        flow.log_prob(meta, torch.zeros(3, 1))
    with pytest.raises(ValueError, match=r"device meta.*device cpu"):
        flow.log_prob(torch.zeros(3, 2), torch.zeros(3, 1, device="meta"))
    with pytest.raises(ValueError, match=r"device meta.*device cpu"):
        flow.sample((2,), torch.zeros(3, 1, device="meta"))
    with pytest.raises(ValueError, match=r"device meta.*device cpu"):
        flow.transform.inverse(meta, torch.zeros(3, 1))


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_one_extreme_row_is_minus_inf_for_that_row_only(dtype):
    """float32 log_prob at 1e30 overflowed to -inf silently; now rows are rescored in float64 (as the CLI
    does): a representable value comes back, a row beyond the dtype's range is -inf with a warning."""
    torch.manual_seed(0)
    flow = RealNVP(2, layers=2, hidden=(8,)).to(dtype)
    with torch.no_grad():
        for p in flow.parameters():
            p.add_(0.1 * torch.randn_like(p))
    x = torch.randn(5, 2, dtype=dtype)
    x[1, 0] = 1e30
    x[3, 1] = 1e18
    ref = flow.to(torch.float64).log_prob(x.double())
    flow.to(dtype)
    if dtype == torch.float32:
        with pytest.warns(RuntimeWarning, match="1 of 5 rows"):
            lp = flow.log_prob(x)
        assert lp[1] == -torch.inf
        torch.testing.assert_close(lp[3].double(), ref[3], rtol=1e-5, atol=0)  # was -inf (z**2 overflowed)
    else:
        lp = flow.log_prob(x)
        assert bool(torch.isfinite(lp).all())
    keep = [0, 2, 4]
    torch.testing.assert_close(lp[keep], flow.log_prob(x[keep]))


@pytest.fixture
def budget():
    """Set a memory cap for one test and restore the machine default afterwards."""
    yield pushforward.set_max_memory
    pushforward.set_max_memory(None)


def test_sampling_is_refused_beyond_the_memory_budget_with_the_size_it_needs(budget):
    flow = RealNVP(2, layers=2, hidden=(8,))
    budget(8 * 2**20)
    with pytest.raises(ValueError, match=r"1000000 events.*needs about 22\.9 MiB.*8\.0 MiB.*set_max_memory"):
        flow.sample(10**6)  # 2 values + log-density, float32, result and one copy: 24 MB
    with pytest.raises(ValueError, match="needs about"):
        flow.sample_and_log_prob((1000, 1000))
    assert flow.sample(10**5).shape == (10**5, 2)  # 2.4 MB fits


def test_machine_memory_bounds_sampling_without_a_cap():
    """Posterior.sample(10**9) tried 8 GB and `pushforward sample -n 10**10` 80 GB: now checked against the
    machine's available memory first (2^36 values, 256 GiB, is only the index-safety cap)."""
    budget = checks.memory_budget()
    if budget is None:
        pytest.skip("this platform does not report its available memory")
    flow = RealNVP(2, layers=2, hidden=(8,))
    n = budget // 8 + 1  # needs 2 * n * 3 * 4 bytes = 3 budgets
    with pytest.raises(ValueError, match=r"needs about .* more than the memory available on cpu"):
        flow.sample(n)


def test_large_requests_run_in_chunks_with_the_same_result(budget):
    torch.manual_seed(0)
    flow = RealNVP(3, context=2, layers=2, hidden=(8,))
    with torch.no_grad():
        for p in flow.parameters():
            p.add_(0.3 * torch.randn_like(p))
    x = torch.randn(5000, 3)
    c = torch.randn(5000, 2)
    whole = flow.log_prob(x, c)
    budget(2**19)  # 64 KiB chunks: 32 B x 3 values x 4 B = 384 B a row, 170 rows a chunk
    assert checks.chunk_rows(5000, flow._row_bytes()) < 200
    torch.testing.assert_close(flow.log_prob(x, c), whole)
    torch.manual_seed(1)
    s, lp = flow.sample_and_log_prob((700,), c[:3])
    assert s.shape == (700, 3, 3) and lp.shape == (700, 3)
    torch.testing.assert_close(lp, flow.log_prob(s, c[:3]), rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize(
    "bad, error",
    [(-1, ValueError), (0, ValueError), (float("inf"), ValueError), ("8GB", TypeError), (True, TypeError)],
)
def test_set_max_memory_refuses_bad_values(bad, error):
    with pytest.raises(error, match="max_memory"):
        pushforward.set_max_memory(bad)
    assert checks.max_memory() is None
