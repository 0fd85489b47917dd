r"""Image data for flows: loaders, uniform dequantization, the dequantization bound and bits per dimension.

Discrete data and continuous densities
--------------------------------------
Pixels are integers :math:`x \in \{0, \dots, L-1\}^D` (:math:`L = 256` for MNIST, 17 for scikit-learn's
8x8 digits). A continuous density :math:`p` on :math:`[0, 1)^D` defines the discrete model
:math:`P(x) = \int_{[0,1)^D} p\big((x + u)/L\big)\, L^{-D}\, du`. For any dequantization density
:math:`q(u \mid x)` on :math:`[0, 1)^D`, Jensen's inequality gives the bound

.. math:: \log P(x) \ \ge\ \mathbb E_{u \sim q(\cdot\mid x)}\Big[\log p\big(\tfrac{x + u}{L}\big)
    - \log q(u \mid x)\Big] - D \log L,

with :math:`q = \mathcal U[0,1)^D` (uniform dequantization, :math:`\log q = 0`) or a learned conditional
flow (variational dequantization, Flow++). **Bits per dimension** is the negated bound in base 2 per
dimension, :math:`\mathrm{bpd} = -\text{bound} / (D \log 2)` — the standard figure for image models
(it includes the :math:`D \log L` discretisation term; with the logit preprocessing inside the flow, its
log-determinant is included too).
"""

from __future__ import annotations

import gzip
import math
import os
import struct
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

from ..transforms.elementwise import into_open_unit_interval

__all__ = [
    "bits_per_dim",
    "check_levels",
    "discrete_log_likelihood_bound",
    "load_digits_images",
    "load_mnist",
    "one_hot",
    "read_idx",
    "uniform_dequantize",
]


def default_mnist_path() -> str | None:
    """The MNIST directory named by the environment variable ``PUSHFORWARD_MNIST``, or None.

    The library has no built-in data location: pass the directory to :func:`load_mnist` or set the variable.
    """
    return os.environ.get("PUSHFORWARD_MNIST") or None


# ------------------------------------------------------------------------------------------- loaders
def read_idx(path: str | os.PathLike) -> np.ndarray:
    """Read an IDX file (the MNIST format; optionally gzip-compressed) into a numpy array."""
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"no IDX file at {path}")
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rb") as fh:
        data = fh.read()
    if len(data) < 4 or data[0] != 0 or data[1] != 0:
        raise ValueError(f"{path} is not an IDX file (bad magic number)")
    dtypes = {0x08: np.uint8, 0x09: np.int8, 0x0B: ">i2", 0x0C: ">i4", 0x0D: ">f4", 0x0E: ">f8"}
    if data[2] not in dtypes:
        raise ValueError(f"{path}: unknown IDX data type 0x{data[2]:02x}")
    ndim = data[3]
    dims = struct.unpack(f">{ndim}I", data[4 : 4 + 4 * ndim])
    arr = np.frombuffer(data, dtype=dtypes[data[2]], offset=4 + 4 * ndim)
    if arr.size != math.prod(dims):
        raise ValueError(f"{path}: header says {dims} but holds {arr.size} values")
    return arr.reshape(dims)


def _find(root: Path, stem: str) -> Path:
    for name in (stem, stem + ".gz"):
        if (root / name).exists():
            return root / name
    raise FileNotFoundError(f"neither {stem} nor {stem}.gz in {root}")


def load_mnist(
    path: str | os.PathLike | None = None, split: str = "train", *, files: str = "t10k", val_size: int = 1000
) -> tuple[Tensor, Tensor]:
    """MNIST from IDX files: ``(images, labels)`` with images ``(N, 1, 28, 28)`` of integer values 0..255
    (as float32) and labels ``(N,)`` int64.

    ``path`` is the directory of the IDX files (default ``$PUSHFORWARD_MNIST``; ``ValueError`` when neither
    is given). ``files="t10k"`` reads the 10k test set and splits it in order:
    ``split="train"`` the first ``10000 - val_size`` (9k), ``"val"`` the last ``val_size`` (1k), ``"all"``
    everything. ``files="train"`` reads the 60k training files the same way.
    """
    if split not in ("train", "val", "all"):
        raise ValueError(f"split must be 'train', 'val' or 'all', got {split!r}")
    if files not in ("t10k", "train"):
        raise ValueError(f"files must be 't10k' or 'train', got {files!r}")
    if path is None:
        path = default_mnist_path()
        if path is None:
            raise ValueError("give the MNIST directory (load_mnist(path)) or set PUSHFORWARD_MNIST")
    root = Path(path)
    images = read_idx(_find(root, f"{files}-images-idx3-ubyte"))
    labels = read_idx(_find(root, f"{files}-labels-idx1-ubyte"))
    if images.ndim != 3 or labels.shape != images.shape[:1]:
        raise ValueError(f"unexpected MNIST shapes {images.shape} and {labels.shape}")
    n = images.shape[0]
    if not 0 < val_size < n:
        raise ValueError(f"val_size must lie in (0, {n}), got {val_size}")
    sl = {"train": slice(0, n - val_size), "val": slice(n - val_size, n), "all": slice(0, n)}[split]
    x = torch.from_numpy(images[sl].astype(np.float32)).unsqueeze(1)
    y = torch.from_numpy(labels[sl].astype(np.int64))
    return x, y


def load_digits_images() -> tuple[Tensor, Tensor]:
    """scikit-learn's 8x8 digits: ``(images, labels)``, images ``(1797, 1, 8, 8)`` with integer values
    0..16 (17 levels, as float32), labels ``(1797,)`` int64."""
    from sklearn.datasets import load_digits

    d = load_digits()
    x = torch.from_numpy(d.images.astype(np.float32)).unsqueeze(1)
    return x, torch.from_numpy(d.target.astype(np.int64))


def one_hot(labels: Tensor, classes: int) -> Tensor:
    """Float one-hot rows ``(N, classes)`` for class-conditional flows."""
    if labels.dtype not in (torch.int32, torch.int64) or labels.dim() != 1:
        raise TypeError("labels must be a 1-D integer tensor")
    if bool((labels < 0).any() | (labels >= classes).any()):
        raise ValueError(f"labels must lie in [0, {classes})")
    return torch.nn.functional.one_hot(labels, classes).float()


# ------------------------------------------------------------------------------------ dequantization
def check_levels(x: Tensor, levels: int) -> None:
    if not isinstance(x, Tensor) or not x.is_floating_point():
        raise TypeError("pixel data must be a floating tensor of integer values")
    if levels < 2:
        raise ValueError(f"levels must be at least 2, got {levels}")
    if bool((x < 0).any() | (x > levels - 1).any() | (x != x.round()).any()):
        raise ValueError(f"pixel values must be integers in [0, {levels - 1}]")


def uniform_dequantize(x: Tensor, levels: int = 256, generator: torch.Generator | None = None) -> Tensor:
    r"""Uniform dequantization :math:`y = (x + u) / L`, :math:`u \sim \mathcal U[0, 1)^D`: values in the
    open cube :math:`(0, 1)^D`, the support of the image presets' logit (the rare draws that round onto 0 or
    1, e.g. :math:`(255 + u)/256 = 1` in float32 for :math:`u > 1 - 2^{-17}`, are moved by one ulp)."""
    check_levels(x, levels)
    u = torch.rand(x.shape, generator=generator, dtype=x.dtype, device=x.device)
    return into_open_unit_interval((x + u) / levels)


def discrete_log_likelihood_bound(
    log_p_y: Tensor, dims: int, levels: int, log_q_u: Tensor | None = None
) -> Tensor:
    r"""The discrete log-likelihood bound :math:`\log p(y) - \log q(u \mid x) - D \log L` (nats), from the
    continuous log-density of :math:`y = (x + u)/L` on :math:`[0, 1)^D`."""
    bound = log_p_y - dims * math.log(levels)
    return bound if log_q_u is None else bound - log_q_u


def bits_per_dim(log_likelihood: Tensor, dims: int) -> Tensor:
    r""":math:`-\log P(x) / (D \log 2)`: nats of a (bound on the) discrete log-likelihood to bits/dim."""
    return -log_likelihood / (dims * math.log(2.0))
