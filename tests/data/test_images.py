"""Image data: IDX/MNIST and digits loaders, dequantization, the bits/dim bound, variational dequant."""

from __future__ import annotations

import gzip
import math
import struct
from pathlib import Path

import numpy as np
import pytest
import torch

from pushforward.analysis.images import save_image_grid
from pushforward.data.images import (
    bits_per_dim,
    discrete_log_likelihood_bound,
    load_digits_images,
    load_mnist,
    one_hot,
    read_idx,
    uniform_dequantize,
)
from pushforward.flows.dequantization import DequantizedFlow, VariationalDequantizer
from pushforward.flows.image import Glow
from pushforward.train.images import fit_images
from pushforward.transforms.elementwise import log_normal_pdf

MNIST_PATH = (
    Path(__file__).resolve().parents[3] / "shared" / "data" / "mnist"
)  # the project's data, beside it

torch.set_num_threads(1)


def _write_idx(path: Path, arr: np.ndarray, compress: bool) -> None:
    code = {np.uint8: 0x08}[arr.dtype.type]
    data = bytes([0, 0, code, arr.ndim]) + struct.pack(f">{arr.ndim}I", *arr.shape) + arr.tobytes()
    (gzip.open if compress else open)(path, "wb").write(data)


@pytest.mark.parametrize("compress", [False, True])
def test_read_idx_and_mnist_split(tmp_path, compress):
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, (20, 28, 28), dtype=np.uint8)
    labels = rng.integers(0, 10, (20,), dtype=np.uint8)
    sfx = ".gz" if compress else ""
    _write_idx(tmp_path / f"t10k-images-idx3-ubyte{sfx}", images, compress)
    _write_idx(tmp_path / f"t10k-labels-idx1-ubyte{sfx}", labels, compress)
    assert np.array_equal(read_idx(tmp_path / f"t10k-images-idx3-ubyte{sfx}"), images)
    x, _ = load_mnist(tmp_path, "train", val_size=5)
    xv, yv = load_mnist(tmp_path, "val", val_size=5)
    assert x.shape == (15, 1, 28, 28) and xv.shape == (5, 1, 28, 28) and x.dtype == torch.float32
    assert np.array_equal(xv[:, 0].numpy(), images[15:]) and np.array_equal(yv.numpy(), labels[15:])
    with pytest.raises(ValueError):
        load_mnist(tmp_path, "test")


def test_read_idx_rejects_garbage(tmp_path):
    (tmp_path / "bad").write_bytes(b"\x01\x02\x03\x04rest")
    with pytest.raises(ValueError, match="magic"):
        read_idx(tmp_path / "bad")
    with pytest.raises(FileNotFoundError):
        read_idx(tmp_path / "missing")


@pytest.mark.skipif(not Path(MNIST_PATH).exists(), reason="shared MNIST test files not present")
def test_shared_mnist_9k_1k_split():
    x, y = load_mnist(MNIST_PATH, "train")
    xv, _ = load_mnist(MNIST_PATH, "val")
    assert x.shape == (9000, 1, 28, 28) and xv.shape == (1000, 1, 28, 28) and y.shape == (9000,)
    assert float(x.min()) == 0 and float(x.max()) == 255 and torch.equal(x, x.round())


def test_digits_loader():
    x, y = load_digits_images()
    assert x.shape == (1797, 1, 8, 8) and y.shape == (1797,)
    assert float(x.max()) == 16 and torch.equal(x, x.round())
    assert one_hot(y[:3], 10).sum(1).tolist() == [1, 1, 1]
    with pytest.raises(ValueError):
        one_hot(torch.tensor([10]), 10)


def test_uniform_dequantize_and_bpd_formula():
    x = torch.tensor([[0.0, 255.0, 17.0]])
    y = uniform_dequantize(x, 256)
    assert ((y >= x / 256) & (y < (x + 1) / 256)).all()
    with pytest.raises(ValueError):
        uniform_dequantize(torch.tensor([[0.5]]), 256)
    with pytest.raises(ValueError):
        uniform_dequantize(torch.tensor([[256.0]]), 256)
    # the uniform density on [0,1)^D assigns every pixel value 1/256: 8 bits per dimension exactly
    bound = discrete_log_likelihood_bound(torch.zeros(2), dims=10, levels=256)
    torch.testing.assert_close(bits_per_dim(bound, 10), torch.full((2,), 8.0))
    # a density twice as high (log p = D log 2) saves exactly one bit per dimension
    bound = discrete_log_likelihood_bound(torch.full((1,), 10 * math.log(2)), dims=10, levels=256)
    torch.testing.assert_close(bits_per_dim(bound, 10), torch.full((1,), 7.0))


def test_variational_dequantizer_density_is_exact():
    torch.manual_seed(0)
    deq = VariationalDequantizer((1, 2, 2), levels=17, layers=2, hidden=4).double()
    with torch.no_grad():
        for p in deq.parameters():
            p.add_(0.3 * torch.randn_like(p))
    x = torch.tensor([[[[0.0, 3.0], [16.0, 8.0]]]], dtype=torch.float64)
    torch.manual_seed(1)
    u, log_q = deq(x)
    assert ((u > 0) & (u < 1)).all()
    # recompute: u = sigmoid(g^{-1}(eps; x)), log q(u) = log N(eps) - log|det du/deps|
    torch.manual_seed(1)
    eps = torch.randn_like(x)
    ctx = x / 17 - 0.5

    def u_of(e):
        return torch.sigmoid(deq.flow.inverse(e.view(1, 1, 2, 2), ctx)[0]).reshape(-1)

    torch.testing.assert_close(u_of(eps.reshape(-1)).view_as(u), u)
    J = torch.autograd.functional.jacobian(u_of, eps.reshape(-1))
    expected = log_normal_pdf(eps).sum() - torch.linalg.slogdet(J)[1]
    torch.testing.assert_close(log_q[0], expected)


def test_dequantized_flow_bound_and_training(tmp_path):
    torch.manual_seed(0)
    x, _ = load_digits_images()
    x = x[:256]
    for deq in (None, VariationalDequantizer((1, 8, 8), levels=17, layers=2, hidden=8)):
        model = DequantizedFlow(Glow((1, 8, 8), levels=1, steps=1, hidden=(8,)), levels=17, dequantizer=deq)
        bpd = model.bits_per_dim(x[:4])
        assert bpd.shape == (4,) and torch.isfinite(bpd).all()
        before = model.evaluate(x)
        hist = fit_images(model, x, steps=40, batch_size=32, lr=3e-3, warmup=5)
        assert hist.steps[-1] == 40 and hist.skipped_batches == 0 and hist.units == "bits/dim"
        assert model.evaluate(x) < before
    with pytest.raises(ValueError):
        DequantizedFlow(model.flow, levels=256, dequantizer=VariationalDequantizer((1, 8, 8), levels=17))
    with pytest.raises(ValueError):
        fit_images(model, x)
    out = save_image_grid(x[:6] / 16, tmp_path / "grid.png", nrow=3)
    assert out.exists() and out.stat().st_size > 0
