"""Bits-back coding of dequantized continuous flows: bit-exact round trips, the promised code length, and
refusals (unsupported layers, another model, corrupted streams, bad pixels)."""

from __future__ import annotations

import functools

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

pytest.importorskip("constriction")

from pushforward.codec import CodecError, code_length_bits, decode, encode, header_size
from pushforward.codec.bitsback import PRECISION, initial_words
from pushforward.data.images import load_digits_images
from pushforward.flows import Glow, RealNVPImage
from pushforward.flows.dequantization import DequantizedFlow, VariationalDequantizer
from pushforward.train.images import fit_images


def _perturbed(model, std: float = 0.05, seed: int = 3):
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(std * torch.randn(p.shape, generator=g, dtype=p.dtype))
    return model.eval()


@functools.cache
def _model(kind: str, variational: bool, levels: int, dtype: torch.dtype = torch.float32):
    torch.manual_seed(0)
    shape = (2, 4, 4) if levels < 256 else (1, 4, 4)
    if kind == "glow":
        flow = Glow(shape, levels=1, steps=2, hidden=(8,))
    else:
        flow = RealNVPImage(shape, scales=2, layers=1, hidden=(8,))
    deq = VariationalDequantizer(shape, levels, layers=2, hidden=8) if variational else None
    return _perturbed(DequantizedFlow(flow, levels=levels, dequantizer=deq).to(dtype))


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("kind", ["glow", "realnvp"])
@pytest.mark.parametrize("variational", [False, True])
@pytest.mark.parametrize("levels", [17, 256])
def test_roundtrip_bit_exact(kind, variational, levels, dtype):
    model = _model(kind, variational, levels, dtype)
    rng = np.random.default_rng(levels)
    images = rng.integers(0, levels, (4, *model.event_shape), dtype=np.uint8)
    images[0] = 0  # the end cells of the logit
    images[1] = levels - 1
    for independent in (True, False):
        data = encode(model, images, independent=independent)
        back = decode(model, data)
        assert back.dtype == np.uint8 and np.array_equal(back, images)
        assert np.array_equal(decode(model, data), images)  # every time


@settings(max_examples=10, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(n=st.integers(1, 3), seed=st.integers(0, 2**31 - 1), independent=st.booleans())
def test_roundtrip_random_images_property(n, seed, independent):
    model = _model("glow", True, 256)
    images = np.random.default_rng(seed).integers(0, 256, (n, 1, 4, 4)).astype(np.int32)
    assert np.array_equal(decode(model, encode(model, images, independent=independent)), images)


@functools.cache
def _trained():
    """A small Glow with a variational dequantizer fitted for a few seconds to scikit-learn's 8x8 digits."""
    torch.manual_seed(0)
    x, _ = load_digits_images()
    deq = VariationalDequantizer((1, 8, 8), 17, layers=2, hidden=8)
    model = DequantizedFlow(Glow((1, 8, 8), levels=1, steps=2, hidden=(16,)), levels=17, dequantizer=deq)
    fit_images(model, x[:1000], steps=150, batch_size=64, lr=3e-3)
    return model.eval(), x[1000:1100].numpy().astype(np.uint8)


def test_chain_code_length_matches_bits_per_dim():
    """In a chain the real bits per pixel (but for the image that pays the initial bits: the last, pushed
    first) come within a few percent of the model's bits-back estimate; one image alone pays the initial
    bits (tens of bits per pixel: the noise and the layers pop before the base pushes), yet stores far
    fewer bytes than the initial bits themselves."""
    model, images = _trained()
    pixels, n = images[0].size, len(images)
    chain = encode(model, images, independent=False)
    last = encode(model, images[-1:], independent=False)
    real = 8 * (len(chain) - len(last)) / (pixels * (n - 1))
    torch.manual_seed(0)
    ideal = np.mean([code_length_bits(model, images[:-1]) / (pixels * (n - 1)) for _ in range(8)])
    assert abs(real / ideal - 1) < 0.05, (real, ideal)
    alone = 8 * (len(last) - header_size(last)) / pixels
    assert ideal + PRECISION < alone < ideal + 4 * PRECISION
    assert len(last) < len(initial_words(model))


def test_refusals():
    model = _model("glow", True, 256)
    images = np.zeros((1, 1, 4, 4), dtype=np.uint8)
    data = encode(model, images)
    with pytest.raises(CodecError, match="another model"):
        decode(_model("realnvp", True, 256), data)
    corrupted = bytearray(data)
    corrupted[len(corrupted) // 2] ^= 0x40
    with pytest.raises(CodecError):
        decode(model, bytes(corrupted))
    # format 2: the last payload runs to the check, so a cut payload is refused by the decoder or the check
    with pytest.raises(CodecError, match=r"corrupted|truncated"):
        decode(model, data[:-7])
    with pytest.raises(CodecError, match="truncated"):
        decode(model, data[:7])
    with pytest.raises(ValueError, match="pixel values"):
        encode(_model("glow", True, 17), np.full((1, 2, 4, 4), 17, dtype=np.uint8))
    with pytest.raises(TypeError, match="FourierConv"):
        encode(DequantizedFlow(Glow((1, 4, 4), levels=1, steps=1, hidden=(8,), conv="fourier")), images)
    with pytest.raises(TypeError, match="unconditional"):
        encode(DequantizedFlow(Glow((1, 4, 4), levels=1, steps=1, hidden=(8,), context=2)), images)


def test_model_file_round_trip_decodes_the_same_stream(tmp_path):
    """A saved and reloaded DequantizedFlow (256 pixel levels: not a block count) decodes the original's
    stream: same fingerprint, same tables."""
    from pushforward.io import load, save

    model = _model("realnvp", True, 256)
    images = np.random.default_rng(1).integers(0, 256, (2, 1, 4, 4), dtype=np.uint8)
    data = encode(model, images, independent=False)
    save(model, tmp_path / "m.safetensors")
    assert np.array_equal(decode(load(tmp_path / "m.safetensors"), data), images)
