"""Kernels against the NumPy reference: bit for bit, every rule, every path."""

from __future__ import annotations

import zlib

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import fastopt
from fastopt.registry import RULES

from conftest import (
    DTYPES,
    PARALLEL,
    SERIAL,
    SHAPE_CASES,
    assert_same,
    assert_same_state,
    copy_params,
    make_params,
    random_grads,
    rule_configs,
    use_kernel,
)

#: Long enough for every rule's step-dependent terms to change regime (RAdam
#: rectifies from step 6, Adafactor's weight decays as t**-0.8) and for a
#: wrong bit to spread (it was 200: the suite must stay within a few minutes).
STEPS = 60


def run_variants(rule, kwargs, params, steps, rng, variants=(SERIAL, PARALLEL), arena=False, grad_scale=1.0):
    """The reference and one fast optimizer per kernel variant, stepped on the
    same grads: ``(ref, ref_params, [(variant, fast, fast_params), ...])``."""
    ref, ref_params = rule.reference(**kwargs), copy_params(params)
    runs = []
    for variant in variants:
        fast = rule.fast(**kwargs)
        use_kernel(fast, variant)
        fast_params = copy_params(params)
        fast_grads = None
        if arena:
            fast_params = fastopt.flatten(fast_params)
            fast_grads = fastopt.zeros_like(fast_params)
        runs.append((variant, fast, fast_params, fast_grads))
    for _ in range(steps):
        grads = random_grads(params, rng, grad_scale)
        for _, fast, fast_params, fast_grads in runs:
            if fast_grads is not None:
                for k, g in grads.items():
                    fast_grads[k][...] = g
                fast.update(fast_params, fast_grads)
            else:
                fast.update(fast_params, grads)
        ref.update(ref_params, grads)
    return ref, ref_params, [(v, f, p) for v, f, p, _ in runs]


def run_both(rule, kwargs, params, steps, rng, variant, arena=False, grad_scale=1.0):
    ref, ref_params, [(_, fast, fast_params)] = run_variants(rule, kwargs, params, steps, rng, (variant,), arena,
                                                             grad_scale)
    return fast, ref, fast_params, ref_params


def _seed(*parts) -> int:
    # Not hash(): str hashes change from process to process.
    return zlib.crc32("/".join(map(str, parts)).encode())


@pytest.mark.parametrize("dtype", DTYPES, ids=["f32", "f64"])
@pytest.mark.parametrize("case", SHAPE_CASES)
@pytest.mark.parametrize("rule, kwargs", rule_configs())
def test_kernel_matches_reference(rule, kwargs, case, dtype):
    # Serial and parallel kernels against one reference run.
    rng = np.random.default_rng(_seed(rule.name, case))
    params = make_params(case, dtype, rng)
    ref, ref_params, runs = run_variants(rule, kwargs, params, STEPS, rng)
    for variant, fast, fast_params in runs:
        assert_same(fast_params, ref_params)
        assert_same_state(fast, ref)
        assert fast.step_count == ref.step_count == STEPS, variant


@pytest.mark.parametrize("dtype", DTYPES, ids=["f32", "f64"])
@pytest.mark.parametrize("rule, kwargs", rule_configs())
def test_arena_matches_reference(rule, kwargs, dtype):
    rng = np.random.default_rng(7)
    params = make_params("several", dtype, rng)
    ref, ref_params, runs = run_variants(rule, kwargs, params, STEPS, rng, arena=True)
    for variant, fast, fast_params in runs:
        assert_same(fast_params, ref_params)
        assert_same_state(fast, ref)


@pytest.mark.parametrize("rule", RULES, ids=lambda r: r.name)
def test_parallel_kernel_splits_large_buffers_identically(rule):
    # Large enough that every thread gets a chunk; compares against serial
    # and against the reference.
    rng = np.random.default_rng(3)
    params = {"w": rng.standard_normal(100_003).astype(np.float32)}
    results = []
    for variant in (SERIAL, PARALLEL):
        fast, ref, fast_params, ref_params = run_both(
            rule, {}, params, 5, np.random.default_rng(11), variant
        )
        assert_same(fast_params, ref_params)
        assert_same_state(fast, ref)
        results.append(fast_params["w"])
    assert results[0].tobytes() == results[1].tobytes()


@pytest.mark.parametrize("options", [{}, {"clip_norm": 1.0}], ids=["plain", "clip_norm"])
@pytest.mark.parametrize("rule", RULES, ids=lambda r: r.name)
def test_matches_reference_with_extreme_gradients(rule, options):
    # Tiny, huge, zero, signed-zero, inf and nan (of both signs: 0/0 makes a
    # negative one on x86) gradients go through the same operations in both
    # implementations, in a vector and in a matrix (Adafactor's factors).
    g_values = np.array([0.0, -0.0, 1e-30, -1e30, np.inf, -np.inf, np.nan, -np.nan, 3.0], np.float32)
    params = {"w": np.linspace(-1, 1, g_values.size).astype(np.float32),
              "W": np.linspace(-2, 2, 3 * g_values.size).astype(np.float32).reshape(3, g_values.size)}
    grads = {"w": g_values, "W": np.stack([g_values, g_values[::-1], np.ones_like(g_values)])}
    fast, ref = rule.fast(**options), rule.reference(**options)
    fp, rp = copy_params(params), copy_params(params)
    for _ in range(3):
        with np.errstate(all="ignore"):
            fast.update(fp, {k: g.copy() for k, g in grads.items()})
            ref.update(rp, {k: g.copy() for k, g in grads.items()})
    assert_same(fp, rp)
    assert_same_state(fast, ref)


def _hyperparameter_strategy(rule):
    # Ranges come from each hyperparameter's declared check.
    return st.fixed_dictionaries(
        {n: st.floats(*rule.test_range(n)) for n in rule.hyperparameter_names}
    )


def _engine_options():
    return st.fixed_dictionaries({}, optional={
        "clip_norm": st.floats(1e-3, 10.0),
        "clip_value": st.floats(1e-3, 3.0),
        "maximize": st.booleans(),
        "state_dtype": st.sampled_from([None, "float32", "float64", "bfloat16", "int8"]),
    })


@st.composite
def _cases(draw):
    rule = draw(st.sampled_from(RULES))
    kwargs = draw(_hyperparameter_strategy(rule))
    kwargs.update(draw(_engine_options()))
    if kwargs.get("state_dtype") in ("bfloat16", "int8"):
        try:
            rule.fast(**kwargs)
        except fastopt.HyperparameterError as exc:  # a rule that keeps no such state (it says so)
            assert "state_dtype" in str(exc) and rule.name in str(exc)
            kwargs["state_dtype"] = None
    dtype = draw(st.sampled_from(DTYPES))
    shapes = draw(
        st.dictionaries(
            st.text("abcdefgh", min_size=1, max_size=3),
            st.lists(st.integers(0, 6), min_size=0, max_size=3).map(tuple),
            min_size=1,
            max_size=4,
        )
    )
    steps = draw(st.integers(1, 12))
    variant = draw(st.sampled_from([SERIAL, PARALLEL]))
    seed = draw(st.integers(0, 2**32 - 1))
    scale = draw(st.sampled_from([1e-3, 1.0, 1e3]))
    return rule, kwargs, dtype, shapes, steps, variant, seed, scale


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(_cases())
def test_hypothesis_cases_match_reference(case):
    rule, kwargs, dtype, shapes, steps, variant, seed, scale = case
    rng = np.random.default_rng(seed)
    params = {k: rng.standard_normal(s).astype(dtype) for k, s in shapes.items()}
    with np.errstate(all="ignore"):
        fast, ref, fast_params, ref_params = run_both(
            rule, kwargs, params, steps, rng, variant, grad_scale=scale
        )
    assert_same(fast_params, ref_params)
    assert_same_state(fast, ref)


@pytest.mark.parametrize("rule", RULES, ids=lambda r: r.name)
def test_changing_hyperparameters_between_steps_matches_and_never_recompiles(rule):
    rng = np.random.default_rng(5)
    params = {"w": rng.standard_normal(50).astype(np.float32)}
    fast, ref = rule.fast(), rule.reference()
    fp, rp = copy_params(params), copy_params(params)
    compiled_after_warmup = None
    for i in range(1, 30):
        for opt in (fast, ref):
            opt.lr = 0.001 * i
            if "weight_decay" in rule.fast.hyperparameter_names:
                opt.weight_decay = 0.0 if i % 3 else 0.01 * i
        use_kernel(fast, SERIAL if i % 2 else PARALLEL)
        grads = random_grads(params, rng)
        fast.update(fp, grads)
        ref.update(rp, grads)
        if i == 2:  # serial and parallel have run once
            compiled_after_warmup = {d.__name__: list(d.signatures) for d in fast.kernel.variants()}
    assert_same(fp, rp)
    assert_same_state(fast, ref)
    # What other tests of this process compiled does not count (the
    # hypothesis test may draw another state dtype): nothing new since.
    for dispatcher in fast.kernel.variants():
        assert list(dispatcher.signatures) == compiled_after_warmup[dispatcher.__name__], dispatcher.__name__


@pytest.mark.parametrize("dtype", DTYPES, ids=["f32", "f64"])
@pytest.mark.parametrize("rule, kwargs", rule_configs())
def test_interpreted_kernel_body_matches_reference(rule, kwargs, dtype):
    # The same loop run by the Python interpreter (as under NUMBA_DISABLE_JIT=1):
    # coverage sees the kernel bodies, and the arithmetic must still be exact,
    # which holds only if every operation keeps the param dtype.
    from fastopt._jit import Kernel

    rng = np.random.default_rng(13)
    params = make_params("several", dtype, rng)
    fast, ref = rule.fast(**kwargs), rule.reference(**kwargs)
    py_func, norms = fast.kernel.py_func, fast.kernel.norms
    fast.kernel = Kernel(fast.kernel.name, py_func, py_func, py_func, norms and (norms[0],) * 3)
    fast_params, ref_params = copy_params(params), copy_params(params)
    for _ in range(20):
        grads = random_grads(params, rng)
        fast.update(fast_params, grads)
        ref.update(ref_params, grads)
    assert_same(fast_params, ref_params)
    assert_same_state(fast, ref)


@pytest.mark.parametrize("rule", RULES, ids=lambda r: r.name)
def test_scalars_beyond_float32_range_round_to_inf_like_numpy(rule):
    # A finite Python float above float32's range must become inf in the
    # kernel's scalars exactly as np.float32(x) makes it in the reference.
    params = {"w": np.linspace(-1, 1, 7).astype(np.float32)}
    fast, ref = rule.fast(lr=1e39), rule.reference(lr=1e39)
    fp, rp = copy_params(params), copy_params(params)
    grads = {"w": np.linspace(-0.5, 0.5, 7).astype(np.float32)}
    with np.errstate(all="ignore"):
        for _ in range(2):
            fast.update(fp, grads)
            ref.update(rp, grads)
    assert_same(fp, rp)
    assert_same_state(fast, ref)
