"""The book's own usage: shared stateless optimizers, the book's Nesterov bits,
pickling, the book's attributes, and typo-proof attributes."""

from __future__ import annotations

import copy
import pickle

import numpy as np
import pytest

import fastopt
from fastopt_bench.book import BookNesterov  # the book's common/optimizer.py, verbatim
from fastopt.registry import RULES

from conftest import assert_same, copy_params, random_grads

rules = pytest.mark.parametrize("rule", RULES, ids=lambda r: r.name)


def test_nesterov_is_bit_identical_to_the_books_code_in_float64():
    rng = np.random.default_rng(0)
    params = {"W": rng.standard_normal((30, 20)), "b": rng.standard_normal(20)}
    book, fast = BookNesterov(), fastopt.Nesterov()
    bp, fp = copy_params(params), copy_params(params)
    for _ in range(2000):
        grads = random_grads(params, rng)
        book.update(bp, grads)
        fast.update(fp, grads)
    assert_same(fp, bp)
    assert_same(fast.v, book.v, what="v")


def test_one_sgd_updates_networks_with_different_keys():
    # batch_norm_test.py: one SGD for a network with and one without batch norm.
    rng = np.random.default_rng(1)
    net_a = {"W1": rng.standard_normal((4, 3)), "b1": rng.standard_normal(3)}
    net_b = {"W1": rng.standard_normal((4, 3)), "gamma1": np.ones(3), "beta1": np.zeros(3), "b1": np.zeros(3)}
    opt, ref = fastopt.SGD(lr=0.1), fastopt.reference.SGD(lr=0.1)
    ref_a, ref_b = copy_params(net_a), copy_params(net_b)
    for _ in range(5):
        for net, ref_net in ((net_a, ref_a), (net_b, ref_b)):
            grads = random_grads(net, rng)
            opt.update(net, grads)
            ref.update(ref_net, grads)
    assert_same(net_a, ref_a)
    assert_same(net_b, ref_b)


def test_stateful_rules_keep_their_layout():
    opt = fastopt.Adam()
    opt.update({"w": np.ones(2)}, {"w": np.ones(2)})
    with pytest.raises(fastopt.KeyMismatchError):
        opt.update({"v": np.ones(2)}, {"v": np.ones(2)})


@rules
def test_pickle_and_deepcopy_round_trip_exactly(rule):
    rng = np.random.default_rng(2)
    params = {"W": rng.standard_normal((5, 4)).astype(np.float32), "b": rng.standard_normal(4).astype(np.float32)}
    for steps_before in (0, 3):
        opt = rule.fast(clip_norm=5.0, groups={"b": {"lr": 0.001}})
        p = copy_params(params)
        grads = [random_grads(params, rng) for _ in range(6)]
        for g in grads[:steps_before]:
            opt.update(p, g)
        clones = [pickle.loads(pickle.dumps(opt)), copy.deepcopy(opt), copy.copy(opt)]
        clone_params = [copy_params(p) for _ in clones]
        for g in grads[steps_before:]:
            opt.update(p, g)
            for c, cp in zip(clones, clone_params):
                c.update(cp, g)
        for c, cp in zip(clones, clone_params):
            assert_same(cp, p)
            assert c.step_count == opt.step_count
            for name in opt.state_names:
                assert_same(c.state[name], opt.state[name])
    shallow = copy.copy(opt)
    shallow.update(copy_params(p), grads[0])
    assert shallow.step_count == opt.step_count + 1  # its own step counter


def test_the_books_attributes():
    params = {"W": np.ones((2, 2)), "b": np.ones(2)}
    adam = fastopt.Adam()
    assert adam.iter == 0 and adam.m == {}
    for _ in range(3):
        adam.update(params, {k: np.ones_like(v) for k, v in params.items()})
    assert adam.iter == 3 and set(adam.m) == {"W", "b"} and adam.v["b"].shape == (2,)
    assert np.shares_memory(adam.m["W"], adam.state["m"]["W"])
    adam.iter = 0  # the book's bias-correction reset
    assert adam.step_count == 0
    ref = fastopt.reference.Adam()
    rp = {k: v.copy() for k, v in params.items()}
    ref.store = {n: {k: v.copy() for k, v in views.items()} for n, views in adam.state.items()}
    adam.update(params, {k: np.ones_like(v) for k, v in params.items()})
    ref.update(rp, {k: np.ones_like(v) for k, v in rp.items()})
    assert_same(params, rp)
    assert set(fastopt.AdaGrad().__class__.__dict__) and fastopt.Momentum().v == {}
    with pytest.raises(fastopt.HyperparameterError, match="iter"):
        adam.iter = -1


def test_unknown_attributes_raise_naming_the_hyperparameters():
    opt = fastopt.SGD()
    with pytest.raises(AttributeError, match="learnig_rate.*'lr'"):
        opt.learnig_rate = 0.1
    opt.__dict__["lr"] = 5.0  # bypassing the descriptor cannot desynchronise the kernel
    assert opt.lr == 0.01
    params = {"w": np.zeros(1)}
    opt.update(params, {"w": np.ones(1)})
    assert params["w"][0] == -0.01


def test_parallel_accepts_only_none_true_false():
    opt = fastopt.Adam()
    for bad in (np.False_, 0.0, 0, 1, "no"):
        with pytest.raises(ValueError, match="parallel"):
            opt.parallel = bad
    assert opt.parallel is None
