"""Embedding nets: shapes, permutation invariance, input validation (issue 16)."""

import pytest
import torch

from pushforward.nets.embedding import CNNEmbedding, DeepSetEmbedding, MLPEmbedding


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_shapes(dtype):
    assert MLPEmbedding((3, 4), 5).to(dtype)(torch.randn(7, 3, 4, dtype=dtype)).shape == (7, 5)
    assert CNNEmbedding((2, 12, 10), 6).to(dtype)(torch.randn(3, 2, 12, 10, dtype=dtype)).shape == (3, 6)
    assert CNNEmbedding((9, 9), 4, channels=(4, 4, 4, 4, 4)).to(dtype)(
        torch.randn(2, 9, 9, dtype=dtype)
    ).shape == (2, 4)
    assert DeepSetEmbedding(3, 8).to(dtype)(torch.randn(4, 11, 3, dtype=dtype)).shape == (4, 8)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_deep_set_is_permutation_invariant_and_not_constant(dtype):
    torch.manual_seed(0)
    e = DeepSetEmbedding(2, 5, hidden=(16,), latent=8).to(dtype)
    x = torch.randn(6, 9, 2, dtype=dtype)
    perm = torch.randperm(9)
    tol = 1e-5 if dtype == torch.float32 else 1e-12
    assert torch.allclose(e(x), e(x[:, perm]), atol=tol)
    assert not torch.allclose(e(x), e(x + 1.0), atol=1e-3)
    assert not torch.allclose(e(x[:1]), e(x[1:2]), atol=1e-3)
    assert e(x[:, :4]).shape == (6, 5)  # any set size


def test_embeddings_reject_wrong_shapes():
    with pytest.raises(ValueError, match="shape"):
        MLPEmbedding(4, 2)(torch.randn(3, 5))
    with pytest.raises(ValueError, match="shape"):
        CNNEmbedding((1, 8, 8), 2)(torch.randn(3, 8, 8))
    with pytest.raises(ValueError, match="set_size"):
        DeepSetEmbedding(2, 2)(torch.randn(3, 2))
    with pytest.raises(ValueError, match="in_shape"):
        CNNEmbedding((8,), 2)
    with pytest.raises(ValueError, match="out_features"):
        MLPEmbedding(3, 0)
