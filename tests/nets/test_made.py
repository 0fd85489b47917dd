"""MADE: the autoregressive property checked exactly with the autograd Jacobian, degrees, layout, errors."""

from __future__ import annotations

import pytest
import torch

from pushforward.nets import MADE
from pushforward.nets.made import made_degrees

D64 = torch.float64


def _perturbed(made: MADE) -> MADE:
    made = made.double()
    g = torch.Generator().manual_seed(5)
    with torch.no_grad():
        for p in made.parameters():
            p.add_(0.5 * torch.randn(p.shape, generator=g, dtype=p.dtype))
    return made


def _jacobian(made: MADE, x: torch.Tensor, context: torch.Tensor | None = None) -> torch.Tensor:
    """(D·P, D) Jacobian of the flattened output at one input."""
    return torch.autograd.functional.jacobian(lambda v: made(v[None], context).reshape(-1), x)


@pytest.mark.parametrize(
    "order", ["natural", "reversed", "random", [2, 0, 4, 1, 3], torch.tensor([4, 3, 0, 1, 2])]
)
@pytest.mark.parametrize("residual", [False, True])
def test_autoregressive_property_exact(order, residual):
    D, P = 5, 3
    made = _perturbed(MADE(D, P, hidden=(24, 24, 24), order=order, residual=residual, seed=7))
    g = torch.Generator().manual_seed(11)
    # J[d, p, j] = ∂out[d, p]/∂x_j, largest magnitude over several inputs (a ReLU path may be dead at one input)
    J = torch.stack(
        [_jacobian(made, torch.randn(D, generator=g, dtype=D64)).reshape(D, P, D).abs() for _ in range(16)]
    ).amax(0)
    deg = made.degrees
    allowed = deg[None, :] < deg[:, None]  # (d, j): x_j precedes x_d
    assert torch.all(J.abs().amax(1)[~allowed] == 0), "an output depends on a later or equal input"
    # and the connections that are allowed are used (the mask is not trivially empty)
    assert torch.all(J.abs().amax(1)[allowed] > 0)


def test_explicit_order_means_sequence_of_features():
    made = MADE(4, 1, order=[2, 0, 3, 1])
    assert made.degrees.tolist() == [2, 4, 1, 3]
    assert made.order.tolist() == [2, 0, 3, 1]
    assert made_degrees(3, "reversed").tolist() == [3, 2, 1]


def test_hidden_units_sorted_by_degree():
    made = MADE(6, 2, hidden=(20, 13), order="random", residual=False)
    for deg in made.hidden_degrees:
        assert torch.all(deg.diff() >= 0)
        assert deg.min() >= 1 and deg.max() <= 5
    # the masks agree with the sorted degrees: hidden unit k sees input j iff deg_k ≥ m(j)
    first = made.layers[0].mask
    assert torch.equal(first.bool(), made.hidden_degrees[0][:, None] >= made.degrees[None, :])


def test_output_layout_and_context():
    made = _perturbed(MADE(3, 4, hidden=(16,), context=2))
    x, c = torch.randn(7, 3, dtype=D64), torch.randn(7, 2, dtype=D64)
    out = made(x, c)
    assert out.shape == (7, 3, 4)
    assert not torch.allclose(out, made(x, c + 1))
    # context reaches the first output (degree 1) but no input does
    J = _jacobian(made, x[0], c[:1]).reshape(3, 4, 3)
    assert torch.all(J[0] == 0)


def test_single_feature_depends_on_context_only():
    made = _perturbed(MADE(1, 2, hidden=(8,), context=3))
    x, c = torch.randn(4, 1, dtype=D64), torch.randn(4, 3, dtype=D64)
    torch.testing.assert_close(made(x, c), made(x + 5, c))


def test_zero_init_output():
    made = MADE(3, 2)
    assert torch.all(made(torch.randn(5, 3)) == 0)


def test_bad_input_raises():
    with pytest.raises(ValueError, match="permutation"):
        MADE(3, 2, order=[0, 0, 1])
    with pytest.raises(ValueError, match="order"):
        MADE(3, 2, order="sideways")
    with pytest.raises(ValueError, match="residual"):
        MADE(3, 2, hidden=(8, 16), residual=True)
    with pytest.raises(TypeError, match="features"):
        MADE(3.0, 2)  # type: ignore[arg-type]
    made = MADE(3, 2, context=2)
    with pytest.raises(ValueError, match="context"):
        made(torch.randn(4, 3))
    with pytest.raises(ValueError, match="shape"):
        made(torch.randn(4, 5), torch.randn(4, 2))
