r"""Image data for flows: loaders, dequantization, bits per dimension, a time-budgeted trainer, PNG grids.

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
import time
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
import torch
from torch import Tensor, nn

from ..flows.core import Flow
from ..nets.conv import ConvResNet
from ..train.step import skip_nonfinite_step
from ..transforms.base import Compose, Transform
from ..transforms.coupling import AffineCoupling
from ..transforms.elementwise import into_open_unit_interval, log_normal_pdf, log_sigmoid_derivative
from ..transforms.image import channel_mask, checkerboard_mask, image_shape

__all__ = [
    "DequantizedFlow",
    "VariationalDequantizer",
    "bits_per_dim",
    "discrete_log_likelihood_bound",
    "fit_images",
    "load_digits_images",
    "load_mnist",
    "one_hot",
    "read_idx",
    "save_image_grid",
    "uniform_dequantize",
]

def default_mnist_path() -> str:
    """Where the MNIST idx files are looked for: ``$PUSHFORWARD_MNIST``, else ``../shared/data/mnist`` next to
    the current directory or next to the source checkout (the project's layout), else ``./mnist``."""
    env = os.environ.get("PUSHFORWARD_MNIST")
    if env:
        return env
    here = Path(__file__).resolve()
    for root in (Path.cwd(), *here.parents[3:4]):
        candidate = root.parent / "shared" / "data" / "mnist"
        if candidate.is_dir():
            return str(candidate)
    return "mnist"


MNIST_PATH = default_mnist_path()


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
    path: str | os.PathLike = MNIST_PATH, split: str = "train", *, files: str = "t10k", val_size: int = 1000
) -> tuple[Tensor, Tensor]:
    """MNIST from IDX files: ``(images, labels)`` with images ``(N, 1, 28, 28)`` of integer values 0..255
    (as float32) and labels ``(N,)`` int64.

    ``files="t10k"`` reads the 10k test set (what ``../shared/data/mnist`` holds) and splits it in order:
    ``split="train"`` the first ``10000 - val_size`` (9k), ``"val"`` the last ``val_size`` (1k), ``"all"``
    everything. ``files="train"`` reads the 60k training files the same way.
    """
    if split not in ("train", "val", "all"):
        raise ValueError(f"split must be 'train', 'val' or 'all', got {split!r}")
    if files not in ("t10k", "train"):
        raise ValueError(f"files must be 't10k' or 'train', got {files!r}")
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
def _check_levels(x: Tensor, levels: int) -> None:
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
    _check_levels(x, levels)
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


class VariationalDequantizer(nn.Module):
    r"""Flow++'s variational dequantization: a conditional flow :math:`q(u \mid x)` on :math:`(0, 1)^D`.

    .. math:: \varepsilon \sim \mathcal N(0, I), \quad h = g^{-1}(\varepsilon; x), \quad u = \sigma(h), \qquad
        \log q(u \mid x) = \log \mathcal N(\varepsilon) - \log\Big|\det\frac{\partial h}{\partial
        \varepsilon}\Big| - \sum_i \log \sigma'(h_i),

    where :math:`g` is a stack of affine couplings (alternating checkerboard and, with 2+ channels, channel
    masks) whose :class:`~pushforward.nets.ConvResNet` conditioners read the image :math:`x/L - 1/2` as extra
    input channels. Trained jointly with the model on the bound of :func:`discrete_log_likelihood_bound`.

    Reference: Ho, Chen, Srinivas, Duan & Abbeel, "Flow++: Improving Flow-Based Generative Models with
    Variational Dequantization and Architecture Design", ICML 2019.

    Example:
        >>> deq = VariationalDequantizer((1, 8, 8), levels=17, layers=2, hidden=16)
        >>> u, log_q = deq(torch.randint(0, 17, (4, 1, 8, 8)).float())
    """

    def __init__(
        self, shape: Sequence[int], levels: int = 256, *, layers: int = 4, hidden: int = 32, blocks: int = 1
    ) -> None:
        super().__init__()
        c, h, w = image_shape(shape)
        if layers < 1:
            raise ValueError(f"layers must be positive, got {layers}")
        self.shape = (c, h, w)
        self.levels = int(levels)
        parts: list[Transform] = []
        for i in range(layers):
            if c >= 2 and i % 2 == 1:
                mask = channel_mask((c, h, w), (i // 2) % 2 == 0)
            else:
                mask = checkerboard_mask((c, h, w), (i // 2 if c >= 2 else i) % 2)
            net = ConvResNet(c, 2 * c, hidden, blocks, context_channels=c)
            parts.append(AffineCoupling(mask, net, clamp=3.0))
        self.flow = Compose(parts)

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor]:
        """Draw ``u ~ q(·|x)`` (reparameterised) and return ``(u, log q(u|x))``."""
        ctx = x / self.levels - 0.5
        eps = torch.randn_like(x)
        hh, ladj_inv = self.flow.inverse(eps, ctx)
        u = torch.sigmoid(hh)
        log_q = (log_normal_pdf(eps) - log_sigmoid_derivative(hh)).flatten(1).sum(1) - ladj_inv
        return u, log_q


class DequantizedFlow(nn.Module):
    r"""A flow on :math:`[0, 1)^D` viewed as a model of discrete pixels, with uniform or variational
    dequantization; :meth:`log_likelihood_bound` is the bound of the module docstring and
    :meth:`bits_per_dim` the standard bits/dim.

    Reference: Theis, van den Oord & Bethge, "A note on the evaluation of generative models", ICLR 2016
    (dequantization bound); Dinh et al., "Density estimation using Real NVP", 2017 (bits/dim, logit).

    Example:
        >>> from pushforward.flows import Glow
        >>> model = DequantizedFlow(Glow((1, 8, 8), levels=1, steps=2, hidden=(16,)), levels=17)
        >>> model.bits_per_dim(torch.randint(0, 17, (4, 1, 8, 8)).float()).shape
        torch.Size([4])
    """

    def __init__(
        self, flow: Flow, levels: int = 256, dequantizer: VariationalDequantizer | None = None
    ) -> None:
        super().__init__()
        if not isinstance(flow, Flow):
            raise TypeError(f"flow must be a Flow, got {type(flow).__name__}")
        if dequantizer is not None and dequantizer.levels != levels:
            raise ValueError("the dequantizer and the model use different numbers of levels")
        self.flow = flow
        self.levels = int(levels)
        self.dequantizer = dequantizer

    def log_likelihood_bound(self, x: Tensor, context: Tensor | None = None) -> Tensor:
        """One-sample estimate of the lower bound on ``log P(x)`` (nats) per image."""
        _check_levels(x, self.levels)
        if self.dequantizer is None:
            y, log_q = uniform_dequantize(x, self.levels), None
        else:
            u, log_q = self.dequantizer(x)
            y = into_open_unit_interval((x + u) / self.levels)
        dims = math.prod(x.shape[1:])
        return discrete_log_likelihood_bound(self.flow.log_prob(y, context), dims, self.levels, log_q)

    def bits_per_dim(self, x: Tensor, context: Tensor | None = None) -> Tensor:
        """Bits per dimension (from the bound) per image."""
        return bits_per_dim(self.log_likelihood_bound(x, context), math.prod(x.shape[1:]))

    @torch.no_grad()
    def evaluate(
        self, x: Tensor, context: Tensor | None = None, batch_size: int = 500, samples: int = 1
    ) -> float:
        """Mean bits/dim over a data set (eval mode; ``samples`` dequantization draws averaged)."""
        was = self.training
        self.eval()
        try:
            tot = 0.0
            for _ in range(samples):
                for i in range(0, x.shape[0], batch_size):
                    c = context[i : i + batch_size] if context is not None else None
                    tot += float(self.bits_per_dim(x[i : i + batch_size], c).sum())
        finally:
            self.train(was)
        return tot / (samples * x.shape[0])


def fit_images(
    model: DequantizedFlow,
    x: Tensor,
    context: Tensor | None = None,
    *,
    max_seconds: float | None = None,
    steps: int | None = None,
    batch_size: int = 64,
    lr: float = 1e-3,
    warmup: int = 50,
    clip_grad: float = 50.0,
    seed: int = 0,
    callback: Callable[[int, float], None] | None = None,
) -> dict:
    """Train ``model`` (flow and dequantizer jointly) on integer pixels ``x`` by minimising bits/dim.

    Stops after ``steps`` steps or ``max_seconds`` of wall time, whichever comes first (one required).
    Adam with a linear warm-up; batches with a non-finite loss or gradient are skipped. Returns a dict with
    ``steps``, ``seconds``, ``skipped`` and the ``losses`` (train bpd per step).
    """
    if steps is None and max_seconds is None:
        raise ValueError("give steps or max_seconds")
    _check_levels(x, model.levels)
    g = torch.Generator().manual_seed(seed)
    params = [p for p in model.parameters() if p.requires_grad]
    opt = torch.optim.Adam(params, lr=lr)
    model.train()
    start = time.perf_counter()
    losses: list[float] = []
    skipped, step = 0, 0
    while True:
        if steps is not None and step >= steps:
            break
        if max_seconds is not None and time.perf_counter() - start >= max_seconds:
            break
        idx = torch.randint(0, x.shape[0], (batch_size,), generator=g)
        c = context[idx] if context is not None else None
        for group in opt.param_groups:
            group["lr"] = lr * min(1.0, (step + 1) / max(warmup, 1))
        loss = model.bits_per_dim(x[idx], c).mean()
        step += 1
        if not skip_nonfinite_step(loss, params, opt, clip_grad):
            skipped += 1
            continue
        losses.append(float(loss.detach()))
        if callback is not None:
            callback(step, losses[-1])
    model.eval()
    return {"steps": step, "seconds": time.perf_counter() - start, "skipped": skipped, "losses": losses}


# ---------------------------------------------------------------------------------------------- PNG
def save_image_grid(
    images: Tensor, path: str | os.PathLike, nrow: int = 8, *, scale: float = 1.0, zoom: int = 4
) -> Path:
    """Save ``(N, C, H, W)`` images (values in ``[0, scale]``; C = 1 or 3) as one PNG grid, ``nrow`` per row,
    each pixel drawn as a ``zoom x zoom`` block.

    A ``(R, K, C, H, W)`` tensor is saved as R rows of K images.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    if images.dim() == 5:
        nrow = images.shape[1]
        images = images.reshape(-1, *images.shape[2:])
    if images.dim() != 4 or images.shape[1] not in (1, 3):
        raise ValueError(f"images must have shape (N, 1|3, H, W), got {tuple(images.shape)}")
    imgs = (images.detach().float().cpu() / scale).clamp(0, 1)
    n, c, h, w = imgs.shape
    rows = math.ceil(n / nrow)
    grid = torch.ones(c, rows * (h + 1) + 1, nrow * (w + 1) + 1)
    for i in range(n):
        r, k = divmod(i, nrow)
        grid[:, 1 + r * (h + 1) : 1 + r * (h + 1) + h, 1 + k * (w + 1) : 1 + k * (w + 1) + w] = imgs[i]
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    if zoom < 1:
        raise ValueError(f"zoom must be a positive int, got {zoom}")
    grid = grid.repeat_interleave(zoom, 1).repeat_interleave(zoom, 2)
    arr = grid[0].numpy() if c == 1 else grid.permute(1, 2, 0).numpy()
    plt.imsave(path, arr, cmap="gray" if c == 1 else None, vmin=0, vmax=1)
    return path
