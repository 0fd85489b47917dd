r"""The graphical conditioner: an autoregressive-style conditioner whose dependency graph is learned.

Variable :math:`j` is conditioned on the masked input :math:`x \odot A_{:, j}` (and a one-hot code of
:math:`j`) through one shared MLP,

.. math:: \theta_j = h\big(x \odot A_{:, j},\ e_j,\ c\big), \qquad A = S \odot \sigma(L),

where :math:`A_{ij}` weighs the edge :math:`x_i \to x_j`, :math:`L` are learned logits and :math:`S` a fixed
binary *structure* (a buffer): all edges but self-loops while the graph is being learned, the pruned DAG
after :meth:`GraphicalConditioner.freeze`. While the graph is being learned, training-mode passes use a
relaxed Bernoulli mask :math:`M_{ij} = \sigma((L_{ij} + \log U - \log(1 - U)) / t)`, :math:`U \sim
\mathcal U(0, 1)` (the Gumbel-sigmoid trick) in place of :math:`\sigma(L)`, so that an edge carries
information only when its probability is high and the MLP cannot undo a small weight by rescaling.
When :math:`S` is acyclic the Jacobian of the layer is triangular in a topological order, so the layer
is an exact autoregressive bijection. While learning, sparsity and acyclicity are encouraged by
:math:`\lVert A \rVert_1` and the NOTEARS function (:func:`notears_acyclicity`), zero exactly on DAGs.

Reference: Wehenkel & Louppe, "Graphical Normalizing Flows", AISTATS 2021; Zheng, Aragam, Ravikumar & Xing,
"DAGs with NO TEARS: Continuous Optimization for Structure Learning", NeurIPS 2018.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
from torch import Tensor, nn

from ..registry import Registered
from .mlp import MLP

__all__ = ["GraphicalConditioner", "is_acyclic", "notears_acyclicity", "prune_to_dag"]


def notears_acyclicity(a: Tensor) -> Tensor:
    r"""NOTEARS' :math:`h(A) = \operatorname{tr}\big(e^{A \circ A}\big) - d`, :math:`\ge 0`, zero iff the
    weighted graph :math:`A` (:math:`d \times d`) has no directed cycle; differentiable."""
    if a.dim() != 2 or a.shape[0] != a.shape[1]:
        raise ValueError(f"adjacency must be a square matrix, got shape {tuple(a.shape)}")
    return torch.linalg.matrix_exp(a * a).diagonal().sum() - a.shape[0]


def is_acyclic(structure: Tensor) -> bool:
    """Whether the binary graph ``structure[i, j] = edge i → j`` has no directed cycle (self-loops count)."""
    s = (torch.as_tensor(structure).detach().cpu() != 0).clone()
    remaining = torch.ones(s.shape[0], dtype=torch.bool)
    while bool(remaining.any()):
        sources = remaining & ~(s[remaining].any(0))  # no incoming edge from a remaining node
        if not bool(sources.any()):
            return False
        remaining &= ~sources
        s[sources] = False
    return True


def prune_to_dag(weights: Tensor, threshold: float) -> Tensor:
    """The DAG of the edges with weight above ``threshold``, added strongest first and skipped when they
    would close a cycle (a greedy maximum-weight acyclic subgraph). Returns a ``float`` 0/1 matrix."""
    w = weights.detach().cpu().clone()
    w.fill_diagonal_(0.0)
    dag = torch.zeros_like(w)
    flat = w.flatten()
    for k in flat.argsort(descending=True).tolist():
        if float(flat[k]) <= threshold:
            break
        i, j = divmod(k, w.shape[1])
        dag[i, j] = 1.0
        if not is_acyclic(dag):
            dag[i, j] = 0.0
    return dag.to(weights.device)


class GraphicalConditioner(Registered, nn.Module):
    r"""Conditioner ``(x, context) -> (batch, D, P)`` whose variable :math:`j` reads
    :math:`x \odot A_{:, j}` (see the module documentation for the maths).

    Args:
        features: Number of variables :math:`D`.
        out_per_feature: Parameters ``P`` per variable (the transformer's ``params_per_feature``).
        hidden: Hidden widths of the shared MLP.
        context: Context features.
        structure: The allowed edges ``(D, D)`` (``structure[i, j] = 1``: :math:`x_i \to x_j` allowed);
            default every edge but self-loops (a graph to learn). Pass a DAG for a fixed exact layer.
        init_logit: Initial edge logit (``2.0``: :math:`\sigma = 0.88`, a nearly full graph).
        temperature: Temperature :math:`t` of the relaxed Bernoulli masks used while learning the graph.
        activation: Hidden activation.

    Reference: Wehenkel & Louppe, "Graphical Normalizing Flows", AISTATS 2021.

    Example:
        >>> net = GraphicalConditioner(3, 2, hidden=(16,))
        >>> net(torch.randn(5, 3)).shape
        torch.Size([5, 3, 2])
        >>> net.freeze(0.5)              # prune to a DAG: now an exact autoregressive conditioner
        >>> is_acyclic(net.structure)
        True
    """

    def __init__(
        self,
        features: int,
        out_per_feature: int,
        hidden: Sequence[int] = (64, 64),
        *,
        context: int = 0,
        structure: Tensor | Sequence[Sequence[float]] | None = None,
        init_logit: float = 2.0,
        temperature: float = 0.5,
        activation: str | Callable[[], nn.Module] = "relu",
    ) -> None:
        super().__init__()
        if isinstance(features, bool) or not isinstance(features, int) or features < 1:
            raise ValueError(f"features must be a positive int, got {features!r}")
        self.features = features
        self.out_per_feature = int(out_per_feature)
        self.context = int(context)
        if structure is None:
            s = 1.0 - torch.eye(features)
        else:
            s = torch.as_tensor(structure, dtype=torch.float32)
            if tuple(s.shape) != (features, features):
                raise ValueError(f"structure must have shape ({features}, {features}), got {tuple(s.shape)}")
            if bool(s.diagonal().any()):
                raise ValueError("structure must have no self-loops (zero diagonal)")
            s = (s != 0).float()
        if not temperature > 0:
            raise ValueError(f"temperature must be positive, got {temperature}")
        self.temperature = float(temperature)
        self.register_buffer("structure", s)
        self.register_buffer("learning", torch.tensor(structure is None))
        self.edge_logits = nn.Parameter(torch.full((features, features), float(init_logit)))
        self.register_buffer("codes", torch.eye(features))
        self.net = MLP(
            2 * features, self.out_per_feature, hidden, context=self.context, activation=activation
        )

    def adjacency(self) -> Tensor:
        r"""The weighted graph :math:`A = S \odot \sigma(L)`, ``A[i, j]`` the weight of :math:`x_i \to x_j`."""
        return self.structure * torch.sigmoid(self.edge_logits)

    def is_dag(self) -> bool:
        """Whether the structure is acyclic (then the layer is an exact bijection)."""
        return is_acyclic(self.structure)

    @torch.no_grad()
    def freeze(self, threshold: float = 0.5) -> None:
        """Replace the structure by the DAG of the edges weighing more than ``threshold``
        (:func:`prune_to_dag`); the remaining weights stay learnable."""
        self.structure.copy_(prune_to_dag(self.adjacency(), threshold))
        self.learning.fill_(False)

    def _mask(self, dtype: torch.dtype) -> Tensor:
        if not (self.training and bool(self.learning)):
            return self.adjacency().to(dtype)
        u = torch.rand_like(self.edge_logits).clamp(1e-6, 1 - 1e-6)
        relaxed = torch.sigmoid((self.edge_logits + u.log() - (-u).log1p()) / self.temperature)
        return (self.structure * relaxed).to(dtype)

    def forward(self, x: Tensor, context: Tensor | None = None) -> Tensor:
        if x.dim() != 2 or x.shape[1] != self.features:
            raise ValueError(f"expected input of shape (batch, {self.features}), got {tuple(x.shape)}")
        b, d = x.shape
        a = self._mask(x.dtype)
        masked = x[:, None, :] * a.T[None]  # row j: the inputs of variable j
        inputs = torch.cat([masked, self.codes.to(x.dtype).expand(b, d, d)], -1).reshape(b * d, 2 * d)
        ctx = None
        if self.context:
            if context is None or context.shape != (b, self.context):
                raise ValueError(f"expected a context of shape ({b}, {self.context})")
            ctx = context[:, None, :].expand(b, d, self.context).reshape(b * d, self.context)
        return self.net(inputs, ctx).view(b, d, self.out_per_feature)

    def extra_repr(self) -> str:
        return f"features={self.features}, out_per_feature={self.out_per_feature}, context={self.context}"
