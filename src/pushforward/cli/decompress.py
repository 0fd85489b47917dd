"""``pushforward decompress MODEL IN -o DIR``: restore the files of a ``pushforward compress`` stream,
bit-exactly, into a directory (see :mod:`pushforward.codec`)."""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # numpy is imported where it is used, so that --help stays light
    import numpy as np


__all__ = ["add_parser", "run"]


NAME = "decompress"


def add_parser(subparsers) -> argparse.ArgumentParser:
    """Register the ``decompress`` subcommand."""
    p = subparsers.add_parser(
        NAME,
        help="restore the files of a 'pushforward compress' stream",
        description="Decode a stream with the model that made it and write every original file into DIR.",
    )
    p.add_argument("model", help="the model file the stream was made with")
    p.add_argument("input", metavar="IN", help="stream file written by 'pushforward compress'")
    p.add_argument("-o", "--out", required=True, metavar="DIR", help="output directory (created if needed)")
    p.add_argument("--force", action="store_true", help="overwrite existing files in DIR")
    return p


def _manifest(meta: bytes) -> list[dict]:
    try:
        manifest = json.loads(meta.decode())
    except (UnicodeDecodeError, json.JSONDecodeError):
        raise ValueError("the stream carries no file list (was it made by 'pushforward compress'?)") from None
    if not isinstance(manifest, list) or not all(isinstance(e, dict) for e in manifest):
        raise ValueError("the stream's file list is malformed")
    for e in manifest:
        name = e.get("name")
        if not isinstance(name, str) or not name or Path(name).name != name or name in (".", ".."):
            raise ValueError(f"the stream names an unsafe output file {name!r}")
    return manifest


def _write(path: Path, entry: dict, flat: np.ndarray) -> None:
    import numpy as np

    dtype = np.dtype(entry["dtype"])
    shape = tuple(int(s) for s in entry["shape"])
    if entry["kind"] == "npy":
        np.save(path, flat.astype(dtype).reshape(shape), allow_pickle=False)
        return
    from PIL import Image

    arr = flat.astype(dtype)
    if len(shape) == 3:  # stored channels first
        arr = arr.reshape(shape[2], shape[0], shape[1]).transpose(1, 2, 0)
    arr = np.ascontiguousarray(arr.reshape(shape))
    fmt = "PNG" if entry["kind"] == "png" else "PPM"
    Image.fromarray(arr, mode=entry["mode"] if entry["mode"] != "I;16" else None).save(path, fmt)


def run(args: argparse.Namespace) -> int:
    """Decode ``args.input`` into ``args.out``; prints one line per file."""
    from ..codec import decode
    from .compress import _load

    flow = _load(args.model)
    items, meta = decode(flow, Path(args.input).read_bytes(), with_metadata=True)
    manifest = _manifest(meta)
    if sum(int(e["items"]) for e in manifest) != len(items):
        raise ValueError("the stream's file list does not match its items")
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    flat = items.reshape(len(items), -1)
    start = 0
    for e in manifest:
        path = out / e["name"]
        if path.exists() and not args.force:
            raise FileExistsError(f"{path} exists (pass --force to overwrite)")
        n = int(e["items"])
        _write(path, e, flat[start : start + n].reshape(-1))
        start += n
        print(path)
    return 0
