"""Pictures of image models: sample grids as PNG files."""

from __future__ import annotations

import math
import os
from pathlib import Path

import torch
from torch import Tensor

__all__ = ["save_image_grid"]


def save_image_grid(
    images: Tensor, path: str | os.PathLike, nrow: int = 8, *, scale: float = 1.0, zoom: int = 4
) -> Path:
    """Save ``(N, C, H, W)`` images (values in ``[0, scale]``; C = 1 or 3) as one PNG grid, ``nrow`` per row,
    each pixel drawn as a ``zoom x zoom`` block.

    A ``(R, K, C, H, W)`` tensor is saved as R rows of K images.
    """
    from matplotlib.image import imsave  # no pyplot: the user's backend is left alone

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
    imsave(path, arr, cmap="gray" if c == 1 else None, vmin=0, vmax=1)
    return path
