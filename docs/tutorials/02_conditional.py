"""
Conditional densities and posterior estimation
==============================================

A conditional flow models :math:`p(\\theta \\mid x)`: every transform's conditioner also sees a context
vector :math:`x`, and the change of variables holds for each fixed :math:`x`,

.. math::

   \\log p(\\theta \\mid x) = \\log p_Z\\big(f(\\theta; x)\\big)
       + \\log\\left|\\det \\frac{\\partial f(\\theta; x)}{\\partial \\theta}\\right| .

Fitting it by maximum likelihood on pairs :math:`(\\theta_i, x_i)` drawn from a joint distribution gives,
for any new :math:`x`, a density *and* a sampler of :math:`\\theta` given :math:`x`. When the pairs come from
a prior and a simulator, that conditional is the Bayesian posterior: this is neural posterior estimation.

.. note::

   The training budget here is about a thousand steps (well under a minute on one CPU core); a real posterior
   would be trained on more simulations and for longer, with a validation set for early stopping.
"""

# %%
# A simulator with a two-mode posterior
# -------------------------------------
# Parameters :math:`\theta \in [-2, 2]^2` with a uniform prior; the simulator observes the sum and the
# absolute difference of the two parameters, with Gaussian noise of standard deviation 0.3:
#
# .. math:: x = \big(\theta_1 + \theta_2,\ |\theta_1 - \theta_2|\big) + 0.3\,\varepsilon .
#
# Swapping :math:`\theta_1` and :math:`\theta_2` gives the same observation, so every posterior has two
# symmetric modes — a shape a Gaussian approximation would miss.
import math

import matplotlib.pyplot as plt
import torch

from pushforward import fit
from pushforward.distributions import BoxUniform
from pushforward.flows import MAF

torch.manual_seed(0)
torch.set_num_threads(1)

prior = BoxUniform(-2 * torch.ones(2), 2 * torch.ones(2))


def simulate(theta: torch.Tensor) -> torch.Tensor:
    clean = torch.stack([theta[:, 0] + theta[:, 1], (theta[:, 0] - theta[:, 1]).abs()], -1)
    return clean + 0.3 * torch.randn_like(clean)


theta = prior.sample((20000,))
x = simulate(theta)
print(theta.shape, x.shape)

# %%
# A conditional flow, trained with ``fit``
# ----------------------------------------
# Every preset takes ``context=`` (the size of the conditioning vector). :func:`~pushforward.fit` accepts a
# ``(data, context)`` tuple; here the data are the parameters and the context is the observation.
flow = MAF(2, context=2, layers=5, hidden=(64, 64))
history = fit(
    flow,
    (theta[:18000], x[:18000]),
    (theta[18000:], x[18000:]),
    steps=1000,
    lr=3e-3,
    batch_size=256,
    progress=False,
)
print(
    f"validation NLL {history.best_val_loss:.3f} nats after {history.steps[-1]} steps "
    f"({history.seconds:.0f} s)"
)

# %%
# Densities and samples given an observation
# ------------------------------------------
# ``log_prob(theta, context)`` evaluates the conditional density; ``sample((n,), context=x_o)`` draws from it
# for one observation ``x_o`` (a single context vector is broadcast over the samples). We compare with the
# exact posterior, computed on a grid from the known likelihood and prior.
x_o = torch.tensor([0.5, 1.5])
grid = torch.linspace(-2, 2, 121)
tt = torch.stack(torch.meshgrid(grid, grid, indexing="xy"), -1).reshape(-1, 2)
with torch.no_grad():
    log_q = flow.log_prob(tt, x_o.expand(len(tt), 2))
    clean = torch.stack([tt[:, 0] + tt[:, 1], (tt[:, 0] - tt[:, 1]).abs()], -1)
    log_post = -0.5 * ((clean - x_o) / 0.3).pow(2).sum(-1)  # flat prior: likelihood up to a constant
    cell = (grid[1] - grid[0]) ** 2
    log_post = log_post - torch.logsumexp(log_post, 0) - math.log(cell)
    samples = flow.sample((2000,), context=x_o)

fig, axes = plt.subplots(1, 3, figsize=(9, 3), sharex=True, sharey=True)
for ax, values, title in [(axes[0], log_post, "exact posterior"), (axes[1], log_q, "flow density")]:
    ax.imshow(values.exp().reshape(121, 121), extent=(-2, 2, -2, 2), origin="lower", cmap="magma")
    ax.set_title(title)
axes[2].scatter(*samples.T, s=1, alpha=0.3)
axes[2].set_title("flow samples")
axes[2].set_xlim(-2, 2)
axes[2].set_ylim(-2, 2)
for ax in axes:
    ax.set_xlabel(r"$\theta_1$")
axes[0].set_ylabel(r"$\theta_2$")
fig.tight_layout()

# %%
# The flow is *amortised*: one trained network gives the posterior of every observation, with no retraining.
# How close it is can be measured as the forward KL divergence from the exact posterior on the grid:
with torch.no_grad():
    p = log_post.exp() * cell
    kl = float((p * (log_post - log_q)).sum())
print(f"KL(exact posterior || flow) ≈ {kl:.3f} nats for x_o = {x_o.tolist()}")

# %%
# Neural posterior estimation
# ---------------------------
# What we did by hand is neural posterior estimation (NPE; Papamakarios & Murray, "Fast ε-free inference of
# simulation models with Bayesian conditional density estimation", NeurIPS 2016): draw parameters from the
# prior, simulate, and fit a conditional flow :math:`q(\theta \mid x)` by maximum likelihood. Since the
# expected negative log-likelihood is :math:`\mathbb{E}_{x}\,\mathrm{KL}\big(p(\theta \mid x)\,\|\,
# q(\theta \mid x)\big)` plus a constant, the fit converges to the posterior for every :math:`x` the simulator
# can produce. Two practical points the steps above leave to you: observations with many dimensions need an
# embedding network before the flow, and a posterior should be checked for calibration (for instance with
# simulation-based calibration: the rank of the true parameter among posterior draws is uniform).
#
# :func:`pushforward.sbi.NPE` packages these steps, with what a real posterior needs on top: z-scoring of
# :math:`\theta` and :math:`x`, a bijection onto a bounded prior's support (so no sample leaves it and no
# rejection loop is needed), a validation split with early stopping, a choice between a spline flow and an
# affine MAF by their validation loss (a Gaussian-like posterior is fitted better by the simpler flow, a
# curved or multimodal one by the spline flow), and embedding networks for image-like or set-valued
# observations (:mod:`pushforward.nets.embedding`)::
#
#     from pushforward.sbi import NPE, sbc_ranks, expected_coverage, plot_calibration
#
#     posterior = NPE(prior, seed=0).fit(theta, x)    # any torch.distributions prior, e.g. a box uniform
#     draws = posterior.sample((1000,), x_o)          # (1000, d), all inside the prior's support
#     log_q = posterior.log_prob(draws, context=x_o)  # exact log-density of the amortised posterior
#     theta_map = posterior.map(x_o)
#     pushforward.io.save(posterior, "posterior.safetensors")  # one file: flow, support, z-scoring, embedding
#
# The posterior is a :class:`~pushforward.Flow` like the one above, whose chain starts with the map of the
# prior's support and the z-scoring of :math:`\theta`, and whose context (the observation) is z-scored and
# embedded before the flow sees it; it follows the same calling convention (a batch of ``B`` observations
# gives ``(n, B, d)`` samples), and its file works on the command line:
# ``pushforward sample posterior.safetensors -n 1000 --context observations.csv`` draws 1,000 parameter
# vectors per observation row, ``pushforward score posterior.safetensors theta.csv --context observations.csv``
# scores them. :func:`pushforward.sbi.FMPE` trains a continuous flow by flow matching instead of maximum
# likelihood and returns the same kind of posterior. ``examples/npe_two_moons.py`` runs the whole workflow,
# calibration plots included, and ``benchmarks/sbi.py`` scores both against reference posteriors.
