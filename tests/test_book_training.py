"""A book-style training loop trains bit-identically with fastopt and the reference."""

from __future__ import annotations

import numpy as np
import pytest

import fastopt
from fastopt._demo import LEARNING_RATES, train_pair
from fastopt.book import MultiLayerNet, teacher_dataset
from fastopt.registry import RULES


@pytest.mark.parametrize("rule", RULES, ids=lambda r: r.name)
def test_book_network_trains_identically(rule):
    fast_net, ref_net, _, _, losses = train_pair(rule, iterations=60, hidden=(32, 32), batch_size=50)
    for key in fast_net.params:
        assert fast_net.params[key].dtype == np.float64
        assert fast_net.params[key].tobytes() == ref_net.params[key].tobytes(), key
        # the layers still hold the very arrays the optimizer updated
    for i in (1, 2, 3):
        assert fast_net.layers[f"Affine{i}"].W is fast_net.params[f"W{i}"]
    assert np.mean(losses[-10:]) < 0.8 * np.mean(losses[:10])


@pytest.mark.parametrize("rule", RULES, ids=lambda r: r.name)
def test_book_network_with_arena_and_weight_decay(rule):
    x, t = teacher_dataset(n_samples=300, seed=1)
    nets = [MultiLayerNet(64, (16,), 10, seed=2, weight_decay_lambda=0.01) for _ in range(2)]
    # Re-point the fast net's layers at arena views, as a user adopting
    # fastopt.flatten would.
    fast_net = nets[0]
    fast_net.params = fastopt.flatten(fast_net.params)
    for i in (1, 2):
        fast_net.layers[f"Affine{i}"].W = fast_net.params[f"W{i}"]
        fast_net.layers[f"Affine{i}"].b = fast_net.params[f"b{i}"]
    grads_arena = fastopt.zeros_like(fast_net.params)
    lr = LEARNING_RATES[rule.name]
    kwargs = {"lr": lr, "weight_decay": 1e-3} if "weight_decay" in rule.hyperparameter_names else {"lr": lr}
    fast, ref = rule.fast(**kwargs), rule.reference(**kwargs)
    for step in range(40):
        batch = slice(step * 7 % 250, step * 7 % 250 + 50)
        _, g = fast_net.gradient(x[batch], t[batch])
        for k in g:
            grads_arena[k][...] = g[k]
        fast.update(fast_net.params, grads_arena)
        _, g = nets[1].gradient(x[batch], t[batch])
        ref.update(nets[1].params, g)
    for key in nets[1].params:
        assert fast_net.params[key].tobytes() == nets[1].params[key].tobytes(), key
