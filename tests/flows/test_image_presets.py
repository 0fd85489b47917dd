"""Image presets (RealNVPImage, Glow), the per-scale base, temperature, interpolation, compression."""

from __future__ import annotations

import math

import pytest
import torch

from pushforward.data.images import uniform_dequantize
from pushforward.flows import PRESETS, Glow, RealNVPImage, ScaleNormal
from pushforward.flows.image import (
    conceptual_compression,
    decode,
    encode,
    interpolate,
    interpolation_weights,
    multiscale_of,
    sample,
)
from pushforward.transforms.elementwise import into_open_unit_interval

torch.set_num_threads(1)


def _data(n=6, seed=0):
    g = torch.Generator().manual_seed(seed)
    return 0.05 + 0.9 * torch.rand(n, 1, 8, 8, generator=g)


def test_scale_normal_is_a_product_of_normals():
    base = ScaleNormal([(2, 2, 2), (8, 1, 1)])
    with torch.no_grad():
        for p in base.parameters():
            p.normal_()
    z = torch.randn(5, 16)
    ref = torch.zeros(5)
    for zk, mu, ls in zip(base._chunks(z), base.loc, base.log_scale):
        ref += torch.distributions.Normal(mu, ls.exp()).log_prob(zk).sum((1, 2, 3))
    torch.testing.assert_close(base.log_prob(z), ref)
    # temperature 0: the mean of every chunk
    s = base.rsample((3,), temperature=0.0)
    assert torch.equal(s[:, :8].reshape(3, 2, 2, 2), base.loc[0].expand(3, 2, 2, 2))
    with pytest.raises(ValueError):
        ScaleNormal([(2, 2)])


@pytest.mark.parametrize("name", ["glow", "realnvp_image"])
def test_presets_roundtrip_and_density(name):
    torch.manual_seed(0)
    kw = (
        {"levels": 2, "steps": 2, "hidden": (8,)}
        if name == "glow"
        else {"scales": 2, "layers": 1, "hidden": (8,)}
    )
    flow = PRESETS[name]((1, 8, 8), **kw)
    x = _data()
    flow.train()
    lp = flow.log_prob(x)  # ActNorm initialisation
    flow.eval()
    lp = flow.log_prob(x)
    assert lp.shape == (6,) and torch.isfinite(lp).all()
    z = encode(flow, x)
    assert z.shape == (6, 64)
    torch.testing.assert_close(decode(flow, z), x, atol=1e-5, rtol=0)
    assert multiscale_of(flow).chunk_sizes == [32, 32]


@pytest.mark.parametrize("conv", ["fourier", "emerging"])
def test_glow_conv_variants(conv):
    torch.manual_seed(0)
    flow = Glow((1, 8, 8), levels=2, steps=1, hidden=(8,), conv=conv).eval()
    x = _data(3)
    torch.testing.assert_close(decode(flow, encode(flow, x)), x, atol=1e-5, rtol=0)


def test_class_conditional_presets_use_the_label():
    torch.manual_seed(0)
    for flow in (
        Glow((1, 8, 8), levels=2, steps=1, hidden=(8,), context=3),
        RealNVPImage((1, 8, 8), scales=2, layers=1, hidden=(8,), context=3),
    ):
        with torch.no_grad():
            for p in flow.parameters():
                p.add_(0.05 * torch.randn_like(p))
        flow.eval()
        x = _data(3)
        c0, c1 = torch.eye(3)[[0, 0, 0]], torch.eye(3)[[1, 1, 1]]
        assert not torch.allclose(flow.log_prob(x, c0), flow.log_prob(x, c1))
        s = sample(flow, 4, temperature=0.5, context=torch.eye(3)[2])
        assert s.shape == (4, 1, 8, 8)
        with pytest.raises(ValueError):
            sample(flow, 2)


def test_temperature_zero_decodes_the_base_mean():
    torch.manual_seed(0)
    flow = Glow((1, 8, 8), levels=2, steps=1, hidden=(8,)).eval()
    a, b = sample(flow, 2, temperature=0.0), sample(flow, 2, temperature=0.0)
    assert torch.equal(a, b) and torch.equal(a[0], a[1])
    with pytest.raises(ValueError):
        sample(flow, 2, temperature=-1.0)


def test_interpolation_formula_and_endpoints():
    w = interpolation_weights(3)
    # phi = phi' = 0 -> z1; phi = 0, phi' = pi/2 -> z2; phi = pi/2, phi' = 0 -> z3; both pi/2 -> z4
    torch.testing.assert_close(w[0, 0], torch.tensor([1.0, 0, 0, 0]), atol=1e-7, rtol=0)
    torch.testing.assert_close(w[0, 2], torch.tensor([0, 1.0, 0, 0]), atol=1e-7, rtol=0)
    torch.testing.assert_close(w[2, 0], torch.tensor([0, 0, 1.0, 0]), atol=1e-7, rtol=0)
    torch.testing.assert_close(w[2, 2], torch.tensor([0, 0, 0, 1.0]), atol=1e-7, rtol=0)
    torch.testing.assert_close(w.square().sum(-1), torch.ones(3, 3))  # weights on the unit sphere
    c = math.cos(math.pi / 4) ** 2
    torch.testing.assert_close(w[1, 1], torch.full((4,), c))
    torch.manual_seed(0)
    flow = RealNVPImage((1, 8, 8), scales=2, layers=1, hidden=(8,)).eval()
    x = _data(4)
    strip = interpolate(flow, x[:2], steps=5)
    assert strip.shape == (5, 1, 8, 8)
    torch.testing.assert_close(strip[0], x[0], atol=1e-5, rtol=0)
    torch.testing.assert_close(strip[-1], x[1], atol=1e-5, rtol=0)
    grid = interpolate(flow, x, steps=3)
    assert grid.shape == (3, 3, 1, 8, 8)
    torch.testing.assert_close(grid[2, 2], x[3], atol=1e-5, rtol=0)
    with pytest.raises(ValueError):
        interpolate(flow, x[:3])


def test_conceptual_compression_keeps_coarse_scales():
    torch.manual_seed(0)
    flow = Glow((1, 8, 8), levels=2, steps=1, hidden=(8,)).eval()
    x = _data(1)
    ms = multiscale_of(flow)
    full = conceptual_compression(flow, x, keep=len(ms.chunk_sizes), n=3)
    torch.testing.assert_close(full, x.expand(3, -1, -1, -1), atol=1e-5, rtol=0)
    torch.manual_seed(5)
    part = conceptual_compression(flow, x, keep=1, n=3)
    torch.manual_seed(5)
    fresh = flow.base.rsample((3,))
    fresh[:, 32:] = encode(flow, x)[:, 32:]  # the coarsest chunk (last in the flat latent) is kept
    torch.testing.assert_close(part, decode(flow, fresh), atol=1e-6, rtol=0)
    assert not torch.allclose(part[0], part[1])
    with pytest.raises(ValueError):
        conceptual_compression(flow, x, keep=0)


def test_preset_argument_errors():
    with pytest.raises(ValueError):
        Glow((1, 6, 6), levels=2)
    with pytest.raises(ValueError):
        Glow((1, 8, 8), conv="3x3")
    with pytest.raises(ValueError):
        RealNVPImage((1, 6, 6), scales=3)
    with pytest.raises(ValueError):
        RealNVPImage((1, 8, 8), hidden=(8, 16))


@pytest.mark.parametrize("name", ["glow", "realnvp_image"])
def test_samples_lie_in_the_support(name):
    # the logit margin alpha = 0.05 mapped [0, 1] onto a bounded box: 0.3% of the pixels of untrained
    # samples fell outside [0, 1] and log_prob(sample) raised
    torch.manual_seed(0)
    kw = (
        {"levels": 1, "steps": 1, "hidden": (4,)}
        if name == "glow"
        else {"scales": 1, "layers": 1, "hidden": (4,)}
    )
    flow = PRESETS[name]((1, 4, 4), **kw)
    with torch.no_grad():
        for p in flow.parameters():
            p.add_(0.2 * torch.randn_like(p))
        x = flow.sample((300,))
        assert bool(((x > 0) & (x < 1)).all())
        assert bool(torch.isfinite(flow.log_prob(x)).all())


def test_logit_preprocessing_density_integrates_to_one_on_the_cube():
    # x = sigmoid(t) covers (0, 1)^2; the old margin lost the mass outside its box (0.9968 in 1-D)
    torch.manual_seed(0)
    flow = RealNVPImage((1, 1, 2), scales=1, layers=1, hidden=(4,)).double()
    with torch.no_grad():
        flow.log_prob(torch.rand(64, 1, 1, 2, dtype=torch.float64))  # ActNorm's data-dependent init
        for p in flow.parameters():
            p.add_(0.3 * torch.randn_like(p))
    t = torch.linspace(-30.0, 30.0, 1201, dtype=torch.float64)
    tt, uu = torch.meshgrid(t, t, indexing="ij")
    pts = torch.stack([tt, uu], -1).reshape(-1, 2)
    x = torch.sigmoid(pts)
    jac = (torch.nn.functional.logsigmoid(pts) + torch.nn.functional.logsigmoid(-pts)).sum(-1)
    with torch.no_grad():
        p = (flow.log_prob(x.reshape(-1, 1, 1, 2)) + jac).exp().reshape(t.numel(), t.numel())
    mass = float(torch.trapezoid(torch.trapezoid(p, t, dim=1), t))
    assert abs(mass - 1.0) < 1e-3, mass
    with pytest.raises(ValueError, match="bounded"):
        RealNVPImage((1, 4, 4), logit=0.05)
    with pytest.raises(ValueError, match="bounded"):
        Glow((1, 4, 4), logit=0.05)


def test_dequantized_pixels_stay_in_the_open_cube():
    x = torch.tensor([[0.0, 255.0]]).expand(4096, 2)
    y = uniform_dequantize(x, 256, generator=torch.Generator().manual_seed(0))
    assert bool(((y > 0) & (y < 1)).all())
    edge = into_open_unit_interval(torch.tensor([0.0, 1.0, 0.5]))
    assert 0 < float(edge[0]) and float(edge[1]) < 1 and float(edge[2]) == 0.5
