"""Interleaved A/B of two versions of pushforward's kernels in one process (issue 31).

``A`` is a copy of the package from another commit, imported as ``pushforward_old``; ``B`` is the package on
``PYTHONPATH``. Both build the same preset (same seeded, perturbed parameters: the script prints the largest
log-density difference), then rounds alternate A,B / B,A and each round times a training step (Adam on
``-log_prob(x).mean()``), ``log_prob`` and sampling (every third round). Reported per measure: the medians,
the median of the per-round ratios A/B (the paired figure to quote), and the ratio of the minima. Times are
CPU time of the process (``time.process_time``; ``--wall`` for wall clock), which on a shared machine
excludes the time the process waited for a core. Sampling doubles as a control when only the forward layers
changed: its ratio shows the noise of the run. ``--adam`` instead times our own step with
``torch.optim.Adam`` for-loop / ``foreach=True`` / ``fused=True``, and ``--block-vs-dense`` times our flow with
its MADE layers dense (A, ``MADE.block_sparse = False``) against the default block-triangular layers (B); no old
copy is needed for either. ``--profile`` prints a ``torch.profiler`` table (self time) of 5 training steps of
our flow instead.

Set ``ATEN_CPU_CAPABILITY`` (``avx512``, ``avx2``, ``default``) to run the same code on another vector width.

Usage::

    mkdir -p /tmp/ab && git archive BASE src/pushforward | tar -x -C /tmp/ab \\
        && mv /tmp/ab/src/pushforward /tmp/ab/pushforward_old
    PYTHONPATH=src .venv/bin/python benchmarks/ab_kernels.py --old /tmp/ab --families maf nsf-ar --rounds 25
    ATEN_CPU_CAPABILITY=default PYTHONPATH=src .venv/bin/python benchmarks/ab_kernels.py --old /tmp/ab
    PYTHONPATH=src .venv/bin/python benchmarks/ab_kernels.py --adam --families maf nsf-ar
"""

from __future__ import annotations

import argparse
import importlib
import os
import statistics
import sys
import time
from collections.abc import Callable

import torch
from torch import nn


def build(pkg: str, fam: str, D: int) -> nn.Module:
    flows = importlib.import_module(pkg + ".flows")
    torch.manual_seed(0)
    if fam == "maf":
        return flows.MAF(D, layers=5, hidden=(512, 512), mixing="reverse")
    if fam == "nsf-ar":
        return flows.NSF(D, layers=5, hidden=(256, 256), bins=8, mixing="reverse", bound=5.0)
    if fam == "realnvp":
        masks = [torch.arange(D) % 2 == i % 2 for i in range(5)]
        return flows.RealNVP(D, layers=5, hidden=(512, 512), mask=masks)
    raise ValueError(f"unknown family {fam!r}")


def summary(name: str, ta: list[float], tb: list[float], label: str) -> str:
    a, b = statistics.median(ta), statistics.median(tb)
    paired = statistics.median([x / y for x, y in zip(ta, tb)])
    return (
        f"  {name:<14} {label} A {1e3 * a:8.2f} ms  B {1e3 * b:8.2f} ms  A/B medians {a / b:.3f}x  "
        f"paired median {paired:.3f}x  minima {min(ta) / min(tb):.3f}x  n={len(ta)}"
    )


def profile(args: argparse.Namespace) -> None:
    """Self-time table of 5 training steps (after 3 warm-up steps) of each family, our flow."""
    from torch.profiler import ProfilerActivity
    from torch.profiler import profile as torch_profile

    from pushforward.checks import set_validation

    torch.set_num_threads(args.threads)
    set_validation(False)
    x = torch.randn(args.batch, args.features, generator=torch.Generator().manual_seed(1))
    for fam in args.families:
        flow = build("pushforward", fam, args.features)
        opt = torch.optim.Adam(flow.parameters(), lr=1e-6)

        def step(flow: nn.Module = flow, opt: torch.optim.Optimizer = opt) -> None:
            opt.zero_grad(set_to_none=True)
            (-flow.log_prob(x).mean()).backward()
            opt.step()

        for _ in range(3):
            step()
        with torch_profile(activities=[ProfilerActivity.CPU]) as prof:
            for _ in range(5):
                step()
        print(
            f"{fam}: 5 training steps, {torch.get_num_threads()} thread(s), vector width "
            f"{torch.backends.cpu.get_cpu_capability()}, load average {os.getloadavg()[0]:.1f}"
        )
        print(prof.key_averages().table(sort_by="self_cpu_time_total", row_limit=25))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--old", default=None, help="folder holding pushforward_old (version A)")
    ap.add_argument("--families", nargs="+", default=["maf"])
    ap.add_argument("--rounds", type=int, default=15)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--batch", type=int, default=512)
    ap.add_argument("--features", type=int, default=43)
    ap.add_argument("--no-samp", action="store_true")
    ap.add_argument("--wall", action="store_true", help="wall-clock instead of process CPU time")
    ap.add_argument("--adam", action="store_true", help="compare Adam for-loop / foreach / fused instead")
    ap.add_argument("--block-vs-dense", action="store_true", help="A: dense MADE layers, B: block layers")
    ap.add_argument("--profile", action="store_true", help="profile 5 training steps of our flow instead")
    args = ap.parse_args()
    clock = time.perf_counter if args.wall else time.process_time
    label = "wall" if args.wall else "CPU"

    def timed(fn: Callable[[], object]) -> float:
        start = clock()
        fn()
        return clock() - start

    if args.profile:
        profile(args)
        return
    if not (args.adam or args.block_vs_dense):
        if args.old is None:
            raise SystemExit("--old FOLDER (holding pushforward_old) is needed unless --adam")
        sys.path.insert(0, args.old)
    versions = {"A": "pushforward_old", "B": "pushforward"} if args.old and not args.adam else {}
    if args.block_vs_dense:
        versions = {"A": "pushforward", "B": "pushforward"}
    torch.set_num_threads(args.threads)
    for pkg in {*versions.values(), "pushforward"}:
        importlib.import_module(pkg + ".checks").set_validation(False)
    D, B = args.features, args.batch
    print(
        f"vector width {torch.backends.cpu.get_cpu_capability()}, {torch.get_num_threads()} thread(s), "
        f"load average {os.getloadavg()[0]:.1f}, torch {torch.__version__}",
        flush=True,
    )
    x = torch.randn(B, D, generator=torch.Generator().manual_seed(1))
    for fam in args.families:
        if args.adam:
            kinds = {"for-loop": {}, "foreach": {"foreach": True}, "fused": {"fused": True}}
            flows = {k: build("pushforward", fam, D) for k in kinds}
            opts = {k: torch.optim.Adam(flows[k].parameters(), lr=1e-4, **kw) for k, kw in kinds.items()}
        else:
            flows = {k: build(pkg, fam, D) for k, pkg in versions.items()}
            if args.block_vs_dense:
                flows["A"].apply(
                    lambda m: setattr(m, "block_sparse", False) if hasattr(m, "block_sparse") else None
                )
            g = torch.Generator().manual_seed(2)
            state = {
                k: v + 0.02 * torch.randn(v.shape, generator=g)
                if v.is_floating_point() and "mask" not in k
                else v
                for k, v in flows["B"].state_dict().items()
            }
            for f in flows.values():
                f.load_state_dict(state)
            with torch.no_grad():
                diff = (flows["A"].log_prob(x) - flows["B"].log_prob(x)).abs().max().item()
            print(f"{fam}: max |log_prob A - B| = {diff:.2e}")
            opts = {k: torch.optim.Adam(f.parameters(), lr=1e-6) for k, f in flows.items()}

        def train(k: str, flows: dict = flows, opts: dict = opts) -> None:
            opts[k].zero_grad(set_to_none=True)
            (-flows[k].log_prob(x).mean()).backward()
            opts[k].step()

        def logp(k: str, flows: dict = flows) -> None:
            with torch.no_grad():
                flows[k].log_prob(x)

        def samp(k: str, flows: dict = flows) -> None:
            with torch.no_grad():
                flows[k].sample((B,))

        if args.adam:
            measures = {"train": train, "opt.step": lambda k, opts=opts: opts[k].step()}
        else:
            measures = (
                {"train": train, "logp": logp}
                if args.no_samp
                else {"train": train, "logp": logp, "samp": samp}
            )
        times = {k: {m: [] for m in measures} for k in flows}
        for k in flows:
            for fn in measures.values():
                fn(k)
                fn(k)
        keys = list(flows)
        for r in range(args.rounds):
            order = keys if r % 2 == 0 else keys[::-1]
            for m, fn in measures.items():
                if m == "samp" and r % 3:
                    continue
                for k in order:
                    times[k][m].append(timed(lambda k=k, fn=fn: fn(k)))
        for m in measures:
            ref = keys[0]
            for k in keys[1:]:
                print(
                    summary(
                        f"{fam} {m} {ref}/{k}" if args.adam else f"{fam} {m}",
                        times[ref][m],
                        times[k][m],
                        label,
                    )
                )
    print(f"load average at the end {os.getloadavg()[0]:.1f}", flush=True)


if __name__ == "__main__":
    main()
