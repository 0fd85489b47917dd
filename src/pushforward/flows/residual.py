"""Residual-flow preset: invertible residual blocks with ActNorm between them."""

from __future__ import annotations

from collections.abc import Callable, Sequence

from torch import nn

from ..distributions.base import Distribution
from ..transforms.base import Compose, Transform
from ..transforms.elementwise import ActNorm
from ..transforms.residual import ResidualBlock
from .preset import Preset, check_activation, check_count, check_flag, check_number, check_sizes

__all__ = ["ResidualFlow"]


class ResidualFlow(Preset):
    r"""Residual Flow: ``layers`` invertible residual blocks :math:`x \mapsto x + g_\ell(x)`, each preceded by
    an :class:`~pushforward.transforms.ActNorm` (and one final ActNorm), on a standard-normal base.

    .. math:: \log p(x) = \log p_Z(z) + \sum_\ell \log\det\big(I + J_{g_\ell}\big)
        + \sum \text{ActNorm terms},

    each block's log-determinant estimated by ``ladj_mode`` (``"roulette"``: unbiased Russian-roulette
    power series, with a finite-variance default ``p``; ``"series"``: truncated; ``"exact"``: full Jacobian).
    In eval mode (``flow.eval()``) the log-determinant is exact and deterministic by default
    (``eval_ladj_mode="exact"``, about ``D`` extra network passes per block; pass
    ``eval_ladj_mode="roulette"`` for the estimator in high dimension, or ``None`` to keep ``ladj_mode``),
    and every block is exactly contractive whatever its weights.
    ``block_options`` are passed to every :class:`~pushforward.transforms.ResidualBlock` (``n_terms``,
    ``n_exact``, ``p``, ``probes``, ``probe``, ``neumann_grad``, ``iterations``, ``atol``, ``max_iter``).

    Args:
        features: Event size.
        context: Context features (every block's :math:`g` is conditioned).
        layers: Number of residual blocks (``blocks`` is an alias).
        hidden: Hidden sizes of every :math:`g`.
        coeff: Spectral-norm bound per linear layer, in ``(0, 1)``.

    Reference: Chen, Behrmann, Duvenaud & Jacobsen, "Residual Flows for Invertible Generative Modeling",
    NeurIPS 2019; Behrmann et al., "Invertible Residual Networks", ICML 2019.

    Example:
        >>> import torch
        >>> flow = ResidualFlow(2, layers=4, hidden=(64, 64)).eval()
        >>> flow.log_prob(torch.randn(5, 2)).shape
        torch.Size([5])
    """

    def __init__(
        self,
        features: int,
        *,
        context: int = 0,
        layers: int = 8,
        hidden: Sequence[int] = (128, 128),
        blocks: int | None = None,
        coeff: float = 0.97,
        activation: str | Callable[[], nn.Module] = "lipswish",
        ladj_mode: str = "roulette",
        eval_ladj_mode: str | None = "exact",
        actnorm: bool = True,
        base: Distribution | None = None,
        **block_options: object,
    ) -> None:
        owner = type(self).__name__
        features = check_count(owner, "features", features)
        if blocks is not None:
            layers = check_count(owner, "blocks", blocks)
        layers = check_count(owner, "layers", layers)
        context = check_count(owner, "context", context, low=0)
        hidden = check_sizes(owner, "hidden", hidden)
        check_number(owner, "coeff", coeff, low=0.0, high=1.0, open_low=True)
        check_activation(owner, activation)
        check_flag(owner, "actnorm", actnorm)
        parts: list[Transform] = []
        for _ in range(layers):
            if actnorm:
                parts.append(ActNorm(features))
            parts.append(
                ResidualBlock(
                    features,
                    hidden,
                    context=context,
                    coeff=coeff,
                    activation=activation,
                    ladj_mode=ladj_mode,
                    eval_ladj_mode=eval_ladj_mode,
                    **block_options,
                )
            )
        if actnorm:
            parts.append(ActNorm(features))
        super().__init__(Compose(parts), base)
