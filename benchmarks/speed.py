"""Side-by-side speed of pushforward against zuko, nflows and normflows (issue 9).

Same process, same architecture (as close as each peer allows; differences are listed under the table),
same data, fp32, CPU. For each flow family and library it measures

* ``train ms``: one Adam step of ``-log_prob(x).mean()`` on a batch (median over repeats),
* ``logp/s``: log-densities per second (``no_grad``),
* ``samp/s``: samples per second (``no_grad``),

then prints each throughput's ratio to the fastest peer, and GFLOP/s: the dense FLOPs of the conditioner
networks (train step = 3x forward; sampling = 1x forward, the work of a one-pass inverse) divided by the time,
next to the GFLOP/s of plain ``torch.mm`` calls of the same shapes (``mm``), the best the hardware does on
those shapes. Measurements are interleaved across libraries (round robin) so load changes hit all alike.

Usage (peers come with the ``bench`` extra: ``pip install -e ".[bench]"``)::

    .venv/bin/python benchmarks/speed.py                      # all families, 2 threads
    .venv/bin/python benchmarks/speed.py --threads 1 --families maf nsf-ar --repeats 5
    .venv/bin/python benchmarks/speed.py --compile            # adds our torch.compile'd train step
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import torch
from torch import Tensor, nn

from pushforward.checks import set_validation
from pushforward.flows import MAF, NSF, RealNVP


# --------------------------------------------------------------------------------------------- models
@dataclass
class Model:
    """A flow under test: its parameters, a log-density function and a sampler."""

    module: nn.Module
    log_prob: Callable[[Tensor], Tensor]
    sample: Callable[[int], Tensor]
    note: str = ""
    train_loss: Callable[[Tensor], Tensor] | None = None
    comparable: bool = True  # False: printed, but not counted as a peer (e.g. the opposite direction)


@dataclass
class Family:
    name: str
    layers: list[tuple[int, int]]  # (in, out) of every dense layer of the conditioners, all transforms
    builders: dict[str, Callable[[], Model]] = field(default_factory=dict)


def ours_model(flow: nn.Module, note: str = "") -> Model:
    return Model(flow, flow.log_prob, lambda n: flow.sample((n,)), note)


def zuko_model(flow: nn.Module, note: str = "") -> Model:
    return Model(flow, lambda x: flow().log_prob(x), lambda n: flow().sample((n,)), note)


def nflows_model(flow: nn.Module, note: str = "") -> Model:
    return Model(flow, flow.log_prob, flow.sample, note)


def normflows_model(flow: nn.Module, note: str = "") -> Model:
    return Model(flow, flow.log_prob, lambda n: flow.sample(n)[0], note)


def _nflows_flow(D: int, transforms: list) -> nn.Module:
    from nflows.distributions import StandardNormal
    from nflows.flows import Flow
    from nflows.transforms import CompositeTransform

    return Flow(CompositeTransform(transforms), StandardNormal([D]))


class _NoContext(nn.Module):
    """nflows' MLP takes no context argument; its coupling layers pass one."""

    def __init__(self, net: nn.Module) -> None:
        super().__init__()
        self.net = net

    def forward(self, x: Tensor, context: Tensor | None = None) -> Tensor:
        return self.net(x)


def _normflows_flow(D: int, flows: list) -> nn.Module:
    import normflows as nf

    return nf.NormalizingFlow(nf.distributions.DiagGaussian(D, trainable=False), flows)


def _normflows_reverse(D: int) -> nn.Module:
    import normflows as nf

    p = nf.flows.Permute(D, mode="shuffle")
    p.perm = torch.arange(D - 1, -1, -1)  # a reversal, as in the other libraries
    p.inv_perm = torch.arange(D - 1, -1, -1)
    return p


def maf_family(D: int, T: int, H: int) -> Family:
    fam = Family("MAF", [(D, H), (H, H), (H, 2 * D)] * T)

    def ours() -> Model:
        return ours_model(MAF(D, layers=T, hidden=(H, H), mixing="reverse"), "reverse permutation between")

    def zuko_() -> Model:
        import zuko

        return zuko_model(zuko.flows.MAF(D, transforms=T, hidden_features=(H, H)), "orders alternate")

    def nflows_() -> Model:
        from nflows.transforms import MaskedAffineAutoregressiveTransform, ReversePermutation

        ts: list = []
        for i in range(T):
            if i:
                ts.append(ReversePermutation(D))
            ts.append(MaskedAffineAutoregressiveTransform(D, H, num_blocks=1, use_residual_blocks=False))
        return nflows_model(_nflows_flow(D, ts), "no act. after 1st layer")

    def normflows_() -> Model:
        import normflows as nf

        fl: list = []
        for i in range(T):
            if i:
                fl.append(_normflows_reverse(D))
            fl.append(nf.flows.MaskedAffineAutoregressive(D, H, num_blocks=1, use_residual_blocks=False))
        m = normflows_model(_normflows_flow(D, fl), "IAF direction (D-pass density): not a peer")
        m.comparable = False
        return m

    fam.builders = {"ours": ours, "zuko": zuko_, "nflows": nflows_, "normflows": normflows_}
    return fam


def nsf_ar_family(D: int, T: int, H: int, K: int) -> Family:
    P = 3 * K - 1
    fam = Family("NSF-AR", [(D, H), (H, H), (H, P * D)] * T)

    def ours() -> Model:
        return ours_model(
            NSF(D, layers=T, hidden=(H, H), bins=K, mixing="reverse", bound=5.0), "reverse perm. between"
        )

    def zuko_() -> Model:
        import zuko

        return zuko_model(zuko.flows.NSF(D, transforms=T, hidden_features=(H, H), bins=K), "orders alternate")

    def nflows_() -> Model:
        from nflows.transforms import ReversePermutation
        from nflows.transforms.autoregressive import MaskedPiecewiseRationalQuadraticAutoregressiveTransform

        ts: list = []
        for i in range(T):
            if i:
                ts.append(ReversePermutation(D))
            ts.append(
                MaskedPiecewiseRationalQuadraticAutoregressiveTransform(
                    D, H, num_bins=K, tails="linear", tail_bound=5.0, num_blocks=1, use_residual_blocks=False
                )
            )
        return nflows_model(_nflows_flow(D, ts), "no act. after 1st layer")

    def normflows_() -> Model:
        import normflows as nf

        fl: list = []
        for i in range(T):
            if i:
                fl.append(_normflows_reverse(D))
            fl.append(nf.flows.AutoregressiveRationalQuadraticSpline(D, 1, H, num_bins=K, tail_bound=5.0))
        return normflows_model(_normflows_flow(D, fl), "residual MADE: 3 hidden matmuls (fixed)")

    fam.builders = {"ours": ours, "zuko": zuko_, "nflows": nflows_, "normflows": normflows_}
    return fam


def _alternating(D: int, i: int) -> Tensor:
    return torch.arange(D) % 2 == i % 2  # True = passed through (ours, zuko)


def realnvp_family(D: int, T: int, H: int) -> Family:
    n_pass = [int(_alternating(D, i).sum()) for i in range(T)]
    fam = Family("RealNVP", [layer for p in n_pass for layer in ((p, H), (H, H), (H, 2 * (D - p)))])

    def ours() -> Model:
        masks = [_alternating(D, i) for i in range(T)]
        return ours_model(RealNVP(D, layers=T, hidden=(H, H), mask=masks), "alternating masks")

    def zuko_() -> Model:
        import zuko

        return zuko_model(zuko.flows.RealNVP(D, transforms=T, hidden_features=(H, H)), "alternating masks")

    def nflows_() -> Model:
        from nflows.nn.nets import MLP
        from nflows.transforms import AffineCouplingTransform

        ts = [
            AffineCouplingTransform(
                (~_alternating(D, i)).int(), lambda a, b: _NoContext(MLP((a,), (b,), hidden_sizes=[H, H]))
            )
            for i in range(T)
        ]
        return nflows_model(_nflows_flow(D, ts), "alternating masks")

    def normflows_() -> Model:
        import normflows as nf

        fl: list = []
        for i in range(T):
            b = _alternating(D, i).float()  # normflows: 1 = passed through, fed to the nets
            s = nf.nets.MLP([D, H, H, D], init_zeros=True)
            t = nf.nets.MLP([D, H, H, D], init_zeros=True)
            fl.append(nf.flows.MaskedAffineFlow(b, t, s))
        return normflows_model(
            _normflows_flow(D, fl), "separate s and t nets on masked x (D in/out): 2x the FLOPs"
        )

    fam.builders = {"ours": ours, "zuko": zuko_, "nflows": nflows_, "normflows": normflows_}
    return fam


def nsf_c_family(D: int, T: int, H: int, K: int) -> Family:
    P = 3 * K - 1
    n_pass = [int(_alternating(D, i).sum()) for i in range(T)]
    fam = Family("NSF-C", [layer for p in n_pass for layer in ((p, H), (H, H), (H, P * (D - p)))])

    def ours() -> Model:
        from pushforward.flows.core import Flow
        from pushforward.transformers import RQSTransformer
        from pushforward.transforms import Compose, Coupling

        layers = [
            Coupling(_alternating(D, i), RQSTransformer(bins=K, bound=5.0), hidden=(H, H)) for i in range(T)
        ]
        return ours_model(Flow(Compose(layers)), "alternating masks, no LU")

    def zuko_() -> Model:
        import zuko

        flow = zuko.flows.RealNVP(
            D,
            transforms=T,
            hidden_features=(H, H),
            univariate=zuko.transforms.MonotonicRQSTransform,
            shapes=[(K,), (K,), (K - 1,)],
        )
        return zuko_model(flow, "alternating masks")

    def nflows_() -> Model:
        from nflows.nn.nets import MLP
        from nflows.transforms import PiecewiseRationalQuadraticCouplingTransform

        ts = [
            PiecewiseRationalQuadraticCouplingTransform(
                (~_alternating(D, i)).int(),
                lambda a, b: _NoContext(MLP((a,), (b,), hidden_sizes=[H, H])),
                num_bins=K,
                tails="linear",
                tail_bound=5.0,
            )
            for i in range(T)
        ]
        return nflows_model(_nflows_flow(D, ts), "alternating masks")

    def normflows_() -> Model:
        import normflows as nf

        fl = [
            nf.flows.CoupledRationalQuadraticSpline(
                D, 1, H, num_bins=K, tail_bound=5.0, reverse_mask=i % 2 == 1
            )
            for i in range(T)
        ]
        return normflows_model(_normflows_flow(D, fl), "ResidualNet: 3 hidden matmuls + uncond. spline")

    fam.builders = {"ours": ours, "zuko": zuko_, "nflows": nflows_, "normflows": normflows_}
    return fam


# --------------------------------------------------------------------------------------------- timing
def _median_time(fn: Callable[[], object]) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def matmul_gflops(layers: list[tuple[int, int]], batch: int, repeats: int = 5) -> float:
    """GFLOP/s of plain fp32 ``torch.mm`` over the same (batch x in) @ (in x out) shapes."""
    mats = [(torch.randn(batch, i), torch.randn(i, o)) for i, o in layers]
    flops = sum(2 * batch * i * o for i, o in layers)

    def run() -> None:
        for a, b in mats:
            torch.mm(a, b)

    run()
    return flops / min(_median_time(run) for _ in range(repeats)) / 1e9


def measure(
    models: dict[str, Model], batch: int, D: int, repeats: int, sample_repeats: int, seed: int = 0
) -> dict[str, dict[str, float]]:
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(batch, D, generator=g)
    opts = {k: torch.optim.Adam(m.module.parameters(), lr=1e-4) for k, m in models.items()}
    times: dict[str, dict[str, list[float]]] = {k: {"train": [], "logp": [], "samp": []} for k in models}

    def train(k: str) -> None:
        m, opt = models[k], opts[k]
        loss_fn = m.train_loss or m.log_prob
        opt.zero_grad(set_to_none=True)
        loss = -loss_fn(x).mean()
        loss.backward()
        opt.step()

    def logp(k: str) -> None:
        with torch.no_grad():
            models[k].log_prob(x)

    def samp(k: str) -> None:
        with torch.no_grad():
            models[k].sample(batch)

    for k in models:  # warm-up (and compilation, if any)
        train(k)
        train(k)
        logp(k)
        samp(k)
    for r in range(repeats):
        for k in models:
            times[k]["train"].append(_median_time(lambda k=k: train(k)))
            times[k]["logp"].append(_median_time(lambda k=k: logp(k)))
            if r < sample_repeats:
                times[k]["samp"].append(_median_time(lambda k=k: samp(k)))
    return {k: {m: statistics.median(v) for m, v in t.items()} for k, t in times.items()}


# --------------------------------------------------------------------------------------------- table
def report(
    fam: Family,
    res: dict[str, dict[str, float]],
    batch: int,
    mm: float,
    notes: dict[str, str],
    peers: list[str],
) -> str:
    fwd = sum(2 * batch * i * o for i, o in fam.layers)
    lines = [
        f"\n{fam.name}  (dense conditioner FLOPs: {fwd / 1e9:.3f} GFLOP per forward of {batch}; "
        f"mm on the same shapes: {mm:.0f} GFLOP/s)",
        f"{'library':<14}{'train ms':>10}{'logp/s':>10}{'samp/s':>10}"
        f"{'train GF/s':>12}{'logp GF/s':>11}{'samp GF/s':>11}  note",
    ]
    for k, r in res.items():
        lines.append(
            f"{k:<14}{1e3 * r['train']:>10.1f}{batch / r['logp']:>10.0f}{batch / r['samp']:>10.0f}"
            f"{3 * fwd / r['train'] / 1e9:>12.1f}{fwd / r['logp'] / 1e9:>11.1f}{fwd / r['samp'] / 1e9:>11.1f}"
            f"  {notes.get(k, '')}"
        )
    if peers:
        best = {m: min(res[p][m] for p in peers) for m in ("train", "logp", "samp")}
        who = {m: min(peers, key=lambda p: res[p][m]) for m in ("train", "logp", "samp")}
        for k in res:
            if k.startswith("ours"):
                r = res[k]
                lines.append(
                    f"{k + ' / best':<14}{best['train'] / r['train']:>9.2f}x{best['logp'] / r['logp']:>9.2f}x"
                    f"{best['samp'] / r['samp']:>9.2f}x  (best peer: train {who['train']}, logp "
                    f"{who['logp']}, samp {who['samp']})"
                )
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--families", nargs="+", default=["maf", "nsf-ar", "realnvp", "nsf-c"])
    ap.add_argument("--libs", nargs="+", default=["ours", "zuko", "nflows", "normflows"])
    ap.add_argument("--features", type=int, default=43)
    ap.add_argument("--batch", type=int, default=512)
    ap.add_argument("--transforms", type=int, default=5)
    ap.add_argument("--hidden-maf", type=int, default=512)
    ap.add_argument("--hidden-nsf", type=int, default=256)
    ap.add_argument("--bins", type=int, default=8)
    ap.add_argument("--repeats", type=int, default=7)
    ap.add_argument("--sample-repeats", type=int, default=3)
    ap.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's choice)")
    ap.add_argument("--compile", action="store_true", help="also time our flows under torch.compile")
    ap.add_argument("--json", type=str, default=None)
    args = ap.parse_args()

    if args.threads:
        torch.set_num_threads(args.threads)
    set_validation(False)  # no NaN checks inside timed code (peers do none)
    torch.manual_seed(0)
    D, T, B, K = args.features, args.transforms, args.batch, args.bins
    makers = {
        "maf": lambda: maf_family(D, T, args.hidden_maf),
        "nsf-ar": lambda: nsf_ar_family(D, T, args.hidden_nsf, K),
        "realnvp": lambda: realnvp_family(D, T, args.hidden_maf),
        "nsf-c": lambda: nsf_c_family(D, T, args.hidden_nsf, K),
    }
    load = os.getloadavg()
    print(
        f"torch {torch.__version__}, {torch.get_num_threads()} threads, {os.cpu_count()} CPUs, "
        f"load average {load[0]:.1f} {load[1]:.1f} {load[2]:.1f}; D={D}, batch={B}, {T} transforms, "
        f"MAF/RealNVP 2x{args.hidden_maf}, NSF 2x{args.hidden_nsf} with {K} bins, fp32"
    )
    a = torch.randn(1024, 1024)
    big = 2 * 1024**3 / min(_median_time(lambda: a @ a) for _ in range(5)) / 1e9
    print(f"plain fp32 matmul 1024^3: {big:.0f} GFLOP/s")
    out: dict = {"load": load, "threads": torch.get_num_threads(), "matmul_1024": big, "families": {}}
    for name in args.families:
        fam = makers[name]()
        models: dict[str, Model] = {}
        notes: dict[str, str] = {}
        for lib in args.libs:
            try:
                models[lib] = fam.builders[lib]()
                notes[lib] = models[lib].note
            except Exception as e:  # a peer that cannot build this architecture is reported, not fatal
                print(f"  {fam.name}/{lib}: skipped ({type(e).__name__}: {e})")
        if args.compile and "ours" in models:
            m = models["ours"]
            compiled = torch.compile(m.module.log_prob)
            models["ours+compile"] = Model(m.module, compiled, m.sample, "torch.compile(log_prob)")
            notes["ours+compile"] = models["ours+compile"].note
        res = measure(models, B, D, args.repeats, args.sample_repeats)
        mm = matmul_gflops(fam.layers, B)
        peers = [k for k, m in models.items() if not k.startswith("ours") and m.comparable]
        print(report(fam, res, B, mm, notes, peers), flush=True)
        out["families"][fam.name] = {"results": res, "mm_gflops": mm}
    if args.json:
        with open(args.json, "w") as f:
            json.dump(out, f, indent=1)


if __name__ == "__main__":
    main()
