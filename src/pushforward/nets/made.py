r"""MADE: masked autoencoder for distribution estimation, the conditioner of autoregressive flows.

Every input :math:`x_i` gets a *degree* :math:`m(i) \in \{1, \dots, D\}` (its position in the autoregressive
order), every hidden unit a degree :math:`m(k) \in \{1, \dots, D - 1\}`, and weights are masked so that

.. math:: M^{\text{in}\to h}_{ki} = [m(k) \ge m(i)], \qquad M^{h \to h'}_{k'k} = [m(k') \ge m(k)],
    \qquad M^{h \to \text{out}}_{dk} = [m(d) > m(k)].

A path from :math:`x_j` to output :math:`d` then exists only when :math:`m(j) < m(d)`: output ``d`` depends
on the
inputs that precede it in the order, exactly the autoregressive property. The context (if any) has degree 0
and
feeds every hidden unit; hidden degrees then start at 0, so the first output also depends on the context.

Hidden units are **sorted by degree** (nondecreasing) in every hidden layer, so the units of one degree form
a contiguous block (:attr:`MADE.hidden_degrees`).

Reference: Germain, Gregor, Murray & Larochelle, "MADE: Masked Autoencoder for Distribution Estimation",
ICML 2015; residual variant as in Durkan et al., "Neural Spline Flows", 2019 and Nash & Durkan,
"Autoregressive Energy Machines", 2019.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
from torch import Tensor, nn

from ..registry import Registered
from .fast_linear import linear as _linear
from .masked_blocks import LayerPlan, masked_linear, rows_per_range
from .mlp import activation as make_activation

__all__ = ["MADE", "MaskedLinear", "made_degrees"]


class MaskedLinear(nn.Linear):
    r"""A linear layer :math:`y = (W \odot M) x + b` with a fixed binary mask :math:`M` (a buffer).

    Example:
        >>> layer = MaskedLinear(3, 2, torch.tensor([[1, 0, 0], [1, 1, 0]]))
        >>> layer(torch.randn(4, 3)).shape
        torch.Size([4, 2])
    """

    def __init__(self, in_features: int, out_features: int, mask: Tensor, bias: bool = True) -> None:
        super().__init__(in_features, out_features, bias)
        mask = torch.as_tensor(mask)
        if tuple(mask.shape) != (out_features, in_features):
            raise ValueError(f"mask has shape {tuple(mask.shape)}, expected {(out_features, in_features)}")
        self.register_buffer("mask", mask.to(self.weight.dtype))
        #: Evaluate block by block (:func:`~pushforward.nets.masked_blocks.masked_linear`: skips the all-zero
        #: blocks when that saves enough work; equal up to summation order); ``False``: one dense product.
        self.block_sparse = True
        self._rows = rows_per_range()  # rows per range of the plan torch.compile traces (set by eager calls)
        self._plans = {self._rows: LayerPlan(self.mask, self._rows)}  # by rows per range, i.e. thread count
        self.register_load_state_dict_post_hook(MaskedLinear._replan)

    @property
    def plan(self) -> LayerPlan:
        """The block plan at the current intra-op thread count, built once per count (see
        :func:`~pushforward.nets.masked_blocks.rows_per_range`)."""
        rows = rows_per_range()
        plan = self._plans.get(rows)
        if plan is None:
            plan = self._plans[rows] = LayerPlan(self.mask, rows)
        if rows != self._rows:  # (nn.Module attribute writes are not free: only on a change)
            self._rows = rows
        return plan

    @staticmethod
    def _replan(module: MaskedLinear, incompatible_keys: object) -> None:
        # a loaded mask may differ from the constructed one
        module._plans = {module._rows: LayerPlan(module.mask, module._rows)}

    def forward(self, x: Tensor) -> Tensor:
        if not self.block_sparse:  # one dense product: F.linear unless the oneDNN backend is chosen
            return _linear(x, self.weight * self.mask, self.bias)
        if torch.compiler.is_compiling():  # the compiler cannot ask for the thread count: the last eager plan
            return masked_linear(x, self.weight, self.bias, self.mask, self._plans[self._rows], traced=True)
        return masked_linear(x, self.weight, self.bias, self.mask, self.plan)


def made_degrees(features: int, order: str | Sequence[int] | Tensor = "natural", seed: int = 0) -> Tensor:
    """Input degrees ``m(i) ∈ {1..D}`` from an order.

    ``order`` is ``"natural"`` (``x_1`` first), ``"reversed"``, ``"random"`` (a permutation drawn from
    ``seed``) or a permutation of ``range(D)`` listing the features in autoregressive order (``order[0]`` is
    the first, unconditioned, feature).
    """
    if isinstance(order, str):
        if order == "natural":
            return torch.arange(1, features + 1)
        if order in ("reversed", "reverse"):
            return torch.arange(features, 0, -1)
        if order == "random":
            perm = torch.randperm(features, generator=torch.Generator().manual_seed(seed))
        else:
            raise ValueError(f"order must be 'natural', 'reversed', 'random' or a permutation, got {order!r}")
    else:
        perm = torch.as_tensor(order)
        if perm.dtype.is_floating_point or perm.dtype == torch.bool:
            raise TypeError(f"an explicit order must hold integers, got dtype {perm.dtype}")
        perm = perm.long().flatten()
        if perm.numel() != features or not torch.equal(perm.sort().values, torch.arange(features)):
            raise ValueError(f"order must be a permutation of range({features}), got {perm.tolist()}")
    degrees = torch.empty(features, dtype=torch.long)
    degrees[perm] = torch.arange(1, features + 1)
    return degrees


def _hidden_degrees(units: int, features: int, context: bool = False) -> Tensor:
    # spread degrees 1..D-1 evenly over the units, then sort (nondecreasing) so each degree is one block.
    # With a context, degrees start at 0: degree-0 units see the context only and are the first output's
    # only path from the context (without them its parameters would not depend on the context at all).
    if features == 1:
        return torch.zeros(units, dtype=torch.long)
    low = 0 if context else 1
    return (torch.arange(units) % (features - low) + low).sort().values


class MADE(Registered, nn.Module):
    r"""Masked MLP with the autoregressive property; outputs ``P`` parameters per feature.

    ``made(x, context)`` has shape ``(batch, features, out_per_feature)`` and ``out[:, d, :]`` depends only on
    the inputs ``x_j`` that come before ``x_d`` in the order (and on the context). See the module docstring
    for
    the masks.

    Args:
        features: Number of inputs :math:`D`.
        out_per_feature: Parameters ``P`` predicted per feature.
        hidden: Hidden layer widths; with ``residual=True`` all must be equal (the first layer projects, the
            others are residual blocks of two masked layers each).
        context: Number of context features (degree 0, connected to every unit of the first hidden layer).
        order: ``"natural"``, ``"reversed"``, ``"random"`` or an explicit permutation (see
            :func:`made_degrees`).
        residual: Use masked residual blocks.
        activation: Hidden activation name or factory.
        zero_init: Start the output layer at zero (so transformers start at the identity).
        seed: Seed of the random order.

    Attributes:
        degrees: Input degrees ``(D,)``; ``order`` (the permutation, ``order[k]`` = feature at step ``k``).
        hidden_degrees: One nondecreasing degree tensor per hidden layer.

    Reference: Germain, Gregor, Murray & Larochelle, "MADE: Masked Autoencoder for Distribution Estimation",
    ICML 2015.

    Example:
        >>> made = MADE(4, 2, hidden=(32, 32), order="reversed")
        >>> made(torch.randn(8, 4)).shape
        torch.Size([8, 4, 2])
    """

    @property
    def block_sparse(self) -> bool:
        """Whether the masked layers skip their all-zero weight blocks (see
        :mod:`pushforward.nets.masked_blocks`); ``False`` gives plain dense masked layers. Under
        ``torch.compile`` the dense layers are traced (one graph, no custom autograd)."""
        return all(m.block_sparse for m in self.modules() if isinstance(m, MaskedLinear))

    @block_sparse.setter
    def block_sparse(self, value: bool) -> None:
        for m in self.modules():
            if isinstance(m, MaskedLinear):
                m.block_sparse = bool(value)

    def __init__(
        self,
        features: int,
        out_per_feature: int,
        hidden: Sequence[int] = (64, 64),
        *,
        context: int = 0,
        order: str | Sequence[int] | Tensor = "natural",
        residual: bool = False,
        activation: str | Callable[[], nn.Module] = "relu",
        zero_init: bool = True,
        seed: int = 0,
    ) -> None:
        super().__init__()
        for name, v in (("features", features), ("out_per_feature", out_per_feature), ("context", context)):
            if not isinstance(v, int) or isinstance(v, bool):
                raise TypeError(f"{name} must be an int, got {type(v).__name__}")
        if features < 1 or out_per_feature < 1 or context < 0:
            raise ValueError(
                "need features ≥ 1, out_per_feature ≥ 1 and context ≥ 0; "
                f"got {features}, {out_per_feature}, {context}"
            )
        hidden = tuple(int(h) for h in hidden)
        if any(h < 1 for h in hidden):
            raise ValueError(f"hidden widths must be positive, got {hidden}")
        if residual and (not hidden or len(set(hidden)) != 1):
            raise ValueError(
                f"residual=True needs at least one hidden layer, all of the same width; got {hidden}"
            )
        self.features = features
        self.out_per_feature = out_per_feature
        self.context = context
        self.residual = residual

        deg_in = made_degrees(features, order, seed)
        self.register_buffer("degrees", deg_in)
        self.register_buffer("order", torch.argsort(deg_in))
        deg_out = deg_in.repeat_interleave(out_per_feature)  # output d*P + p has the degree of feature d

        self.hidden_degrees: list[Tensor] = [_hidden_degrees(h, features, context > 0) for h in hidden]
        self.act = make_activation(activation)
        self.context_net = (
            nn.Linear(context, hidden[0] if hidden else features * out_per_feature) if context else None
        )

        prev = deg_in
        layers: list[nn.Module] = []
        for i, deg in enumerate(self.hidden_degrees):
            if residual and i > 0:
                mask = (deg[:, None] >= prev[None, :]).to(torch.float32)
                layers.append(_MaskedResidualBlock(mask, self.act))
            else:
                layers.append(MaskedLinear(len(prev), len(deg), deg[:, None] >= prev[None, :]))
            prev = deg
        self.layers = nn.ModuleList(layers)
        self.output = MaskedLinear(len(prev), features * out_per_feature, deg_out[:, None] > prev[None, :])
        if zero_init:
            nn.init.zeros_(self.output.weight)
            nn.init.zeros_(self.output.bias)

    def forward(self, x: Tensor, context: Tensor | None = None) -> Tensor:
        if x.dim() != 2 or x.shape[1] != self.features:
            raise ValueError(f"MADE expects input of shape (batch, {self.features}), got {tuple(x.shape)}")
        ctx = None
        if self.context_net is not None:
            if context is None:
                raise ValueError(f"this MADE expects a context of {self.context} features, got None")
            if context.shape != (x.shape[0], self.context):
                raise ValueError(
                    f"context has shape {tuple(context.shape)}, expected ({x.shape[0]}, {self.context})"
                )
            ctx = self.context_net(context)
        h = x
        for i, layer in enumerate(self.layers):
            if isinstance(layer, _MaskedResidualBlock):
                h = layer(h)
            else:
                h = layer(h)
                if i == 0 and ctx is not None:
                    h = h + ctx
                h = self.act(h)
        out = self.output(h)
        if not self.layers and ctx is not None:
            out = out + ctx
        return out.view(x.shape[0], self.features, self.out_per_feature)

    def extra_repr(self) -> str:
        return f"features={self.features}, out_per_feature={self.out_per_feature}, context={self.context}"


class _MaskedResidualBlock(nn.Module):
    """``h + W₂ act(W₁ act(h))`` with both layers masked by the same-degree mask (degrees ≥)."""

    def __init__(self, mask: Tensor, act: nn.Module) -> None:
        super().__init__()
        n = mask.shape[0]
        self.first = MaskedLinear(n, n, mask)
        self.second = MaskedLinear(n, n, mask)
        self.act = act
        nn.init.uniform_(self.second.weight, -1e-3, 1e-3)
        nn.init.zeros_(self.second.bias)

    def forward(self, h: Tensor) -> Tensor:
        return h + self.second(self.act(self.first(self.act(h))))
