r"""Invertibility diagnostics: does the learned map really invert, numerically, on your data?

Flows are bijections by construction, but in floating point the inverse can drift or explode (Behrmann et
al., "Understanding and Mitigating Exploding Inverses in Invertible Neural Networks", AISTATS 2021). For
data :math:`x` and a flow transform :math:`f` (data → latent) this module measures

* the **reconstruction error** :math:`\|f^{-1}(f(x)) - x\|_\infty` per row (absolute, and relative to
  :math:`\max(1, \|x\|_\infty)`);
* the **ladj consistency** :math:`|\log|\det J_f(x)| + \log|\det J_{f^{-1}}(f(x))||`, zero for an exact
  inverse (the two log-determinants must cancel);
* how many rows give non-finite latents, reconstructions or log-determinants.

Example:
    >>> from pushforward.flows import RealNVP
    >>> report = invertibility(RealNVP(2, layers=2, hidden=(8,)), torch.randn(100, 2))
    >>> report.ok
    True
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import numpy as np
import torch
from torch import Tensor

from ..checks import check_input
from ..flows.core import Flow
from ..transforms.base import rowwise_outputs

__all__ = ["InvertibilityReport", "invertibility"]


@dataclass
class InvertibilityReport:
    """Result of :func:`invertibility`; all errors are over the finite rows."""

    rows: int
    max_reconstruction_error: float
    mean_reconstruction_error: float
    max_relative_reconstruction_error: float
    max_ladj_error: float
    mean_ladj_error: float
    nonfinite_rows: int
    atol: float
    ladj_atol: float

    @property
    def ok(self) -> bool:
        """No non-finite rows, and both errors within tolerance."""
        return (
            self.nonfinite_rows == 0
            and self.max_relative_reconstruction_error <= self.atol
            and self.max_ladj_error <= self.ladj_atol
        )

    def as_dict(self) -> dict:
        """A JSON-serialisable dictionary (with ``ok``)."""
        d = asdict(self)
        d["ok"] = self.ok
        return d

    def __str__(self) -> str:
        status = "OK" if self.ok else "PROBLEM"
        return (
            f"invertibility {status} on {self.rows} rows: reconstruction max "
            f"{self.max_reconstruction_error:.3g} (relative {self.max_relative_reconstruction_error:.3g}, "
            f"mean {self.mean_reconstruction_error:.3g}), "
            f"ladj consistency max {self.max_ladj_error:.3g} (mean {self.mean_ladj_error:.3g}), "
            f"non-finite rows {self.nonfinite_rows}"
        )


@torch.no_grad()
def invertibility(
    flow: Flow,
    x: Tensor | np.ndarray,
    context: Tensor | None = None,
    *,
    batch_size: int = 1024,
    atol: float = 1e-3,
    ladj_atol: float = 1e-2,
) -> InvertibilityReport:
    """Measure reconstruction error and ladj consistency of ``flow`` on data ``x``.

    Args:
        flow: Any :class:`~pushforward.Flow` (anything with ``transform.forward``/``transform.inverse``).
        x: Data of shape ``(N, *event_shape)``.
        context: Context of shape ``(N, context_features)`` for conditional flows.
        batch_size: Rows per pass.
        atol: Tolerance on the relative reconstruction error for :attr:`InvertibilityReport.ok`.
        ladj_atol: Tolerance on the ladj consistency error (nats).
    """
    if isinstance(x, np.ndarray):
        x = torch.from_numpy(np.ascontiguousarray(x))
    dtype = getattr(flow, "dtype", None)
    if dtype is not None and isinstance(x, Tensor) and x.is_floating_point():
        x = x.to(dtype)
    x = check_input(x, flow.event_shape, name="x")
    was_training = flow.training
    flow.eval()
    device = next((p.device for p in flow.parameters()), x.device)
    rec, rel, lad = [], [], []
    bad = 0
    try:
        for i in range(0, x.shape[0], batch_size):
            xb = x[i : i + batch_size].to(device)
            cb = context[i : i + batch_size].to(device) if context is not None else None
            with rowwise_outputs():  # overflowing rows are counted below, not raised
                z, ladj = flow.transform(xb, cb)
                xr, ladj_inv = flow.transform.inverse(z, cb)
            flat = xb.reshape(xb.shape[0], -1)
            err = (xr.reshape(xb.shape[0], -1) - flat).abs().amax(1)
            scale = flat.abs().amax(1).clamp_min(1.0)
            lerr = (ladj + ladj_inv).abs()
            finite = (
                torch.isfinite(err) & torch.isfinite(lerr) & torch.isfinite(z.reshape(z.shape[0], -1)).all(1)
            )
            bad += int((~finite).sum())
            rec.append(err[finite].double().cpu())
            rel.append((err / scale)[finite].double().cpu())
            lad.append(lerr[finite].double().cpu())
    finally:
        flow.train(was_training)
    r, rr, la = torch.cat(rec), torch.cat(rel), torch.cat(lad)

    def _max(t: Tensor) -> float:
        return float(t.max()) if t.numel() else math.nan

    def _mean(t: Tensor) -> float:
        return float(t.mean()) if t.numel() else math.nan

    return InvertibilityReport(
        rows=int(x.shape[0]),
        max_reconstruction_error=_max(r),
        mean_reconstruction_error=_mean(r),
        max_relative_reconstruction_error=_max(rr),
        max_ladj_error=_max(la),
        mean_ladj_error=_mean(la),
        nonfinite_rows=bad,
        atol=atol,
        ladj_atol=ladj_atol,
    )
