"""Side-by-side speed of pushforward against zuko, nflows and normflows (issues 9 and 13).

Same process, same architecture (as close as each peer allows; differences are listed under the table),
same data, fp32, on the CPU or a CUDA device (``--device cuda``). For each flow family and library it measures

* ``train ms``: one Adam step of ``-log_prob(x).mean()`` on a batch (median over repeats), and ``steps/s``,
* ``logp/s``: log-densities per second (``no_grad``),
* ``samp/s``: samples per second (``no_grad``),

for our flows with the default settings (``ours``: public PyTorch kernels), with the opt-in oneDNN kernel
backend (``ours+onednn``, CPU only, ``PUSHFORWARD_BACKEND=onednn``) and optionally under ``torch.compile``
(``ours+compile``). Every family runs at ``--features`` (D=43) and at ``--small-features`` (D=2, where the
per-call overhead dominates).

then prints each throughput's ratio to the fastest peer, and GFLOP/s: the dense FLOPs of the conditioner
networks (train step = 3x forward; sampling = 1x forward, the work of a one-pass inverse) divided by the time,
next to the GFLOP/s of plain ``torch.mm`` calls of the same shapes (``mm``), the best the hardware does on
those shapes. Measurements are interleaved across libraries (round robin) so load changes hit all alike.

Usage (peers come with the ``bench`` extra: ``pip install -e ".[bench]"``)::

    .venv/bin/python benchmarks/speed.py --threads 1          # all families, D=43 and D=2
    .venv/bin/python benchmarks/speed.py --threads 1 --families maf nsf-ar --repeats 5
    .venv/bin/python benchmarks/speed.py --compile            # adds our torch.compile'd train step
    .venv/bin/python benchmarks/speed.py --device cuda        # the same table on a GPU
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import torch
from torch import Tensor, nn

from pushforward.checks import set_validation
from pushforward.flows import MAF, NSF, RealNVP
from pushforward.nets import fast_linear


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
    backend: str | None = None  # our kernel backend for this row (None: the process default)


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
def _no_sync() -> None:
    return None


_SYNC: Callable[[], None] = _no_sync  # torch.cuda.synchronize with --device cuda
_CLOCK: Callable[[], float] = time.perf_counter  # roofline.py --cpu-time: time.process_time


def _median_time(fn: Callable[[], object]) -> float:
    _SYNC()
    start = _CLOCK()
    fn()
    _SYNC()
    return _CLOCK() - start


def cpu_model() -> str:
    """The CPU's name, family/model numbers and widest vector unit (``/proc/cpuinfo`` on Linux; virtual
    machines often report only a vendor name, the family/model numbers then identify the core)."""
    info: dict[str, str] = {}
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if not line.strip():
                    break  # first processor only
                key, _, value = line.partition(":")
                info[key.strip()] = value.strip()
    except OSError:
        return platform.processor() or platform.machine()
    flags = set(info.get("flags", "").split())
    simd = "AVX-512" if "avx512f" in flags else "AVX2" if "avx2" in flags else "no AVX2"
    name, fam, model = info.get("model name", "?"), info.get("cpu family", "?"), info.get("model", "?")
    return f"{name} (family {fam}, model {model}, {simd})"


def matmul_gflops(layers: list[tuple[int, int]], batch: int, repeats: int = 5, device: str = "cpu") -> float:
    """GFLOP/s of plain fp32 ``torch.mm`` over the same (batch x in) @ (in x out) shapes."""
    mats = [(torch.randn(batch, i, device=device), torch.randn(i, o, device=device)) for i, o in layers]
    flops = sum(2 * batch * i * o for i, o in layers)

    def run() -> None:
        for a, b in mats:
            torch.mm(a, b)

    run()
    return flops / min(_median_time(run) for _ in range(repeats)) / 1e9


def _backend(m: Model):
    return fast_linear.use_backend(m.backend) if m.backend else contextlib.nullcontext()


def adam_step(m: Model, opt: torch.optim.Optimizer, x: Tensor) -> None:
    """One plain training step of ``m`` (``-log_prob(x).mean()``, backward, ``opt.step()``): the step every
    library is timed with."""
    with _backend(m):
        opt.zero_grad(set_to_none=True)
        (-(m.train_loss or m.log_prob)(x).mean()).backward()
        opt.step()


def measure(
    models: dict[str, Model],
    batch: int,
    D: int,
    repeats: int,
    sample_repeats: int,
    seed: int = 0,
    device: str = "cpu",
    engine_step: bool = False,
) -> dict[str, dict[str, float]]:
    """Median times of a training step (``torch.optim.Adam`` defaults for every library), ``log_prob`` and
    sampling, libraries interleaved. ``engine_step=True`` also times, for ``"ours"`` only, the step our
    training engine takes (``"engine"``: its default optimizer, fused Adam where the build has it, and its
    guarded step with the default gradient clipping, ``pushforward.train.skip_nonfinite_step``)."""
    from pushforward.train import TrainConfig, skip_nonfinite_step
    from pushforward.train.engine import default_optimizer

    g = torch.Generator().manual_seed(seed)
    x = torch.randn(batch, D, generator=g).to(device)
    opts = {k: torch.optim.Adam(m.module.parameters(), lr=1e-4) for k, m in models.items()}
    times: dict[str, dict[str, list[float]]] = {k: {"train": [], "logp": [], "samp": []} for k in models}
    engine = engine_step and "ours" in models
    if engine:
        eng_params = list(models["ours"].module.parameters())
        eng_opt = default_optimizer(eng_params, 1e-4, 0.0)
        clip = TrainConfig().clip_grad
        times["ours"]["engine"] = []

    def engine_train() -> None:
        m = models["ours"]
        with _backend(m):
            skip_nonfinite_step(-(m.train_loss or m.log_prob)(x).mean(), eng_params, eng_opt, clip)

    def train(k: str) -> None:
        adam_step(models[k], opts[k], x)

    def logp(k: str) -> None:
        with torch.no_grad(), _backend(models[k]):
            models[k].log_prob(x)

    def samp(k: str) -> None:
        with torch.no_grad(), _backend(models[k]):
            models[k].sample(batch)

    for k in models:  # warm-up (and compilation, if any)
        train(k)
        train(k)
        logp(k)
        samp(k)
    if engine:
        engine_train()
    for r in range(repeats):
        for k in models:
            times[k]["train"].append(_median_time(lambda k=k: train(k)))
            if engine and k == "ours":
                times[k]["engine"].append(_median_time(engine_train))
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
        f"{'library':<19}{'train ms':>10}{'steps/s':>9}{'logp/s':>10}{'samp/s':>10}"
        f"{'train GF/s':>12}{'logp GF/s':>11}{'samp GF/s':>11}  note",
    ]
    for k, r in res.items():
        lines.append(
            f"{k:<19}{1e3 * r['train']:>10.1f}{1 / r['train']:>9.1f}{batch / r['logp']:>10.0f}"
            f"{batch / r['samp']:>10.0f}"
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
                    f"{k + ' / best':<19}{best['train'] / r['train']:>18.2f}x{best['logp'] / r['logp']:>9.2f}x"
                    f"{best['samp'] / r['samp']:>9.2f}x  (best peer: train {who['train']}, logp "
                    f"{who['logp']}, samp {who['samp']})"
                )
    return "\n".join(lines)


def _families(D: int, args: argparse.Namespace, small: bool) -> dict[str, Callable[[], Family]]:
    T, K = args.transforms, args.bins
    h_maf = args.hidden_small if small else args.hidden_maf
    h_nsf = args.hidden_small if small else args.hidden_nsf
    return {
        "maf": lambda: maf_family(D, T, h_maf),
        "nsf-ar": lambda: nsf_ar_family(D, T, h_nsf, K),
        "realnvp": lambda: realnvp_family(D, T, h_maf),
        "nsf-c": lambda: nsf_c_family(D, T, h_nsf, K),
    }


def run_family(fam: Family, D: int, B: int, args: argparse.Namespace) -> dict:
    models: dict[str, Model] = {}
    notes: dict[str, str] = {}
    for lib in args.libs:
        if lib == "normflows" and fam.name == "MAF" and not args.iaf_rows:
            continue  # IAF direction, D-pass density: not a peer, and minutes per round under load
        try:
            models[lib] = fam.builders[lib]()
            models[lib].module.to(args.device)
            notes[lib] = models[lib].note
        except Exception as e:  # a peer that cannot build this architecture is reported, not fatal
            models.pop(lib, None)
            print(f"  {fam.name}/{lib}: skipped ({type(e).__name__}: {e})")
    if "ours" in models:
        ours = models["ours"]
        ours.backend = "torch"
        ours.note = notes["ours"] = (ours.note + "; public PyTorch kernels (default)").lstrip("; ")
        if args.device == "cpu" and not args.no_onednn and fast_linear.available():
            m = fam.builders["ours"]()
            m.module.load_state_dict(ours.module.state_dict())
            m.backend = "onednn"
            m.note = "opt-in PUSHFORWARD_BACKEND=onednn (private op)"
            models["ours+onednn"], notes["ours+onednn"] = m, m.note
        if args.compile:
            m = fam.builders["ours"]()
            m.module.load_state_dict(ours.module.state_dict())
            m.module.to(args.device)
            compiled = torch.compile(m.module.log_prob)
            models["ours+compile"] = Model(m.module, compiled, m.sample, "torch.compile(flow.log_prob)")
            models["ours+compile"].backend = "torch"
            notes["ours+compile"] = models["ours+compile"].note
    res = measure(models, B, D, args.repeats, args.sample_repeats, device=args.device)
    mm = matmul_gflops(fam.layers, B, device=args.device)
    peers = [k for k, m in models.items() if not k.startswith("ours") and m.comparable]
    text = report(fam, res, B, mm, notes, peers)
    if "zuko" in res:
        text += (
            "\n"
            + "  steps/s over zuko's: "
            + ", ".join(
                f"{k} {res['zuko']['train'] / r['train']:.2f}x"
                for k, r in res.items()
                if k.startswith("ours")
            )
        )
    print(f"\n[D={D}]" + text, flush=True)
    return {"results": res, "mm_gflops": mm, "peers": peers}


def main() -> None:
    global _SYNC
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--families", nargs="+", default=["maf", "nsf-ar", "realnvp", "nsf-c"])
    ap.add_argument("--libs", nargs="+", default=["ours", "zuko", "nflows", "normflows"])
    ap.add_argument("--features", type=int, default=43)
    ap.add_argument("--small-features", type=int, default=2, help="second, overhead-bound size (0: skip)")
    ap.add_argument("--hidden-small", type=int, default=128, help="hidden width of every family at D=2")
    ap.add_argument("--batch", type=int, default=512)
    ap.add_argument("--transforms", type=int, default=5)
    ap.add_argument("--hidden-maf", type=int, default=512)
    ap.add_argument("--hidden-nsf", type=int, default=256)
    ap.add_argument("--bins", type=int, default=8)
    ap.add_argument("--repeats", type=int, default=7)
    ap.add_argument("--sample-repeats", type=int, default=3)
    ap.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's choice)")
    ap.add_argument("--device", default="cpu", help="cpu or cuda")
    ap.add_argument("--compile", action="store_true", help="also time our flows under torch.compile")
    ap.add_argument("--no-onednn", action="store_true", help="skip the opt-in oneDNN row")
    ap.add_argument("--iaf-rows", action="store_true", help="also time normflows' MAF (IAF direction)")
    ap.add_argument("--json", type=str, default=None)
    args = ap.parse_args()

    if args.threads:
        torch.set_num_threads(args.threads)
    if args.device.startswith("cuda"):
        if not torch.cuda.is_available():
            raise SystemExit("--device cuda: no CUDA device here")
        _SYNC = torch.cuda.synchronize
    set_validation(False)  # no NaN checks inside timed code (peers do none)
    torch.manual_seed(0)
    B = args.batch
    load = os.getloadavg()
    where = cpu_model()
    if args.device.startswith("cuda"):
        where = f"{torch.cuda.get_device_name()} (host CPU {where})"
    small = f"; D={args.small_features}: all 2x{args.hidden_small}" if args.small_features else ""
    onednn = fast_linear.available() and args.device == "cpu" and not args.no_onednn
    print(
        f"device {args.device}: {where}; {torch.get_num_threads()} threads, {os.cpu_count()} CPUs, load average "
        f"{load[0]:.1f} {load[1]:.1f} {load[2]:.1f}; torch {torch.__version__}\n"
        f"batch={B}, {args.transforms} transforms, fp32; D={args.features}: MAF/RealNVP 2x{args.hidden_maf}, "
        f"NSF 2x{args.hidden_nsf} with {args.bins} bins{small}\n"
        f"ours: kernel backend {fast_linear.backend()!r} (public PyTorch); ours+onednn: "
        + ("opt-in backend, measured" if onednn else "not measured")
    )
    a = torch.randn(1024, 1024, device=args.device)
    big = 2 * 1024**3 / min(_median_time(lambda: a @ a) for _ in range(5)) / 1e9
    print(f"plain fp32 matmul 1024^3: {big:.0f} GFLOP/s")
    out: dict = {
        "cpu": cpu_model(),
        "device": args.device,
        "load": load,
        "threads": torch.get_num_threads(),
        "matmul_1024": big,
        "families": {},
    }
    sizes = [args.features] + ([args.small_features] if args.small_features else [])
    for D in sizes:
        makers = _families(D, args, small=D != args.features)
        for name in args.families:
            fam = makers[name]()
            out["families"][f"{fam.name} D={D}"] = run_family(fam, D, B, args)
    out["load_end"] = os.getloadavg()
    print(
        f"\nload average at the end: {out['load_end'][0]:.1f} {out['load_end'][1]:.1f} {out['load_end'][2]:.1f}"
    )
    if args.json:
        with open(args.json, "w") as f:
            json.dump(out, f, indent=1)


if __name__ == "__main__":
    main()
