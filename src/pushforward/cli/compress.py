"""``pushforward compress MODEL IN... -o OUT``: lossless compression of images and integer arrays with a
codec model file (see :mod:`pushforward.codec`): a discrete flow, or a dequantized continuous flow (bits-back
coding), e.g. one trained by ``pushforward fit-codec``.

Inputs: PNG/PGM images (8-bit grey ``L``, 16-bit grey ``I;16``, or ``RGB``; read with Pillow), integer
``.npy`` arrays, and folders of these (every such file in the folder, sorted by name; not recursive). Every
input must hold as many values as the model's event (an ``.npy`` array may also hold several such items along
its first axis). The output is one file: the codec stream, whose metadata lists the inputs' names, kinds,
shapes and dtypes so that ``pushforward decompress`` restores each file (same names, the same pixels and
values; an ``.npy`` file comes back byte for byte, an image re-encoded by Pillow).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # numpy is imported where it is used, so that --help stays light
    import numpy as np


__all__ = ["add_parser", "collect_inputs", "read_item", "run"]

_IMAGE_SUFFIXES = {".png": "PNG", ".pgm": "PPM"}
SUFFIXES = (".png", ".pgm", ".npy")
_MODES = {"L": "uint8", "I;16": "uint16", "RGB": "uint8"}


NAME = "compress"


def add_parser(subparsers) -> argparse.ArgumentParser:
    """Register the ``compress`` subcommand."""
    p = subparsers.add_parser(
        NAME,
        help="compress images (PNG/PGM), integer .npy arrays or folders of them losslessly with a codec model",
        description="Compress each input losslessly with a codec model file (a discrete flow such as IDF, "
        "or a dequantized Glow/RealNVP image flow, coded bits-back) into one stream.",
    )
    p.add_argument(
        "model",
        help="model file: an integer or categorical discrete flow, or a DequantizedFlow (pushforward fit-codec)",
    )
    p.add_argument(
        "inputs",
        nargs="+",
        metavar="IN",
        help=".png, .pgm or .npy files, or folders (their such files, sorted)",
    )
    p.add_argument("-o", "--out", required=True, help="output stream file")
    p.add_argument(
        "--shared-stream",
        action="store_true",
        help="code all inputs in one ANS stream (a few bytes smaller; items are still modelled one by one; a "
        "bits-back model pays its initial bits once instead of once per item: use it for those)",
    )
    return p


def collect_inputs(names: list[str]) -> list[Path]:
    """The input files: files as given, folders replaced by their .png/.pgm/.npy files sorted by name."""
    paths: list[Path] = []
    for name in names:
        path = Path(name)
        if path.is_dir():
            found = sorted(p for p in path.iterdir() if p.is_file() and p.suffix.lower() in SUFFIXES)
            if not found:
                raise ValueError(f"{path}: the folder holds no .png, .pgm or .npy file")
            paths += found
        elif not path.exists():
            raise FileNotFoundError(2, "no such file", str(path))
        else:
            paths.append(path)
    return paths


def read_item(path: Path, features: int) -> tuple[np.ndarray, dict]:
    """``(items (n, features), manifest entry)`` of one input file."""
    import numpy as np

    suffix = path.suffix.lower()
    if suffix == ".npy":
        arr = np.load(path, allow_pickle=False)
        if arr.dtype.kind not in "iu":
            raise ValueError(f"{path}: .npy inputs must hold integers, got dtype {arr.dtype}")
        entry = {"kind": "npy", "shape": list(arr.shape), "dtype": arr.dtype.str}
        flat = arr.reshape(-1)
    elif suffix in _IMAGE_SUFFIXES:
        from PIL import Image

        with Image.open(path) as im:
            if im.mode not in _MODES:
                raise ValueError(f"{path}: image mode {im.mode} is not supported (use L, I;16 or RGB)")
            arr = np.asarray(im, dtype=_MODES[im.mode])
            entry = {"kind": suffix[1:], "mode": im.mode, "shape": list(arr.shape), "dtype": arr.dtype.str}
        if arr.ndim == 3:
            arr = arr.transpose(2, 0, 1)  # channels first, as the model sees images
        flat = arr.reshape(-1)
    else:
        raise ValueError(f"{path}: unsupported input type {suffix!r} (use .png, .pgm or .npy)")
    if flat.size == 0:
        raise ValueError(f"{path}: the input is empty")
    if flat.size % features:
        raise ValueError(f"{path}: holds {flat.size} values; the model codes items of {features} values")
    entry["name"] = path.name
    entry["items"] = flat.size // features
    return flat.reshape(-1, features), entry


def _load(model_path: str):
    from .. import codec  # noqa: F401  (registers the codec model classes the file may name)
    from ..io import load

    return load(model_path)


def run(args: argparse.Namespace) -> int:
    """Compress ``args.inputs`` into ``args.out``; prints one summary line."""
    import numpy as np

    from ..codec import encode

    flow = _load(args.model)
    features = int(np.prod(flow.event_shape))
    names, parts, manifest = set(), [], []
    inputs = collect_inputs(args.inputs)
    for path in inputs:
        if path.name in names:
            raise ValueError(f"two inputs are named {path.name}; decompress could not restore both")
        names.add(path.name)
        items, entry = read_item(path, features)
        parts.append(items)
        manifest.append(entry)
    dtype = parts[0].dtype if all(p.dtype == parts[0].dtype for p in parts) else np.dtype(np.int64)
    items = np.concatenate([p.astype(dtype) for p in parts])
    meta = json.dumps(manifest, separators=(",", ":")).encode()
    data = encode(flow, items, independent=not args.shared_stream, metadata=meta)
    Path(args.out).write_bytes(data)
    raw = sum(p.size * p.dtype.itemsize for p in parts)
    print(
        f"{len(inputs)} file(s), {items.size} values -> {args.out}: {len(data)} bytes "
        f"({8 * len(data) / items.size:.3f} bits per value; {raw} bytes raw)"
    )
    return 0
