"""A Posterior saves in the one file format: exact round trips (float32, float64), embeddings of registered
modules, unregistered ones named, crafted files refused (issue 26)."""

import json
import math
import struct

import pytest
import torch
from torch import nn

from pushforward.distributions import BoxUniform
from pushforward.flows import MAF, NSF
from pushforward.io import ModelFileError, load, save
from pushforward.nets.embedding import MLPEmbedding
from pushforward.sbi import Posterior


def _perturb(module: nn.Module, seed: int = 0) -> None:
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in module.parameters():
            p.add_(0.2 * torch.randn(p.shape, generator=g, dtype=p.dtype))


def _posterior(dtype: torch.dtype, embedding: bool = True) -> Posterior:
    torch.manual_seed(0)
    prior = BoxUniform(torch.tensor([-1.0, 0.0]), torch.tensor([2.0, 0.5]))
    net = MLPEmbedding((2, 3), 4, hidden=(8,)) if embedding else None
    flow = NSF(2, context=4 if embedding else 3, layers=2, hidden=(8, 8))
    post = Posterior.from_prior(flow, prior, embedding=net).to(dtype)
    _perturb(post)
    g = torch.Generator().manual_seed(1)
    theta = prior.sample((200,)).to(dtype)
    x = torch.randn(200, *post.x_shape, generator=g, dtype=dtype) * 3 + 1
    post.fit_standardization(theta, x)
    return post.eval()


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("embedding", [True, False])
def test_round_trip_gives_the_same_log_prob_bit_for_bit_and_the_same_samples(dtype, embedding, tmp_path):
    post = _posterior(dtype, embedding)
    path = tmp_path / "posterior.safetensors"
    save(post, path)
    again = load(path)
    assert type(again) is Posterior and again.dtype == dtype and again.x_shape == post.x_shape
    x = torch.randn(3, *post.x_shape, dtype=dtype)
    theta = post.sample((5,), x)
    assert torch.equal(again.log_prob(theta, x), post.log_prob(theta, x))
    outside = torch.tensor([[3.0, 0.2]], dtype=dtype)
    assert again.log_prob(outside, x[0]).item() == -math.inf
    torch.manual_seed(7)
    a = post.sample((4,), x)
    torch.manual_seed(7)
    b = again.sample((4,), x)
    assert torch.equal(a, b)
    for name in ("theta_loc", "theta_scale", "x_loc", "x_scale", "x_low", "x_high"):
        assert torch.equal(getattr(again, name), getattr(post, name)), name
    assert again.support_map.kinds == ["interval", "interval"]
    with pytest.warns(RuntimeWarning, match="outside the range"):  # the simulations' range travels too
        again.sample((2,), torch.full(post.x_shape, 1e6, dtype=dtype))


def test_a_trained_posterior_round_trips(tmp_path):
    from pushforward.sbi import NPE

    g = torch.Generator().manual_seed(0)
    theta = torch.rand(200, 1, generator=g) * 2 - 1
    x = theta + 0.1 * torch.randn(200, 1, generator=g)
    post = NPE(BoxUniform(-torch.ones(1), torch.ones(1)), flow="maf", layers=1, hidden=(8,), epochs=1, seed=0)
    post = post.fit(theta, x)
    save(post, tmp_path / "npe.safetensors")
    again = load(tmp_path / "npe.safetensors")
    probe = torch.rand(6, 1) * 2 - 1
    assert torch.equal(again.log_prob(probe, torch.tensor([0.2])), post.log_prob(probe, torch.tensor([0.2])))


def test_an_unregistered_embedding_is_named_when_saving(tmp_path):
    class MyNet(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.lin = nn.Linear(3, 4)

        def forward(self, x):
            return self.lin(x)

    post = Posterior(MAF(1, context=4, layers=1, hidden=(8,)), embedding=MyNet(), x_shape=(3,))
    with pytest.raises(TypeError, match=r"MyNet.*not a registered class"):
        save(post, tmp_path / "p.safetensors")
    assert not (tmp_path / "p.safetensors").exists()


def _rewrite_config(path, edit):
    """Edit the JSON config of a model file and recompute its (unkeyed) checksum, as a forger would."""
    from safetensors.torch import load as load_tensors

    from pushforward.io.files import digest

    raw = path.read_bytes()
    (n,) = struct.unpack("<Q", raw[:8])
    header = json.loads(raw[8 : 8 + n])
    cfg = json.loads(header["__metadata__"]["pushforward"])
    edit(cfg["model"]["module"]["kwargs"])
    cfg["sha256"] = digest(cfg, load_tensors(raw))
    header["__metadata__"]["pushforward"] = json.dumps(cfg)
    h = json.dumps(header).encode()
    h += b" " * (-len(h) % 8)
    path.write_bytes(struct.pack("<Q", len(h)) + h + raw[8 + n :])


def _huge_observation(kw):
    kw["x_shape"] = {"tuple": [100000, 100000]}


def _unknown_embedding(kw):
    kw["embedding"]["module"]["class"] = "os.system"


def _inverted_box(kw):
    support = kw["support"]["module"]["kwargs"]
    support["low"], support["high"] = support["high"], support["low"]


@pytest.mark.parametrize("forge", [_huge_observation, _unknown_embedding, _inverted_box])
def test_a_crafted_posterior_file_is_refused_like_other_model_files(forge, tmp_path):
    path = tmp_path / "posterior.safetensors"
    save(_posterior(torch.float32), path)
    _rewrite_config(path, forge)
    with pytest.raises(ModelFileError) as e:
        load(path)
    assert str(path) in str(e.value) and "\n" not in str(e.value)
