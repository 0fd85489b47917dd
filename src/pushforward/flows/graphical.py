r"""Graphical normalizing flows: autoregressive layers whose dependency graph is learned (sparse, acyclic).

Each layer is a :class:`~pushforward.transforms.MaskedAutoregressive` layer with a
:class:`~pushforward.nets.graphical.GraphicalConditioner`: variable :math:`j` is transformed with parameters
predicted from :math:`x \odot A_{:, j}`. Training by maximum likelihood adds :meth:`GraphicalFlow.penalty`,

.. math:: \lambda \sum_k \lVert A_k \rVert_1 + \alpha\, h + \tfrac{\rho}{2} h^2, \qquad
    h = \sum_k \big(\operatorname{tr} e^{A_k \circ A_k} - d\big),

an augmented Lagrangian on NOTEARS' acyclicity constraint :math:`h = 0`
(:meth:`GraphicalFlow.update_lagrangian` raises :math:`\alpha, \rho` between rounds). While the graph is
cyclic the layer's ``log_prob`` uses the diagonal log-derivatives only (a surrogate, as in the paper);
:meth:`GraphicalFlow.freeze` then prunes each graph to a DAG, after which ``log_prob`` is exact and
training can continue on the fixed graph. :meth:`GraphicalFlow.adjacency` reads the learned graph;
:func:`plot_adjacency` draws it.

Reference: Wehenkel & Louppe, "Graphical Normalizing Flows", AISTATS 2021; Zheng, Aragam, Ravikumar & Xing,
"DAGs with NO TEARS", NeurIPS 2018.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

import torch
from torch import Tensor

from ..distributions.base import Distribution
from ..nets.graphical import GraphicalConditioner, notears_acyclicity
from ..transformers.affine import AffineTransformer
from ..transformers.spline import RQSTransformer
from ..transforms.autoregressive import MaskedAutoregressive
from ..transforms.base import Compose
from .core import Flow

if TYPE_CHECKING:
    from matplotlib.figure import Figure

__all__ = ["GraphicalFlow", "plot_adjacency"]


class GraphicalFlow(Flow):
    r"""A flow of graphical-conditioner autoregressive layers with a learned sparse DAG (see the module
    documentation for the objective).

    Args:
        features: Number of variables :math:`D`.
        context: Context features.
        layers: Graphical layers (each learns its own graph; :meth:`adjacency` is their elementwise max).
        hidden: Hidden widths of each layer's shared MLP.
        transformer: ``"affine"`` (exact for additive-noise structural equation models) or ``"spline"``.
        l1: Weight :math:`\lambda` of the sparsity penalty.
        alpha, rho: Initial augmented-Lagrangian multiplier and penalty weight (buffers).
        bins: Spline bins (``transformer="spline"``).
        init_logit: Initial edge logit of every allowed edge (0: probability ½).
        base: Base distribution (default standard normal).

    Reference: Wehenkel & Louppe, "Graphical Normalizing Flows", AISTATS 2021.

    Example:
        >>> import torch
        >>> flow = GraphicalFlow(3, hidden=(16,))
        >>> loss = -flow.log_prob(torch.randn(8, 3)).mean() + flow.penalty()
        >>> flow.adjacency().shape
        torch.Size([3, 3])
        >>> flow.freeze(0.5)
        >>> flow.is_dag()
        True
    """

    def __init__(
        self,
        features: int,
        *,
        context: int = 0,
        layers: int = 1,
        hidden: Sequence[int] = (64, 64),
        transformer: str = "affine",
        l1: float = 0.01,
        alpha: float = 0.0,
        rho: float = 0.01,
        bins: int = 8,
        init_logit: float = 0.0,
        base: Distribution | None = None,
    ) -> None:
        if isinstance(layers, bool) or not isinstance(layers, int) or layers < 1:
            raise ValueError(f"layers must be a positive int, got {layers!r}")
        if transformer not in ("affine", "spline"):
            raise ValueError(f"transformer must be 'affine' or 'spline', got {transformer!r}")
        if l1 < 0 or alpha < 0 or rho <= 0:
            raise ValueError(f"need l1 >= 0, alpha >= 0, rho > 0; got {l1}, {alpha}, {rho}")
        parts = []
        for _ in range(layers):
            tau = AffineTransformer(clamp=3.0) if transformer == "affine" else RQSTransformer(bins)
            net = GraphicalConditioner(
                features, tau.params_per_feature, hidden, context=context, init_logit=init_logit
            )
            parts.append(MaskedAutoregressive(features, tau, context=context, conditioner=net))
        super().__init__(Compose(parts), base)
        self.l1 = float(l1)
        self.register_buffer("alpha", torch.tensor(float(alpha)))
        self.register_buffer("rho", torch.tensor(float(rho)))
        self.register_buffer("last_acyclicity", torch.tensor(float("inf")))

    @property
    def conditioners(self) -> list[GraphicalConditioner]:
        """The graphical conditioners, one per layer."""
        return [m for m in self.modules() if isinstance(m, GraphicalConditioner)]

    def adjacency(self) -> Tensor:
        """The learned weighted graph, ``A[i, j]`` the weight of the edge :math:`x_i \\to x_j` (the max over
        layers), detached."""
        return torch.stack([c.adjacency().detach() for c in self.conditioners]).amax(0)

    def acyclicity(self) -> Tensor:
        """NOTEARS' :math:`h`, summed over layers (differentiable)."""
        return sum(notears_acyclicity(c.adjacency()) for c in self.conditioners)  # type: ignore[return-value]

    def penalty(self) -> Tensor:
        r""":math:`\lambda \sum_k \lVert A_k\rVert_1 + \alpha h + \frac{\rho}{2} h^2`, added to the mean
        negative log-likelihood by the training engine."""
        h = self.acyclicity()
        l1 = sum(c.adjacency().sum() for c in self.conditioners)
        return self.l1 * l1 + self.alpha * h + 0.5 * self.rho * h * h

    @torch.no_grad()
    def update_lagrangian(
        self, *, factor: float = 10.0, progress: float = 0.25, max_rho: float = 1e6
    ) -> float:
        """One outer step of the augmented Lagrangian: :math:`\\alpha \\mathrel{+}= \\rho h`, and
        :math:`\\rho \\mathrel{*}= ` ``factor`` unless :math:`h` fell below ``progress`` times its previous
        value. Returns the current :math:`h`."""
        h = float(self.acyclicity())
        if h > progress * float(self.last_acyclicity):
            self.rho.fill_(min(float(self.rho) * factor, max_rho))
        self.alpha.add_(float(self.rho) * h)
        self.last_acyclicity.fill_(h)
        return h

    def freeze(self, threshold: float = 0.5) -> None:
        """Prune every layer's graph to a DAG of its edges above ``threshold``; ``log_prob`` is then exact."""
        for c in self.conditioners:
            c.freeze(threshold)

    def is_dag(self) -> bool:
        """Whether every layer's structure is acyclic (``log_prob`` exact)."""
        return all(c.is_dag() for c in self.conditioners)


def plot_adjacency(
    adjacency: Tensor, names: Sequence[str] | None = None, *, truth: Tensor | None = None
) -> Figure:
    """A heat map of a weighted graph (``adjacency[i, j]``: edge ``i → j``) on a standalone matplotlib
    ``Figure`` (no pyplot state); ``truth`` marks the true edges with dots.

    Example:
        >>> import torch
        >>> fig = plot_adjacency(torch.rand(4, 4))
        >>> len(fig.axes)
        2
    """
    from matplotlib.figure import Figure

    a = torch.as_tensor(adjacency).detach().cpu().double()
    if a.dim() != 2 or a.shape[0] != a.shape[1]:
        raise ValueError(f"adjacency must be a square matrix, got shape {tuple(a.shape)}")
    d = a.shape[0]
    names = list(names) if names is not None else [f"x{i}" for i in range(d)]
    if len(names) != d:
        raise ValueError(f"{len(names)} names for {d} variables")
    fig = Figure(figsize=(1.0 + 0.35 * d, 0.8 + 0.35 * d))
    ax = fig.add_subplot()
    image = ax.imshow(a.numpy(), vmin=0.0, vmax=1.0, cmap="Greys")
    if truth is not None:
        i, j = torch.nonzero(torch.as_tensor(truth) != 0, as_tuple=True)
        ax.scatter(j.numpy(), i.numpy(), s=12, c="tab:red", label="true edge")
        ax.legend(loc="upper right", fontsize=7)
    ax.set_xticks(range(d), names, fontsize=7, rotation=90)
    ax.set_yticks(range(d), names, fontsize=7)
    ax.set_xlabel("child")
    ax.set_ylabel("parent")
    fig.colorbar(image, ax=ax, label="edge weight")
    fig.tight_layout()
    return fig
