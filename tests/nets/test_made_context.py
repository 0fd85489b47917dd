"""Every MADE output depends on the context (issue 16: the first feature's parameters ignored it)."""

import pytest
import torch

from pushforward.nets.made import MADE


@pytest.mark.parametrize("features", [1, 2, 5])
@pytest.mark.parametrize("block_sparse", [True, False])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_every_output_depends_on_the_context(features, block_sparse, dtype):
    torch.manual_seed(0)
    made = MADE(features, 3, hidden=(32, 32), context=2).to(dtype)
    made.block_sparse = block_sparse
    with torch.no_grad():
        for p in made.parameters():
            p.normal_(0, 0.5)  # perturbed away from the zero-initialised output layer
    x = torch.randn(16, features, dtype=dtype)
    c = torch.randn(16, 2, dtype=dtype)
    change = (made(x, c) - made(x, c + 1.0)).abs().amax(dim=(0, 2))
    assert bool((change > 1e-6).all()), change


def test_first_output_still_ignores_the_inputs():
    torch.manual_seed(0)
    made = MADE(3, 2, hidden=(30, 30), context=2, order="reversed")
    with torch.no_grad():
        for p in made.parameters():
            p.normal_()
    x, c = torch.randn(4, 3), torch.randn(4, 2)
    first = int(made.order[0])
    assert torch.allclose(made(x, c)[:, first], made(torch.randn(4, 3), c)[:, first])
