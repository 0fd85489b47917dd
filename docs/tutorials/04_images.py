"""
Image flows: Glow on handwritten digits
=======================================

Image flows keep the spatial structure: they squeeze :math:`2\\times2` blocks of pixels into channels, mix
channels with invertible :math:`1\\times1` convolutions, couple half of the channels to the other half with a
convolutional network, and factor out half of the channels at every scale (Kingma & Dhariwal, "Glow",
NeurIPS 2018). This tutorial trains a small :func:`~pushforward.flows.Glow` on scikit-learn's 8x8 digits,
reports bits per dimension, draws samples and interpolates between digits.

.. note::

   The budget is 300 training steps (well under a minute on one CPU core), far too few for good samples:
   expect blurry digits. ``examples/images.py --budget 600`` trains a class-conditional model for ten
   minutes and gives recognisable ones.
"""

# %%
# Pixels are discrete
# -------------------
# The digits have 17 grey levels (0..16). A density on :math:`[0,1)^D` becomes a model of discrete pixels
# through *dequantization*: add uniform noise :math:`u \in [0,1)^D` to the integer image :math:`k` and
# rescale, :math:`y = (k + u)/L`. Jensen's inequality then bounds the probability of the discrete image,
#
# .. math:: \log P(k) \ge \mathbb{E}_u\big[\log p(y)\big] - D \log L ,
#
# and bits per dimension is the negative bound divided by :math:`D \log 2` (Theis, van den Oord & Bethge,
# 2016). A model that ignores the image gets :math:`\log_2 17 \approx 4.09` bits/dim.
import math

import matplotlib.pyplot as plt
import torch

from pushforward.data.images import load_digits_images
from pushforward.flows import Glow
from pushforward.flows.dequantization import DequantizedFlow
from pushforward.flows.image import interpolate, sample
from pushforward.train.images import fit_images

torch.manual_seed(0)
torch.set_num_threads(1)
LEVELS = 17

x, labels = load_digits_images()
perm = torch.randperm(len(x), generator=torch.Generator().manual_seed(0))
x_train, x_test = x[perm[:1500]], x[perm[1500:]]
print(
    f"train {tuple(x_train.shape)}, test {tuple(x_test.shape)}, uniform model: {math.log2(LEVELS):.3f} bits/dim"
)

# %%
# A small Glow
# ------------
# Two scales of two steps each, with 32-channel conditioners.
# :class:`~pushforward.flows.dequantization.DequantizedFlow` adds the dequantization and the bits/dim bound;
# :func:`~pushforward.train.images.fit_images` minimises it.
flow = Glow((1, 8, 8), levels=2, steps=2, hidden=(32,))
model = DequantizedFlow(flow, LEVELS)
with torch.no_grad():
    model.train()
    model.bits_per_dim(x_train[:256])  # the first batch initialises ActNorm (data-dependent init)
print(f"test bits/dim before training: {model.evaluate(x_test):.3f}")
hist = fit_images(model, x_train, steps=300, batch_size=64, lr=2e-3)
print(f"test bits/dim after {hist.steps[-1]} steps ({hist.seconds:.0f} s): {model.evaluate(x_test):.3f}")

# %%
# Samples
# -------
# :func:`~pushforward.flows.image.sample` draws from the base distribution (optionally at a *temperature*
# below 1, which trades diversity for cleaner samples, as in the Glow paper) and runs the flow backwards.
flow.eval()
with torch.no_grad():
    samples = {t: sample(flow, 8, temperature=t).clamp(0, 1) for t in (1.0, 0.7)}
fig, axes = plt.subplots(2, 8, figsize=(8, 2.3))
for row, (t, imgs) in enumerate(samples.items()):
    for col in range(8):
        axes[row, col].imshow(imgs[col, 0], cmap="gray_r", vmin=0, vmax=1)
        axes[row, col].axis("off")
    axes[row, 0].set_title(f"T = {t}", fontsize=8, loc="left")
fig.tight_layout()

# %%
# Interpolation in latent space
# -----------------------------
# Encode two test digits, move between their latents along
# :math:`z(\varphi) = \cos\varphi\, z_1 + \sin\varphi\, z_2` (which keeps the norm of Gaussian latents
# typical, unlike a straight line), and decode every point.
to_unit = lambda k: (k + 0.5) / LEVELS  # noqa: E731 - pixel centres in [0, 1)
with torch.no_grad():
    strip = interpolate(flow, to_unit(x_test[:2]), steps=8).clamp(0, 1)
fig, axes = plt.subplots(1, strip.shape[0], figsize=(8, 1.2))
for ax, img in zip(axes, strip):
    ax.imshow(img[0], cmap="gray_r", vmin=0, vmax=1)
    ax.axis("off")
fig.tight_layout()

# %%
# Class-conditional models take a one-hot label as ``context`` (``Glow(..., context=10)``), and
# :func:`~pushforward.flows.image.conceptual_compression` resamples the fine scales while keeping the coarse
# latent of an image. With ``reversible=True`` the steps are trained with reversible backpropagation, which
# recomputes activations instead of storing them (:class:`~pushforward.transforms.ReversibleCompose`).
