"""The autoregressive discretized-logistic prior and AutoregressiveIDF: an exact pmf, one-pass log_prob
equal to the per-pixel path, sampling, saving, and bit-exact coding."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from pushforward.distributions import AutoregressiveLogisticMixture
from pushforward.flows import DISCRETE_PRESETS, AutoregressiveIDF
from pushforward.io import load, save

from .common import DTYPES, perturb


def _prior(dtype=torch.float64, **kw):
    options = {"components": 2, "hidden": (6, 5), "window": 1, "scale": 4.0, **kw}
    torch.manual_seed(0)
    return perturb(AutoregressiveLogisticMixture((1, 2, 2), **options), 0.3).to(dtype)


@pytest.mark.parametrize("dtype", DTYPES)
def test_pmf_sums_to_one_exhaustively(dtype):
    """1x2x2 image with 4 levels: summing the pmf over a range that holds all but a negligible tail."""
    prior = _prior(dtype)
    k = torch.arange(-14.0, 18.0, dtype=dtype)
    grid = torch.cartesian_prod(k, k, k, k).reshape(-1, 1, 2, 2)
    lp = torch.cat([prior.log_prob(g).detach() for g in grid.split(65536)])
    total = float(torch.logsumexp(lp.double(), 0).exp())
    assert total == pytest.approx(1.0, abs=1e-4 if dtype == torch.float32 else 1e-7)
    # and it is not uniform: the network's context matters
    assert float(lp.max() - lp.min()) > 1.0


@pytest.mark.parametrize("dtype", DTYPES)
def test_one_pass_equals_pixel_by_pixel(dtype):
    prior = perturb(AutoregressiveLogisticMixture((2, 5, 4), components=3, hidden=(8, 8), window=2), 0.2)
    prior = prior.to(dtype)
    z = torch.randint(0, 256, (3, 2, 5, 4)).to(dtype)
    whole = prior.parameters_of(z)
    zp = prior.padded(z)
    tol = 1e-4 if dtype == torch.float32 else 1e-10
    for i in range(5):
        for j in range(4):
            for a, b in zip(whole, prior.pixel_parameters(zp, i, j)):
                torch.testing.assert_close(a[:, :, i, j], b, atol=tol, rtol=tol)
    # a pixel's parameters do not depend on itself or on later pixels
    later = z.clone()
    later[:, :, 2, 1:] += 7
    later[:, :, 3:] += 5
    for a, b in zip(prior.parameters_of(later), whole):
        torch.testing.assert_close(a[:, :, :2], b[:, :, :2])
        torch.testing.assert_close(a[:, :, 2, :2], b[:, :, 2, :2])


def test_sample_integer_and_gradients_reach_every_parameter():
    flow = AutoregressiveIDF((1, 4, 4), layers=2, hidden=(8,), prior_hidden=(8,), window=1, components=2)
    flow = perturb(flow, 0.1)  # the couplings start at the identity (zero last layer)
    x = flow.sample((3,))
    assert x.shape == (3, 1, 4, 4) and bool((x == x.round()).all())
    assert torch.isfinite(flow.log_prob(x)).all()
    x = torch.randint(0, 256, (8, 1, 4, 4)).float()
    flow.log_prob(x).sum().backward()
    for name, p in flow.named_parameters():
        assert p.grad is not None and bool(p.grad.abs().sum() > 0), name


def test_save_load_round_trip(tmp_path):
    flow = perturb(AutoregressiveIDF((1, 4, 4), layers=1, hidden=(8,), prior_hidden=(8,), window=2), 0.1)
    path = tmp_path / "ar.safetensors"
    save(flow, path)
    back = load(path)
    x = torch.randint(0, 256, (4, 1, 4, 4)).float()
    torch.testing.assert_close(back.log_prob(x), flow.log_prob(x))
    assert DISCRETE_PRESETS["ar-idf"] is AutoregressiveIDF


def test_refuses_bad_input():
    flow = AutoregressiveIDF((1, 3, 3), prior_hidden=(4,), window=1)
    with pytest.raises(ValueError, match="non-integer"):
        flow.log_prob(torch.full((1, 1, 3, 3), 0.5))
    with pytest.raises(ValueError):
        flow.log_prob(torch.zeros(1, 1, 3, 4))
    with pytest.raises(ValueError, match="NaN"):
        flow.log_prob(torch.full((1, 1, 3, 3), float("nan")))
    with pytest.raises(ValueError, match="window"):
        AutoregressiveLogisticMixture((1, 3, 3), window=0)
    with pytest.raises(ValueError, match="event_shape"):
        AutoregressiveLogisticMixture((9,))
    with pytest.raises(ValueError):
        flow.base.log_prob(torch.zeros(2, 1, 3, 4))


@pytest.mark.parametrize("layers", [0, 1])
@pytest.mark.parametrize("dtype", DTYPES)
def test_codec_round_trip_and_code_length(layers, dtype):
    pytest.importorskip("constriction")
    from pushforward.codec import code_length_bits, decode, encode, header_size

    torch.manual_seed(layers)
    flow = AutoregressiveIDF((1, 5, 6), layers=layers, hidden=(8,), prior_hidden=(8, 8), window=2)
    flow = perturb(flow, 0.1).to(dtype).eval()
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, (3, 5, 6), dtype=np.uint8)
    images[0] = 0  # a sharply predictable image beside noisy ones
    for independent in (True, False):
        data = encode(flow, images, independent=independent)
        assert np.array_equal(decode(flow, data), images)
    one = encode(flow, images[1:2])
    assert header_size(one) == 8  # format, fingerprint, flags, 2-byte check
    ideal = code_length_bits(flow, images[1:2])
    assert ideal - 1 <= 8 * (len(one) - header_size(one)) <= ideal + 40
    # values far outside the 8-bit range go through the escape symbol
    wide = rng.integers(-(2**20), 2**20, (2, 1, 5, 6)).astype(np.int32)
    assert np.array_equal(decode(flow, encode(flow, wide)), wide)


def test_prior_codes_through_the_package_protocol():
    pytest.importorskip("constriction")
    from pushforward.codec.stream import SymbolCoder

    prior = _prior().eval()
    z = torch.tensor([[[[3.0, -200.0], [1.0, 5000.0]]]])  # two values escape the tables' window
    coder = SymbolCoder()
    with torch.no_grad():
        prior.encode_symbols(coder, 0, z, None)
        back = prior.decode_symbols(SymbolCoder(coder.words()), 0, None)
    assert back.shape == (1, 1, 2, 2) and torch.equal(back, z.double())
    with pytest.raises(ValueError, match="one unconditional chunk"):
        prior.encode_symbols(SymbolCoder(), 1, z, None)
    with pytest.raises(ValueError, match="one unconditional chunk"):
        prior.decode_symbols(SymbolCoder(), 0, z)


def test_codec_refuses_a_continuous_flow_with_an_autoregressive_base():
    pytest.importorskip("constriction")
    from pushforward.codec import encode
    from pushforward.flows import Flow
    from pushforward.transforms import ActNorm

    flow = Flow(ActNorm((1, 2, 2)), _prior())
    encode(AutoregressiveIDF((1, 2, 2), prior_hidden=(4,), window=1), np.zeros((1, 2, 2), np.uint8))
    with pytest.raises(TypeError, match="codec takes"):
        encode(flow, np.zeros((1, 2, 2), np.uint8))
