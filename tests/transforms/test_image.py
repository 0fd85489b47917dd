"""Image transforms: squeeze ordering, masks, 1x1 / Fourier / masked convolutions, multi-scale layout."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from pushforward.transforms import (
    EmergingConv,
    FourierConv,
    InvConv1x1,
    MaskedConv,
    MultiScale,
    Squeeze,
    channel_mask,
    checkerboard_mask,
)
from pushforward.transforms.conv import autoregressive_kernel_mask, kernel_dft

torch.set_num_threads(1)

# The picture of Dinh's "Primer on Normalizing Flows": the 4x4 image whose 2x2 blocks are numbered consecutively
SEED_PICTURE = torch.tensor(
    [[1, 2, 5, 6], [3, 4, 7, 8], [9, 10, 13, 14], [11, 12, 15, 16]], dtype=torch.float64
)


def _perturb(t, scale=0.3, seed=0):
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in t.parameters():
            p.add_(scale * torch.randn(p.shape, generator=g, dtype=p.dtype))
    return t


def test_squeeze_follows_the_seed_picture():
    z, ladj = Squeeze((1, 4, 4))(SEED_PICTURE.view(1, 1, 4, 4))
    assert z.shape == (1, 4, 2, 2) and ladj.item() == 0
    # output position (i, j) carries block (i, j) as channels 0..3, in row-major order inside the block
    assert z[0, :, 0, 0].tolist() == [1, 2, 3, 4]
    assert z[0, :, 0, 1].tolist() == [5, 6, 7, 8]
    assert z[0, :, 1, 0].tolist() == [9, 10, 11, 12]
    assert z[0, :, 1, 1].tolist() == [13, 14, 15, 16]
    assert z[0, 0].tolist() == [[1, 5], [9, 13]]


def test_squeeze_multichannel_layout_and_inverse():
    x = torch.randn(3, 2, 4, 6)
    sq = Squeeze((2, 4, 6))
    z, _ = sq(x)
    assert z.shape == (3, 8, 2, 3)
    for c in range(2):
        for a in range(2):
            for b in range(2):
                torch.testing.assert_close(z[:, 4 * c + 2 * a + b], x[:, c, a::2, b::2], atol=0, rtol=0)
    assert torch.equal(sq.inverse(z)[0], x)


def test_squeeze_bad_input():
    with pytest.raises(ValueError, match="divisible"):
        Squeeze((1, 5, 4))
    with pytest.raises(ValueError, match="image shape"):
        Squeeze((4, 4))
    with pytest.raises(ValueError, match="shape"):
        Squeeze((1, 4, 4))(torch.randn(2, 2, 4, 4))


def test_masks():
    m = checkerboard_mask((2, 3, 3), 0)
    assert m.shape == (2, 3, 3) and m[0, 0, 0] and not m[0, 0, 1] and m[1, 1, 1]
    assert torch.equal(checkerboard_mask((2, 3, 3), 1), ~m)
    c = channel_mask((4, 2, 2))
    assert c[:2].all() and not c[2:].any()
    assert torch.equal(channel_mask((4, 2, 2), first=False), ~c)
    with pytest.raises(ValueError):
        channel_mask((1, 2, 2))
    with pytest.raises(ValueError):
        checkerboard_mask((1, 2, 2), 2)


def test_inv_conv_1x1_logdet_is_hw_logdet():
    t = _perturb(InvConv1x1((3, 4, 5)).double())
    _, ladj = t(torch.randn(2, 3, 4, 5, dtype=torch.float64))
    expected = 20 * torch.linalg.slogdet(t.lu.matrix())[1]
    torch.testing.assert_close(ladj, expected.expand(2))


def test_fourier_conv_is_the_periodic_convolution():
    t = _perturb(FourierConv((2, 5, 6)).double())
    x = torch.randn(3, 2, 5, 6, dtype=torch.float64)
    a, _ = t.spectrum()
    kernel = torch.einsum("oj,jipq->oipq", a, t.residual_kernel())
    kernel[:, :, 1, 1] += a
    # circular convolution y_n = sum_p K_p x_{n-p} == cross-correlation with the flipped kernel
    direct = F.conv2d(F.pad(x, (1, 1, 1, 1), mode="circular"), kernel.flip(2, 3))
    z, ladj = t(x)
    torch.testing.assert_close(z, direct, atol=1e-12, rtol=0)
    # log-det = sum over frequencies of log|det K̂(f)|
    khat = kernel_dft(kernel, 5, 6)
    torch.testing.assert_close(ladj[0], torch.linalg.slogdet(khat)[1].sum())
    assert not z.is_complex() and not t.inverse(z)[0].is_complex()


def test_fourier_conv_single_channel_logdet_is_sum_of_log_moduli():
    t = _perturb(FourierConv((1, 4, 4)).double())
    _, ladj = t(torch.randn(1, 1, 4, 4, dtype=torch.float64))
    a, spec = t.spectrum()
    moduli = (a[0, 0] * spec[..., 0, 0]).abs()
    torch.testing.assert_close(ladj[0], moduli.log().sum())


def test_fourier_conv_stays_invertible_for_wild_parameters():
    t = _perturb(FourierConv((2, 4, 4)).double(), scale=100.0, seed=3)
    x = torch.randn(2, 2, 4, 4, dtype=torch.float64)
    z, ladj = t(x)
    assert torch.isfinite(ladj).all()
    torch.testing.assert_close(t.inverse(z)[0], x, atol=1e-8, rtol=0)
    with pytest.raises(ValueError):
        FourierConv((1, 2, 2), kernel_size=3)
    with pytest.raises(ValueError):
        FourierConv((1, 4, 4), kernel_size=2)


@pytest.mark.parametrize("reverse", [False, True])
def test_masked_conv_is_autoregressive_in_raster_order(reverse):
    t = _perturb(MaskedConv((2, 3, 3), reverse=reverse).double())
    x = torch.randn(2 * 9, dtype=torch.float64)
    J = torch.autograd.functional.jacobian(lambda v: t(v.view(1, 2, 3, 3))[0].reshape(-1), x)
    # order scalars by (row, column, channel) (reversed for reverse=True): J must be lower-triangular
    order = torch.arange(18).view(2, 3, 3).permute(1, 2, 0).reshape(-1)
    if reverse:
        order = order.flip(0)
    Jp = J[order][:, order]
    torch.testing.assert_close(Jp, torch.tril(Jp), atol=0, rtol=0)
    # diagonal e^{s_o}; in the reversed order the channels are visited backwards, which flips them back
    torch.testing.assert_close(Jp.diagonal(), t.log_diag.exp().repeat(9))


def test_masked_and_emerging_conv_inverse_by_substitution():
    t = _perturb(EmergingConv((3, 4, 5)).double())
    x = torch.randn(2, 3, 4, 5, dtype=torch.float64)
    z, ladj = t(x)
    x_rec, ladj_inv = t.inverse(z)
    torch.testing.assert_close(x_rec, x, atol=1e-10, rtol=0)
    torch.testing.assert_close(ladj_inv, -ladj)
    m = autoregressive_kernel_mask(2, 3)
    assert m[:, :, 0].all() and m[:, :, 1, 0].all() and not m[:, :, 1, 2].any() and not m[:, :, 2].any()
    assert m[1, 0, 1, 1] and not m[0, 1, 1, 1] and not m[0, 0, 1, 1]
    with pytest.raises(ValueError):
        MaskedConv((1, 3, 3), kernel_size=4)
    with pytest.raises(TypeError):
        MaskedConv((1, 3, 3), kernel_size=3.0)


def test_multiscale_layout_and_errors():
    ms = MultiScale([Squeeze((1, 4, 4)), Squeeze((2, 2, 2))])
    assert ms.chunk_shapes == [(2, 2, 2), (8, 1, 1)] and ms.latent_shape == (16,)
    x = torch.randn(3, 1, 4, 4)
    z, _ = ms(x)
    sq = x.reshape(3, 1, 2, 2, 2, 2).permute(0, 1, 3, 5, 2, 4).reshape(3, 4, 2, 2)
    torch.testing.assert_close(ms.split_latent(z)[0], sq[:, 2:], atol=0, rtol=0)  # factored-out half
    assert torch.equal(ms.inverse(z)[0], x)
    assert math.prod(ms.split_latent(z)[1].shape[1:]) == 8
    with pytest.raises(ValueError, match="expects"):
        MultiScale([Squeeze((1, 4, 4)), Squeeze((4, 2, 2))])
    with pytest.raises(ValueError):
        MultiScale([Squeeze((1, 4, 4)), Squeeze((2, 2, 2))], factor_out=[4])
    with pytest.raises(TypeError):
        MultiScale([torch.nn.Identity()])  # type: ignore[list-item]
