"""Break-even of ``torch.compile`` in the training engine (issue 31): compile time against time saved per step.

For each preset (MAF, NSF autoregressive, NSF coupling, RealNVP) at the benchmark size (D=43, batch 512,
5 transforms, MAF/RealNVP 2x512, NSF 2x256 with 8 bins) and a small size (D=2, 2x128 nets), it measures,
in one process, with a cold compile cache (a fresh ``TORCHINDUCTOR_CACHE_DIR``, FX-graph and AOTAutograd
caches off, ``torch.compiler.reset()`` between models):

* ``eager ms``: one engine training step (``skip_nonfinite_step``: loss, backward, gradient clipping at 5,
  the engine's fused Adam) with the eager loss, median over ``--repeats`` rounds;
* ``compile s``: what the engine pays once: the first compiled call of the loss of a full batch plus its
  backward (``pushforward.train.compiling.compile_loss``, the engine's own function, static shapes);
* ``compiled ms``: the same step with the compiled loss; eager and compiled steps alternate round by round on
  the same model, so load changes hit both;
* ``saved``: ``1 - compiled / eager``; ``break-even``: compile seconds over seconds saved per step (steps
  the run needs before compiling pays; "never" when compiled is not faster);
* ``partial batch``: what a batch of another size costs the compiled function with ``dynamic=False`` (the
  first call of the new shape: a recompile; the engine instead runs such a batch eagerly) and whether a
  second call of that shape is fast again (no recompile after the first);
* ``|Δloss|``: the compiled and eager loss of the same batch and weights.

Usage::

    PYTHONPATH=src .venv/bin/python benchmarks/compile_breakeven.py --json out.json
    PYTHONPATH=src .venv/bin/python benchmarks/compile_breakeven.py --families maf --sizes small
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time

if "--warm-cache" not in sys.argv:  # before torch is imported: measure the cold compile a first run pays
    os.environ["TORCHINDUCTOR_CACHE_DIR"] = tempfile.mkdtemp(prefix="pf_inductor_")
    os.environ["TORCHINDUCTOR_FX_GRAPH_CACHE"] = "0"
    os.environ["TORCHINDUCTOR_AUTOGRAD_CACHE"] = "0"

import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import speed

from pushforward.train.compiling import compile_loss
from pushforward.train.engine import default_optimizer
from pushforward.train.losses import MaximumLikelihood
from pushforward.train.step import skip_nonfinite_step

SIZES = {"bench": (43, 512, False), "small": (2, 512, True)}


def _timed(fn) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def measure(name: str, size: str, args: argparse.Namespace) -> dict:
    D, batch, small = SIZES[size]
    torch.compiler.reset()
    torch.manual_seed(0)
    fam = speed._families(D, args, small=small)[name]()
    model = fam.builders["ours"]().module
    loss = MaximumLikelihood()
    params = [p for p in model.parameters() if p.requires_grad]
    opt = default_optimizer(params, 1e-4, 0.0)
    x = (torch.randn(batch, D),)
    part = (torch.randn(batch // 2 + 7, D),)

    def step(fn) -> None:
        skip_nonfinite_step(fn(x), params, opt, 5.0)

    eager = lambda b: loss(model, b)  # noqa: E731
    for _ in range(3):
        step(eager)
    load0 = os.getloadavg()[0]
    compiled = compile_loss(model, loss)

    def first() -> None:
        value = compiled(x)
        torch.autograd.grad(value, params, allow_unused=True)

    compile_s = _timed(first)
    step(compiled)
    with torch.no_grad():
        d_loss = abs(float(compiled(x)) - float(eager(x)))
    te, tc = [], []
    for _ in range(args.repeats):
        te.append(_timed(lambda: step(eager)))
        tc.append(_timed(lambda: step(compiled)))
    t_e, t_c = statistics.median(te), statistics.median(tc)
    recompile_s = _timed(lambda: skip_nonfinite_step(compiled(part), params, opt, 5.0))
    again_s = _timed(lambda: skip_nonfinite_step(compiled(part), params, opt, 5.0))
    saved = t_e - t_c
    row = {
        "family": fam.name,
        "size": size,
        "D": D,
        "batch": batch,
        "eager_ms": 1e3 * t_e,
        "compiled_ms": 1e3 * t_c,
        "saved_fraction": saved / t_e,
        "compile_s": compile_s,
        "break_even_steps": compile_s / saved if saved > 0 else None,
        "partial_first_s": recompile_s,
        "partial_again_ms": 1e3 * again_s,
        "abs_loss_diff": d_loss,
        "load": [load0, os.getloadavg()[0]],
    }
    be = f"{row['break_even_steps']:.0f}" if saved > 0 else "never"
    print(
        f"{fam.name:<8}{size:<6}{1e3 * t_e:>9.2f}{1e3 * t_c:>12.2f}{100 * saved / t_e:>7.1f}%"
        f"{compile_s:>11.1f}{be:>11}{recompile_s:>10.1f}{1e3 * again_s:>10.2f}{d_loss:>10.1e}"
        f"   load {load0:.1f}->{os.getloadavg()[0]:.1f}",
        flush=True,
    )
    return row


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--families", nargs="+", default=["maf", "nsf-ar", "nsf-c", "realnvp"])
    ap.add_argument("--sizes", nargs="+", default=["bench", "small"], choices=sorted(SIZES))
    ap.add_argument("--repeats", type=int, default=15, help="alternating eager/compiled rounds")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--warm-cache", action="store_true", help="keep inductor's on-disk caches (warm compile)")
    ap.add_argument("--json", default=None)
    args = ap.parse_args()
    args.transforms, args.bins = 5, 8
    args.hidden_maf, args.hidden_nsf, args.hidden_small = 512, 256, 128
    torch.set_num_threads(args.threads)
    print(
        f"{speed.cpu_model()}; torch kernels {torch.backends.cpu.get_cpu_capability()}; torch {torch.__version__};"
        f" {args.threads} thread(s); load average {os.getloadavg()[0]:.1f}; "
        f"{'warm' if args.warm_cache else 'cold'} compile cache; wall-clock times"
    )
    print(
        f"{'family':<8}{'size':<6}{'eager ms':>9}{'compiled ms':>12}{'saved':>8}{'compile s':>11}"
        f"{'break-even':>11}{'partial s':>10}{'again ms':>10}{'|dloss|':>10}"
    )
    rows = []
    for size in args.sizes:
        for name in args.families:
            rows.append(measure(name, size, args))
            if args.json:
                with open(args.json, "w") as f:
                    json.dump(
                        {"cpu": speed.cpu_model(), "torch": torch.__version__, "rows": rows}, f, indent=1
                    )


if __name__ == "__main__":
    main()
