r"""Presets of sampling-direction flows: planar, radial and Sylvester stacks.

These flows are built for variational inference and Monte Carlo: with the default ``cheap="sample"``,
:meth:`~pushforward.Flow.sample`, :meth:`~pushforward.Flow.rsample` and
:meth:`~pushforward.Flow.sample_and_log_prob` (all the inverse direction) are one closed-form pass, which is
what :func:`pushforward.fit_vi` and :func:`pushforward.expectation` use. :meth:`~pushforward.Flow.log_prob`
of external points runs the layers' inverse maps: closed form for radial, a scalar Newton solve per planar
layer, :math:`D` scalar solves per Sylvester layer.

With ``cheap="density"`` every layer is wrapped in :class:`~pushforward.transforms.Inverse`, so that
``log_prob`` is the cheap pass and sampling is numerical (for density estimation).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

from ..distributions.base import Distribution
from ..transforms.base import Compose, Inverse, Transform
from ..transforms.planar import Planar, Radial
from ..transforms.sylvester import Sylvester
from .preset import Preset, check_choice, check_count, check_sizes

__all__ = ["PlanarFlow", "RadialFlow", "SylvesterFlow"]


def _stack(
    owner: str,
    make: Callable[[], Transform],
    features: int,
    context: int,
    layers: int,
    hidden: Sequence[int],
    cheap: str,
) -> Compose:
    check_count(owner, "features", features)
    if check_count(owner, "context", context, low=0):
        raise ValueError(f"{owner} has no conditioner: context must be 0, got {context}")
    layers = check_count(owner, "layers", layers)
    check_sizes(owner, "hidden", hidden, empty=True)
    check_choice(owner, "cheap", cheap, ("sample", "density"))
    parts = [make() for _ in range(layers)]
    if cheap == "density":
        parts = [Inverse(p) for p in parts]
    return Compose(parts)


class PlanarFlow(Preset):
    r"""A stack of ``layers`` planar layers on a standard-normal base (Rezende & Mohamed, 2015).

    .. math:: x = g_K \circ \dots \circ g_1(z), \quad g_k(z) = z + \hat u_k \tanh(w_k^\top z + b_k),
        \qquad \log q(x) = \log p_Z(z)
        - \sum_k \log\left(1 + w_k^\top\hat u_k \tanh'(w_k^\top z_{k-1} + b_k)\right).

    **Cheap direction:** sampling (``cheap="sample"``, default); density of external points needs one
    scalar Newton solve per layer. ``hidden`` is accepted for the shared preset signature and ignored
    (planar layers have no network); ``context`` must be 0.

    Reference: Rezende & Mohamed, "Variational Inference with Normalizing Flows", ICML 2015.

    Example:
        >>> flow = PlanarFlow(2, layers=8)
        >>> x, log_q = flow.sample_and_log_prob((16,))  # one cheap pass
    """

    def __init__(
        self,
        features: int,
        *,
        context: int = 0,
        layers: int = 8,
        hidden: Sequence[int] = (),
        cheap: str = "sample",
        base: Distribution | None = None,
    ) -> None:
        stack = _stack("PlanarFlow", lambda: Planar(features), features, context, layers, hidden, cheap)
        super().__init__(stack, base)


class RadialFlow(Preset):
    r"""A stack of ``layers`` radial layers :math:`g_k(z) = z + \beta_k (z - z_{0,k})/(\alpha_k + r)`.

    **Cheap direction:** sampling; the density direction is closed form too (a quadratic per layer).
    ``hidden`` is ignored, ``context`` must be 0.

    Reference: Rezende & Mohamed, "Variational Inference with Normalizing Flows", ICML 2015.

    Example:
        >>> flow = RadialFlow(2, layers=4)
        >>> flow.log_prob(flow.sample((3,))).shape
        torch.Size([3])
    """

    def __init__(
        self,
        features: int,
        *,
        context: int = 0,
        layers: int = 8,
        hidden: Sequence[int] = (),
        cheap: str = "sample",
        base: Distribution | None = None,
    ) -> None:
        stack = _stack("RadialFlow", lambda: Radial(features), features, context, layers, hidden, cheap)
        super().__init__(stack, base)


class SylvesterFlow(Preset):
    r"""A stack of Householder–Sylvester layers,
    :math:`g_k(z) = z + Q_k R_k \tanh(\tilde R_k Q_k^\top z + b_k)`.

    ``reflections`` Householder reflections per layer (default ``features``). **Cheap direction:**
    sampling; the density direction solves ``features`` scalar equations per layer by back-substitution.
    ``hidden`` is ignored, ``context`` must be 0.

    Reference: van den Berg, Hasenclever, Tomczak & Welling, "Sylvester Normalizing Flows for Variational
    Inference", UAI 2018.

    Example:
        >>> flow = SylvesterFlow(3, layers=2)
        >>> x, log_q = flow.sample_and_log_prob((8,))
    """

    def __init__(
        self,
        features: int,
        *,
        context: int = 0,
        layers: int = 4,
        hidden: Sequence[int] = (),
        reflections: int | None = None,
        cheap: str = "sample",
        base: Distribution | None = None,
    ) -> None:
        if reflections is not None:
            check_count("SylvesterFlow", "reflections", reflections)
        stack = _stack(
            "SylvesterFlow",
            lambda: Sylvester(features, reflections),
            features,
            context,
            layers,
            hidden,
            cheap,
        )
        super().__init__(stack, base)
