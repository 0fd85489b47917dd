r"""Masked autoregressive transforms (MAF, and IAF as their inverse) with any elementwise transformer.

.. math:: z_d = \tau\big(x_d;\ \theta_d(x_{<d}, c)\big), \qquad
    \log\left|\det \frac{\partial z}{\partial x}\right| = \sum_{d} \log \tau'\big(x_d; \theta_d\big),

where ":math:`<d`" follows the MADE order and :math:`\theta = \mathrm{MADE}(x, c)` is computed for every
dimension in **one** pass (the Jacobian is triangular). The inverse is sequential: ``D`` passes, each
fixing one
more dimension, :math:`x_{\pi(k)} = \tau^{-1}(z_{\pi(k)}; \theta_{\pi(k)}(x_{\pi(<k)}))`.

So a ``MaskedAutoregressive`` layer has fast density and slow sampling (MAF);
``Inverse(MaskedAutoregressive)``
has fast sampling and slow density (IAF).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

from torch import Tensor, nn

from ..nets.made import MADE
from ..nets.made_fast import made_one_pass_inverse, supports_one_pass
from ..transformers.base import Transformer
from .base import Transform, broadcast_context

__all__ = ["MaskedAutoregressive"]


class MaskedAutoregressive(Transform):
    r"""An autoregressive layer :math:`z_d = \tau(x_d; \theta_d(x_{<d}, c))` with a MADE conditioner.

    The density direction (data → latent, :meth:`forward`) is one MADE pass; :meth:`inverse` is the exact
    ``D``-pass sequential inverse. Works with any :class:`~pushforward.transformers.Transformer` (affine
    for MAF,
    :class:`~pushforward.transformers.RQSTransformer` for autoregressive neural spline flows,
    :class:`~pushforward.transformers.DeepSigmoidTransformer` for NAF).

    Args:
        features: Number of features ``D``.
        transformer: The elementwise bijection.
        context: Number of context features.
        hidden, order, residual, activation: Options of the default :class:`~pushforward.nets.MADE`
            conditioner.
        conditioner: A ready MADE-like module ``(x, context) -> (B, D, P)`` with the autoregressive property
            (must expose ``order``, the autoregressive permutation), instead of the default.

    Reference: Papamakarios, Pavlakou & Murray, "Masked Autoregressive Flow for Density Estimation", NeurIPS
    2017; Kingma et al., "Improved Variational Inference with Inverse Autoregressive Flow", NeurIPS 2016.

    Example:
        >>> import torch
        >>> from pushforward.transformers import AffineTransformer
        >>> from pushforward.transforms import Inverse
        >>> maf = MaskedAutoregressive(3, AffineTransformer(), hidden=(32, 32))
        >>> z, ladj = maf(torch.randn(8, 3))
        >>> x, _ = maf.inverse(z)            # D sequential passes
        >>> iaf = Inverse(maf)               # fast sampling, sequential density
    """

    def __init__(
        self,
        features: int,
        transformer: Transformer,
        *,
        context: int = 0,
        hidden: Sequence[int] = (64, 64),
        order: str | Sequence[int] | Tensor = "natural",
        residual: bool = False,
        activation: str | Callable[[], nn.Module] = "relu",
        conditioner: nn.Module | None = None,
    ) -> None:
        if not isinstance(transformer, Transformer):
            raise TypeError(f"transformer must be a Transformer, got {type(transformer).__name__}")
        if not isinstance(features, int) or isinstance(features, bool) or features < 1:
            raise ValueError(f"features must be a positive int, got {features!r}")
        super().__init__(features, context)
        self.transformer = transformer
        self.analytic_inverse = transformer.analytic_inverse
        if conditioner is None:
            conditioner = MADE(
                features,
                transformer.params_per_feature,
                hidden,
                context=context,
                order=order,
                residual=residual,
                activation=activation,
            )
        self.conditioner = conditioner

    def _params(self, x: Tensor, context: Tensor | None) -> Tensor:
        broadcast_context(context, x.shape[0])
        return self.conditioner(x, context)

    def forward(self, x: Tensor, context: Tensor | None = None) -> tuple[Tensor, Tensor]:
        z, logd = self.transformer(x, self._params(x, context))
        return z, logd.sum(1)

    #: Invert in one pass over the MADE's hidden units when the conditioner allows it (see
    #: :mod:`pushforward.nets.made_fast`); ``False`` forces the ``D``-pass reference :meth:`_inverse_sequential`.
    fast_inverse: bool = True

    def inverse(self, z: Tensor, context: Tensor | None = None) -> tuple[Tensor, Tensor]:
        if self.fast_inverse and supports_one_pass(self.conditioner):
            return self._inverse_one_pass(z, context)
        return self._inverse_sequential(z, context)

    def _inverse_one_pass(self, z: Tensor, context: Tensor | None) -> tuple[Tensor, Tensor]:
        """The exact inverse computing each MADE hidden unit once, in degree order (equal to
        :meth:`_inverse_sequential` up to floating-point summation order; differentiable)."""
        broadcast_context(context, z.shape[0])
        tau = self.transformer

        def invert(d: int, z_d: Tensor, params: Tensor) -> tuple[Tensor, Tensor]:
            x_d, logd_d = tau.inverse(z_d.unsqueeze(1), params.unsqueeze(1))
            return x_d.squeeze(1), logd_d.squeeze(1)

        x, logd = made_one_pass_inverse(self.conditioner, invert, z, context)
        return x, logd.sum(1)

    def _inverse_sequential(self, z: Tensor, context: Tensor | None) -> tuple[Tensor, Tensor]:
        """The exact inverse in ``D`` passes.

        After pass ``k`` the dimensions ``order[:k+1]`` are exact (their parameters depend only on earlier,
        already exact, dimensions), so after ``D`` passes all are, and the last pass's parameters are the
        forward parameters at the returned ``x`` — its log-derivatives give the inverse ladj. Autograd through
        the passes gives the exact Jacobian (the dependence is strictly triangular).
        """
        x = z.new_zeros(z.shape)
        logd = z.new_zeros(z.shape)
        for _ in range(self.features):
            x, logd = self.transformer.inverse(z, self._params(x, context))
        return x, logd.sum(1)

    def extra_repr(self) -> str:
        return f"{super().extra_repr()}, transformer={type(self.transformer).__name__}"
