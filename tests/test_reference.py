"""Pin the NumPy reference itself: golden values computed by hand from the
equations in DESIGN.md section 2, and the published defects it must not copy."""

from __future__ import annotations

import math

import numpy as np
import pytest

from fastopt import reference


def two_steps(cls, p0, g1, g2, **kwargs):
    opt = cls(**kwargs)
    params = {"w": np.array([p0])}
    history = []
    for g in (g1, g2):
        opt.update(params, {"w": np.array([g])})
        history.append(float(params["w"][0]))
    return history, opt


def approx(x):
    return pytest.approx(x, rel=1e-14, abs=0.0)


def test_sgd_golden():
    # p1 = 1 - 0.1 * 0.5 = 0.95;  p2 = 0.95 - 0.1 * (-1) = 1.05
    assert two_steps(reference.SGD, 1.0, 0.5, -1.0, lr=0.1)[0] == approx([0.95, 1.05])


def test_sgd_coupled_weight_decay_golden():
    # g1 = 0.5 + 0.1 * 1 = 0.6, p1 = 1 - 0.1 * 0.6 = 0.94
    # g2 = -1 + 0.1 * 0.94 = -0.906, p2 = 0.94 + 0.0906 = 1.0306
    hist, _ = two_steps(reference.SGD, 1.0, 0.5, -1.0, lr=0.1, weight_decay=0.1)
    assert hist == approx([0.94, 1.0306])


def test_momentum_golden():
    # v1 = -0.1 * 0.5 = -0.05, p1 = 0.95
    # v2 = 0.9 * -0.05 - 0.1 * 1.0 = -0.145, p2 = 0.95 - 0.145 = 0.805
    hist, opt = two_steps(reference.Momentum, 1.0, 0.5, 1.0, lr=0.1, momentum=0.9)
    assert hist == approx([0.95, 0.805])
    assert float(opt.v["w"][0]) == approx(-0.145)


def test_nesterov_golden_follows_the_paper():
    # p1 = 1 + 0.81 * 0 - 1.9 * 0.1 * 0.5 = 0.905, v1 = -0.05
    # p2 = 0.905 + 0.81 * (-0.05) - 1.9 * 0.1 * 1.0 = 0.6745, v2 = -0.145
    hist, opt = two_steps(reference.Nesterov, 1.0, 0.5, 1.0, lr=0.1, momentum=0.9)
    assert hist == approx([0.905, 0.6745])
    assert float(opt.v["w"][0]) == approx(-0.145)


def test_adagrad_golden():
    # h1 = 0.25, p1 = 1 - 0.1 * 0.5 / (0.5 + 1e-7)
    # h2 = 0.25 + 1 = 1.25, p2 = p1 - 0.1 * 1 / (sqrt(1.25) + 1e-7)
    p1 = 1 - 0.05 / (0.5 + 1e-7)
    p2 = p1 - 0.1 / (math.sqrt(1.25) + 1e-7)
    hist, opt = two_steps(reference.AdaGrad, 1.0, 0.5, 1.0, lr=0.1)
    assert hist == approx([p1, p2])
    assert float(opt.h["w"][0]) == 1.25


def test_rmsprop_golden():
    # h1 = 0.01 * 0.25 = 0.0025, p1 = 1 - 0.01 * 0.5 / (0.05 + 1e-7)
    # h2 = 0.99 * 0.0025 + 0.01 * 1 = 0.012475, p2 = p1 - 0.01 / (sqrt(0.012475) + 1e-7)
    p1 = 1 - 0.005 / (0.05 + 1e-7)
    p2 = p1 - 0.01 / (math.sqrt(0.012475) + 1e-7)
    hist, opt = two_steps(reference.RMSprop, 1.0, 0.5, 1.0, lr=0.01, decay_rate=0.99)
    assert hist == approx([p1, p2])


def test_adam_golden():
    # t=1: m = 0.05, v = 0.00025, lr_t = 0.1 * sqrt(0.001) / 0.1
    # t=2: m = 0.05 + 0.1 * (1 - 0.05) = 0.145
    #      v = 0.00025 + 0.001 * (1 - 0.00025) = 0.00124975
    #      lr_t = 0.1 * sqrt(1 - 0.999**2) / (1 - 0.9**2)
    eps = 1e-7
    p1 = 1 - (0.1 * math.sqrt(0.001) / 0.1) * 0.05 / (math.sqrt(0.00025) + eps)
    p2 = p1 - (0.1 * math.sqrt(1 - 0.999**2) / 0.19) * 0.145 / (math.sqrt(0.00124975) + eps)
    hist, opt = two_steps(reference.Adam, 1.0, 0.5, 1.0, lr=0.1)
    assert hist == approx([p1, p2])
    assert float(opt.m["w"][0]) == approx(0.145)
    assert float(opt.v["w"][0]) == approx(0.00124975)


def test_adamw_golden():
    # t=1: p *= 1 - 0.1 * 0.5 = 0.95; m = 0.05, v = 0.00025
    #      p1 = 0.95 - (0.1 / 0.1) * 0.05 / (sqrt(0.00025) / sqrt(0.001) + 1e-8)
    # t=2: p *= 0.95; m = 0.9 * 0.05 + 0.1 = 0.145; v = 0.999 * 0.00025 + 0.001 = 0.00124975
    eps = 1e-8
    p1 = 0.95 - 1.0 * 0.05 / (math.sqrt(0.00025) / math.sqrt(0.001) + eps)
    p2 = p1 * 0.95 - (0.1 / 0.19) * 0.145 / (math.sqrt(0.00124975) / math.sqrt(1 - 0.999**2) + eps)
    hist, _ = two_steps(reference.AdamW, 1.0, 0.5, 1.0, lr=0.1, weight_decay=0.5)
    assert hist == approx([p1, p2])


# -- the published defects, which the reference must not copy ----------------


def book_nesterov(params, grads, v, lr=0.01, momentum=0.9):
    """The book's listing: momentum**2 times the *updated* velocity."""
    for key in params:
        v[key] *= momentum
        v[key] -= lr * grads[key]
        params[key] += momentum * momentum * v[key]
        params[key] -= (1 + momentum) * lr * grads[key]


def test_nesterov_is_not_the_books_listing_and_matches_pytorch_form():
    rng = np.random.default_rng(0)
    p0 = rng.standard_normal(100)
    ours, book, torch_form = {"w": p0.copy()}, {"w": p0.copy()}, p0.copy()
    opt, v_book, buf = reference.Nesterov(), {"w": np.zeros(100)}, np.zeros(100)
    lr, mom = 0.01, 0.9
    for _ in range(5):
        g = rng.standard_normal(100)
        opt.update(ours, {"w": g})
        book_nesterov(book, {"w": g}, v_book)
        # PyTorch SGD(nesterov=True, dampening=0): buf = mom * buf + g; p -= lr * (g + mom * buf)
        buf = mom * buf + g
        torch_form -= lr * (g + mom * buf)
    assert np.allclose(ours["w"], torch_form, rtol=1e-12, atol=1e-14)
    assert np.allclose(opt.v["w"], -lr * buf, rtol=1e-12, atol=1e-14)
    assert not np.allclose(ours["w"], book["w"], rtol=1e-3)


def test_momentum_moves_params_on_every_call():
    opt = reference.Momentum(lr=0.1)
    params = {"w": np.array([1.0])}
    seen = []
    for _ in range(3):
        opt.update(params, {"w": np.array([1.0])})
        seen.append(float(params["w"][0]))
    assert seen[0] > seen[1] > seen[2]


def test_adagrad_accumulates_h_across_calls():
    # The notes' listing resets h each call: every step would be lr * sign(g).
    opt = reference.AdaGrad(lr=0.1)
    params = {"w": np.array([1.0])}
    opt.update(params, {"w": np.array([2.0])})
    opt.update(params, {"w": np.array([2.0])})
    assert float(opt.h["w"][0]) == 8.0
    step2 = 1.0 - 0.1 * 2 / (2 + 1e-7) - float(params["w"][0])
    assert step2 == pytest.approx(0.1 * 2 / (math.sqrt(8) + 1e-7), rel=1e-12)


def test_adam_stays_in_float32():
    rng = np.random.default_rng(0)
    p32 = rng.standard_normal(1000).astype(np.float32)
    ours = {"w": p32.copy()}
    promoted = {"w": p32.copy()}
    opt = reference.Adam(lr=0.01)
    m = np.zeros(1000, np.float32)
    v = np.zeros(1000, np.float32)
    for t in range(1, 4):
        g = rng.standard_normal(1000).astype(np.float32)
        opt.update(ours, {"w": g})
        # The book's code under NEP 50: lr_t is a NumPy float64.
        lr_t = 0.01 * np.sqrt(1.0 - 0.999**t) / (1.0 - 0.9**t)
        m += (1 - 0.9) * (g - m)
        v += (1 - 0.999) * (g**2 - v)
        promoted["w"] -= lr_t * m / (np.sqrt(v) + 1e-7)
    assert ours["w"].dtype == opt.m["w"].dtype == opt.v["w"].dtype == np.float32
    assert not np.array_equal(ours["w"], promoted["w"])  # the float64 detour changes bits
    assert np.allclose(ours["w"], promoted["w"], rtol=1e-5)
