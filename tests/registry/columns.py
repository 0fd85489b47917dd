"""Registry cases: per-column support maps and composition log-ratios (``transforms/columns.py``)."""

from __future__ import annotations

import torch

from pushforward.transforms import ColumnMaps, LogRatio

from . import Case


def _column_sampler(n: int, g: torch.Generator) -> torch.Tensor:
    """Columns: real, above 1 (lower bound 1), inside (0, 100), inside (-2, 3)."""
    u = torch.rand(n, 4, generator=g, dtype=torch.float64)
    return torch.stack(
        [
            torch.randn(n, generator=g, dtype=torch.float64),
            1 + 5 * u[:, 1],
            1 + 98 * u[:, 2],
            -1.9 + 4.8 * u[:, 3],
        ],
        1,
    )


def _composition_sampler(n: int, g: torch.Generator) -> torch.Tensor:
    """Column 0 real; columns 1, 2 the first two parts of a 3-part composition with total 100; column 3
    the first part of a 2-part composition of total 2."""
    p = torch.softmax(torch.randn(n, 3, generator=g, dtype=torch.float64), -1) * 100
    q = 2 * torch.rand(n, 1, generator=g, dtype=torch.float64).clamp(0.05, 0.95)
    return torch.cat([torch.randn(n, 1, generator=g, dtype=torch.float64), p[:, :2], q], 1)


CASES = [
    Case(
        "column_maps",
        lambda: ColumnMaps(
            4,
            kinds=["real", "lower", "interval", "interval"],
            low=[0.0, 1.0, 0.0, -2.0],
            high=[0.0, 0.0, 100.0, 3.0],
        ),
        sampler=_column_sampler,
        perturb=0.0,
    ),
    Case(
        "log_ratio",
        lambda: LogRatio(4, groups=[[1, 2], [3]], totals=[100.0, 2.0]),
        sampler=_composition_sampler,
        perturb=0.0,
    ),
]
