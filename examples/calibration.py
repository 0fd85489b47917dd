"""Calibrate a classifier's probabilities by maximum likelihood with simplex flows (Kull et al., 2019).

A small network trained to over-fit a 4-class problem is over-confident. Its probability vectors p are
recalibrated with q = f(p) for

* ``CalibrationTransform(shift=False)`` — temperature scaling, q = softmax(log p / a);
* ``CalibrationTransform`` — q = softmax(log p / a + c);
* ``GeneralizedCalibration`` — q = softmax(A log p + c) with A1 = λ1,

each fitted on a held-out calibration split by maximising the likelihood of the labels, Σ log q_y.
Reported on a test split: the label NLL (cross-entropy) and the expected calibration error (ECE).
Finally, a *generative* view: a flow on the simplex, Dirichlet base pushed through a generalised calibration,
fitted to the probability vectors themselves; its density is w.r.t. the simplex's area (Hausdorff) measure.

Run: ``nice .venv/bin/python examples/calibration.py``.
"""

from __future__ import annotations

import argparse
import itertools

import torch
import torch.nn.functional as F
from torch import nn

from pushforward import Flow, fit
from pushforward.distributions import Dirichlet
from pushforward.train.fit import evaluate_nll
from pushforward.transforms import CalibrationTransform, GeneralizedCalibration, Transform


def make_data(n: int, g: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    centers = torch.tensor([[0.0, 0.0], [1.5, 0.5], [0.3, 1.6], [1.4, 1.9]])
    y = torch.randint(0, 4, (n,), generator=g)
    x = centers[y] + 0.75 * torch.randn(n, 2, generator=g)
    return torch.cat([x, x.pow(2), x.prod(-1, keepdim=True)], -1), y


def ece(p: torch.Tensor, y: torch.Tensor, bins: int = 15) -> float:
    conf, pred = p.max(-1)
    edges = torch.linspace(0, 1, bins + 1)
    total = 0.0
    for lo, hi in itertools.pairwise(edges):
        m = (conf > lo) & (conf <= hi)
        if m.any():
            total += float(m.float().mean()) * abs(float((pred[m] == y[m]).float().mean() - conf[m].mean()))
    return total


def calibrate(t: Transform, p: torch.Tensor, y: torch.Tensor, steps: int = 500) -> Transform:
    opt = torch.optim.Adam(t.parameters(), lr=0.05)
    for _ in range(steps):
        q = t.map(p)
        loss = F.nll_loss(q.log(), y)
        opt.zero_grad()
        loss.backward()
        opt.step()
    return t


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    torch.set_num_threads(1)
    torch.manual_seed(args.seed)
    g = torch.Generator().manual_seed(args.seed)
    (x_tr, y_tr), (x_cal, y_cal), (x_te, y_te) = make_data(300, g), make_data(3000, g), make_data(10000, g)

    net = nn.Sequential(nn.Linear(5, 128), nn.ReLU(), nn.Linear(128, 128), nn.ReLU(), nn.Linear(128, 4))
    opt = torch.optim.Adam(net.parameters(), lr=3e-3)
    for _ in range(2000):  # over-fit: no regularisation, many epochs on 300 points
        loss = F.cross_entropy(net(x_tr), y_tr)
        opt.zero_grad()
        loss.backward()
        opt.step()
    with torch.no_grad():
        eps = 1e-6  # keep probabilities inside the open simplex
        probs = [(1 - 4 * eps) * F.softmax(net(x).double(), -1) + eps for x in (x_cal, x_te)]
    p_cal, p_te = probs
    acc = float((p_te.argmax(-1) == y_te).float().mean())
    print(f"classifier test accuracy {acc:.3f}")
    print(f"{'calibration':28s} {'test NLL':>9s} {'test ECE':>9s}")
    print(f"{'none':28s} {F.nll_loss(p_te.log(), y_te).item():9.4f} {ece(p_te, y_te):9.4f}")
    for name, t in [
        ("temperature scaling", CalibrationTransform(4, shift=False)),
        ("temperature + shift", CalibrationTransform(4)),
        ("generalized (A1 = λ1)", GeneralizedCalibration(4)),
    ]:
        t = calibrate(t.double(), p_cal, y_cal)
        with torch.no_grad():
            q = t.map(p_te)
        extra = ""
        if isinstance(t, CalibrationTransform):
            extra = f"  (temperature {float(t.temperature.detach()):.3f})"
        print(f"{name:28s} {F.nll_loss(q.log(), y_te).item():9.4f} {ece(q, y_te):9.4f}{extra}")

    # generative calibration model: a density on the simplex for the classifier's outputs
    flow = Flow(GeneralizedCalibration(4), Dirichlet([1.0] * 4, learnable=True)).double()
    before = evaluate_nll(flow, p_te)
    fit(flow, p_cal, steps=800, batch_size=500, lr=2e-2, progress=False, seed=args.seed)
    after = evaluate_nll(flow, p_te)
    print(f"flow on the simplex (Dirichlet base): test NLL of p {before:.3f} -> {after:.3f} nats (area)")


if __name__ == "__main__":
    main()
