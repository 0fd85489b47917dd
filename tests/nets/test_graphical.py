"""The graphical conditioner: NOTEARS acyclicity, DAG pruning, the dependency structure it enforces."""

from __future__ import annotations

import math

import pytest
import torch

from pushforward.nets import GraphicalConditioner
from pushforward.nets.graphical import is_acyclic, notears_acyclicity, prune_to_dag


def test_notears_is_zero_on_dags_and_matches_the_two_cycle_formula():
    dag = torch.tensor([[0.0, 0.7, 0.2], [0.0, 0.0, 0.9], [0.0, 0.0, 0.0]])
    assert float(notears_acyclicity(dag)) == pytest.approx(0.0, abs=1e-6)
    a, b = 0.6, 0.8
    cycle = torch.tensor([[0.0, a], [b, 0.0]], dtype=torch.float64)
    # tr exp([[0, a²], [b², 0]]) − 2 = 2 cosh(ab) − 2
    assert float(notears_acyclicity(cycle)) == pytest.approx(2 * math.cosh(a * b) - 2, rel=1e-10)
    with pytest.raises(ValueError, match="square"):
        notears_acyclicity(torch.zeros(2, 3))


def test_is_acyclic_and_prune_to_dag():
    assert is_acyclic(torch.tensor([[0, 1], [0, 0]]))
    assert not is_acyclic(torch.tensor([[0, 1], [1, 0]]))
    assert not is_acyclic(torch.tensor([[1, 0], [0, 0]]))
    weights = torch.tensor([[0.0, 0.9, 0.1], [0.6, 0.0, 0.8], [0.7, 0.2, 0.0]])
    dag = prune_to_dag(weights, 0.5)
    # strongest first: 0→1 (0.9), 1→2 (0.8); 2→0 (0.7) and 1→0 (0.6) would close cycles
    expected = torch.tensor([[0.0, 1.0, 0.0], [0.0, 0.0, 1.0], [0.0, 0.0, 0.0]])
    torch.testing.assert_close(dag, expected)


def test_outputs_depend_on_the_parents_only():
    dag = torch.tensor([[0, 1, 0, 1], [0, 0, 0, 0], [1, 1, 0, 0], [0, 0, 0, 0]], dtype=torch.float32)
    net = GraphicalConditioner(4, 2, (16,), structure=dag).double()
    with torch.no_grad():
        for p in net.parameters():
            p.add_(0.3 * torch.randn_like(p))
    x = torch.randn(1, 4, dtype=torch.float64)
    jac = torch.autograd.functional.jacobian(lambda v: net(v.view(1, 4)).sum(-1).view(4), x.view(4))
    depends = jac.abs() > 0  # depends[j, i]: output of variable j reads x_i
    torch.testing.assert_close(depends.T.double(), dag.double())


def test_learning_mode_masks_are_random_and_freeze_makes_them_fixed():
    torch.manual_seed(0)
    net = GraphicalConditioner(3, 2, (8,))
    with torch.no_grad():
        for p in net.parameters():
            p.add_(0.3 * torch.randn_like(p))
    x = torch.randn(5, 3)
    net.train()
    assert not torch.allclose(net(x), net(x))
    net.eval()
    torch.testing.assert_close(net(x), net(x))
    net.freeze(0.4)
    net.train()
    torch.testing.assert_close(net(x), net(x))
    assert net.is_dag()


def test_bad_arguments():
    with pytest.raises(ValueError, match="self-loops"):
        GraphicalConditioner(2, 2, structure=torch.eye(2))
    with pytest.raises(ValueError, match="shape"):
        GraphicalConditioner(2, 2, structure=torch.zeros(3, 3))
    with pytest.raises(ValueError, match="input of shape"):
        GraphicalConditioner(2, 2)(torch.randn(4, 3))
