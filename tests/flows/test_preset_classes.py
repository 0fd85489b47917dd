"""Presets are classes: ``isinstance`` works, ``repr`` shows the options, and every hyperparameter is type- and
range-checked (one shared helper) before anything is built."""

import pytest
import torch

from pushforward.flows import (
    BNAF,
    FFJORD,
    IAF,
    MAF,
    NAF,
    NICE,
    NSF,
    PRESETS,
    AugmentedFlow,
    Flow,
    Glow,
    PlanarFlow,
    Preset,
    RadialFlow,
    RealNVP,
    RealNVPImage,
    ResidualFlow,
    SylvesterFlow,
)

VECTOR = [MAF, IAF, NSF, NAF, BNAF, NICE, RealNVP, ResidualFlow, FFJORD]
UNCONDITIONAL = [PlanarFlow, RadialFlow, SylvesterFlow]
IMAGE = [RealNVPImage, Glow]


def test_presets_map_names_to_classes():
    assert set(PRESETS.values()) == set(VECTOR + UNCONDITIONAL + IMAGE)
    for cls in PRESETS.values():
        assert isinstance(cls, type) and issubclass(cls, Preset) and issubclass(cls, Flow)


@pytest.mark.parametrize("cls", VECTOR + UNCONDITIONAL)
def test_isinstance_and_repr(cls):
    flow = cls(3, layers=2) if cls in UNCONDITIONAL else cls(3, layers=2, hidden=(8,))
    assert isinstance(flow, cls) and isinstance(flow, Flow)
    text = repr(flow)
    assert text.startswith(f"{cls.__name__}(3, ") and "layers=2" in text and "context=0" in text
    assert "\n" not in text
    assert flow.hyperparameters()["layers"] == 2


@pytest.mark.parametrize("cls", IMAGE)
def test_image_presets_are_classes(cls):
    flow = cls((1, 4, 4), hidden=(4,), **({"steps": 1} if cls is Glow else {"layers": 1}))
    assert isinstance(flow, cls)
    assert repr(flow).startswith(f"{cls.__name__}((1, 4, 4), context=0")


def test_existing_calls_keep_working():
    flow = MAF(3, context=2, layers=2, hidden=(8, 8))
    assert flow.log_prob(torch.randn(5, 3), torch.randn(5, 2)).shape == (5,)
    assert repr(flow).startswith("MAF(3, context=2, layers=2, hidden=(8, 8)")
    assert isinstance(NSF(2, layers=2, hidden=(8,), variant="coupling"), NSF)


def test_augmented_ffjord_is_an_augmented_flow():
    flow = FFJORD(2, hidden=(4,), augment=2)
    assert isinstance(flow, AugmentedFlow) and flow.event_shape == (2,)


BAD = [
    ({"hidden": "16"}, TypeError, "hidden"),
    ({"hidden": 16}, TypeError, "hidden"),
    ({"hidden": (0,)}, ValueError, "hidden"),
    ({"hidden": (8, True)}, TypeError, "hidden"),
    ({"hidden": (8.0,)}, TypeError, "hidden"),
    ({"layers": True}, TypeError, "layers"),
    ({"layers": 2.5}, TypeError, "layers"),
    ({"layers": 0}, ValueError, "layers"),
    ({"layers": "3"}, TypeError, "layers"),
    ({"context": -1}, ValueError, "context"),
    ({"context": False}, TypeError, "context"),
]


@pytest.mark.parametrize("cls", VECTOR)
@pytest.mark.parametrize("kwargs, error, name", BAD)
def test_bad_hyperparameters_are_refused(cls, kwargs, error, name):
    with pytest.raises(error, match=rf"{cls.__name__}: {name}"):
        cls(3, **kwargs)


@pytest.mark.parametrize("cls", VECTOR + UNCONDITIONAL)
@pytest.mark.parametrize(
    "features, error", [(True, TypeError), (2.0, TypeError), (0, ValueError), ("3", TypeError)]
)
def test_bad_features_are_refused(cls, features, error):
    with pytest.raises(error, match="features"):
        cls(features)


@pytest.mark.parametrize(
    "cls, kwargs, error",
    [
        (MAF, {"clamp": float("nan")}, ValueError),
        (MAF, {"clamp": -1.0}, ValueError),
        (MAF, {"residual": 1}, TypeError),
        (MAF, {"mixing": "sideways"}, ValueError),
        (MAF, {"activation": 3}, TypeError),
        (NSF, {"bins": 0}, ValueError),
        (NSF, {"bins": 4.0}, TypeError),
        (NSF, {"bound": float("inf")}, ValueError),
        (NSF, {"variant": "both"}, ValueError),
        (NAF, {"units": True}, TypeError),
        (NAF, {"depth": 0}, ValueError),
        (RealNVP, {"batchnorm": "yes"}, TypeError),
        (ResidualFlow, {"coeff": 1.5}, ValueError),
        (ResidualFlow, {"blocks": 2.0}, TypeError),
        (FFJORD, {"augment": -1}, ValueError),
        (FFJORD, {"augment": 1.5}, TypeError),
        (SylvesterFlow, {"reflections": 0}, ValueError),
        (PlanarFlow, {"cheap": "both"}, ValueError),
        (PlanarFlow, {"hidden": "16"}, TypeError),
    ],
)
def test_family_options_are_checked(cls, kwargs, error):
    with pytest.raises(error):
        cls(3, **kwargs)


@pytest.mark.parametrize("cls", IMAGE)
@pytest.mark.parametrize(
    "shape, kwargs, error",
    [
        ((1, 4), {}, TypeError),
        ("144", {}, TypeError),
        ((1, 4, 0), {}, ValueError),
        ((1, 4, 4), {"hidden": "8"}, TypeError),
        ((1, 4, 4), {"context": -2}, ValueError),
        ((1, 4, 4), {"reversible": 1}, TypeError),
    ],
)
def test_image_options_are_checked(cls, shape, kwargs, error):
    with pytest.raises(error):
        cls(shape, **kwargs)
