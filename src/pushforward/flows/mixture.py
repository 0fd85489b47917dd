r"""Mixtures of flows: :math:`K` flows with learned weights and an exact density (:class:`MixtureFlow`),
and the equally weighted ensemble of separately trained flows (:class:`Ensemble`).

.. math:: p(x \mid c) = \sum_{k=1}^K \pi_k\, p_k(x \mid c), \qquad \pi = \operatorname{softmax}(\ell),
    \qquad \log p = \operatorname{logsumexp}_k(\log \pi_k + \log p_k),

so a mixture represents disconnected supports (one component per connected part) that a single bijection
of a connected base must join by thin bridges of mass. Sampling draws the component, then the point. An
ensemble is the mixture with the fixed weights :math:`\pi_k = 1/K`.

Reference: McLachlan & Peel, "Finite Mixture Models", 2000 (mixtures and EM); Dempster, Laird & Rubin,
"Maximum Likelihood from Incomplete Data via the EM Algorithm", 1977; for mixtures of flows, e.g. Pires &
Figueiredo, "Variational Mixture of Normalizing Flows", 2020.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Sequence

import torch
from torch import Tensor, nn

from ..registry import Registered
from .core import Flow

__all__ = ["Ensemble", "MixtureFlow", "mixture_log_prob", "pick_component"]


def mixture_log_prob(component_log_probs: Tensor, logits: Tensor) -> Tensor:
    r""":math:`\operatorname{logsumexp}_k(\log\operatorname{softmax}(\ell)_k + \log p_k)` over the last
    dimension of ``component_log_probs`` ``(..., K)``."""
    return torch.logsumexp(component_log_probs + torch.log_softmax(logits, -1), -1)


def pick_component(draws: Tensor, probs: Tensor, event_dims: int) -> Tensor:
    r"""One draw per sample from a mixture: ``draws`` ``(K, *batch, *event)`` holds every component's draw;
    for each batch position a component :math:`k \sim \operatorname{Categorical}(\pi)` is chosen (global
    RNG) and its draw kept. Returns ``(*batch, *event)``.

    Example:
        >>> draws = torch.stack([torch.zeros(4, 2), torch.ones(4, 2)])
        >>> pick_component(draws, torch.tensor([0.0, 1.0]), 1)
        tensor([[1., 1.],
                [1., 1.],
                [1., 1.],
                [1., 1.]])
    """
    batch = draws.shape[1 : draws.dim() - event_dims]
    which = torch.multinomial(probs, math.prod(batch), replacement=True).to(draws.device)
    index = which.view(1, *batch, *([1] * event_dims)).expand(1, *draws.shape[1:])
    return draws.gather(0, index).squeeze(0)


def check_flows(flows: Sequence[Flow], name: str, empty: str) -> list[Flow]:
    """``flows`` as a list: ``ValueError(empty)`` when there are none, ``TypeError`` for a non-Flow,
    ``ValueError`` when they differ in event shape or context features (``name`` names them in messages)."""
    flows = list(flows)
    if not flows:
        raise ValueError(empty)
    for f in flows:
        if not isinstance(f, Flow):
            raise TypeError(f"{name} must be Flows, got {type(f).__name__}")
    for f in flows[1:]:
        if f.event_shape != flows[0].event_shape or f.context_features != flows[0].context_features:
            raise ValueError(f"all {name} must share the event shape and the context features")
    return flows


class MixtureFlow(nn.Module):
    r"""A mixture of :math:`K` flows on the same event shape (see the module documentation).

    Trains with :func:`pushforward.fit` like a :class:`~pushforward.Flow` (``flow(x, context)`` is
    ``log_prob``); :meth:`update_weights` is the closed-form EM step for the weights, given data.

    Args:
        components: The flows (same ``event_shape`` and ``context_features``).
        weights: Initial mixture weights (positive, normalised here); default uniform.

    Example:
        >>> import torch
        >>> from pushforward.flows import MAF
        >>> mix = MixtureFlow([MAF(2, layers=1, hidden=(8,)), MAF(2, layers=1, hidden=(8,))])
        >>> mix.log_prob(torch.randn(5, 2)).shape
        torch.Size([5])
        >>> x, log_p = mix.sample_and_log_prob((3,))
    """

    def __init__(
        self, components: Sequence[Flow], *, weights: Sequence[float] | Tensor | None = None
    ) -> None:
        super().__init__()
        components = check_flows(components, "components", "a mixture needs at least one component")
        first = components[0]
        self.components = nn.ModuleList(components)
        k = len(components)
        if weights is None:
            w = torch.full((k,), 1.0 / k)
        else:
            w = torch.as_tensor(weights, dtype=torch.float32).flatten()
            if w.numel() != k or not bool((w > 0).all()) or not bool(torch.isfinite(w).all()):
                raise ValueError(f"weights must be {k} positive finite numbers, got {w.tolist()}")
        self.logits = nn.Parameter((w / w.sum()).log())
        self.event_shape: tuple[int, ...] = first.event_shape
        self.context_features: int = first.context_features

    @property
    def features(self) -> int:
        """Number of scalar dimensions of one event."""
        return math.prod(self.event_shape)

    @property
    def dtype(self) -> torch.dtype | None:
        """The floating dtype of the parameters."""
        for t in itertools.chain(self.parameters(), self.buffers()):
            if t.is_floating_point():
                return t.dtype
        return None

    @property
    def weights(self) -> Tensor:
        """The mixture weights :math:`\\pi` (detached)."""
        return torch.softmax(self.logits.detach(), 0)

    def component_log_probs(self, x: Tensor, context: Tensor | None = None) -> Tensor:
        """``log p_k(x | c)`` of every component, shape ``(*batch, K)``."""
        return torch.stack([c.log_prob(x, context) for c in self.components], -1)

    def log_prob(self, x: Tensor, context: Tensor | None = None) -> Tensor:
        """Exact log-density of ``x`` (shape ``(*batch, *event_shape)``); returns ``batch``."""
        return mixture_log_prob(self.component_log_probs(x, context), self.logits)

    def forward(self, x: Tensor, context: Tensor | None = None) -> Tensor:
        """Alias of :meth:`log_prob`."""
        return self.log_prob(x, context)

    @torch.no_grad()
    def responsibilities(self, x: Tensor, context: Tensor | None = None) -> Tensor:
        r"""Posterior component probabilities :math:`r_{k}(x) = \pi_k p_k(x) / p(x)`, shape ``(*batch, K)``."""
        joint = self.component_log_probs(x, context) + torch.log_softmax(self.logits, -1)
        return torch.softmax(joint, -1)

    @torch.no_grad()
    def update_weights(self, x: Tensor, context: Tensor | None = None) -> Tensor:
        """EM's M-step for the weights: :math:`\\pi_k \\leftarrow` the mean responsibility over ``x``.
        Returns the new weights."""
        r = self.responsibilities(x, context).reshape(-1, len(self.components)).mean(0)
        self.logits.copy_(r.clamp_min(1e-12).log())
        return self.weights

    def _draw(self, sample_shape: int | Sequence[int], context: Tensor | None, rsample: bool) -> Tensor:
        draws = torch.stack(
            [(c.rsample if rsample else c.sample)(sample_shape, context) for c in self.components]
        )  # (K, *batch, *event) — every component draws, the chosen one is kept
        return pick_component(draws, torch.softmax(self.logits.detach(), 0), len(self.event_shape))

    @torch.no_grad()
    def sample(self, sample_shape: int | Sequence[int] = (), context: Tensor | None = None) -> Tensor:
        """Samples of shape ``(*sample_shape, *context_batch, *event_shape)``: component, then point."""
        return self._draw(sample_shape, context, False)

    def rsample(self, sample_shape: int | Sequence[int] = (), context: Tensor | None = None) -> Tensor:
        """Samples reparameterised within their component (the component draw has no gradient)."""
        return self._draw(sample_shape, context, True)

    def sample_and_log_prob(
        self, sample_shape: int | Sequence[int] = (), context: Tensor | None = None
    ) -> tuple[Tensor, Tensor]:
        """Samples and their exact mixture log-density."""
        x = self.rsample(sample_shape, context)
        return x, self.log_prob(x, context)


class Ensemble(Registered, nn.Module):
    r"""The equally weighted ensemble of :math:`K` trained flows: a mixture with fixed weights :math:`1/K`,

    .. math:: p(x \mid c) = \frac1K \sum_{k=1}^K p_k(x \mid c), \qquad
        \log p = \operatorname{logsumexp}_k \log p_k - \log K;

    sampling picks a member uniformly per sample, then draws from it. Nothing is learned beyond the
    members' weights, so it saves and loads like any flow (:func:`pushforward.io.save`), e.g. the
    cross-fitted flows of :class:`~pushforward.FlowDensity` with ``ensemble=K``.

    Args:
        members: The flows (same ``event_shape`` and ``context_features``), at least one.

    Reference: Lakshminarayanan, Pritzel & Blundell, "Simple and Scalable Predictive Uncertainty Estimation
    using Deep Ensembles", NeurIPS 2017 (averaging the densities of independently trained models).

    Example:
        >>> from pushforward.flows import MAF
        >>> ens = Ensemble([MAF(2, layers=1, hidden=(8,)), MAF(2, layers=1, hidden=(8,))])
        >>> x = torch.randn(5, 2)
        >>> manual = torch.stack([m.log_prob(x) for m in ens.members]).exp().mean(0).log()
        >>> torch.allclose(ens.log_prob(x), manual, atol=1e-5), ens.sample((3,)).shape
        (True, torch.Size([3, 2]))
    """

    def __init__(self, members: Sequence[Flow]) -> None:
        super().__init__()
        members = check_flows(members, "ensemble members", "an ensemble needs at least one member")
        first = members[0]
        self.members = nn.ModuleList(members)
        self.event_shape: tuple[int, ...] = first.event_shape
        self.context_features: int = first.context_features

    @property
    def features(self) -> int:
        """Number of scalar dimensions of one event."""
        return math.prod(self.event_shape)

    @property
    def dtype(self) -> torch.dtype | None:
        """The floating dtype of the members' parameters."""
        return self.members[0].dtype

    def member_log_probs(self, x: Tensor, context: Tensor | None = None) -> Tensor:
        """``log p_k(x | c)`` of every member, shape ``(*batch, K)``."""
        return torch.stack([m.log_prob(x, context) for m in self.members], -1)

    def log_prob(self, x: Tensor, context: Tensor | None = None) -> Tensor:
        """Exact log-density of ``x`` (shape ``(*batch, *event_shape)``); returns ``batch``."""
        lp = self.member_log_probs(x, context)
        return torch.logsumexp(lp, -1) - math.log(len(self.members))

    def forward(self, x: Tensor, context: Tensor | None = None) -> Tensor:
        """Alias of :meth:`log_prob`."""
        return self.log_prob(x, context)

    @torch.no_grad()
    def sample(self, sample_shape: int | Sequence[int] = (), context: Tensor | None = None) -> Tensor:
        """Samples of shape ``(*sample_shape, *context_batch, *event_shape)``: a uniform member, then the point."""
        shape = (sample_shape,) if isinstance(sample_shape, int) else tuple(sample_shape)
        draws = torch.stack([m.sample(shape, context) for m in self.members])
        probs = torch.full((len(self.members),), 1.0 / len(self.members))
        return pick_component(draws, probs, len(self.event_shape))

    def sample_and_log_prob(
        self, sample_shape: int | Sequence[int] = (), context: Tensor | None = None
    ) -> tuple[Tensor, Tensor]:
        """Samples and their exact ensemble log-density."""
        x = self.sample(sample_shape, context)
        return x, self.log_prob(x, context)
