"""One-pass MADE inverse (nets/made_fast.py): equal to the naive D-pass inverse, differentiable, explicit
fallback for conditioners it does not handle."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from pushforward.nets import MADE
from pushforward.nets.made_fast import made_one_pass_inverse, supports_one_pass

D64 = torch.float64


def _random_made(D, P, hidden, *, order="natural", residual=False, context=0, dtype=D64, seed=0):
    torch.manual_seed(seed)
    made = MADE(D, P, hidden, order=order, residual=residual, context=context, zero_init=False, seed=seed)
    made = made.to(dtype)
    with torch.no_grad():
        for p in made.parameters():
            p.add_(0.2 * torch.randn_like(p))
    return made


def _invert(d, z_d, params):
    # a nonlinear elementwise bijection of z_d with parameters: x = (z - t) * exp(-tanh(s)) - 0.1 p_2
    t, s = params[:, 0], torch.tanh(params[:, 1])
    extra = params[:, 2:].sum(1) * 0.1
    return (z_d - t) * torch.exp(-s) - extra, -s


def _naive(made, z, context=None):
    """The textbook sampler: D full MADE passes, each fixing one more feature."""
    x = torch.zeros_like(z)
    logd = torch.zeros_like(z)
    for _ in range(made.features):
        params = made(x, context)
        cols = [_invert(d, z[:, d], params[:, d]) for d in range(made.features)]
        x = torch.stack([c[0] for c in cols], 1)
        logd = torch.stack([c[1] for c in cols], 1)
    return x, logd


CASES = [
    dict(D=1, P=2, hidden=(8, 8)),
    dict(D=2, P=3, hidden=(5,)),
    dict(D=5, P=2, hidden=()),
    dict(D=5, P=2, hidden=(), context=3),
    dict(D=6, P=4, hidden=(20, 13), order="random"),
    dict(D=7, P=2, hidden=(16, 16, 16), order="random", residual=True),
    dict(D=7, P=3, hidden=(24, 24), order=[3, 0, 6, 1, 5, 2, 4], residual=True, context=2),
    dict(D=9, P=2, hidden=(4, 30), order="reversed", context=2),  # fewer units than degrees
    dict(D=12, P=5, hidden=(48, 48), order="random"),
]


@pytest.mark.parametrize("case", CASES, ids=lambda c: "-".join(f"{k}{v}" for k, v in c.items()))
@pytest.mark.parametrize("dtype,tol", [(D64, 1e-10), (torch.float32, 1e-6)], ids=["fp64", "fp32"])
def test_one_pass_equals_naive(case, dtype, tol):
    case = dict(case)
    D, P, hidden = case.pop("D"), case.pop("P"), case.pop("hidden")
    made = _random_made(D, P, hidden, dtype=dtype, **case)
    g = torch.Generator().manual_seed(1)
    z = torch.randn(32, D, generator=g, dtype=D64).to(dtype)
    ctx = torch.randn(32, case["context"], generator=g, dtype=D64).to(dtype) if case.get("context") else None
    with torch.no_grad():
        x_ref, l_ref = _naive(made, z, ctx)
        x, logd = made_one_pass_inverse(made, _invert, z, ctx)
    torch.testing.assert_close(x, x_ref, rtol=tol, atol=tol)
    torch.testing.assert_close(logd, l_ref, rtol=tol, atol=tol)
    # and it is an inverse: the forward parameters at x reproduce z
    params = made(x, ctx)
    z_back = torch.stack(
        [
            (x[:, d] + 0.1 * params[:, d, 2:].sum(1)) * torch.exp(torch.tanh(params[:, d, 1]))
            + params[:, d, 0]
            for d in range(D)
        ],
        1,
    )
    torch.testing.assert_close(z_back, z, rtol=100 * tol, atol=100 * tol)


def test_gradients_flow_and_match_naive():
    made = _random_made(5, 3, (12, 12), order="random", residual=True, context=2)
    z = torch.randn(6, 5, dtype=D64, requires_grad=True)
    ctx = torch.randn(6, 2, dtype=D64, requires_grad=True)
    x, logd = made_one_pass_inverse(made, _invert, z, ctx)
    (x.sin().sum() + logd.sum()).backward()
    fast = [z.grad.clone(), ctx.grad.clone()] + [p.grad.clone() for p in made.parameters()]
    z.grad = ctx.grad = None
    made.zero_grad()
    x, logd = _naive(made, z, ctx)
    (x.sin().sum() + logd.sum()).backward()
    slow = [z.grad, ctx.grad] + [p.grad for p in made.parameters()]
    for a, b in zip(fast, slow):
        torch.testing.assert_close(a, b, rtol=1e-9, atol=1e-10)
    assert any(g.abs().sum() > 0 for g in fast[2:])


@pytest.mark.parametrize("case", CASES[4:], ids=lambda c: "-".join(f"{k}{v}" for k, v in c.items()))
@pytest.mark.parametrize("dtype", [D64, torch.float32], ids=["fp64", "fp32"])
def test_buffered_and_recorded_inverses_agree(case, dtype):
    """Without autograd the units go into preallocated buffers, with it they are concatenated: same values."""
    case = dict(case)
    D, P, hidden = case.pop("D"), case.pop("P"), case.pop("hidden")
    made = _random_made(D, P, hidden, dtype=dtype, **case)
    g = torch.Generator().manual_seed(3)
    z = torch.randn(16, D, generator=g, dtype=D64).to(dtype)
    ctx = torch.randn(16, case["context"], generator=g, dtype=D64).to(dtype) if case.get("context") else None
    recorded = made_one_pass_inverse(made, _invert, z, ctx)
    assert recorded[0].requires_grad  # the parameters require gradients: the concatenating path ran
    with torch.no_grad():
        buffered = made_one_pass_inverse(made, _invert, z, ctx)
    tol = 1e-12 if dtype == D64 else 1e-6
    for a, b in zip(buffered, recorded):
        torch.testing.assert_close(a, b.detach(), rtol=tol, atol=tol)


def test_gradcheck():
    made = _random_made(3, 2, (6,), context=1)
    z = torch.randn(2, 3, dtype=D64, requires_grad=True)
    ctx = torch.randn(2, 1, dtype=D64)
    assert torch.autograd.gradcheck(lambda v: made_one_pass_inverse(made, _invert, v, ctx), (z,))


def test_supports_only_degree_sorted_mades():
    assert supports_one_pass(MADE(3, 2, (8,)))
    assert supports_one_pass(MADE(3, 2, (8, 8), residual=True, context=1))
    assert not supports_one_pass(nn.Linear(3, 6))

    class Custom(MADE):  # a subclass that changes forward computes something else: never assume it
        def forward(self, x, context=None):
            return super().forward(x, context) * 2

    class Renamed(MADE):  # same forward: the one-pass inverse still applies
        pass

    assert not supports_one_pass(Custom(3, 2, (8,)))
    assert supports_one_pass(Renamed(3, 2, (8,)))
    shuffled = MADE(4, 2, (12,))
    shuffled.hidden_degrees[0] = shuffled.hidden_degrees[0].flip(0)
    assert not supports_one_pass(shuffled)


def test_bad_inputs():
    made = MADE(3, 2, (8,), context=2)
    with pytest.raises(ValueError, match="shape"):
        made_one_pass_inverse(made, _invert, torch.randn(4, 2), torch.randn(4, 2))
    with pytest.raises(ValueError, match="context"):
        made_one_pass_inverse(made, _invert, torch.randn(4, 3))


@pytest.mark.parametrize("case", CASES, ids=lambda c: "-".join(f"{k}{v}" for k, v in c.items()))
def test_block_sparse_forward_equals_dense(case, monkeypatch):
    """MADE.forward skips zero weight blocks (masked_blocks.masked_linear): same values and gradients as dense."""
    from pushforward.nets import masked_blocks

    monkeypatch.setattr(masked_blocks, "BLOCK_MIN_SKIPPED_MACS", 0)  # small shapes: force the block path
    monkeypatch.setattr(masked_blocks, "BLOCK_ROWS", 8)  # and ranges of 8 rows (plans are built below)
    case = dict(case)
    D, P, hidden = case.pop("D"), case.pop("P"), case.pop("hidden")
    made = _random_made(D, 4 * P, tuple(4 * h for h in hidden), **case)  # wide enough to be chunked
    g = torch.Generator().manual_seed(2)
    x = torch.randn(16, D, generator=g, dtype=D64, requires_grad=True)
    ctx = torch.randn(16, case["context"], generator=g, dtype=D64) if case.get("context") else None
    outs = []
    for block_sparse in (False, True):
        made.block_sparse = block_sparse
        y = made(x, ctx)
        grads = torch.autograd.grad(y.sin().sum(), [x, *made.parameters()])
        outs.append((y, grads))
    torch.testing.assert_close(outs[0][0], outs[1][0], rtol=1e-12, atol=1e-12)
    for a, b in zip(outs[0][1], outs[1][1]):
        torch.testing.assert_close(a, b, rtol=1e-12, atol=1e-12)


def test_row_chunks_skip_columns():
    from pushforward.nets.masked_blocks import row_chunks

    made = MADE(8, 2, (64,))
    chunks = row_chunks(made.layers[0].mask, 4)
    assert [c[:2] for c in chunks] == [(0, 16), (16, 32), (32, 48), (48, 64)]
    assert [c[2] for c in chunks] == sorted(c[2] for c in chunks) and chunks[0][2] < 8
