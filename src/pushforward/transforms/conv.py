r"""Invertible convolutions with spatial kernels: periodic (Fourier) and masked autoregressive ("emerging").

Both act on images ``(B, C, H, W)`` and keep the shape. Their log-determinants are exact:

* :class:`FourierConv` — a periodic convolution is diagonalised by the 2-D DFT (the convolution
  theorem :math:`\mathcal F(x * w) = \mathcal F(x)\cdot\mathcal F(w)`), so its Jacobian determinant is the
  product over spatial frequencies of the ``C x C`` kernel-DFT determinants.
* :class:`MaskedConv` — a convolution whose kernel is masked to be autoregressive in raster order has a
  triangular Jacobian (Dinh, "Primer on Normalizing Flows"); its inverse is a sequential
  solve by substitution. :class:`EmergingConv` chains two with opposite orders.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .base import Transform
from .image import _check_image, _image_shape
from .linear import LUMatrix

__all__ = ["EmergingConv", "FourierConv", "MaskedConv", "autoregressive_kernel_mask", "kernel_dft"]


def _kernel_size(k: int) -> int:
    if not isinstance(k, int) or isinstance(k, bool):
        raise TypeError(f"kernel_size must be an int, got {type(k).__name__}")
    if k < 1 or k % 2 == 0:
        raise ValueError(f"kernel_size must be a positive odd number, got {k}")
    return k


# ---------------------------------------------------------------------------------------- Fourier conv
def kernel_dft(kernel: Tensor, height: int, width: int) -> Tensor:
    r"""The 2-D DFT of a centred ``k x k`` kernel of ``C_out x C_in`` matrices on the ``H x W`` torus.

    .. math:: \hat K(u, v) = \sum_{p, q = -r}^{r} K_{p, q}\, e^{-2\pi i (u p / H + v q / W)},
        \qquad r = (k - 1) / 2,

    returned with shape ``(H, W, C_out, C_in)``: the per-frequency matrices of the periodic convolution
    :math:`y_n = \sum_{p} K_p x_{n - p}` (indices mod ``H, W``), for which :math:`\hat y = \hat K \hat x`.
    """
    k = kernel.shape[-1]
    r = k // 2
    offs = torch.arange(-r, r + 1, dtype=kernel.dtype, device=kernel.device)
    fu = torch.arange(height, dtype=kernel.dtype, device=kernel.device)
    fv = torch.arange(width, dtype=kernel.dtype, device=kernel.device)
    ang_u = -2 * math.pi * torch.outer(fu, offs) / height
    ang_v = -2 * math.pi * torch.outer(fv, offs) / width
    eu = torch.polar(torch.ones_like(ang_u), ang_u)
    ev = torch.polar(torch.ones_like(ang_v), ang_v)
    return torch.einsum("oipq,up,vq->uvoi", kernel.to(eu.dtype), eu, ev)


class FourierConv(Transform):
    r"""An invertible periodic ``k x k`` convolution, evaluated and inverted in the Fourier domain.

    The kernel is :math:`K_p = A(\delta_{p,0} I + R_p)` with :math:`A` an LU-parameterised invertible
    matrix (for ``C = 1`` a gain :math:`e^{g}`) and a residual kernel :math:`R` rescaled so that
    :math:`\sum_p \|R_p\|_F \le \rho < 1`. Then for every
    frequency :math:`\hat K(f) = A (I + \hat R(f))` with :math:`\|\hat R(f)\|_2 \le \rho`, so the map is
    invertible for every parameter value. Writing :math:`\hat x = \mathcal F x`,

    .. math:: z = \mathcal F^{-1}\big(\hat K(f)\, \hat x(f)\big), \qquad
        \log|\det J| = \sum_{f} \log|\det \hat K(f)| = H W \log|\det A| + \sum_f \log|\det(I + \hat R(f))|,

    the sum of log-moduli of the kernel's DFT over the :math:`H W` spatial frequencies (for ``C = 1``,
    :math:`\sum_f \log|\hat K(f)|`). The inverse divides (solves) per frequency:
    :math:`x = \mathcal F^{-1}(\hat K(f)^{-1} \hat z(f))`. Because :math:`K` is real, :math:`\hat K(-f) =
    \overline{\hat K(f)}`, so both directions return real tensors (the imaginary round-off is dropped).

    Reference: Hoogeboom, van den Berg & Welling, "Emerging Convolutions for Generative Normalizing Flows",
    ICML 2019 (periodic convolutions, Sec. 3.2); Karami et al., "Invertible Convolutional Flow", NeurIPS 2019.

    Example:
        >>> conv = FourierConv((2, 8, 8), kernel_size=3)
        >>> z, ladj = conv(torch.randn(4, 2, 8, 8))
        >>> x, _ = conv.inverse(z)
    """

    def __init__(
        self, shape: Sequence[int], kernel_size: int = 3, *, rho: float = 0.9, seed: int | None = None
    ) -> None:
        c, h, w = _image_shape(shape)
        k = _kernel_size(kernel_size)
        if k > min(h, w):
            raise ValueError(f"kernel_size {k} exceeds the image size {h}x{w}")
        if not 0.0 < rho < 1.0:
            raise ValueError(f"rho must lie in (0, 1), got {rho}")
        super().__init__((c, h, w))
        self.kernel_size = k
        self.rho = float(rho)
        # channel mixing A: LU-parameterised for C > 1, a positive gain e^g for C = 1
        self.mix = LUMatrix(c, seed=seed) if c > 1 else None
        self.log_gain = nn.Parameter(torch.zeros(())) if c == 1 else None
        self.residual = nn.Parameter(torch.zeros(c, c, k, k))

    def residual_kernel(self) -> Tensor:
        r"""The rescaled residual :math:`R = \rho\, \tilde R / (1 + \sum_p \|\tilde R_p\|_F)`."""
        norms = self.residual.square().sum((0, 1)).add(1e-30).sqrt().sum()
        return self.rho * self.residual / (1.0 + norms)

    def spectrum(self) -> tuple[Tensor, Tensor]:
        r"""``(A, I + R̂)``: the mixing matrix and the per-frequency ``(H, W, C, C)`` residual spectrum."""
        c, h, w = self.event_shape
        rhat = kernel_dft(self.residual_kernel(), h, w)
        eye = torch.eye(c, dtype=rhat.dtype, device=rhat.device)
        return self._mix(), rhat + eye

    def _mix(self, inverse: bool = False) -> Tensor:
        if self.mix is not None:
            return self.mix.inverse_matrix() if inverse else self.mix.matrix()
        return (-self.log_gain if inverse else self.log_gain).exp().view(1, 1)  # type: ignore[operator]

    def _ladj(self, spec: Tensor, batch: int) -> Tensor:
        _, h, w = self.event_shape
        mix_logdet = self.mix.logabsdet() if self.mix is not None else self.log_gain
        logdet = h * w * mix_logdet + torch.linalg.slogdet(spec)[1].sum()
        return logdet.expand(batch)

    def forward(self, x: Tensor, context: Tensor | None = None) -> tuple[Tensor, Tensor]:
        _check_image(x, self.event_shape, "FourierConv input")
        a, spec = self.spectrum()
        xf = torch.fft.fft2(x)  # (B, C, H, W)
        yf = torch.einsum("uvoi,biuv->bouv", spec, xf)
        y = torch.fft.ifft2(yf).real
        return torch.einsum("oc,bchw->bohw", a, y), self._ladj(spec, x.shape[0])

    def inverse(self, z: Tensor, context: Tensor | None = None) -> tuple[Tensor, Tensor]:
        _check_image(z, self.event_shape, "FourierConv.inverse input")
        _, spec = self.spectrum()
        y = torch.einsum("oc,bchw->bohw", self._mix(inverse=True), z)
        yf = torch.fft.fft2(y).permute(2, 3, 1, 0)  # (H, W, C, B)
        xf = torch.linalg.solve(spec, yf).permute(3, 2, 0, 1)
        return torch.fft.ifft2(xf).real, -self._ladj(spec, z.shape[0])

    def extra_repr(self) -> str:
        return f"{super().extra_repr()}, kernel_size={self.kernel_size}, rho={self.rho}"


# ----------------------------------------------------------------------------------- masked conv
def autoregressive_kernel_mask(channels: int, kernel_size: int) -> Tensor:
    r"""The ``(C, C, k, k)`` mask of a raster-order autoregressive convolution (centre diagonal excluded).

    Output ``(o, n)`` may read input ``(i, n + d)`` (cross-correlation offset :math:`d`) when :math:`d`
    precedes 0 in raster order (row above, or same row to the left), or when :math:`d = 0` and
    :math:`i < o`. The centre diagonal :math:`i = o` is parameterised separately.
    """
    k = _kernel_size(kernel_size)
    r = k // 2
    mask = torch.zeros(channels, channels, k, k, dtype=torch.bool)
    mask[:, :, :r, :] = True
    mask[:, :, r, :r] = True
    mask[:, :, r, r] = torch.tril(torch.ones(channels, channels, dtype=torch.bool), -1)
    return mask


class MaskedConv(Transform):
    r"""An invertible autoregressive ``k x k`` convolution (a convolutional autoregressive flow layer).

    .. math:: z_{o, n} = e^{s_o} x_{o, n} + \sum_{(i, d) \prec (o, 0)} W_{o, i, d}\, x_{i, n + d},

    where :math:`\prec` is raster order over positions then channel order (the kernel mask of
    :func:`autoregressive_kernel_mask`), with zero padding. Ordering the scalars by (row, column, channel)
    makes the Jacobian lower-triangular with diagonal :math:`e^{s_o}` at every pixel, hence

    .. math:: \log|\det J| = H W \sum_o s_o.

    The inverse is a sequential forward substitution over pixels in raster order, each solving a ``C x C``
    triangular system — O(H W) sequential steps, like any autoregressive inverse. With ``reverse=True`` the
    order is reversed (the input is flipped in channels, rows and columns around the same layer).

    Reference: Hoogeboom, van den Berg & Welling, "Emerging Convolutions for Generative Normalizing Flows",
    ICML 2019; Song, Meng & Ermon, "MintNet: Building Invertible Neural Networks with Masked
    Convolutions", NeurIPS 2019.

    Example:
        >>> conv = MaskedConv((2, 5, 5), kernel_size=3)
        >>> z, ladj = conv(torch.randn(3, 2, 5, 5))
        >>> x, _ = conv.inverse(z)
    """

    def __init__(self, shape: Sequence[int], kernel_size: int = 3, *, reverse: bool = False) -> None:
        c, h, w = _image_shape(shape)
        k = _kernel_size(kernel_size)
        super().__init__((c, h, w))
        self.kernel_size = k
        self.reverse = bool(reverse)
        self.register_buffer("mask", autoregressive_kernel_mask(c, k))
        self.weight = nn.Parameter(torch.zeros(c, c, k, k))
        self.log_diag = nn.Parameter(torch.zeros(c))

    def _flip(self, x: Tensor) -> Tensor:
        return x.flip(1, 2, 3) if self.reverse else x

    def kernel(self) -> Tensor:
        """The effective kernel: masked weights plus the diagonal :math:`e^{s}` at the centre."""
        r = self.kernel_size // 2
        w = self.weight * self.mask
        centre = torch.zeros_like(w)
        centre[:, :, r, r] = torch.diag(self.log_diag.exp())
        return w + centre

    def _ladj(self, batch: int) -> Tensor:
        _, h, w = self.event_shape
        return (h * w * self.log_diag.sum()).expand(batch)

    def forward(self, x: Tensor, context: Tensor | None = None) -> tuple[Tensor, Tensor]:
        _check_image(x, self.event_shape, "MaskedConv input")
        z = F.conv2d(self._flip(x), self.kernel(), padding=self.kernel_size // 2)
        return self._flip(z), self._ladj(x.shape[0])

    def inverse(self, z: Tensor, context: Tensor | None = None) -> tuple[Tensor, Tensor]:
        _check_image(z, self.event_shape, "MaskedConv.inverse input")
        z = self._flip(z)
        B = z.shape[0]
        c, h, w = self.event_shape
        k, r = self.kernel_size, self.kernel_size // 2
        kern = self.kernel()
        diag_block = kern[:, :, r, r]  # lower-triangular with positive diagonal
        zero = z.new_zeros(B, c)
        vals: dict[tuple[int, int], Tensor] = {}
        for i in range(h):
            for j in range(w):
                patch = torch.stack(
                    [
                        torch.stack([vals.get((i + a - r, j + b - r), zero) for b in range(k)], -1)
                        for a in range(k)
                    ],
                    -2,
                )  # (B, C, k, k); unknown (current/future) pixels are zero, and the mask ignores them
                rhs = z[:, :, i, j] - torch.einsum("oipq,nipq->no", kern, patch)
                sol = torch.linalg.solve_triangular(diag_block, rhs.T, upper=False).T
                vals[(i, j)] = sol
        x = torch.stack([torch.stack([vals[(i, j)] for j in range(w)], -1) for i in range(h)], -2)
        return self._flip(x), -self._ladj(B)

    def extra_repr(self) -> str:
        return f"{super().extra_repr()}, kernel_size={self.kernel_size}, reverse={self.reverse}"


class EmergingConv(Transform):
    r"""The invertible ``k x k`` "emerging" convolution: two masked autoregressive convolutions with
    opposite orders, :math:`z = K_2 \star (K_1 \star x)`.

    Each factor is a :class:`MaskedConv` (triangular Jacobian), so
    :math:`\log|\det J| = H W (\sum_o s^{(1)}_o + \sum_o s^{(2)}_o)`, and the inverse solves the two
    triangular systems by substitution, :math:`x = K_1^{-1}(K_2^{-1} z)`. The composition has a full
    (non-autoregressive) ``(2k-1) x (2k-1)`` receptive field.

    Reference: Hoogeboom, van den Berg & Welling, "Emerging Convolutions for Generative Normalizing Flows",
    ICML 2019.

    Example:
        >>> conv = EmergingConv((2, 6, 6))
        >>> z, ladj = conv(torch.randn(4, 2, 6, 6))
    """

    analytic_inverse = True

    def __init__(self, shape: Sequence[int], kernel_size: int = 3) -> None:
        c, h, w = _image_shape(shape)
        super().__init__((c, h, w))
        self.first = MaskedConv((c, h, w), kernel_size, reverse=False)
        self.second = MaskedConv((c, h, w), kernel_size, reverse=True)

    def forward(self, x: Tensor, context: Tensor | None = None) -> tuple[Tensor, Tensor]:
        y, l1 = self.first(x)
        z, l2 = self.second(y)
        return z, l1 + l2

    def inverse(self, z: Tensor, context: Tensor | None = None) -> tuple[Tensor, Tensor]:
        y, l2 = self.second.inverse(z)
        x, l1 = self.first.inverse(y)
        return x, l1 + l2
