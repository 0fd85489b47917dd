"""
Flows on the sphere, the simplex and positive-definite matrices
===============================================================

Directions, probability vectors and covariance matrices do not fill :math:`\\mathbb{R}^D`. A flow for them
maps a base distribution *on the same set* through bijections of that set, and the density is taken with
respect to the set's own volume (surface area on the sphere, area on the simplex, Lebesgue measure on the
distinct entries of a symmetric matrix). For an embedded manifold the Jacobian determinant is replaced by
the *volume ratio* :math:`\\sqrt{\\det(J^\\top J)}` of the map between tangent spaces (see
:mod:`pushforward.manifolds`).

.. note::

   Each fit below runs a few hundred steps (seconds on one CPU core); ``examples/sphere_vmf.py``,
   ``examples/calibration.py`` and ``examples/wishart.py`` run the same models for longer.
"""

# %%
# The sphere
# ----------
# Target: a mixture of four von Mises–Fisher distributions on :math:`S^2`. Flow: normalised affine maps
# :math:`x \mapsto (Ax + b)/\|Ax + b\|` (bijections of the sphere with a closed-form volume ratio) on a
# learnable von Mises–Fisher base. The uniform density on :math:`S^2` has NLL :math:`\log 4\pi \approx 2.531`.
import math

import matplotlib.pyplot as plt
import torch

from pushforward import Flow, fit
from pushforward.distributions import Dirichlet, StandardNormal, VonMisesFisher, VonMisesFisherMixture
from pushforward.train.fit import evaluate_nll
from pushforward.transforms import (
    AffineCoupling,
    CholeskyProduct,
    Compose,
    GeneralizedCalibration,
    LULinear,
    NormalizedAffine,
    NormalizedTranslation,
    half_mask,
)
from pushforward.transforms.matrix import symmetric_from_vech, vech

torch.manual_seed(0)
torch.set_num_threads(1)

locs = torch.tensor([[1.0, 0.0, 0.0], [-0.5, 0.8, 0.3], [0.0, -0.6, 0.8], [-0.3, -0.3, -0.9]])
target = VonMisesFisherMixture(locs, [15.0, 25.0, 10.0, 20.0], [0.3, 0.2, 0.3, 0.2])
train, test = target.sample((8000,)), target.sample((2000,))

layers = []
for k in range(4):
    layers += [NormalizedAffine(3, init="orthogonal", seed=k), NormalizedTranslation(3)]
sphere_flow = Flow(Compose(layers), VonMisesFisher([0.0, 0.0, 1.0], 1.0, learnable=True))
with torch.no_grad():  # break the symmetry of the zero-initialised translations
    for layer in sphere_flow.transform:
        layer.raw_shift.normal_(0.0, 0.3)
fit(sphere_flow, train, steps=400, batch_size=512, lr=5e-3, progress=False, seed=0)
with torch.no_grad():
    print(
        f"test NLL: uniform {math.log(4 * math.pi):.3f}, flow {evaluate_nll(sphere_flow, test):.3f}, "
        f"target's entropy {float(-target.log_prob(test).mean()):.3f} nats"
    )
    samples = sphere_flow.sample((3000,))
print(f"samples stay on the sphere: max | |x| - 1 | = {float((samples.norm(dim=-1) - 1).abs().max()):.1e}")


def lon_lat(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    return torch.atan2(x[:, 1], x[:, 0]), torch.asin(x[:, 2].clamp(-1, 1))


fig, axes = plt.subplots(1, 2, figsize=(9, 2.8), sharey=True)
for ax, pts, title in [(axes[0], test, "target"), (axes[1], samples[:2000], "flow samples")]:
    ax.scatter(*lon_lat(pts), s=1, alpha=0.4)
    ax.set_title(title)
    ax.set_xlabel("longitude")
axes[0].set_ylabel("latitude")
fig.tight_layout()

# %%
# The simplex
# -----------
# Probability vectors :math:`p \in \Delta^{K-1}`. The generalised calibration transform
# :math:`p \mapsto \mathrm{softmax}(A \log p + c)` is a bijection of the open simplex; on a Dirichlet base it
# gives a flexible density with respect to the simplex's area. The data here are logistic-normal vectors,
# which a single Dirichlet fits poorly.
mean = torch.tensor([1.0, 0.0, -1.0])
cov = torch.tensor([[0.6, 0.4, 0.0], [0.4, 0.6, 0.0], [0.0, 0.0, 0.2]])
logits = torch.distributions.MultivariateNormal(mean, cov).sample((6000,))
probs = torch.softmax(logits.double(), -1).clamp_min(1e-9)
probs = probs / probs.sum(-1, keepdim=True)
p_train, p_test = probs[:5000], probs[5000:]

simplex_flow = Flow(GeneralizedCalibration(3), Dirichlet([1.0] * 3, learnable=True)).double()
before = evaluate_nll(simplex_flow, p_test)
fit(simplex_flow, p_train, steps=300, batch_size=500, lr=2e-2, progress=False, seed=0)
print(
    f"simplex: test NLL {before:.3f} (initial) -> {evaluate_nll(simplex_flow, p_test):.3f} nats (area measure)"
)

# %%
# Positive-definite matrices
# --------------------------
# A symmetric positive-definite :math:`\Sigma` is stored as its distinct entries ``vech(Σ)``. The
# Cholesky-product flow maps an unconstrained vector to :math:`L L^\top` with a positive (exponentiated)
# diagonal; its inverse takes matrices to :math:`\mathbb{R}^{D(D+1)/2}`, where ordinary layers can follow.
# Data: Wishart samples, whose exact density lets us check the flow point by point.
D, m = 2, 3
scale = torch.tensor([[0.5, 0.2], [0.2, 0.4]], dtype=torch.float64)
wishart = torch.distributions.Wishart(df=torch.tensor(5.0, dtype=torch.float64), covariance_matrix=scale)


def wishart_sample(n: int) -> torch.Tensor:
    """Σ = C G Gᵀ Cᵀ with C the Cholesky factor of the scale and G a D x df standard normal matrix."""
    c = torch.linalg.cholesky(scale)
    a = c @ torch.randn(n, D, 5, dtype=torch.float64)
    return vech(a @ a.transpose(-1, -2))


w_train, w_test = wishart_sample(8000), wishart_sample(2000)
mask = half_mask(m)
psd_layers = [CholeskyProduct(D).inv]
for k in range(3):
    psd_layers += [LULinear(m, seed=k), AffineCoupling(mask if k % 2 == 0 else ~mask, hidden=(32, 32))]
psd_flow = Flow(Compose(psd_layers), StandardNormal(m)).double()
fit(psd_flow, w_train, steps=400, batch_size=256, lr=3e-3, progress=False, seed=0)
with torch.no_grad():
    exact = wishart.log_prob(symmetric_from_vech(w_test, D))
    print(
        f"PSD: test NLL flow {evaluate_nll(psd_flow, w_test):.3f}, exact Wishart {float(-exact.mean()):.3f} nats"
    )
    eig = torch.linalg.eigvalsh(symmetric_from_vech(psd_flow.sample((2000,)), D))
print(
    f"smallest eigenvalue of 2000 flow samples: {float(eig.min()):.2e} (all positive: {bool((eig > 0).all())})"
)
