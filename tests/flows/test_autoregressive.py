"""The MAF, IAF, NSF, NAF and BNAF presets: signature, registry, context, sampling, errors."""

from __future__ import annotations

import pytest
import torch

from pushforward.flows import BNAF, IAF, MAF, NAF, NSF, PRESETS
from pushforward.transformers import RQSTransformer
from pushforward.transforms import Coupling, LULinear, MaskedAutoregressive, Permutation

PRESET_NAMES = ["maf", "iaf", "nsf", "naf", "bnaf"]


def test_presets_registered():
    assert PRESETS["maf"] is MAF and PRESETS["iaf"] is IAF and PRESETS["nsf"] is NSF
    assert PRESETS["naf"] is NAF and PRESETS["bnaf"] is BNAF


@pytest.mark.parametrize("name", PRESET_NAMES)
def test_shared_signature_density_and_sampling(name):
    torch.manual_seed(0)
    flow = PRESETS[name](3, context=2, layers=2, hidden=(8, 8)).double()
    x, c = torch.randn(5, 3, dtype=torch.float64), torch.randn(5, 2, dtype=torch.float64)
    lp = flow.log_prob(x, c)
    assert lp.shape == (5,) and torch.isfinite(lp).all()
    xs, lq = flow.sample_and_log_prob((4,), c)
    assert xs.shape == (4, 5, 3)
    torch.testing.assert_close(flow.log_prob(xs, c), lq, atol=1e-6, rtol=1e-6)


@pytest.mark.parametrize("name", PRESET_NAMES)
def test_unconditional_one_feature(name):
    flow = PRESETS[name](1, layers=2, hidden=(4,)) if name != "nsf" else NSF(1, layers=2, hidden=(4,))
    assert flow.log_prob(torch.randn(3, 1)).shape == (3,)


def test_nsf_variants_and_mixing():
    ar = NSF(4, layers=3, hidden=(8,), bins=5)
    kinds = [type(t) for t in ar.transform]
    assert kinds == [MaskedAutoregressive, LULinear, MaskedAutoregressive, LULinear, MaskedAutoregressive]
    assert ar.transform[0].transformer.bins == 5
    cp = NSF(4, layers=2, hidden=(8,), variant="coupling", mixing="reverse")
    assert [type(t) for t in cp.transform] == [Coupling, Permutation, Coupling]
    assert isinstance(cp.transform[0].transformer, RQSTransformer)
    x = torch.randn(6, 4)
    assert torch.isfinite(cp.log_prob(x)).all()


def test_nsf_lu_mixing_starts_as_the_reversal_so_consecutive_orders_alternate():
    flow = NSF(3, layers=3, hidden=(8,))
    flip = torch.flip(torch.eye(3), dims=[1])
    for mix in (flow.transform[1], flow.transform[3]):
        torch.testing.assert_close(mix.lu.matrix().detach(), flip)
        assert float(mix.lu.logabsdet()) == 0.0
    # the mixing is still learnable: a gradient reaches the triangular factors
    flow.log_prob(torch.randn(16, 3)).mean().backward()
    assert flow.transform[1].lu.lower.grad is not None and flow.transform[1].lu.lower.grad.abs().sum() > 0


def test_nsf_handles_inputs_far_outside_the_interval():
    flow = NSF(2, layers=2, hidden=(8,), bound=3.0)
    x = torch.tensor([[100.0, -200.0], [0.0, 50.0]])
    assert torch.isfinite(flow.log_prob(x)).all()


def test_iaf_samples_in_one_pass_per_layer():
    flow = IAF(5, layers=2, hidden=(8,))
    calls = []
    for t in flow.transform.modules():
        if isinstance(t, MaskedAutoregressive):
            t.conditioner.register_forward_hook(lambda *a: calls.append(1))
    flow.sample((3,))
    assert len(calls) == 2


def test_bad_options_raise():
    with pytest.raises(ValueError, match="variant"):
        NSF(2, variant="diagonal")
    with pytest.raises(ValueError, match="mixing"):
        MAF(2, mixing="shuffle")
    with pytest.raises(ValueError, match="layers"):
        NAF(2, layers=0)
    with pytest.raises(TypeError, match="features"):
        BNAF(2.5)  # type: ignore[arg-type]


def test_presets_take_any_transformer():
    """MAF and RealNVP accept the transformer law; NSF is MAF with a spline (same structure and density)."""
    from pushforward.flows import MAF, NSF, RealNVP
    from pushforward.transformers import AdditiveTransformer, RQSTransformer

    torch.manual_seed(0)
    nsf = NSF(3, layers=2, hidden=(8, 8), bins=5, bound=3.0)
    maf = MAF(3, layers=2, hidden=(8, 8), mixing="lu", transformer=lambda: RQSTransformer(bins=5, bound=3.0))
    maf.load_state_dict(nsf.state_dict())
    x = torch.randn(6, 3)
    torch.testing.assert_close(maf.log_prob(x), nsf.log_prob(x))
    additive = RealNVP(4, layers=2, hidden=(8,), transformer=AdditiveTransformer())
    assert additive.log_prob(torch.randn(5, 4)).shape == (5,)
    with pytest.raises(TypeError, match="Transformer"):
        MAF(2, transformer=torch.nn.Linear(2, 2))
    with pytest.raises(TypeError, match="Transformer"):
        MAF(2, transformer=lambda: torch.nn.Linear(2, 2))


def test_bnaf_refuses_an_improper_density():
    # without the gated residual a BNAF layer has a bounded range: 2-D mass 0.27, sampling raised
    with pytest.raises(ValueError, match="gated"):
        BNAF(2, residual=None)
