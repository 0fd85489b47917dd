r"""Calibration flows on the probability simplex :math:`\Delta^{n-1}`.

Points are full probability vectors :math:`p` of shape ``(batch, n)`` with :math:`p_i > 0` and
:math:`\sum_i p_i = 1`. The ``ladj`` is the log differential volume ratio of the
simplex flows in Wikipedia, "Flow-based generative model",
:math:`R_f(p) = |\det(R F_p E)|` with :math:`E` the embedding of the first :math:`n-1` coordinates and
:math:`R` their extraction; it is the same ratio for the Lebesgue measure of :math:`(p_1, \dots, p_{n-1})`
and for the Hausdorff measure of the embedded simplex (the factor :math:`\sqrt{n}` between them cancels).
Base densities (:class:`pushforward.distributions.Dirichlet`) fix which of the two measures a flow's
density refers to; see :mod:`pushforward.manifolds`.

References: Guo, Pleiss, Sun & Weinberger, "On Calibration of Modern Neural Networks", 2017 (temperature
scaling); Kull et al., "Beyond temperature scaling: obtaining well-calibrated multiclass probabilities with
Dirichlet calibration", 2019; Wikipedia, "Flow-based generative model",
sections "Simplex calibration transform" and "Generalized calibration transform".
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .linear import LUMatrix
from .manifold import ManifoldTransform, Simplex

__all__ = ["CalibrationTransform", "GeneralizedCalibration", "generalized_calibration", "sum_one_basis"]


# ---------------------------------------------------------------------------------- pure formulas
def generalized_calibration(
    p: Tensor,
    matrix: Tensor,
    shift: Tensor | None = None,
    eigenvalue: Tensor | float | None = None,
    logabsdet: Tensor | None = None,
) -> tuple[Tensor, Tensor]:
    r"""The generalised calibration transform and its log volume ratio:

    .. math:: q = \operatorname{softmax}(A \log p + c), \qquad
        \log R(p) = \log|\det A| - \log|\lambda| + \sum_{i=1}^n (\log q_i - \log p_i),
        \qquad A\mathbf{1} = \lambda\mathbf{1}.

    A 0-dimensional ``matrix`` :math:`s` stands for :math:`A = sI` (then :math:`\lambda = s` and
    :math:`\log R = (n-1)\log|s| + \sum_i (\log q_i - \log p_i)`): the calibration transform
    :math:`\operatorname{softmax}(a^{-1}\log p + c)` with :math:`s = a^{-1}`. The inverse is the same map
    with :math:`(A^{-1}, -A^{-1}c, \lambda^{-1})`.

    Args:
        p: Points of the open simplex, ``(batch, n)``.
        matrix: :math:`A` of shape ``(n, n)`` with :math:`\mathbf{1}` as eigenvector, or a scalar :math:`s`.
        shift: :math:`c` of shape ``(n,)`` or ``None``.
        eigenvalue: :math:`\lambda` (ignored for a scalar ``matrix``).
        logabsdet: :math:`\log|\det A|` when known (else computed by ``slogdet``).
    """
    n = p.shape[-1]
    log_p = p.log()
    if matrix.dim() == 0:
        h = matrix * log_p
        log_ratio = (n - 1) * matrix.abs().log()
    else:
        if eigenvalue is None:
            raise ValueError("a matrix A needs its eigenvalue λ (A 1 = λ 1)")
        h = log_p @ matrix.T
        lad = torch.linalg.slogdet(matrix)[1] if logabsdet is None else logabsdet
        log_ratio = lad - torch.as_tensor(eigenvalue, dtype=p.dtype, device=p.device).abs().log()
    if shift is not None:
        h = h + shift
    log_q = F.log_softmax(h, dim=-1)
    return log_q.exp(), log_ratio + (log_q - log_p).sum(-1)


def sum_one_basis(n: int, dtype: torch.dtype | None = None) -> Tensor:
    r"""An ``(n, n-1)`` matrix :math:`V` of orthonormal columns spanning :math:`\mathbf{1}^\perp`."""
    a = torch.cat([torch.ones(n, 1, dtype=torch.float64), torch.eye(n, dtype=torch.float64)[:, : n - 1]], 1)
    q, _ = torch.linalg.qr(a)
    return q[:, 1:].to(dtype or torch.get_default_dtype())


# ---------------------------------------------------------------------------------- transforms
class CalibrationTransform(ManifoldTransform):
    r"""The simplex calibration transform (temperature scaling when :math:`c = 0`):

    .. math:: q = \operatorname{softmax}(a^{-1}\log p + c), \qquad
        p = \operatorname{softmax}(a \log q - a c), \qquad
        R(p) = a^{1-n} \prod_{i=1}^n \frac{q_i}{p_i}.

    The temperature :math:`a = e^{\tau} > 0` (no direction reversal in log-probability space) and the
    shift :math:`c \in \mathbb{R}^n` are learnable; ``shift=False`` gives pure temperature scaling. With a
    Dirichlet base this is the generative form of calibration: :math:`\operatorname{softmax}`-mapping
    Dirichlet variates gives the SGB distribution.

    References: Guo et al., "On Calibration of Modern Neural Networks", 2017.

    Example:
        >>> t = CalibrationTransform(3, temperature=2.0)
        >>> q, ladj = t(torch.tensor([[0.7, 0.2, 0.1]]))
    """

    def __init__(self, n: int, *, temperature: float = 1.0, shift: bool = True) -> None:
        super().__init__(Simplex(n))
        if not temperature > 0:
            raise ValueError(f"temperature must be positive, got {temperature}")
        self.log_temperature = nn.Parameter(torch.tensor(math.log(temperature)))
        self.shift = nn.Parameter(torch.zeros(n)) if shift else None

    @property
    def temperature(self) -> Tensor:
        """The temperature :math:`a`."""
        return self.log_temperature.exp()

    def forward(self, x: Tensor, context: Tensor | None = None) -> tuple[Tensor, Tensor]:
        self.manifold.check(x, "CalibrationTransform input")
        return generalized_calibration(x, torch.exp(-self.log_temperature), self.shift)

    def inverse(self, z: Tensor, context: Tensor | None = None) -> tuple[Tensor, Tensor]:
        self.manifold.check(z, "CalibrationTransform.inverse input")
        a = self.temperature
        return generalized_calibration(z, a, None if self.shift is None else -a * self.shift)


class GeneralizedCalibration(ManifoldTransform):
    r"""The generalised calibration transform :math:`q = \operatorname{softmax}(A\log p + c)` with
    :math:`A\mathbf{1} = \lambda\mathbf{1}` and :math:`A` invertible:

    .. math:: p = \operatorname{softmax}(A^{-1}\log q - A^{-1}c), \qquad
        R(p) = \frac{|\det A|}{|\lambda|} \prod_{i=1}^n \frac{q_i}{p_i}.

    Parameterisation: with :math:`u = \mathbf{1}/\sqrt{n}` and :math:`V` an orthonormal basis of
    :math:`u^\perp` (:func:`sum_one_basis`), :math:`A = V B V^\top + \lambda u u^\top` with :math:`B` an
    LU-parameterised invertible :math:`(n-1)\times(n-1)` matrix, so :math:`A\mathbf{1} = \lambda\mathbf{1}`,
    :math:`\det A = \lambda \det B` and :math:`A^{-1} = V B^{-1} V^\top + \lambda^{-1} u u^\top` exactly.
    This loses no generality: the component of :math:`A \log p` along :math:`\mathbf{1}` is removed by the
    softmax, so every admissible :math:`A` gives the same map as one of this form, and :math:`\lambda = 1`.
    ``B`` starts at the identity (the identity map); :math:`n = 2` reduces to :class:`CalibrationTransform`.

    Reference: Wikipedia, "Flow-based generative model", "Generalized calibration transform";
    Kull et al., "Beyond temperature scaling", 2019 (Dirichlet calibration, the unconstrained version).

    Example:
        >>> t = GeneralizedCalibration(4)
        >>> q, ladj = t(torch.softmax(torch.randn(5, 4), -1))
    """

    def __init__(
        self, n: int, *, shift: bool = True, init: str = "identity", seed: int | None = None
    ) -> None:
        super().__init__(Simplex(n))
        self.lu = LUMatrix(n - 1, init=init, seed=seed)
        self.shift = nn.Parameter(torch.zeros(n)) if shift else None

    def _matrix(self, inverse: bool) -> Tensor:
        B = self.lu.inverse_matrix() if inverse else self.lu.matrix()
        V = sum_one_basis(self.features, B.dtype).to(B.device)  # built in float64: exactly orthonormal
        u = torch.full((self.features,), self.features**-0.5, dtype=V.dtype, device=V.device)
        return V @ B @ V.T + torch.outer(u, u)

    def matrix(self) -> Tensor:
        """The matrix :math:`A` (with :math:`\\lambda = 1`)."""
        return self._matrix(False)

    def forward(self, x: Tensor, context: Tensor | None = None) -> tuple[Tensor, Tensor]:
        self.manifold.check(x, "GeneralizedCalibration input")
        return generalized_calibration(x, self._matrix(False), self.shift, 1.0, self.lu.logabsdet())

    def inverse(self, z: Tensor, context: Tensor | None = None) -> tuple[Tensor, Tensor]:
        self.manifold.check(z, "GeneralizedCalibration.inverse input")
        A_inv = self._matrix(True)
        shift = None if self.shift is None else -(A_inv @ self.shift)
        return generalized_calibration(z, A_inv, shift, 1.0, -self.lu.logabsdet())
