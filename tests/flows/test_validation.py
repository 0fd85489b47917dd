"""Flow entry points validate their arguments: sample shapes, tensor types, event shapes, NaN/inf."""

import numpy as np
import pytest
import torch

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
