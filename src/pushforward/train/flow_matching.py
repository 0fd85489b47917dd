r"""Conditional flow matching: simulation-free training of continuous normalizing flows.

A :class:`~pushforward.transforms.ContinuousFlow` integrates :math:`dz/d\tau = f(z, \tau; c)` from
:math:`\tau = 0` (data) to :math:`\tau = T` (latent). Instead of maximising the likelihood through the ODE
solver (FFJORD), flow matching regresses :math:`f` on the velocity of a probability path that moves the data
to the base distribution, one sample at a time (Lipman, Chen, Ben-Hamu, Nickel & Le, "Flow Matching for
Generative Modeling", ICLR 2023).

**The path.** In the paper's time :math:`s \in [0, 1]` (noise at :math:`s = 0`, data at :math:`s = 1`), the
optimal-transport conditional path from a base draw :math:`x_0` to a data point :math:`x_1` is

.. math:: \psi_s(x_0 \mid x_1) = \big(1 - (1 - \sigma_{\min})\,s\big)\,x_0 + s\,x_1, \qquad
    \frac{d\psi_s}{ds} = x_1 - (1 - \sigma_{\min})\,x_0,

a straight line with constant speed. Its marginal at :math:`s = 0` is the base distribution and at
:math:`s = 1` the data smoothed by :math:`\mathcal N(0, \sigma_{\min}^2 I)`.

**Direction.** pushforward's flows map data to latent, so the ODE runs the path *backwards*: for a flow of
:math:`K` stacked continuous layers (forward order :math:`k = 0, \dots, K-1`, each over :math:`[0, T_k]`),
layer :math:`k` at local time :math:`\tau` sits at :math:`s = 1 - (k + \tau / T_k) / K` and its regression
target is the chain rule :math:`\frac{d\psi}{d\tau} = \frac{d\psi}{ds}\frac{ds}{d\tau}`:

.. math:: \mathcal L(\theta) = \mathbb E_{k, \tau, x_0, (x_1, c)}
    \Big\| f_k\big(\psi_s(x_0 \mid x_1), \tau; c\big) - \frac{(1 - \sigma_{\min})\,x_0 - x_1}{K\,T_k}\Big\|^2 .

Its minimiser is the marginal velocity field, whose ODE carries the data distribution onto the base; the
exact log-density afterwards is the usual instantaneous change of variables (``flow.log_prob``). With a
context :math:`c` the same loss, conditioned on :math:`c`, learns :math:`p(x \mid c)` (as in flow-matching
posterior estimation). :math:`x_0` is drawn from ``flow.base``; for a non-Gaussian base the same formula is
the independent-coupling path, which still ends exactly at the base.
"""

from __future__ import annotations

import torch
from torch import Tensor

from ..flows.core import Flow
from ..flows.preset import Preset
from ..transforms.base import Compose
from ..transforms.continuous import ContinuousFlow

__all__ = [
    "continuous_layers",
    "flow_matching_loss",
    "ot_conditional_path",
    "path_positions",
]


def path_positions(n: int, time_exponent: float, like: Tensor) -> Tensor:
    r"""``n`` positions :math:`u = 1 - s \in [0, 1)` along the whole path (0 at the data), with :math:`s`
    drawn with density :math:`\propto s^\beta`, :math:`\beta` = ``time_exponent`` (0: uniform).

    Example:
        >>> path_positions(3, 0.0, torch.zeros(1)).shape
        torch.Size([3])
    """
    uniform = torch.rand(n, dtype=like.dtype, device=like.device)
    return 1.0 - uniform.pow(1.0 / (1.0 + time_exponent)) if time_exponent else uniform


def ot_conditional_path(x0: Tensor, x1: Tensor, s: Tensor, sigma_min: float) -> tuple[Tensor, Tensor]:
    r"""The optimal-transport conditional path of Lipman et al. (2023) and its velocity, in their time
    :math:`s` (noise :math:`x_0` at 0, data :math:`x_1` at 1):

    .. math:: \psi_s = \big(1 - (1 - \sigma_{\min})s\big)x_0 + s\,x_1, \qquad
        \dot\psi_s = x_1 - (1 - \sigma_{\min})\,x_0.

    Args:
        x0, x1: Base and data draws, shape ``(batch, D)``.
        s: Times, shape ``(batch,)``.
        sigma_min: Width of the path's end at the data.

    Returns:
        ``(psi, velocity)``, both ``(batch, D)``.

    Example:
        >>> psi, u = ot_conditional_path(torch.zeros(2, 1), torch.ones(2, 1), torch.tensor([0.0, 1.0]), 0.0)
        >>> psi.flatten().tolist(), u.flatten().tolist()
        ([0.0, 1.0], [1.0, 1.0])
    """
    s = s.reshape(-1, *([1] * (x1.dim() - 1)))
    a = 1.0 - sigma_min
    return (1.0 - a * s) * x0 + s * x1, x1 - a * x0


def continuous_layers(flow: Flow) -> list[ContinuousFlow]:
    """The continuous layers of ``flow`` in forward (data → latent) order, or ``ValueError`` when its
    transform is not a :class:`ContinuousFlow` or a composition of them only (flow matching needs every
    layer to be an ODE).

    Example:
        >>> from pushforward.flows import FFJORD
        >>> len(continuous_layers(FFJORD(2, layers=2, hidden=(8,))))
        2
    """
    transform = getattr(flow, "transform", None)
    parts = list(transform.transforms) if isinstance(transform, Compose) else [transform]
    if not isinstance(flow, Flow) or not all(isinstance(p, ContinuousFlow) for p in parts):
        raise ValueError(
            "flow matching trains a Flow whose transform is a ContinuousFlow or a Compose of ContinuousFlows "
            f"only (e.g. the FFJORD preset without augment); got {type(transform).__name__}"
        )
    if type(flow) is not Flow and not isinstance(flow, Preset):  # a preset is a plain Flow underneath
        raise ValueError(
            f"flow matching needs a plain Flow, got {type(flow).__name__} (augmented flows are not supported)"
        )
    return parts  # type: ignore[return-value]


def flow_matching_loss(
    flow: Flow,
    x1: Tensor,
    context: Tensor | None = None,
    *,
    sigma_min: float = 1e-4,
    time_exponent: float = 0.0,
    x0: Tensor | None = None,
    u: Tensor | None = None,
) -> Tensor:
    r"""The conditional flow-matching loss of ``flow`` on the data batch ``x1`` (see the module docstring):
    mean over the batch of :math:`\|f_k(\psi_s, \tau; c) - \dot\psi_s\,ds/d\tau\|^2`.

    Args:
        flow: A flow of :class:`ContinuousFlow` layers (:func:`continuous_layers`).
        x1: Data, ``(batch, D)``.
        context: Context ``(batch, C)`` for a conditional flow.
        sigma_min: :math:`\sigma_{\min}`.
        time_exponent: :math:`\beta \ge 0`: path times are drawn with density :math:`\propto s^\beta`
            (0: uniform; larger values put more weight near the data, as flow-matching posterior estimation
            proposes).
        x0: Base draws (default: sampled from ``flow.base``).
        u: Positions along the whole path, :math:`u = 1 - s \in [0, 1)` (0 at the data), ``(batch,)``,
            choosing the layer and its time (default: drawn as above).

    Example:
        >>> from pushforward.flows import FFJORD
        >>> loss = flow_matching_loss(FFJORD(2, hidden=(16,)), torch.randn(8, 2))
        >>> loss.backward()
    """
    layers = continuous_layers(flow)
    if x0 is None:
        x0 = flow.base.sample((x1.shape[0],)).to(x1)
    if u is None:
        u = path_positions(x1.shape[0], time_exponent, x1)
    k_layers = len(layers)
    scaled = u * k_layers
    k = scaled.floor().clamp(max=k_layers - 1)
    frac = scaled - k  # position inside layer k, in [0, 1)
    psi, velocity = ot_conditional_path(x0, x1, 1.0 - u, sigma_min)
    if k_layers == 1:
        layer = layers[0]
        pred = layer.dynamics.net(frac * layer.time, psi, context if layer.context_features else None)
        return (pred + velocity / layer.time).pow(2).reshape(x1.shape[0], -1).sum(-1).mean()
    err = x1.new_zeros(x1.shape[0])
    for i, layer in enumerate(layers):
        rows = (k == i).nonzero().squeeze(-1)
        if rows.numel() == 0:
            continue
        ctx = None if context is None or not layer.context_features else context.index_select(0, rows)
        target = -velocity.index_select(0, rows) / (k_layers * layer.time)
        pred = layer.dynamics.net(frac.index_select(0, rows) * layer.time, psi.index_select(0, rows), ctx)
        err = err.index_copy(0, rows, (pred - target).pow(2).reshape(rows.numel(), -1).sum(-1))
    return err.mean()
