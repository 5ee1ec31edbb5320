"""nonfinite="propagate" | "skip" | "raise": a nan or inf gradient never poisons the state."""

from __future__ import annotations

import math

import numpy as np
import pytest

import fastopt
from fastopt.registry import RULES

from conftest import PARALLEL, SERIAL, assert_same, assert_same_state, copy_params, use_kernel

rules = pytest.mark.parametrize("rule", RULES, ids=lambda r: r.name)
variants = pytest.mark.parametrize("variant", [SERIAL, PARALLEL])


def make(n_big=50_000):
    rng = np.random.default_rng(0)
    params = {"W": rng.standard_normal((30, 20)).astype(np.float32), "big": rng.standard_normal(n_big).astype(np.float32),
              "b": rng.standard_normal(20).astype(np.float32)}
    grads = [{k: rng.standard_normal(v.shape).astype(np.float32) for k, v in params.items()} for _ in range(6)]
    return params, grads


def poisoned(grads, key, index, value):
    bad = {k: g.copy() for k, g in grads.items()}
    bad[key].reshape(-1)[index] = value
    return bad


@pytest.mark.parametrize("value", [np.nan, np.inf, -np.inf])
@variants
@rules
def test_skip_leaves_everything_untouched_and_counts(rule, variant, value):
    params, grads = make()
    opt, ref = rule.fast(nonfinite="skip"), rule.reference()
    use_kernel(opt, variant)
    fast_params, ref_params = copy_params(params), copy_params(params)
    for i, g in enumerate(grads):
        opt.update(fast_params, g)
        ref.update(ref_params, g)
        if i in (1, 3):
            before = opt.state_dict()
            kept = copy_params(fast_params)
            opt.update(fast_params, poisoned(g, "big", 49_999 if i == 1 else 123, value))
            assert_same(fast_params, kept)
            assert opt.step_count == before["step"]
            for name in before["state"]:
                assert_same(opt.state[name], before["state"][name])
    assert opt.skipped_steps == 2
    assert_same(fast_params, ref_params)
    assert_same_state(opt, ref)
    assert np.isfinite(fast_params["big"]).all()


@variants
@rules
def test_raise_names_the_first_offending_key_in_layout_order(rule, variant):
    params, grads = make()
    opt = rule.fast(nonfinite="raise")
    use_kernel(opt, variant)
    opt.update(params, grads[0])
    before = opt.state_dict()
    kept = copy_params(params)
    bad = poisoned(poisoned(grads[1], "b", 19, np.nan), "big", 40_000, np.inf)
    with pytest.raises(fastopt.NonFiniteGradientError, match=r"grads\['big'\]"):
        opt.update(params, bad)  # "big" comes before "b" in the layout
    assert_same(params, kept)
    assert opt.step_count == before["step"] == 1
    assert opt.skipped_steps == 0
    with pytest.raises(FloatingPointError, match=r"grads\['b'\]"):
        opt.update(params, poisoned(grads[1], "b", 0, -np.inf))


@pytest.mark.parametrize("clip_value", [None, 0.5])
@variants
def test_the_norm_pass_finds_the_nonfinite_grads_and_only_those(variant, clip_value):
    # With clip_norm the check rides on the norm: a block is scanned only when
    # its sum is not finite (or when a clamp could have hidden an inf).
    params = {"w": np.zeros(10_000), "v": np.zeros(5)}
    opt = fastopt.SGD(lr=0.1, clip_norm=1.0, clip_value=clip_value, nonfinite="raise")
    use_kernel(opt, variant)
    huge = {"w": np.full(10_000, 1e200), "v": np.ones(5)}  # finite, but the squares overflow
    opt.update(params, huge)
    assert opt.last_grad_norm == (np.inf if clip_value is None else math.sqrt(10_000 * 0.25 + 5 * 0.25))
    for key, index in (("w", 9_999), ("v", 2)):
        for value in (np.inf, -np.inf, np.nan):
            kept = copy_params(params)
            with pytest.raises(fastopt.NonFiniteGradientError, match=rf"grads\['{key}'\]"):
                opt.update(params, poisoned(huge, key, index, value))
            assert_same(params, kept)


def test_python_float_grads_are_checked_too():
    opt = fastopt.SGD(lr=0.1, nonfinite="skip")
    params = {"x": 1.0, "y": 2.0}
    opt.update(params, {"x": float("nan"), "y": 1.0})
    assert params == {"x": 1.0, "y": 2.0} and opt.skipped_steps == 1 and opt.step_count == 0
    opt.update(params, {"x": 1.0, "y": 1.0})
    assert params == {"x": 0.9, "y": 1.9}


def test_propagate_is_the_default_and_matches_the_reference():
    params, grads = make(1000)
    opt, ref = fastopt.Adam(), fastopt.reference.Adam()
    assert opt.nonfinite == "propagate"
    bad = poisoned(grads[0], "W", 5, np.nan)
    fp, rp = copy_params(params), copy_params(params)
    with np.errstate(all="ignore"):
        opt.update(fp, bad)
        ref.update(rp, bad)
    assert_same(fp, rp)
    assert np.isnan(fp["W"].reshape(-1)[5])


def test_nonfinite_is_validated():
    with pytest.raises(ValueError, match="nonfinite"):
        fastopt.Adam(nonfinite="ignore")
    opt = fastopt.Adam()
    opt.nonfinite = "raise"
    with pytest.raises(ValueError, match="nonfinite"):
        opt.nonfinite = None
    assert opt.nonfinite == "raise"
