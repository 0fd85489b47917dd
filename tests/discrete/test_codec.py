"""The lossless codec: bit-exact round trips (hypothesis), refusal of bad streams, real code length."""

from __future__ import annotations

import functools
import math

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

pytest.importorskip("constriction")

from pushforward.codec import CodecError, code_length_bits, decode, encode, header_size
from pushforward.data.images import load_digits_images
from pushforward.flows import IDF, DiscreteFlow

SLOW = settings(max_examples=12, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def _perturbed(flow, std: float = 0.05):
    g = torch.Generator().manual_seed(3)
    with torch.no_grad():
        for p in flow.parameters():
            p.add_(std * torch.randn(p.shape, generator=g))
    return flow.eval()


@functools.cache
def _image_model(h: int, w: int):
    torch.manual_seed(0)
    levels = 2 if h % 2 == 0 and w % 2 == 0 else 1
    return _perturbed(IDF((1, h, w), levels=levels, layers=2, hidden=(8,), components=2))


@functools.cache
def _digits_model():
    torch.manual_seed(0)
    return _perturbed(IDF((1, 8, 8), levels=3, layers=2, hidden=(16,), components=3))


@SLOW
@given(
    h=st.integers(1, 6),
    w=st.integers(2, 6),
    n=st.integers(1, 3),
    independent=st.booleans(),
    seed=st.integers(0, 2**31 - 1),
)
def test_roundtrip_random_images_every_size(h, w, n, independent, seed):
    model = _image_model(h, w)
    images = np.random.default_rng(seed).integers(0, 256, (n, h, w), dtype=np.uint8)
    data = encode(model, images, independent=independent)
    back = decode(model, data)
    assert back.dtype == np.uint8 and back.shape == images.shape
    assert np.array_equal(back, images)


@SLOW
@given(n=st.integers(1, 4), dtype=st.sampled_from([np.int16, np.int32, np.int64, np.uint16]))
def test_roundtrip_wide_integer_arrays(n, dtype):
    """Values far outside the coding window go through the escape symbol."""
    model = _image_model(2, 2)
    info = np.iinfo(dtype)
    rng = np.random.default_rng(n)
    arr = rng.integers(max(info.min, -(2**20)), min(info.max, 2**20), (n, 1, 2, 2)).astype(dtype)
    arr.flat[0] = info.max if info.max < 2**30 else 2**30
    assert np.array_equal(decode(model, encode(model, arr)), arr)


def test_roundtrip_real_images_and_code_length():
    """scikit-learn's 8x8 digits: bit-exact; the payload is within a few bytes per item of -log2 P."""
    x, _ = load_digits_images()
    images = x[:40].numpy().astype(np.uint8)
    model = _digits_model()
    for independent in (True, False):
        data = encode(model, images, independent=independent)
        assert np.array_equal(decode(model, data), images)
        ideal = code_length_bits(model, images)
        payload_bits = 8 * (len(data) - header_size(data))
        slack = 64 * (len(images) if independent else 1)
        assert ideal - 1 <= payload_bits <= ideal + slack, (ideal, payload_bits)


def test_categorical_flow_codec_code_length():
    torch.manual_seed(0)
    flow = _perturbed(DiscreteFlow(4, categories=6, layers=2, hidden=(16,)), 1.0)
    rows = flow.sample((300,)).numpy().astype(np.int64)
    data = encode(flow, rows, independent=False)
    assert np.array_equal(decode(flow, data), rows)
    ideal = code_length_bits(flow, rows)
    assert ideal - 1 <= 8 * (len(data) - header_size(data)) <= ideal + 64
    with pytest.raises(ValueError, match="lie in"):
        encode(flow, rows + 6)
    # many highly predictable rows in one shared stream: far fewer bytes than rows
    with torch.no_grad():
        flow.base.logits.zero_().add_(torch.tensor([30.0, 0, 0, 0, 0, 0]))
        for layer in flow.layers:
            for p in layer.conditioner.parameters():
                p.zero_()
    zeros = np.zeros((1500, 4), dtype=np.int64)
    data = encode(flow, zeros, independent=False)
    assert len(data) < 100 and np.array_equal(decode(flow, data), zeros)


def test_refuses_bad_input():
    model = _image_model(2, 2)
    with pytest.raises(ValueError, match="empty"):
        encode(model, np.zeros((0, 2, 2), dtype=np.uint8))
    with pytest.raises(ValueError, match="values per item"):
        encode(model, np.zeros((1, 3, 3), dtype=np.uint8))
    with pytest.raises(ValueError, match="integers"):
        encode(model, np.full((1, 2, 2), 0.5))
    with pytest.raises(TypeError):
        encode(model, [[1, 2], [3, 4]])
    with pytest.raises(TypeError, match="codec takes"):
        from pushforward.flows import RealNVP

        encode(RealNVP(4), np.zeros((1, 4), dtype=np.uint8))
    with pytest.raises(CodecError, match="empty"):
        decode(model, b"")


def _stream():
    model = _image_model(4, 4)
    images = np.random.default_rng(1).integers(0, 256, (2, 4, 4), dtype=np.uint8)
    return model, images, encode(model, images)


def test_refuses_every_truncation():
    model, _, data = _stream()
    for cut in range(len(data)):
        with pytest.raises(CodecError):
            decode(model, data[:cut])


@SLOW
@given(pos=st.integers(0, 10**6), bit=st.integers(0, 7))
def test_refuses_corruption(pos, bit):
    model, _images, data = _stream()
    corrupted = bytearray(data)
    corrupted[pos % len(data)] ^= 1 << bit
    with pytest.raises(CodecError):
        decode(model, bytes(corrupted))


def test_refuses_another_model():
    _model, _, data = _stream()
    other = IDF((1, 4, 4), levels=2, layers=2, hidden=(8,), components=2)
    with pytest.raises(CodecError, match="another model"):
        decode(other, data)
    nudged = _image_model(4, 4)
    state = {k: v.clone() for k, v in nudged.state_dict().items()}
    try:
        with torch.no_grad():
            next(nudged.parameters()).add_(1e-6)
        with pytest.raises(CodecError, match="another model"):
            decode(nudged, data)
    finally:
        nudged.load_state_dict(state)


def test_header_is_small():
    model, images, data = _stream()
    assert header_size(data) <= 20
    assert math.isfinite(code_length_bits(model, images))
