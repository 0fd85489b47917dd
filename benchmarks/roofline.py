"""Roofline of the flow presets against the machine's own fp32 matmul peak (issue 31).

First the **peak**: the best GFLOP/s of square fp32 ``torch.mm`` products (sizes ``--peak-sizes``, best of
``--peak-repeats`` each) at every thread count asked for (``--threads 1 2``), or on the card with
``--device cuda`` (TF32 off, synchronized around every timing). Then, at each thread count, each preset's
training step (Adam on ``-log_prob(x).mean()``), ``log_prob`` and sampling are timed for ours, zuko and
nflows, in one process with the libraries interleaved round robin (the timing loop of ``speed.py``), and
reported as

* times are wall clock, or with ``--cpu-time`` (1 thread) the process's CPU time, which on a shared machine
  leaves out the time spent waiting for a core (the peak is then timed the same way);
* **dense-equivalent GFLOP/s**: the FLOPs the conditioner networks would do as *dense* layers divided by the
  time. Counting rule: every dense layer ``(in, out)`` of every conditioner (MADE layers counted whole, as if
  unmasked; coupling MLPs on the passed-through features) costs ``2 * batch * in * out`` FLOPs for one
  forward; a training step counts ``3x`` that (forward, input gradient, weight gradient); ``log_prob`` ``1x``;
  sampling ``1x`` (what a one-pass inverse must do). Transformers (affine, spline), permutations, the base
  density, the optimizer and Python overhead count zero: they are time spent without FLOPs in this count;
* **fraction of peak**: that figure over the peak at the same thread count;
* for ours, **actual GFLOP/s**: the multiply-adds our kernels really perform (the block-triangular MADE
  layers skip their zero blocks, see ``pushforward.nets.masked_blocks``), same time; train and log_prob only;
* for ours, also the **engine step**: the training step our engine takes (its default optimizer, fused Adam
  where the build has it, and its guarded step with the default clipping at norm 5), against the peers'
  plain Adam step (what their documentation's loops do);
* **ours / best peer** per measure, and the **2-thread scaling** (throughput at the largest thread count
  over 1 thread) per library.

The header prints the CPU model, its family/model numbers, the vector width torch's kernels use
(``torch.backends.cpu.get_cpu_capability()``; set ``ATEN_CPU_CAPABILITY=avx2`` to force the AVX2 build on an
AVX-512 machine), the threads, the load average (start and end of every block: on a shared machine absolute
figures are depressed, ratios from interleaved rounds are the usable ones) and the torch version.

Usage (peers come with the ``bench`` extra)::

    .venv/bin/python benchmarks/roofline.py --quick                   # ~2 minutes on a quiet 2-core CPU
    .venv/bin/python benchmarks/roofline.py --threads 1 2 --json out.json
    .venv/bin/python benchmarks/roofline.py --device cuda             # the card's peak and the same table
    .venv/bin/python benchmarks/roofline.py --breakdown --threads 1 2  # a step's time by kind, 1 vs 2 threads
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time

import torch
from torch import nn

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import speed

from pushforward.checks import set_validation
from pushforward.nets.made import MaskedLinear
from pushforward.nets.masked_blocks import BLOCK_MIN_SKIPPED_MACS

LIBS = ("ours", "zuko", "nflows")
MEASURES = ("train", "logp", "samp")


def matmul_peak(sizes: list[int], repeats: int, device: str) -> tuple[float, int]:
    """Best fp32 GFLOP/s of square ``n x n @ n x n`` products over ``sizes``, and the size that gave it."""
    best, at = 0.0, 0
    for n in sizes:
        a = torch.randn(n, n, device=device)
        b = torch.randn(n, n, device=device)
        c = torch.empty(n, n, device=device)
        torch.mm(a, b, out=c)  # warm-up
        for _ in range(repeats):
            t = speed._median_time(lambda a=a, b=b, c=c: torch.mm(a, b, out=c))
            g = 2 * n**3 / t / 1e9
            if g > best:
                best, at = g, n
    return best, at


def actual_macs(module: nn.Module, batch: int, device: str) -> int:
    """Multiply-adds per forward our layers really perform (``masked_linear``'s choice of dense or block
    evaluation, see :mod:`pushforward.nets.masked_blocks`)."""
    total = 0
    for m in module.modules():
        if isinstance(m, MaskedLinear):
            rows, cols = m.weight.shape
            p = m.plan
            blocked = (
                m.block_sparse
                and not p.all_ones
                and p.chunks
                and device == "cpu"
                and batch * p.skipped >= BLOCK_MIN_SKIPPED_MACS
            )
            total += batch * (sum((r1 - r0) * c for r0, r1, c in p.chunks) if blocked else rows * cols)
        elif isinstance(m, nn.Linear):
            total += batch * m.in_features * m.out_features
    return total


def capability() -> str:
    try:
        return str(torch.backends.cpu.get_cpu_capability())
    except AttributeError:  # older torch
        return "?"


def _save(args: argparse.Namespace, out: dict) -> None:
    if args.json:  # after every family, so a run stopped by hand keeps what it measured
        with open(args.json, "w") as f:
            json.dump(out, f, indent=1)


def run_block(args: argparse.Namespace, threads: int, D: int, out: dict) -> dict:
    """Peak, then every family at one thread count (appended to ``out["blocks"]`` as it goes)."""
    if args.device == "cpu":
        torch.set_num_threads(threads)
    load0 = os.getloadavg()
    peak, at = matmul_peak(args.peak_sizes, args.peak_repeats, args.device)
    print(
        f"\n=== {threads if args.device == 'cpu' else '-'} thread(s): fp32 matmul peak {peak:.1f} GFLOP/s "
        f"(n={at}); load average {load0[0]:.1f}",
        flush=True,
    )
    makers = speed._families(D, args, small=False)
    block: dict = {"threads": threads, "peak": peak, "peak_n": at, "load_start": load0, "families": {}}
    out["blocks"].append(block)
    for name in args.families:
        fam = makers[name]()
        models = {}
        for lib in LIBS:
            try:
                models[lib] = fam.builders[lib]()
                models[lib].module.to(args.device)
            except Exception as e:  # a peer that cannot build is reported, not fatal
                print(f"  {fam.name}/{lib}: skipped ({type(e).__name__}: {e})")
        models["ours"].backend = "torch"
        res = speed.measure(
            models, args.batch, D, args.repeats, args.sample_repeats, device=args.device, engine_step=True
        )
        fwd = sum(2 * args.batch * i * o for i, o in fam.layers)
        act = 2 * actual_macs(models["ours"].module, args.batch, args.device)
        rows = {}
        for lib, r in res.items():
            gf = {m: (3 if m == "train" else 1) * fwd / r[m] / 1e9 for m in MEASURES}
            rows[lib] = {
                "seconds": r,
                "gflops_dense_eq": gf,
                "fraction_of_peak": {m: gf[m] / peak for m in MEASURES},
            }
        rows["ours"]["gflops_actual"] = {
            m: (3 if m == "train" else 1) * act / res["ours"][m] / 1e9 for m in ("train", "logp")
        }
        eng = res["ours"].get("engine")
        if eng:  # our training engine's own step: fused Adam + guarded, clipped step
            rows["ours"]["gflops_dense_eq"]["engine"] = 3 * fwd / eng / 1e9
            rows["ours"]["fraction_of_peak"]["engine"] = 3 * fwd / eng / 1e9 / peak
        peers = [k for k in res if k != "ours"]
        ratio = {m: min(res[p][m] for p in peers) / res["ours"][m] for m in MEASURES} if peers else {}
        if peers and eng:
            ratio["engine_vs_peer_train"] = min(res[p]["train"] for p in peers) / eng
        block["families"][fam.name] = {
            "dense_gflop_per_forward": fwd / 1e9,
            "actual_gflop_per_forward_ours": act / 1e9,
            "libs": rows,
            "ours_over_best_peer": ratio,
            "load_end": os.getloadavg(),
        }
        _save(args, out)
        print(
            f"\n{fam.name} D={D}: {fwd / 1e9:.3f} dense GFLOP per forward of {args.batch} "
            f"(ours performs {act / 1e9:.3f})"
        )
        print(
            f"{'library':<8}{'train ms':>9}{'train GF/s':>11}{'%peak':>6}{'logp GF/s':>10}{'%peak':>6}"
            f"{'samp GF/s':>10}{'%peak':>6}{'actual train':>13}{'actual logp':>12}"
        )
        for lib, row in rows.items():
            g, f = row["gflops_dense_eq"], row["fraction_of_peak"]
            a = row.get("gflops_actual")
            tail = f"{a['train']:>13.1f}{a['logp']:>12.1f}" if a else ""
            print(
                f"{lib:<8}{1e3 * row['seconds']['train']:>9.1f}{g['train']:>11.1f}{100 * f['train']:>5.0f}%"
                f"{g['logp']:>10.1f}{100 * f['logp']:>5.0f}%{g['samp']:>10.1f}{100 * f['samp']:>5.0f}%{tail}"
            )
        if eng:
            g = rows["ours"]["gflops_dense_eq"]["engine"]
            print(
                f"{'ours, engine step':<18}{1e3 * eng:>9.1f} ms {g:>6.1f} GF/s "
                f"{100 * rows['ours']['fraction_of_peak']['engine']:.0f}% of peak"
            )
        if ratio:
            print(
                "ours / best peer: "
                + ", ".join(f"{m} {ratio[m]:.2f}x" for m in MEASURES)
                + (f", engine step {ratio['engine_vs_peer_train']:.2f}x" if eng else "")
                + f"  (load average now {os.getloadavg()[0]:.1f})",
                flush=True,
            )
    block["load_end"] = os.getloadavg()
    return block


def _peer_models(args: argparse.Namespace):
    """``(family name, library, model, plain Adam)`` for every family of ``--families`` and every library,
    built one at a time in that order; a peer that cannot build is reported and left out."""
    fams = speed._families(args.features, args, small=False)
    for name in args.families:
        fam = fams[name]()
        for lib in LIBS:
            try:
                m = fam.builders[lib]()
            except Exception as e:  # a peer that cannot build is reported, not fatal
                print(f"  {fam.name}/{lib}: skipped ({type(e).__name__}: {e})")
                continue
            yield fam.name, lib, m, torch.optim.Adam(m.module.parameters(), lr=1e-4)


def thread_scaling(args: argparse.Namespace) -> dict:
    """Throughput at ``max(args.threads)`` threads over 1 thread with the thread counts **interleaved**:
    every round times the matmul peak and, for every family and library, one training step and one
    ``log_prob`` at 1 thread and at n threads (order 1, n then n, 1 on alternate rounds), so load changes
    on a shared machine hit both counts alike. Reports the medians and their ratio, with the load average."""
    n = max(args.threads)
    counts = (1, n)
    x = torch.randn(args.batch, args.features)
    models = {(fam, lib): (m, opt) for fam, lib, m, opt in _peer_models(args)}

    def train(m, opt) -> None:
        speed.adam_step(m, opt, x)

    def logp(m, opt) -> None:
        with torch.no_grad():
            m.log_prob(x)

    a = torch.randn(1024, 1024)
    times: dict = {}
    load0 = os.getloadavg()
    for t in counts:  # warm-up at every thread count
        torch.set_num_threads(t)
        for m, opt in models.values():
            train(m, opt)
            logp(m, opt)
    for r in range(args.repeats):
        for t in counts if r % 2 == 0 else counts[::-1]:
            torch.set_num_threads(t)
            times.setdefault(("matmul", "", t, "mm"), []).append(speed._median_time(lambda: torch.mm(a, a)))
            for (fam, lib), (m, opt) in models.items():
                for what, fn in (("train", train), ("logp", logp)):
                    dt = speed._median_time(lambda fn=fn, m=m, opt=opt: fn(m, opt))
                    times.setdefault((fam, lib, t, what), []).append(dt)
        print(f"  round {r + 1}/{args.repeats}: load average {os.getloadavg()[0]:.1f}", flush=True)
    torch.set_num_threads(1)
    med = {k: statistics.median(v) for k, v in times.items()}
    out = {"threads": n, "load_start": load0, "load_end": os.getloadavg(), "rounds": args.repeats, "rows": []}
    print(
        f"\n{n} threads over 1 thread, interleaved rounds (median of {args.repeats}); load average "
        f"{load0[0]:.1f} -> {out['load_end'][0]:.1f}"
    )
    print(f"{'':<24}{'1-thr ms':>8}{f'{n}-thr ms':>12}{'scaling':>9}")
    for fam, lib, _, what in sorted(k for k in med if k[2] == 1):
        one, many = med[(fam, lib, 1, what)], med[(fam, lib, n, what)]
        label = "matmul 1024^3" if fam == "matmul" else f"{fam} {lib} {what}"
        print(f"{label:<24}{1e3 * one:>8.2f}{1e3 * many:>12.2f}{one / many:>8.2f}x")
        out["rows"].append(
            {"family": fam, "lib": lib, "measure": what, "s_1": one, f"s_{n}": many, "scaling": one / many}
        )
    return out


#: Profiler keys counted as products (the conditioners' FLOPs) in :func:`breakdown`.
MATMUL_OPS = frozenset(
    {"aten::mm", "aten::addmm", "aten::addmm_", "aten::bmm", "aten::baddbmm", "aten::matmul"}
)


def _categories(prof, steps: int) -> dict[str, float]:
    """Seconds per step by kind, from a profile's self times (the calling thread's view: an op's time
    includes its own intra-op threads): products, the optimizer's kernels, other ATen ops (elementwise,
    reductions, copies, indexing) and the rest (Python, autograd nodes, dispatch)."""
    cat = dict.fromkeys(("matmul", "optimizer", "other_aten", "python_autograd"), 0.0)
    for e in prof.key_averages():
        if e.key in MATMUL_OPS:
            k = "matmul"
        elif "adam" in e.key.lower():
            k = "optimizer"
        elif e.key.startswith("aten::"):
            k = "other_aten"
        else:
            k = "python_autograd"
        cat[k] += e.self_cpu_time_total / 1e6 / steps
    return cat


def breakdown(args: argparse.Namespace) -> dict:
    """Where a training step's time goes, by kind (:func:`_categories`), at 1 and ``max(--threads)`` threads,
    for every family and library (``torch.optim.Adam`` defaults, as in the roofline table), with the two thread
    counts interleaved round by round. Explains the 2-thread scaling by Amdahl's law: only the products
    parallelise well, so a library that does fewer products (ours: block-triangular MADE layers) has a larger
    serial share and scales less, though it is faster at both counts. Profiled times run above plain ones."""
    from torch.profiler import ProfilerActivity
    from torch.profiler import profile as torch_profile

    n = max(args.threads)
    counts = (1, n) if n > 1 else (1,)
    x = torch.randn(args.batch, args.features)
    out: dict = {"threads": list(counts), "load_start": os.getloadavg(), "rows": []}
    for fam, lib, m, opt in _peer_models(args):

        def step(m=m, opt=opt) -> None:
            speed.adam_step(m, opt, x)

        per = {
            t: dict.fromkeys(("matmul", "optimizer", "other_aten", "python_autograd"), 0.0) for t in counts
        }
        for t in counts:
            torch.set_num_threads(t)
            step()
            step()
        for r in range(args.repeats):
            for t in counts if r % 2 == 0 else counts[::-1]:
                torch.set_num_threads(t)
                with torch_profile(activities=[ProfilerActivity.CPU]) as prof:
                    for _ in range(3):
                        step()
                for k, v in _categories(prof, 3).items():
                    per[t][k] += v / args.repeats
        torch.set_num_threads(1)
        row = {"family": fam, "lib": lib, "seconds": {str(t): per[t] for t in counts}}
        one = per[1]
        tot1 = sum(one.values())
        line = f"{fam:<14}{lib:<8}{1e3 * tot1:>8.1f}" + "".join(
            f"{100 * one[k] / tot1:>7.0f}%" for k in ("matmul", "other_aten", "python_autograd", "optimizer")
        )
        if n > 1:
            many = per[n]
            totn = sum(many.values())
            mm_s = one["matmul"] / many["matmul"]
            rest_s = (tot1 - one["matmul"]) / (totn - many["matmul"])
            # Amdahl: products scaled perfectly by n, the rest as measured / not at all
            ceil_meas = tot1 / (one["matmul"] / n + (tot1 - one["matmul"]) / rest_s)
            row.update(scaling=tot1 / totn, matmul_scaling=mm_s, rest_scaling=rest_s, ceiling=ceil_meas)
            line += f"{1e3 * totn:>9.1f}{tot1 / totn:>8.2f}x{mm_s:>8.2f}x{rest_s:>8.2f}x{ceil_meas:>9.2f}x"
        out["rows"].append(row)
        print(line, flush=True)
    out["load_end"] = os.getloadavg()
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--families", nargs="+", default=["maf", "nsf-ar", "nsf-c", "realnvp"])
    ap.add_argument("--threads", nargs="+", type=int, default=[1, 2])
    ap.add_argument("--features", type=int, default=43)
    ap.add_argument("--batch", type=int, default=512)
    ap.add_argument("--transforms", type=int, default=5)
    ap.add_argument("--hidden-maf", type=int, default=512)
    ap.add_argument("--hidden-nsf", type=int, default=256)
    ap.add_argument("--hidden-small", type=int, default=128)
    ap.add_argument("--bins", type=int, default=8)
    ap.add_argument("--repeats", type=int, default=None, help="timed rounds (default 7, --quick 3)")
    ap.add_argument("--sample-repeats", type=int, default=None, help="default 3, --quick 1")
    ap.add_argument("--peak-sizes", nargs="+", type=int, default=None)
    ap.add_argument("--peak-repeats", type=int, default=None, help="default 5, --quick 3")
    ap.add_argument("--device", default="cpu", help="cpu or cuda")
    ap.add_argument(
        "--cpu-time",
        action="store_true",
        help="time with the process's CPU time (time.process_time): on a shared machine it leaves out the time "
        "spent waiting for a core; 1 thread only (with n threads it sums their CPU time)",
    )
    ap.add_argument("--quick", action="store_true", help="3 repeats, 1 sampling repeat, small peak sizes")
    ap.add_argument("--json", type=str, default=None)
    ap.add_argument(
        "--scaling",
        action="store_true",
        help="only the thread scaling (1 vs max --threads), with the thread counts interleaved round by round",
    )
    ap.add_argument(
        "--breakdown",
        action="store_true",
        help="only where a training step's time goes (products, other ATen ops, Python/autograd, optimizer) at "
        "1 and max --threads threads, from torch.profiler; explains the thread scaling",
    )
    args = ap.parse_args()

    cuda = args.device.startswith("cuda")
    if cuda:
        if not torch.cuda.is_available():
            raise SystemExit("--device cuda: no CUDA device here")
        torch.backends.cuda.matmul.allow_tf32 = False  # the fp32 peak, and fp32 flows
        torch.backends.cudnn.allow_tf32 = False
        speed._SYNC = torch.cuda.synchronize
        args.threads = args.threads[:1]
    if args.cpu_time:
        if cuda or args.threads != [1]:
            raise SystemExit("--cpu-time: CPU only, with --threads 1")
        speed._CLOCK = time.process_time
    for name, full, quick in (("repeats", 7, 3), ("sample_repeats", 3, 1), ("peak_repeats", 5, 3)):
        if getattr(args, name) is None:
            setattr(args, name, quick if args.quick else full)
    if args.peak_sizes is None:
        args.peak_sizes = (
            [2048, 4096, 8192] if cuda else ([256, 512, 1024] if args.quick else [256, 512, 1024, 2048])
        )
    set_validation(False)  # no NaN checks inside timed code (the peers do none)
    torch.manual_seed(0)
    where = speed.cpu_model()
    if cuda:
        where = f"{torch.cuda.get_device_name()} (host CPU {where})"
    load = os.getloadavg()
    print(
        f"device {args.device}: {where}; torch kernels' vector width {capability()}; {os.cpu_count()} CPUs; "
        f"load average {load[0]:.1f} {load[1]:.1f} {load[2]:.1f}; torch {torch.__version__}\n"
        f"batch={args.batch}, {args.transforms} transforms, fp32, D={args.features}: MAF/RealNVP "
        f"2x{args.hidden_maf}, NSF 2x{args.hidden_nsf} with {args.bins} bins; repeats {args.repeats}; "
        f"{'process CPU time' if args.cpu_time else 'wall-clock time'}"
    )
    if args.breakdown:
        n = max(args.threads)
        print(
            f"\ntraining step by kind, profiled ({args.repeats} rounds x 3 steps per thread count, interleaved)\n"
            f"{'family':<14}{'library':<8}{'1-thr ms':>8}{'matmul':>8}{'other':>8}{'py/ag':>8}{'optim':>8}"
            + (f"{f'{n}-thr ms':>9}{'scaling':>9}{'matmul':>9}{'rest':>8}{'ceiling':>10}" if n > 1 else "")
        )
        result = breakdown(args)
        if args.json:
            with open(args.json, "w") as f:
                json.dump(result, f, indent=1)
        return
    if args.scaling:
        result = thread_scaling(args)
        if args.json:
            with open(args.json, "w") as f:
                json.dump(result, f, indent=1)
        return
    start = time.perf_counter()
    out: dict = {
        "cpu": speed.cpu_model(),
        "device": where,
        "capability": capability(),
        "torch": torch.__version__,
        "load_start": load,
        "args": vars(args),
        "blocks": [],
    }
    for t in args.threads:
        run_block(args, t, args.features, out)
    blocks = out["blocks"]
    if len(blocks) > 1:
        one, many = blocks[0], blocks[-1]
        print(f"\nthroughput at {many['threads']} threads over {one['threads']} thread (same libraries):")
        scaling: dict = {}
        for fam, f1 in one["families"].items():
            f2 = many["families"].get(fam)
            if f2 is None:
                continue
            scaling[fam] = {
                lib: {m: f1["libs"][lib]["seconds"][m] / f2["libs"][lib]["seconds"][m] for m in MEASURES}
                for lib in f1["libs"]
                if lib in f2["libs"]
            }
            print(
                f"  {fam:<8}"
                + "; ".join(
                    f"{lib} " + " ".join(f"{m} {s[m]:.2f}x" for m in MEASURES)
                    for lib, s in scaling[fam].items()
                )
            )
        print(f"  matmul peak: {many['peak'] / one['peak']:.2f}x")
        out["scaling"] = scaling
    out["load_end"] = os.getloadavg()
    out["seconds"] = time.perf_counter() - start
    print(f"\nload average at the end: {out['load_end'][0]:.1f}; {out['seconds']:.0f} s in all")
    _save(args, out)


if __name__ == "__main__":
    main()
