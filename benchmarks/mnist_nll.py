"""Test NLL of an autoregressive flow (MAF by default) on MNIST in logit space, and bits/dim.

Data: the 10k images in ``../shared/data/mnist`` (``t10k-*-idx*-ubyte.gz``), split 9k train / 1k test in
file order, flattened to 784-D, uniformly dequantized ``x = (pixel + u)/256`` and mapped to logit space
``y = logit(α + (1 − 2α) x)`` with ``α = 1e-6`` (as in the MAF paper). 10% of the training images are held
out for validation / early stopping. Reported:

* test NLL in logit space, nats per image (``−log p_Y(y)``, the MAF paper's table figure);
* bits/dim of the dequantized pixels: ``−(log p_Y(y) + log|dy/dx| − 784 log 256) / (784 log 2)``.

Usage::

    nice .venv/bin/python benchmarks/mnist_nll.py --preset maf --layers 5 --hidden 512 --steps 2000
"""

from __future__ import annotations

import argparse
import gzip
import json
import math
import struct
import time
from pathlib import Path

import numpy as np
import torch

from pushforward import fit
from pushforward.flows import PRESETS
from pushforward.train.fit import evaluate_nll

ALPHA = 1e-6
D = 784


def read_idx(path: Path) -> np.ndarray:
    """A tiny IDX reader (fallback when :mod:`pushforward.data.images` is unavailable)."""
    with gzip.open(path, "rb") if path.suffix == ".gz" else open(path, "rb") as fh:
        data = fh.read()
    if data[:2] != b"\x00\x00" or data[2] != 0x08:
        raise ValueError(f"{path}: not an unsigned-byte IDX file")
    dims = struct.unpack(f">{data[3]}I", data[4 : 4 + 4 * data[3]])
    return np.frombuffer(data, np.uint8, offset=4 + 4 * data[3]).reshape(dims)


def load_pixels(root: str) -> tuple[torch.Tensor, torch.Tensor]:
    """(train 9k, test 1k) pixel tensors of shape (N, 784), integer values 0..255 as float64."""
    try:
        from pushforward.data.images import load_mnist

        train = load_mnist(root, "train", val_size=1000)[0]
        test = load_mnist(root, "val", val_size=1000)[0]
        return train.reshape(-1, D).double(), test.reshape(-1, D).double()
    except ImportError:
        images = read_idx(Path(root) / "t10k-images-idx3-ubyte.gz").reshape(-1, D)
        x = torch.from_numpy(images.astype(np.float64))
        return x[:9000], x[9000:]


def to_logit(pixels: torch.Tensor, g: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """Dequantize and map to logit space; also return ``log|dy/dx|`` summed per image (x in [0, 1))."""
    x = (pixels + torch.rand(pixels.shape, generator=g, dtype=pixels.dtype)) / 256.0
    s = ALPHA + (1 - 2 * ALPHA) * x
    y = torch.log(s) - torch.log1p(-s)
    log_dydx = (math.log(1 - 2 * ALPHA) - torch.log(s) - torch.log1p(-s)).sum(1)
    return y, log_dydx


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data", default="../shared/data/mnist")
    p.add_argument("--preset", default="maf", choices=sorted(PRESETS))
    p.add_argument("--layers", type=int, default=5)
    p.add_argument("--hidden", type=int, nargs="+", default=[512])
    p.add_argument("--steps", type=int, default=2000)
    p.add_argument("--batch-size", type=int, default=100)
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--json", default=None)
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    g = torch.Generator().manual_seed(args.seed)

    train_px, test_px = load_pixels(args.data)
    y_train, _ = to_logit(train_px, g)
    y_test, log_dydx_test = to_logit(test_px, g)
    n_val = y_train.shape[0] // 10
    y_fit, y_val = y_train[n_val:].float(), y_train[:n_val].float()

    flow = PRESETS[args.preset](D, layers=args.layers, hidden=tuple(args.hidden))
    start = time.perf_counter()
    fit(
        flow,
        y_fit,
        y_val,
        steps=args.steps,
        batch_size=args.batch_size,
        lr=args.lr,
        progress=False,
        seed=args.seed,
    )
    seconds = time.perf_counter() - start

    nll_logit = evaluate_nll(flow, y_test.float())
    with torch.no_grad():
        flow.eval()
        log_p_y = torch.cat([flow.log_prob(b.float()).double() for b in y_test.split(500)])
    log_p_pixels = log_p_y + log_dydx_test - D * math.log(256.0)
    bpd = float(-log_p_pixels.mean() / (D * math.log(2.0)))
    result = {
        "preset": args.preset,
        "layers": args.layers,
        "hidden": args.hidden,
        "steps": args.steps,
        "train_images": int(y_fit.shape[0]),
        "test_images": int(y_test.shape[0]),
        "test_nll_logit_nats": nll_logit,
        "test_bits_per_dim": bpd,
        "seconds": seconds,
    }
    print(
        f"{args.preset} MNIST (9k/1k): test NLL {nll_logit:.1f} nats (logit space), {bpd:.3f} bits/dim "
        f"({seconds:.0f} s, {args.steps} steps)",
        flush=True,
    )
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
