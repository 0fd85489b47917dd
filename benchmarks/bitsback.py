"""Bits-back coding of MNIST with a continuous flow (issue 28, item 3): a Glow inside a DequantizedFlow with a
variational dequantizer, turned into a lossless codec by :mod:`pushforward.codec.bitsback`.

Trains on the first 9,000 MNIST test images (the training engine through ``fit_images``, one thread, a CPU
budget), then codes the last images **each on its own** (one stream per image, header and initial bits
included) and as **one chain** (one stream; the initial bits are paid once), decodes everything and checks
it bit-exactly, and reports real bits per pixel next to the model's bits/dim, with coding speed on one core.

Usage (from the repository root)::

    PYTHONPATH=src python benchmarks/bitsback.py train --cpu-minutes 10
    PYTHONPATH=src python benchmarks/bitsback.py evaluate --limit 200

Results go to ``benchmarks/results/compression/bitsback*.json``.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import torch

from pushforward.data.images import read_idx
from pushforward.flows import Glow
from pushforward.flows.dequantization import DequantizedFlow, VariationalDequantizer
from pushforward.io import load, save
from pushforward.train.images import fit_images

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "benchmarks" / "results" / "compression"
GLOW = {"levels": 2, "steps": 4, "hidden": [48]}
DEQUANTIZER = {"layers": 2, "hidden": 16}


def load_images(data: str) -> np.ndarray:
    images = read_idx(Path(data) / "t10k-images-idx3-ubyte.gz")
    if images.shape != (10000, 28, 28):
        raise ValueError(f"unexpected MNIST test set shape {images.shape}")
    return images


def build() -> DequantizedFlow:
    flow = Glow((1, 28, 28), levels=GLOW["levels"], steps=GLOW["steps"], hidden=tuple(GLOW["hidden"]))
    deq = VariationalDequantizer((1, 28, 28), 256, **DEQUANTIZER)
    return DequantizedFlow(flow, levels=256, dequantizer=deq)


def train(args: argparse.Namespace) -> None:
    torch.set_num_threads(1)
    torch.manual_seed(args.seed)
    x = torch.from_numpy(load_images(args.data)[:9000].astype(np.float32)).unsqueeze(1)
    model = build()
    t0 = time.process_time()
    history = fit_images(
        model, x, steps=args.steps, max_seconds=60.0 * args.cpu_minutes, lr=args.lr, batch_size=args.batch
    )
    cpu = time.process_time() - t0
    model.eval()
    save(model, args.model)
    summary = {
        "model": "DequantizedFlow(Glow, VariationalDequantizer)",
        "glow": GLOW,
        "dequantizer": DEQUANTIZER,
        "steps": int(history.steps[-1]),
        "train_cpu_s": round(cpu, 1),
        "final_train_bpd": round(float(history.train_loss[-1]), 4),
        "batch": args.batch,
        "lr": args.lr,
        "threads": 1,
    }
    (OUT / "bitsback_training.json").write_text(json.dumps(summary, indent=1))
    print(json.dumps(summary))


def _bpd(model: DequantizedFlow, x: torch.Tensor, samples: int) -> float:
    torch.manual_seed(0)
    return model.double().evaluate(x.double(), samples=samples)


def evaluate(args: argparse.Namespace) -> None:
    from pushforward.codec import decode, encode, header_size

    torch.set_num_threads(1)
    images = load_images(args.data)[9000:]
    n = args.limit or len(images)
    images = images[:n]
    model = load(args.model).eval()
    x = torch.from_numpy(images.astype(np.float64)).unsqueeze(1)
    pixels = images.size
    t = time.process_time()
    streams = [encode(model, im[None]) for im in images]
    enc_s = time.process_time() - t
    t = time.process_time()
    for im, s in zip(images, streams):
        if not np.array_equal(decode(model, s)[0], im):
            raise RuntimeError("round trip failed: a decoded image differs from the original")
    dec_s = time.process_time() - t
    t = time.process_time()
    chain = encode(model, images, independent=False)
    chain_enc_s = time.process_time() - t
    t = time.process_time()
    if not np.array_equal(decode(model, chain), images):
        raise RuntimeError("round trip failed for the chained stream")
    chain_dec_s = time.process_time() - t
    alone = sum(len(s) for s in streams)
    # the chain's first image pays the initial bits; the rest show the steady-state cost
    first = len(encode(model, images[-1:], independent=False))  # pushed first: pays the initial bits
    bpd = _bpd(model, x, args.samples)
    training = OUT / "bitsback_training.json"
    result = {
        "images": n,
        "model_bits_per_dim": round(bpd, 4),
        "model_bits_per_dim_samples": args.samples,
        "each_image_alone_bits_per_pixel": round(8 * alone / pixels, 4),
        "each_image_alone_header_bits_per_pixel": round(8 * sum(header_size(s) for s in streams) / pixels, 4),
        "chain_bits_per_pixel": round(8 * len(chain) / pixels, 4),
        "chain_without_initial_image_bits_per_pixel": round(8 * (len(chain) - first) / (pixels - 784), 4),
        "initial_image_stream_bytes": first,
        "chain_overhead_vs_bits_per_dim_percent": round(100 * (8 * len(chain) / pixels / bpd - 1), 2),
        "encode_images_per_s_alone": round(n / enc_s, 2),
        "decode_images_per_s_alone": round(n / dec_s, 2),
        "encode_images_per_s_chain": round(n / chain_enc_s, 2),
        "decode_images_per_s_chain": round(n / chain_dec_s, 2),
        "threads": 1,
        "training": json.loads(training.read_text()) if training.exists() else None,
    }
    (OUT / "bitsback_evaluation.json").write_text(json.dumps(result, indent=1))
    print(json.dumps(result, indent=1))


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = p.add_subparsers(dest="cmd", required=True)
    tr = sub.add_parser("train")
    tr.add_argument("--cpu-minutes", type=float, default=10.0, help="wall-time budget on one thread")
    tr.add_argument("--steps", type=int, default=100_000)
    tr.add_argument("--batch", type=int, default=64)
    tr.add_argument("--lr", type=float, default=1e-3)
    tr.add_argument("--seed", type=int, default=0)
    ev = sub.add_parser("evaluate")
    ev.add_argument(
        "--limit", type=int, default=0, help="code the first N of the last 1,000 images (0 = all)"
    )
    ev.add_argument("--samples", type=int, default=4, help="dequantization draws for the model's bits/dim")
    for q in (tr, ev):
        q.add_argument(
            "--data",
            default=str(ROOT.parent / "shared" / "data" / "mnist"),
            help="directory of the MNIST IDX files",
        )
        q.add_argument("--model", default=str(OUT / "bitsback_glow_mnist.safetensors"))
    args = p.parse_args()
    train(args) if args.cmd == "train" else evaluate(args)


if __name__ == "__main__":
    main()
