"""Lossless compression of MNIST with an integer discrete flow and the ANS codec (issue 28).

Trains an ``pushforward.flows.AutoregressiveIDF`` (an autoregressive discretized-logistic prior on a
causal window; ``--options`` picks others, e.g. integer couplings in front) on the first 9,000 MNIST test
images, then compresses each of the last 1,000 images **on its own** with :func:`pushforward.codec.encode`
(one stream per image, header included), decodes every stream and checks it bit-exactly, and reports real
bytes per pixel next to the model's bits/dim, the classic anchors recomputed on the same 1,000 images,
coding speed on one core and the training CPU time.

Usage (from the repository root)::

    PYTHONPATH=src python benchmarks/compression.py train --cpu-minutes 55 --steps 1000000  # the model file
    PYTHONPATH=src python benchmarks/compression.py train --val 500 --cpu-minutes 2 --options '{...}'  # search
    PYTHONPATH=src python benchmarks/compression.py evaluate                 # the table (JSON + markdown)

Results go to ``benchmarks/results/compression/``.
"""

from __future__ import annotations

import argparse
import bz2
import gzip
import io
import json
import lzma
import math
import time
from pathlib import Path

import numpy as np
import torch

from pushforward.data.images import read_idx
from pushforward.flows import AutoregressiveIDF
from pushforward.io import load, save

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "benchmarks" / "results" / "compression"
OPTIONS = {"layers": 0, "prior_hidden": [64, 64], "window": 3, "components": 5}


def load_images(data: str) -> np.ndarray:
    images = read_idx(Path(data) / "t10k-images-idx3-ubyte.gz")
    if images.shape != (10000, 28, 28):
        raise ValueError(f"unexpected MNIST test set shape {images.shape}")
    return images


def bits_per_dim(flow, x: torch.Tensor, batch: int = 500) -> float:
    with torch.no_grad():
        lp = torch.cat([flow.log_prob(x[i : i + batch]) for i in range(0, len(x), batch)])
    return float(-lp.mean() / (x[0].numel() * math.log(2)))


def train(args: argparse.Namespace) -> None:
    torch.set_num_threads(1)
    torch.manual_seed(args.seed)
    images = load_images(args.data)
    x = torch.from_numpy(images[:9000].astype(np.float32)).unsqueeze(1)
    options = json.loads(args.options) if args.options else OPTIONS
    x_val = None
    if args.val:  # architecture search: hold out the last images of the training set
        x, x_val = x[: len(x) - args.val], x[len(x) - args.val :]
    previous = {"steps": 0, "train_cpu_s": 0.0, "log": []}
    if args.resume:  # continue a saved run (a warm restart of the cosine schedule); CPU time adds up
        flow = load(args.model)
        flow.train()
        previous = json.loads(Path(args.summary).read_text())
    else:
        flow = AutoregressiveIDF(
            (1, 28, 28), **{k: tuple(v) if isinstance(v, list) else v for k, v in options.items()}
        )
    opt = torch.optim.Adam(flow.parameters(), lr=args.lr)
    budget, wall_budget = 60.0 * args.cpu_minutes, 60.0 * args.wall_minutes
    g = torch.Generator().manual_seed(args.seed)
    OUT.mkdir(parents=True, exist_ok=True)
    log = []
    t0, w0 = time.process_time(), time.time()
    step, frac = 0, 0.0
    while frac < 1.0:
        # cosine decay over whichever budget (steps, CPU seconds, wall seconds) runs out first
        for group in opt.param_groups:
            group["lr"] = 0.5 * args.lr * (1 + math.cos(math.pi * frac))
        idx = torch.randint(0, len(x), (args.batch,), generator=g)
        loss = -flow.log_prob(x[idx]).mean() / (784 * math.log(2))
        if not torch.isfinite(loss):
            raise RuntimeError(f"training diverged at step {step} (loss {float(loss)})")
        opt.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(flow.parameters(), 5.0)
        opt.step()
        step += 1
        frac = max(step / args.steps, (time.process_time() - t0) / budget, (time.time() - w0) / wall_budget)
        if step % args.log_every == 0:
            row = {
                "step": step,
                "cpu_s": round(time.process_time() - t0, 1),
                "train_bpd": round(float(loss), 4),
            }
            if x_val is not None:
                flow.eval()
                row["val_bpd"] = round(bits_per_dim(flow, x_val), 4)
                flow.train()
            log.append(row)
            print(json.dumps(row), flush=True)
        if step % 500 == 0:
            save(flow, args.model)
    cpu = time.process_time() - t0
    flow.eval()
    train_bpd = bits_per_dim(flow, x[:2000])
    save(flow, args.model)
    offset = {"steps": previous["steps"], "cpu_s": previous["train_cpu_s"]}
    log = previous["log"] + [
        {**r, "step": r["step"] + offset["steps"], "cpu_s": r["cpu_s"] + offset["cpu_s"]} for r in log
    ]
    runs = previous.get(
        "runs", [{"steps": previous["steps"], "cpu_s": previous["train_cpu_s"]}] if previous["steps"] else []
    )
    summary = {
        "steps": step + previous["steps"],
        "train_cpu_s": round(cpu + previous["train_cpu_s"], 1),
        "runs": [*runs, {"steps": step, "cpu_s": round(cpu, 1), "lr": args.lr}],
        "train_bpd_first2000": round(train_bpd, 4),
        "batch": args.batch,
        "lr": args.lr,
        "options": options,
        "log": log,
    }
    Path(args.summary).write_text(json.dumps(summary, indent=1))
    print(json.dumps({k: v for k, v in summary.items() if k != "log"}))


def _anchors(images: np.ndarray) -> dict[str, float]:
    from PIL import features

    pixels = images.size
    raw = images.tobytes()
    out = {
        "gzip -9 (whole set)": len(gzip.compress(raw, 9)) * 8 / pixels,
        "bz2 -9 (whole set)": len(bz2.compress(raw, 9)) * 8 / pixels,
        "lzma 9e (whole set)": len(lzma.compress(raw, preset=9 | lzma.PRESET_EXTREME)) * 8 / pixels,
    }
    png = webp = gz = 0
    for im in images:
        from PIL import Image

        buf = io.BytesIO()
        Image.fromarray(im).save(buf, "PNG", optimize=True)
        png += buf.tell()
        if features.check("webp"):
            buf = io.BytesIO()
            Image.fromarray(im).save(buf, "WEBP", lossless=True, method=6, quality=100)
            webp += buf.tell()
        gz += len(gzip.compress(im.tobytes(), 9))
    out["PNG optimised (per image)"] = png * 8 / pixels
    if webp:
        out["WebP lossless m6 (per image)"] = webp * 8 / pixels
    out["gzip -9 (per image)"] = gz * 8 / pixels
    return out


def evaluate(args: argparse.Namespace) -> None:
    from pushforward.codec import decode, encode

    torch.set_num_threads(1)
    images = load_images(args.data)[9000:]
    flow = load(args.model)
    x = torch.from_numpy(images.astype(np.float32)).unsqueeze(1)
    bpd = bits_per_dim(flow, x)
    n = args.limit or len(images)
    streams = []
    t = time.process_time()
    for im in images[:n]:
        streams.append(encode(flow, im[None]))
    enc_s = time.process_time() - t
    receiver = load(args.model)  # a fresh copy: the decoder shares no table cache with the encoder
    t = time.process_time()
    for im, s in zip(images[:n], streams):
        back = decode(receiver, s)
        if back.shape != (1, 28, 28) or back.dtype != np.uint8 or not np.array_equal(back[0], im):
            raise RuntimeError("round trip failed: a decoded image differs from the original")
    dec_s = time.process_time() - t
    pixels = n * 784
    m = min(n, 100)  # one shared stream (no per-image header): a smaller sample, it costs as much to code
    shared = encode(flow, images[:m], independent=False)
    if not np.array_equal(decode(flow, shared), images[:m]):
        raise RuntimeError("round trip failed for the shared stream")
    total = sum(len(s) for s in streams)
    header = sum(_header_bytes(s) for s in streams)
    training = json.loads((OUT / "training.json").read_text()) if (OUT / "training.json").exists() else {}
    result = {
        "images": n,
        "model_bits_per_dim_all_1000": round(bpd, 4),
        "model_bits_per_dim_coded_images": round(bits_per_dim(flow, x[:n]), 4),
        "bytes_on_disk_bits_per_pixel": round(total * 8 / pixels, 4),
        "header_bits_per_pixel": round(header * 8 / pixels, 4),
        "payload_bits_per_pixel": round((total - header) * 8 / pixels, 4),
        "coding_overhead_percent": round(100 * (total * 8 / pixels / bits_per_dim(flow, x[:n]) - 1), 2),
        "header_bytes_per_image": round(header / n, 2),
        "one_shared_stream_first_100_bits_per_pixel": round(len(shared) * 8 / (m * 784), 4),
        "model_bits_per_dim_first_100": round(bits_per_dim(flow, x[:m]), 4),
        "encode_images_per_s": round(n / enc_s, 1),
        "decode_images_per_s": round(n / dec_s, 1),
        "train_cpu_s": training.get("train_cpu_s"),
        "train_steps": training.get("steps"),
        "model": training.get("options"),
        "model_file_kb": round(Path(args.model).stat().st_size / 1024),
        "anchors_bits_per_pixel_all_1000": {k: round(v, 4) for k, v in _anchors(images).items()},
    }
    (OUT / "evaluation.json").write_text(json.dumps(result, indent=1))
    (OUT / "evaluation.md").write_text(_markdown(result))
    print(json.dumps(result, indent=1))


def _markdown(r: dict) -> str:
    rows = [
        ("model bits/dim (-log2 P / pixels)", r["model_bits_per_dim_coded_images"]),
        ("**bytes on disk, each image its own file**", r["bytes_on_disk_bits_per_pixel"]),
        ("  of which header and check", r["header_bits_per_pixel"]),
        ("  of which ANS payload", r["payload_bits_per_pixel"]),
        *[(k, v) for k, v in r["anchors_bits_per_pixel_all_1000"].items()],
    ]
    lines = [
        f"Last {r['images']} MNIST test images, bits per pixel (benchmarks/compression.py evaluate)",
        "",
        "| method | bits per pixel |",
        "|---|---|",
        *[f"| {name} | {value:.3f} |" for name, value in rows],
        "",
        f"Coding overhead over the model's bits/dim, header included: {r['coding_overhead_percent']:.2f} % "
        f"({r['header_bytes_per_image']} header bytes per image). Encode {r['encode_images_per_s']} images/s, "
        f"decode {r['decode_images_per_s']} images/s (one thread, per CPU-second). Training: "
        f"{r['train_cpu_s']} CPU-s, {r['train_steps']} steps, model {json.dumps(r['model'])}.",
        "",
    ]
    return "\n".join(lines)


def _header_bytes(stream: bytes) -> int:
    from pushforward.codec import header_size

    return header_size(stream)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = p.add_subparsers(dest="cmd", required=True)
    tr = sub.add_parser("train")
    tr.add_argument("--cpu-minutes", type=float, default=25.0)
    tr.add_argument("--steps", type=int, default=3000)
    tr.add_argument(
        "--wall-minutes", type=float, default=1e9, help="also stop after this wall time (shared CPUs)"
    )
    tr.add_argument("--batch", type=int, default=64)
    tr.add_argument("--lr", type=float, default=2e-3)
    tr.add_argument("--seed", type=int, default=0)
    tr.add_argument("--resume", action="store_true", help="continue training the saved model")
    tr.add_argument("--options", default="", help="model options as JSON (default: OPTIONS)")
    tr.add_argument("--val", type=int, default=0, help="hold out the last N training images, log their bpd")
    tr.add_argument("--log-every", type=int, default=100)
    tr.add_argument("--summary", default=str(OUT / "training.json"), help="where the training record goes")
    ev = sub.add_parser("evaluate")
    ev.add_argument(
        "--limit", type=int, default=0, help="evaluate on the first N of the 1,000 images (0 = all)"
    )
    for q in (tr, ev):
        q.add_argument(
            "--data",
            default=str(ROOT.parent / "shared" / "data" / "mnist"),
            help="directory of the MNIST IDX files",
        )
        q.add_argument("--model", default=str(OUT / "ar_idf_mnist.safetensors"))
    args = p.parse_args()
    train(args) if args.cmd == "train" else evaluate(args)


if __name__ == "__main__":
    main()
