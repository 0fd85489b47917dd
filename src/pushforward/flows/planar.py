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
from .core import Flow

__all__ = ["PlanarFlow", "RadialFlow", "SylvesterFlow"]


def _stack(
    name: str,
    make: Callable[[], Transform],
    features: int,
    context: int,
    layers: int,
    cheap: str,
    base: Distribution | None,
) -> Flow:
    if isinstance(features, bool) or not isinstance(features, int) or features < 1:
        raise ValueError(f"{name}: features must be a positive integer, got {features!r}")
    if context:
        raise ValueError(f"{name} has no conditioner: context must be 0, got {context}")
    if isinstance(layers, bool) or not isinstance(layers, int) or layers < 1:
        raise ValueError(f"{name}: layers must be a positive integer, got {layers!r}")
    if cheap not in ("sample", "density"):
        raise ValueError(f"{name}: cheap must be 'sample' or 'density', got {cheap!r}")
    parts = [make() for _ in range(layers)]
    if cheap == "density":
        parts = [Inverse(p) for p in parts]
    return Flow(Compose(parts), base)


def PlanarFlow(
    features: int,
    *,
    context: int = 0,
    layers: int = 8,
    hidden: Sequence[int] = (),
    cheap: str = "sample",
    base: Distribution | None = None,
) -> Flow:
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
    return _stack("PlanarFlow", lambda: Planar(features), features, context, layers, cheap, base)


def RadialFlow(
    features: int,
    *,
    context: int = 0,
    layers: int = 8,
    hidden: Sequence[int] = (),
    cheap: str = "sample",
    base: Distribution | None = None,
) -> Flow:
    r"""A stack of ``layers`` radial layers :math:`g_k(z) = z + \beta_k (z - z_{0,k})/(\alpha_k + r)`.

    **Cheap direction:** sampling; the density direction is closed form too (a quadratic per layer).
    ``hidden`` is ignored, ``context`` must be 0.

    Reference: Rezende & Mohamed, "Variational Inference with Normalizing Flows", ICML 2015.

    Example:
        >>> flow = RadialFlow(2, layers=4)
        >>> flow.log_prob(flow.sample((3,))).shape
        torch.Size([3])
    """
    return _stack("RadialFlow", lambda: Radial(features), features, context, layers, cheap, base)


def SylvesterFlow(
    features: int,
    *,
    context: int = 0,
    layers: int = 4,
    hidden: Sequence[int] = (),
    reflections: int | None = None,
    cheap: str = "sample",
    base: Distribution | None = None,
) -> Flow:
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
    return _stack(
        "SylvesterFlow", lambda: Sylvester(features, reflections), features, context, layers, cheap, base
    )
