"""
Variational inference and the normalising constant
==================================================

Sometimes there are no data, only an unnormalised density :math:`\\tilde p(z) = Z\\,p(z)` (a Bayesian
posterior, an energy model). A flow :math:`q` can then be fitted by maximising the evidence lower bound

.. math::

   \\mathrm{ELBO}(q) = \\mathbb{E}_{z \\sim q}\\big[\\log \\tilde p(z) - \\log q(z)\\big]
       = \\log Z - \\mathrm{KL}(q \\,\\|\\, p) \\le \\log Z ,

which needs samples of :math:`q` together with their log-density — one pass of the flow in the sampling
direction with :meth:`~pushforward.flows.core.Flow.sample_and_log_prob`. After fitting, importance sampling
with :math:`q` as the proposal estimates :math:`\\log Z` itself:

.. math::

   \\widehat{\\log Z} = \\log \\frac{1}{n} \\sum_{i=1}^n \\frac{\\tilde p(z_i)}{q(z_i)}, \\qquad z_i \\sim q .

.. note::

   800 optimisation steps here (seconds on one CPU core); the reference experiments use thousands (see
   ``examples/vi_energies.py``).
"""

# %%
# A target with a known constant
# ------------------------------
# The four energies of Rezende & Mohamed ("Variational Inference with Normalizing Flows", ICML 2015) ship
# with :mod:`pushforward.data`, together with their :math:`\log Z` computed by quadrature, so the estimate
# can be checked. We take U2, a sinusoidal ridge.
import matplotlib.pyplot as plt
import torch

from pushforward import expectation, fit_vi
from pushforward.data import ENERGY_LOG_Z, target_log_density
from pushforward.flows import PlanarFlow

torch.manual_seed(0)
torch.set_num_threads(1)
log_p = target_log_density("u2")

# %%
# Fitting
# -------
# :func:`~pushforward.fit_vi` maximises the ELBO with Adam (optionally annealing the target's weight from
# 0 to 1 during the first ``anneal`` steps), then draws ``eval_samples`` fresh samples for the final ELBO,
# the importance-sampled :math:`\log Z`, its standard error and the effective sample size. A planar flow is
# cheap in the sampling direction, which is the only direction VI needs.
flow = PlanarFlow(2, layers=16)
result = fit_vi(flow, log_p, steps=800, samples=256, lr=5e-3, anneal=300, eval_samples=20000, seed=0)
print(f"stopped after {result.steps[-1]} steps ({result.stop_reason}), {result.skipped_batches} skipped")
print(f"final ELBO       {result.extras['final_elbo']:.4f} ± {result.extras['elbo_stderr']:.4f}")
print(f"log Z (IS)       {result.extras['log_z']:.4f} ± {result.extras['log_z_stderr']:.4f}")
print(f"log Z quadrature {ENERGY_LOG_Z['u2']:.4f}")
r = result.extras
print(f"ESS              {r['ess']:.0f} of {r['eval_samples']} draws ({r['ess_fraction']:.0%})")

# %%
# The ELBO lies below :math:`\log Z` by :math:`\mathrm{KL}(q\|p)`; the importance-sampled estimate removes
# most of that gap. A low effective-sample-size fraction warns that :math:`q` misses part of the target and
# that the estimate (and its standard error) should not be trusted.
fig, axes = plt.subplots(1, 3, figsize=(10, 3))
grid = torch.linspace(-4, 4, 200)
zz = torch.stack(torch.meshgrid(grid, grid, indexing="xy"), -1)
with torch.no_grad():
    axes[0].imshow(log_p(zz).exp(), extent=(-4, 4, -4, 4), origin="lower", cmap="magma")
    axes[1].imshow(
        flow.log_prob(zz.reshape(-1, 2)).exp().reshape(200, 200),
        extent=(-4, 4, -4, 4),
        origin="lower",
        cmap="magma",
    )
axes[0].set_title("target exp(-U2)")
axes[1].set_title("fitted flow q")
axes[2].plot(result.extras["elbo"], lw=0.5)
axes[2].axhline(ENERGY_LOG_Z["u2"], color="k", ls="--", label="log Z")
axes[2].set_ylim(ENERGY_LOG_Z["u2"] - 3, ENERGY_LOG_Z["u2"] + 0.5)
axes[2].set_xlabel("step")
axes[2].set_title("minibatch ELBO")
axes[2].legend()
fig.tight_layout()

# %%
# Expectations under the target
# -----------------------------
# :func:`~pushforward.expectation` estimates :math:`\mathbb{E}_p[h(z)]` with the flow, by plain Monte Carlo
# under :math:`q` or by self-normalised importance sampling (which corrects for the mismatch between
# :math:`q` and :math:`p`), and reports a standard error.
second_moment = lambda z: z.pow(2).sum(-1)  # noqa: E731
with torch.no_grad():
    plain, plain_se, _ = expectation(second_moment, flow, 20000)
    snis, snis_se, ess = expectation(second_moment, flow, 20000, log_p)
print(f"E|z|^2 under q (plain Monte Carlo):         {float(plain):.3f} ± {float(plain_se):.3f}")
print(f"E|z|^2 under p (self-normalised importance): {float(snis):.3f} ± {float(snis_se):.3f}, ESS {ess:.0f}")
