"""Graphical normalizing flows: penalty, augmented Lagrangian, freezing to an exact DAG flow, the plot."""

from __future__ import annotations

import pytest
import torch

from pushforward.flows import GraphicalFlow, plot_adjacency


def test_penalty_reaches_the_graph_and_lagrangian_updates():
    torch.manual_seed(0)
    flow = GraphicalFlow(3, hidden=(8,), l1=0.1, rho=1.0)
    loss = -flow.log_prob(torch.randn(16, 3)).mean() + flow.penalty()
    loss.backward()
    logits = flow.conditioners[0].edge_logits
    assert logits.grad is not None and bool(logits.grad.abs().sum() > 0)
    h = float(flow.acyclicity())
    assert h > 0
    returned = flow.update_lagrangian()
    assert returned == pytest.approx(h, rel=1e-6)
    assert float(flow.alpha) == pytest.approx(float(flow.rho) * h, rel=1e-5)


def test_frozen_graph_gives_an_exact_density():
    torch.manual_seed(1)
    flow = GraphicalFlow(2, hidden=(8,), transformer="spline").double()
    with torch.no_grad():
        for p in flow.parameters():
            p.add_(0.3 * torch.randn_like(p))
    flow.freeze(0.3)
    assert flow.is_dag() and float(flow.acyclicity()) == pytest.approx(0.0, abs=1e-12)
    g = torch.linspace(-8, 8, 401, dtype=torch.float64)
    grid = torch.cartesian_prod(g, g)
    with torch.no_grad():
        total = float(flow.log_prob(grid).exp().sum()) * float(g[1] - g[0]) ** 2
    assert total == pytest.approx(1.0, abs=3e-3)
    x, log_p = flow.sample_and_log_prob((6,))
    torch.testing.assert_close(log_p, flow.log_prob(x))


def test_adjacency_reads_the_graph_and_plots_standalone():
    flow = GraphicalFlow(4, hidden=(8,), layers=2)
    a = flow.adjacency()
    assert a.shape == (4, 4) and float(a.diagonal().abs().sum()) == 0.0
    truth = torch.zeros(4, 4)
    truth[0, 1] = 1
    fig = plot_adjacency(a, ["a", "b", "c", "d"], truth=truth)
    assert type(fig).__name__ == "Figure" and len(fig.axes) == 2
    assert fig.canvas.manager is None  # a standalone figure, not registered with pyplot
    with pytest.raises(ValueError, match="names"):
        plot_adjacency(a, ["a"])


def test_bad_arguments():
    with pytest.raises(ValueError, match="transformer"):
        GraphicalFlow(3, transformer="cubic")
    with pytest.raises(ValueError, match="layers"):
        GraphicalFlow(3, layers=0)
