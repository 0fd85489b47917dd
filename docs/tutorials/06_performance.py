"""
Performance: what is fast, and how to measure it
================================================

The cost of a flow depends on the direction you run it in. Density evaluation (``log_prob``, training by
maximum likelihood) runs ``forward`` (data → latent); sampling runs ``inverse``. Coupling layers are one
network pass in both directions. Masked autoregressive layers (MAF) are one pass for the density but
:math:`D` sequential passes for sampling; inverse autoregressive layers (IAF) are the opposite. Residual
and continuous flows solve an equation or an ODE in one direction, and their log-determinant is estimated.
The table in :doc:`/choosing` summarises this.

This page times a few flows *on the machine that built the documentation*. Those numbers show the ratios
between directions and families, not absolute speed: the documentation build runs on a small shared CPU.
For real comparisons use the benchmark scripts described at the end, on an idle machine.
"""

# %%
# Timing one operation
# --------------------
# ``torch.utils.benchmark`` handles warm-up and repetition. On a quiet machine report the median; on a
# busy one (like the machine that built this page) the fastest run is the least disturbed. Pin the number of
# threads: the default uses every core, and timings then depend on what else runs on the machine.
import torch
import torch.utils.benchmark as benchmark

from pushforward.flows import IAF, MAF, NSF, RealNVP

torch.manual_seed(0)
torch.set_num_threads(1)
D, BATCH = 16, 256


def best_ms(fn) -> float:
    """Fastest of several timed blocks, in milliseconds (the minimum is the least disturbed by other load)."""
    timer = benchmark.Timer(stmt="fn()", globals={"fn": fn}, num_threads=1)
    return min(timer.blocked_autorange(min_run_time=0.3).times) * 1e3


x = torch.randn(BATCH, D)
rows = []
for name, flow in [
    ("RealNVP (coupling)", RealNVP(D, layers=4, hidden=(64, 64))),
    ("MAF (autoregressive)", MAF(D, layers=4, hidden=(64, 64))),
    ("IAF (inverse autoregressive)", IAF(D, layers=4, hidden=(64, 64))),
    ("NSF, coupling splines", NSF(D, layers=4, hidden=(64, 64), variant="coupling")),
]:
    flow.eval()
    with torch.no_grad():
        density = best_ms(lambda flow=flow: flow.log_prob(x))
        sampling = best_ms(lambda flow=flow: flow.sample((BATCH,)))
    rows.append((name, density, sampling))

print(f"D = {D}, batch = {BATCH}, one thread, no gradient; best of several runs, milliseconds")
print(f"{'flow':30s} {'log_prob':>9s} {'sample':>9s} {'sample / log_prob':>18s}")
for name, density, sampling in rows:
    print(f"{name:30s} {density:9.2f} {sampling:9.2f} {sampling / density:18.1f}")

# %%
# On an idle machine, MAF's sampling is several times slower than its density, because each of the
# :math:`D` coordinates waits for the previous ones; IAF shows the mirror image; coupling flows cost about
# the same in both directions. ``pushforward``'s autoregressive inverse computes each hidden unit of the
# masked network once, in degree order: the arithmetic is about that of one pass, but it runs as :math:`D`
# small sequential steps, which is what makes it slower than a single batched pass.
#
# Training speed
# --------------
# A training step is a forward pass, a backward pass and an optimiser update; time the whole step, with
# gradients, the same way:
flow = MAF(D, layers=4, hidden=(64, 64))
opt = torch.optim.Adam(flow.parameters(), lr=1e-3)


def train_step() -> None:
    loss = -flow.log_prob(x).mean()
    opt.zero_grad()
    loss.backward()
    opt.step()


print(f"MAF training step: {best_ms(train_step):.2f} ms for a batch of {BATCH}")

# %%
# Measuring on your own machine
# -----------------------------
# ``benchmarks/speed.py`` in the repository times training steps, ``log_prob`` and sampling of several
# families side by side with other flow libraries in one process (install them with
# ``pip install -e ".[bench]"``), and writes a table:
#
# .. code-block:: bash
#
#    python benchmarks/speed.py --threads 1
#
# Good practice for numbers you can trust:
#
# * run on an idle machine, with a fixed number of threads (``--threads``, or ``torch.set_num_threads``);
# * report the median of several repetitions after a warm-up, and the hardware;
# * compare libraries in the same process, on the same data and sizes, in the same precision (float32);
# * on CPUs with AVX-512, float32 matrix products go through oneDNN by default; set ``PUSHFORWARD_ONEDNN=0``
#   to compare without it.
#
# On a GPU, call ``torch.cuda.synchronize()`` before reading the clock (``torch.utils.benchmark`` does it for
# you), and use large batches: small flows are bound by kernel launches, not arithmetic.
