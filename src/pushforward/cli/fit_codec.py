"""``pushforward fit-codec IMAGES... --out CODEC``: train a codec model on a folder of images.

The images (PNG/PGM read with Pillow, or integer ``.npy`` stacks; folders stand for their such files) must
share one shape ``(C, H, W)``. ``--model idf`` (the default) trains an integer discrete flow
(:class:`~pushforward.flows.IDF`) by maximum likelihood (:func:`pushforward.fit`); ``--model glow`` or
``realnvp`` a :class:`~pushforward.flows.dequantization.DequantizedFlow` around that image flow, with a
variational dequantizer, by bits/dim (:func:`pushforward.train.images.fit_images`); both run the one training
engine with the :class:`~pushforward.train.config.TrainConfig` options (``--steps``, ``--lr``, ...). A seeded
held-out split (``--val-fraction``) picks the best weights. The model file then feeds ``pushforward compress``
and ``decompress``: an IDF codes each image alone within a few bytes of its bits/dim; a dequantized flow is
coded bits-back and needs ``compress --shared-stream`` to pay its initial bits once.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from .common import CLIError, fraction, option
from .config import add_train_options, train_config

__all__ = ["add_parser", "read_images", "run"]

NAME = "fit-codec"
MODELS = ("idf", "glow", "realnvp")


def add_parser(subparsers) -> argparse.ArgumentParser:
    """Add the ``fit-codec`` subcommand (its arguments are added when it is used)."""
    return subparsers.add_parser(
        NAME,
        help="train a codec model (IDF, or Glow/RealNVP coded bits-back) on a folder of images",
        description="Train a lossless-compression model on images (PNG/PGM or integer .npy; folders stand "
        "for their such files) of one shape, for 'pushforward compress' and 'decompress'.",
        build=_add_arguments,
    )


def _add_arguments(f: argparse.ArgumentParser) -> None:
    f.add_argument("images", nargs="+", metavar="IMAGES", help=".png/.pgm/.npy files or folders of them")
    f.add_argument("--model", choices=MODELS, default="idf", help="the codec's model (default idf)")
    f.add_argument(
        "--option",
        type=option,
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="option of the model's preset (IDF, Glow or RealNVPImage), value parsed as JSON (repeatable), "
        "e.g. --option levels=2 --option hidden=[32]",
    )
    f.add_argument(
        "--uniform-dequantization",
        action="store_true",
        help="glow/realnvp: uniform instead of variational dequantization (a smaller, weaker model)",
    )
    f.add_argument(
        "--val-fraction",
        type=fraction,
        default=0.1,
        help="images held out to pick the best weights (default 0.1; 0 disables)",
    )
    f.add_argument("-o", "--out", default="codec.safetensors", help="model file to write")
    f.add_argument("--no-progress", action="store_true", help="hide the progress bar")
    add_train_options(f)


def read_images(paths: list[Path]):
    """``(images (N, C, H, W) integer array, levels)`` of the input files; all must share one shape."""
    import numpy as np

    from .compress import read_item

    stacks, shape = [], None
    for path in paths:
        flat, entry = read_item(path, 1)
        dims = entry["shape"]
        if entry["kind"] == "npy":
            one = {2: [1, 1, *dims], 3: [dims[0], 1, *dims[1:]], 4: dims}.get(len(dims))
            if one is None:
                raise ValueError(f"{path}: an .npy stack must be (H, W), (N, H, W) or (N, C, H, W)")
        else:
            one = [1, 1, *dims] if len(dims) == 2 else [1, dims[2], dims[0], dims[1]]
        arr = flat.reshape(one)
        if shape is not None and arr.shape[1:] != shape:
            raise ValueError(f"{path}: shape {arr.shape[1:]} differs from the other images' {shape}")
        shape = arr.shape[1:]
        stacks.append(arr.astype(np.int64))
    images = np.concatenate(stacks)
    if images.min() < 0:
        raise ValueError("images must hold non-negative integers")
    levels = 256 if images.max() < 256 else int(2 ** np.ceil(np.log2(images.max() + 1)))
    return images, levels


def _build(a: argparse.Namespace, shape: tuple[int, int, int], levels: int):
    options = dict(a.option)
    if "hidden" in options and isinstance(options["hidden"], list):
        options["hidden"] = tuple(options["hidden"])
    if a.model == "idf":
        from ..flows import IDF

        return IDF(shape, **{"scale": float(levels), **options})
    if levels > 256:
        raise CLIError(f"--model {a.model} codes up to 256 levels (8-bit images); these hold {levels}")
    from ..flows import Glow, RealNVPImage
    from ..flows.dequantization import DequantizedFlow, VariationalDequantizer

    flow = (Glow if a.model == "glow" else RealNVPImage)(shape, **options)
    deq = None if a.uniform_dequantization else VariationalDequantizer(shape, levels, layers=2, hidden=16)
    return DequantizedFlow(flow, levels=levels, dequantizer=deq)


def run(a: argparse.Namespace) -> int:
    """Train, write the model file, print the held-out bits/dim."""
    import math
    import sys

    import numpy as np
    import torch

    from .. import codec  # noqa: F401  (registers the classes the model file names)
    from ..io import save
    from .compress import collect_inputs

    out = Path(a.out)
    if out.is_dir() or not (out.parent if str(out.parent) else Path(".")).exists():
        raise CLIError(f"cannot write the model file {out}")
    images, levels = read_images(collect_inputs(a.images))
    n = len(images)
    n_val = round(a.val_fraction * n) if n >= 10 else 0
    batch = a.batch_size or min(64, max(1, n - n_val))
    sized = {
        "batch_size": batch,
        "steps": 1000,
        "eval_every": max(5, math.ceil((n - n_val) / batch)),
        "lr": 1e-3,
    }
    config = train_config(a, sized)
    torch.manual_seed(config.seed if config.seed is not None else 0)
    order = np.random.default_rng(config.seed).permutation(n)
    x = torch.from_numpy(images[order].astype(np.float32))
    train, val = x[n_val:], (x[:n_val] if n_val else None)
    model = _build(a, tuple(int(s) for s in images.shape[1:]), levels)
    print(
        f"fitting {a.model} to {n} images of shape {tuple(images.shape[1:])} ({levels} levels)",
        file=sys.stderr,
    )
    if a.model == "idf":
        from ..train.fit import fit

        history = fit(model, train, val, config=config, progress=not a.no_progress)
        unit = 1.0 / (math.log(2) * images[0].size)  # nats per image -> bits per pixel
    else:
        from ..train.images import fit_images

        history = fit_images(model, train, val=val, config=config, progress=not a.no_progress)
        unit = 1.0
    model.eval()
    save(model, out)
    score = history.best_val_loss if n_val else history.train_loss[-1]
    print(f"{out}: {a.model}, {'held-out' if n_val else 'training'} bits/dim {score * unit:.4f}")
    return 0
