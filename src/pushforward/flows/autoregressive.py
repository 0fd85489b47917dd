"""Autoregressive-flow presets: MAF, IAF, neural spline flows (NSF), NAF and BNAF.

Cost (Papamakarios, Pavlakou & Murray, "Masked Autoregressive Flow", 2017; Kingma et al., "Improved
Variational Inference with Inverse Autoregressive Flow", 2016): a MAF evaluates the density in one pass and
samples in ``D`` sequential passes; an IAF
(``Inverse`` of the same layer) samples in one pass and evaluates the density sequentially. NSF, NAF and
BNAF are density-direction flows like MAF (NSF's coupling variant is one pass both ways).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

from torch import Tensor, nn

from ..distributions.base import Distribution
from ..transformers.affine import AffineTransformer
from ..transformers.base import Transformer, TransformerSpec, transformer_factory
from ..transformers.sigmoidal import DeepSigmoidTransformer
from ..transformers.spline import RQSTransformer
from ..transforms.autoregressive import MaskedAutoregressive
from ..transforms.base import Compose, Inverse, Transform
from ..transforms.block import BlockAutoregressive
from ..transforms.coupling import Coupling, half_mask
from ..transforms.elementwise import BatchNorm
from ..transforms.linear import LULinear, Permutation
from .preset import (
    Preset,
    check_activation,
    check_choice,
    check_count,
    check_flag,
    check_number,
    check_sizes,
)

__all__ = ["BNAF", "IAF", "MAF", "NAF", "NSF"]


_MIXING = ("reverse", "random", "lu", "none", None)


def _check_common(
    owner: str,
    features: int,
    layers: int,
    context: int,
    hidden: Sequence[int],
    mixing: str | None,
    activation: str | Callable[[], nn.Module],
) -> tuple[int, int, int, tuple[int, ...]]:
    """The options every autoregressive preset shares, checked before anything is built."""
    features = check_count(owner, "features", features)
    layers = check_count(owner, "layers", layers)
    context = check_count(owner, "context", context, low=0)
    hidden = check_sizes(owner, "hidden", hidden, empty=True)
    check_choice(owner, "mixing", mixing, _MIXING)
    check_activation(owner, activation)
    return features, layers, context, hidden


def _mixing(kind: str | None, features: int, i: int) -> Transform | None:
    """The transform placed between two layers: ``"reverse"``, ``"random"`` permutation, ``"lu"`` or None."""
    if kind is None or kind == "none" or features == 1:
        return None
    if kind == "reverse":
        return Permutation(features, "reverse")
    if kind == "random":
        return Permutation(features, "random", seed=i)
    if kind == "lu":
        # starts as the reversal: consecutive layers see opposite orders at initialisation (with the identity
        # every layer had the same order, and a conditional NSF lost 0.19 nats on benchmarks/conditional_toy.py)
        return LULinear(features, init="reverse")
    raise ValueError(f"mixing must be 'reverse', 'random', 'lu' or None, got {kind!r}")


def _stack(
    features: int,
    layers: int,
    make: Callable[[int], Transform],
    mixing: str | None,
    batchnorm: bool = False,
) -> Compose:
    parts: list[Transform] = []
    for i in range(layers):
        if i > 0:
            if batchnorm:
                parts.append(BatchNorm(features))
            mix = _mixing(mixing, features, i)
            if mix is not None:
                parts.append(mix)
        parts.append(make(i))
    return Compose(parts)


def _autoregressive(
    features: int,
    transformer: Transformer,
    context: int,
    hidden: Sequence[int],
    residual: bool,
    activation: str | Callable[[], nn.Module],
    order: str | Sequence[int] | Tensor,
) -> MaskedAutoregressive:
    return MaskedAutoregressive(
        features,
        transformer,
        context=context,
        hidden=hidden,
        order=order,
        residual=residual,
        activation=activation,
    )


def _made_stack(
    features: int,
    layers: int,
    context: int,
    hidden: Sequence[int],
    make: Callable[[], Transformer],
    *,
    mixing: str | None,
    residual: bool,
    activation: str | Callable[[], nn.Module],
    batchnorm: bool = False,
    inverse: bool = False,
) -> Compose:
    """``layers`` MADE-conditioned layers (each wrapped in :class:`Inverse` with ``inverse``)."""

    def layer(i: int) -> Transform:
        t = _autoregressive(features, make(), context, hidden, residual, activation, "natural")
        return Inverse(t) if inverse else t

    return _stack(features, layers, layer, mixing, batchnorm)


def _check_clamp(owner: str, clamp: float | None) -> float | None:
    return check_number(owner, "clamp", clamp, low=0.0, open_low=True, none=True)


class MAF(Preset):
    r"""Masked autoregressive flow: ``layers`` affine MADE layers, order reversed between layers.

    .. math:: z_d = (x_d - \mu_d(x_{<d}, c))\, e^{-\alpha_d(x_{<d}, c)}\ \text{(here written }
        z_d = x_d e^{s_d} + t_d\text{)}, \qquad \log|\det J| = \sum_d s_d.

    One MADE pass gives the density; sampling takes ``D`` sequential passes per layer.

    Args:
        mixing: Between layers: ``"reverse"`` (the paper's choice), ``"random"`` permutations, ``"lu"`` or
            None.
        residual: Residual MADE blocks. clamp: Soft clamp of the log-scale. batchnorm: Flow batch-norm between
            layers (as in the paper).
        transformer: The elementwise bijection of every layer, as a
            :class:`~pushforward.transformers.Transformer` (copied per layer) or a factory; default the affine
            transformer with log-scale clamp ``clamp``. :class:`NSF` is this flow with a spline, :class:`NAF`
            with a deep sigmoid. (A factory cannot be written to a model file; pass an instance.)

    Reference: Papamakarios, Pavlakou & Murray, "Masked Autoregressive Flow for Density Estimation",
        NeurIPS 2017.

    Example:
        >>> import torch
        >>> flow = MAF(3, layers=2, hidden=(32, 32))
        >>> flow.log_prob(torch.randn(4, 3)).shape
        torch.Size([4])
    """

    def __init__(
        self,
        features: int,
        *,
        context: int = 0,
        layers: int = 5,
        hidden: Sequence[int] = (64, 64),
        mixing: str | None = "reverse",
        residual: bool = False,
        clamp: float | None = 3.0,
        batchnorm: bool = False,
        activation: str | Callable[[], nn.Module] = "relu",
        base: Distribution | None = None,
        transformer: TransformerSpec | None = None,
    ) -> None:
        owner = type(self).__name__
        features, layers, context, hidden = _check_common(
            owner, features, layers, context, hidden, mixing, activation
        )
        check_flag(owner, "residual", residual)
        check_flag(owner, "batchnorm", batchnorm)
        clamp = _check_clamp(owner, clamp)
        make = transformer_factory(transformer, lambda: AffineTransformer(clamp=clamp))
        stack = _made_stack(
            features,
            layers,
            context,
            hidden,
            make,
            mixing=mixing,
            residual=residual,
            activation=activation,
            batchnorm=batchnorm,
        )
        super().__init__(stack, base)


class IAF(Preset):
    r"""Inverse autoregressive flow: each layer is ``Inverse(MaskedAutoregressive(affine))``.

    In the sampling direction :math:`x_d = z_d e^{s_d(z_{<d})} + t_d(z_{<d})` for the layer's own
    :math:`(s, t)`: sampling is one pass per layer, density evaluation is sequential (``D`` passes). An IAF
    and a MAF whose ``MaskedAutoregressive`` layers share weights are exact inverses of each other.
    ``transformer`` replaces the affine law as in :class:`MAF` (a transformer without a closed-form inverse
    makes sampling numerical).

    Reference: Kingma, Salimans, Jozefowicz, Chen, Sutskever & Welling, "Improved Variational Inference with
    Inverse Autoregressive Flow", NeurIPS 2016.

    Example:
        >>> flow = IAF(3, layers=2, hidden=(32, 32))
        >>> x, log_q = flow.sample_and_log_prob((4,))   # one pass per layer
    """

    def __init__(
        self,
        features: int,
        *,
        context: int = 0,
        layers: int = 5,
        hidden: Sequence[int] = (64, 64),
        mixing: str | None = "reverse",
        residual: bool = False,
        clamp: float | None = 3.0,
        activation: str | Callable[[], nn.Module] = "relu",
        base: Distribution | None = None,
        transformer: TransformerSpec | None = None,
    ) -> None:
        owner = type(self).__name__
        features, layers, context, hidden = _check_common(
            owner, features, layers, context, hidden, mixing, activation
        )
        check_flag(owner, "residual", residual)
        clamp = _check_clamp(owner, clamp)
        make = transformer_factory(transformer, lambda: AffineTransformer(clamp=clamp))
        stack = _made_stack(
            features,
            layers,
            context,
            hidden,
            make,
            mixing=mixing,
            residual=residual,
            activation=activation,
            inverse=True,
        )
        super().__init__(stack, base)


class NSF(Preset):
    r"""Neural spline flow: rational-quadratic spline layers with linear tails, LU mixing between layers.

    Each layer applies a monotone RQ spline with ``bins`` bins on :math:`[-B, B]` (identity outside) to every
    feature, its parameters given by a MADE (``variant="autoregressive"``, RQ-NSF (AR)) or by an MLP on the
    other half of the features (``variant="coupling"``, RQ-NSF (C); half masks alternate between layers).

    Args:
        variant: ``"autoregressive"`` (default) or ``"coupling"``.
        bins: Number of spline bins ``K``. bound: Half-width ``B`` of the spline interval.
        mixing: ``"lu"`` (default: an invertible linear map in LU form, initialised as the reversal
            permutation so that consecutive layers start with opposite orders), ``"reverse"``/``"random"``
            permutations or None.
        residual: Residual MADE blocks (autoregressive variant).

    Reference: Durkan, Bekasov, Murray & Papamakarios, "Neural Spline Flows", NeurIPS 2019.

    Example:
        >>> import torch
        >>> flow = NSF(2, layers=2, hidden=(32, 32), bins=8)
        >>> flow.log_prob(torch.randn(4, 2)).shape
        torch.Size([4])
    """

    def __init__(
        self,
        features: int,
        *,
        context: int = 0,
        layers: int = 5,
        hidden: Sequence[int] = (64, 64),
        variant: str = "autoregressive",
        bins: int = 8,
        bound: float = 4.0,
        mixing: str | None = "lu",
        residual: bool = False,
        activation: str | Callable[[], nn.Module] = "relu",
        base: Distribution | None = None,
    ) -> None:
        owner = type(self).__name__
        features, layers, context, hidden = _check_common(
            owner, features, layers, context, hidden, mixing, activation
        )
        check_choice(owner, "variant", variant, ("autoregressive", "coupling"))
        if variant == "coupling" and features < 2:
            raise ValueError(f"{owner}: the coupling variant needs at least 2 features")
        check_flag(owner, "residual", residual)
        bins = check_count(owner, "bins", bins)
        bound = check_number(owner, "bound", bound, low=0.0, open_low=True)

        def spline() -> RQSTransformer:
            return RQSTransformer(bins=bins, bound=bound)

        if variant == "autoregressive":
            stack = _made_stack(
                features,
                layers,
                context,
                hidden,
                spline,
                mixing=mixing,
                residual=residual,
                activation=activation,
            )
        else:

            def make(i: int) -> Transform:
                mask = half_mask(features, i % 2 == 0)
                return Coupling(mask, spline(), context=context, hidden=hidden, activation=activation)

            stack = _stack(features, layers, make, mixing)
        super().__init__(stack, base)


class NAF(Preset):
    r"""Neural autoregressive flow with deep sigmoidal transformers (DSF) and MADE conditioners.

    .. math:: z_d = \sigma^{-1}\Big(\sum_j w_{dj}\, \sigma(a_{dj} x_d + b_{dj})\Big),
        \qquad (a, b, w)_d = \mathrm{MADE}(x_{<d}, c),

    stacked ``depth`` times per transformer.

    Density is one pass; sampling inverts each transformer numerically (Newton with bisection fallback) in
    ``D`` sequential passes.

    Args:
        units: Sigmoid units per DSF layer. depth: Stacked DSF layers per transformer.

    Reference: Huang, Krueger, Lacoste & Courville, "Neural Autoregressive Flows", ICML 2018.

    Example:
        >>> import torch
        >>> flow = NAF(2, layers=2, hidden=(32, 32), units=8)
        >>> flow.log_prob(torch.randn(4, 2)).shape
        torch.Size([4])
    """

    def __init__(
        self,
        features: int,
        *,
        context: int = 0,
        layers: int = 3,
        hidden: Sequence[int] = (64, 64),
        units: int = 16,
        depth: int = 1,
        mixing: str | None = "reverse",
        residual: bool = False,
        activation: str | Callable[[], nn.Module] = "relu",
        base: Distribution | None = None,
    ) -> None:
        owner = type(self).__name__
        features, layers, context, hidden = _check_common(
            owner, features, layers, context, hidden, mixing, activation
        )
        check_flag(owner, "residual", residual)
        units = check_count(owner, "units", units)
        depth = check_count(owner, "depth", depth)

        def sigmoid() -> DeepSigmoidTransformer:
            return DeepSigmoidTransformer(units=units, depth=depth)

        stack = _made_stack(
            features,
            layers,
            context,
            hidden,
            sigmoid,
            mixing=mixing,
            residual=residual,
            activation=activation,
        )
        super().__init__(stack, base)


class BNAF(Preset):
    r"""Block neural autoregressive flow: ``layers`` :class:`~pushforward.transforms.BlockAutoregressive`
    transforms with reversed order between them.

    ``hidden`` holds the hidden block widths **per feature** (a layer with ``hidden=(16, 16)`` on ``D``
    features has two hidden layers of ``16·D`` units). ``log|det J|`` is exact; the inverse (sampling) is
    numerical (bisection, dimension by dimension).

    ``residual`` must be ``"gated"`` (the default): the gated residual :math:`g x + (1 - g) h(x)` maps onto
    :math:`\mathbb{R}^D`. ``residual=None`` is refused with a ``ValueError``: the plain network (tanh-like
    hidden layers, a linear output) has a bounded range, so its density would not integrate to 1 and
    sampling would fail; :class:`~pushforward.transforms.BlockAutoregressive` itself still offers it, as a
    bijection onto its range.

    Reference: De Cao, Titov & Aziz, "Block Neural Autoregressive Flow", UAI 2019.

    Example:
        >>> import torch
        >>> flow = BNAF(2, layers=2, hidden=(8, 8))
        >>> flow.log_prob(torch.randn(4, 2)).shape
        torch.Size([4])
    """

    def __init__(
        self,
        features: int,
        *,
        context: int = 0,
        layers: int = 3,
        hidden: Sequence[int] = (16, 16),
        mixing: str | None = "reverse",
        residual: str | None = "gated",
        base: Distribution | None = None,
    ) -> None:
        owner = type(self).__name__
        features, layers, context, hidden = _check_common(
            owner, features, layers, context, hidden, mixing, "relu"
        )
        if residual != "gated":
            raise ValueError(
                f"BNAF needs residual='gated', got {residual!r}: without the gated residual each layer maps onto "
                "a bounded set, so the density would not integrate to 1 (and sampling would fail)"
            )

        def block(i: int) -> Transform:
            return BlockAutoregressive(features, hidden, context=context, residual=residual)

        super().__init__(_stack(features, layers, block, mixing), base)
