"""The transformer contract: an elementwise, monotone bijection whose parameters come from outside.

A *transformer* ``τ(x; θ)`` acts on each feature independently, with per-feature parameters ``θ``
predicted by a *conditioner* (an MLP in a coupling layer, a MADE in an autoregressive layer). Keeping the
two apart means one coupling class and one autoregressive class serve every transformer.

A transformer holds no learnable parameters of its own, only configuration. It declares
``params_per_feature`` and implements two fused methods:

* ``forward(x, params) -> (y, log_dydx)`` (data → latent),
* ``inverse(y, params) -> (x, log_dxdy)``,

where ``params`` has shape ``(*x.shape, params_per_feature)`` and the log-derivatives are *elementwise*
(same shape as ``x``); the layer that uses the transformer sums them. All-zero parameters give the
identity (or close to it), so conditioners whose last layer starts at zero start at the identity.
"""

from __future__ import annotations

import copy
from collections.abc import Callable

from torch import Tensor, nn

from ..registry import Registered

__all__ = ["Transformer", "TransformerSpec", "transformer_factory"]


class Transformer(Registered, nn.Module):
    """Abstract elementwise bijection ``y = τ(x; θ)`` with externally supplied parameters ``θ``."""

    #: Number of raw parameters the conditioner must predict for each transformed feature.
    params_per_feature: int = 0
    #: Whether :meth:`inverse` is closed form.
    analytic_inverse: bool = True

    def forward(self, x: Tensor, params: Tensor) -> tuple[Tensor, Tensor]:
        """Data → latent: ``(τ(x; θ), log τ'(x; θ))`` elementwise."""
        raise NotImplementedError

    def inverse(self, y: Tensor, params: Tensor) -> tuple[Tensor, Tensor]:
        """Latent → data: ``(τ⁻¹(y; θ), log (τ⁻¹)'(y; θ))`` elementwise."""
        raise NotImplementedError


#: How a preset is told which transformer its layers use: an instance (deep-copied for every layer) or a
#: zero-argument factory called once per layer.
TransformerSpec = Transformer | Callable[[], Transformer]


def transformer_factory(
    spec: TransformerSpec | None, default: Callable[[], Transformer]
) -> Callable[[], Transformer]:
    """A factory that makes one fresh transformer per layer from ``spec`` (``default`` when None).

    Raises ``TypeError`` when ``spec`` is neither a :class:`Transformer` nor a callable returning one.
    """
    if spec is None:
        return default
    if isinstance(spec, Transformer):
        return lambda: copy.deepcopy(spec)
    if isinstance(spec, nn.Module) or not callable(spec):
        raise TypeError(f"transformer must be a Transformer or a factory of one, got {type(spec).__name__}")

    def make() -> Transformer:
        made = spec()
        if not isinstance(made, Transformer):
            raise TypeError(f"the transformer factory returned {type(made).__name__}, not a Transformer")
        return made

    return make
