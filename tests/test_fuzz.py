"""Hypothesis mixes valid and malformed input: every case either matches the
reference bit for bit or raises a typed error with nothing changed."""

from __future__ import annotations

import numpy as np
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import fastopt
from fastopt.registry import RULES

from conftest import assert_same, assert_same_state

GOOD_PARAMS = ["array", "zero_d", "scalar"]
BAD_PARAMS = ["int_array", "complex_array", "float16_array", "noncontig", "readonly", "list", "none", "other_dtype"]
GOOD_GRADS = ["same", "strided_copy", "readonly"]
BAD_GRADS = ["wrong_shape", "wrong_dtype", "int_array", "is_the_param", "missing", "none"]


@st.composite
def cases(draw):
    rule = draw(st.sampled_from(RULES))
    dtype = np.dtype(draw(st.sampled_from([np.float32, np.float64])))
    n_keys = draw(st.integers(1, 4))
    entries = []
    for i in range(n_keys):
        shape = draw(st.lists(st.integers(1, 5), min_size=1, max_size=3).map(tuple))
        param = draw(st.sampled_from(GOOD_PARAMS + BAD_PARAMS) if draw(st.booleans()) else st.sampled_from(GOOD_PARAMS))
        grad = draw(st.sampled_from(GOOD_GRADS + BAD_GRADS) if draw(st.booleans()) else st.sampled_from(GOOD_GRADS))
        entries.append((f"k{i}", shape, param, grad))
    key_fault = draw(st.sampled_from([None, None, None, "int_key", "extra_grad", "shared_array"]))
    seed = draw(st.integers(0, 2**31))
    return rule, dtype, entries, key_fault, seed


def build(dtype, entries, key_fault, rng):
    params, grads, valid = {}, {}, True
    for key, shape, p_kind, g_kind in entries:
        base = rng.standard_normal(shape)
        if p_kind == "array":
            p = base.astype(dtype)
        elif p_kind == "zero_d":
            p = np.array(base.reshape(-1)[0], dtype)
        elif p_kind == "scalar":
            p = float(base.reshape(-1)[0]) if dtype == np.float64 else dtype.type(base.reshape(-1)[0])
        elif p_kind == "int_array":
            p = np.arange(int(np.prod(shape))).reshape(shape)
        elif p_kind == "complex_array":
            p = base.astype(np.complex128)
        elif p_kind == "float16_array":
            p = base.astype(np.float16)
        elif p_kind == "noncontig":
            # a size-1 strided view counts as contiguous: keep two elements
            shape = shape[:-1] + (max(2, shape[-1]),)
            base = rng.standard_normal(shape)
            p = np.repeat(base.astype(dtype), 2, axis=-1)[..., ::2]
        elif p_kind == "readonly":
            p = base.astype(dtype)
            p.flags.writeable = False
        elif p_kind == "list":
            p = base.tolist()
        elif p_kind == "none":
            p = None
        elif p_kind == "other_dtype":
            p = base.astype(np.float64 if dtype == np.float32 else np.float32)
        valid &= p_kind in GOOD_PARAMS
        params[key] = p
        p_shape = np.shape(p) if p_kind in GOOD_PARAMS else shape
        g_base = rng.standard_normal(p_shape)
        if g_kind == "same":
            g = float(g_base) if type(p) is float else (g_base.astype(dtype) if p_kind != "scalar" else dtype.type(g_base))
        elif g_kind == "strided_copy":
            g = np.repeat(np.atleast_1d(g_base.astype(dtype)), 2, axis=-1)[..., ::2].reshape(p_shape) if p_shape else np.array(g_base, dtype)
        elif g_kind == "readonly":
            g = np.array(g_base, dtype)
            g.flags.writeable = False
        elif g_kind == "wrong_shape":
            g = np.zeros(tuple(d + 1 for d in p_shape) or (2,), dtype)
        elif g_kind == "wrong_dtype":
            p_dtype = getattr(p, "dtype", dtype if p_kind != "scalar" or dtype != np.float64 else np.float64)
            g = np.array(g_base, np.float32 if p_dtype == np.float64 else np.float64)
        elif g_kind == "int_array":
            g = np.zeros(p_shape, np.int32)
        elif g_kind == "is_the_param":
            g = p
            if not isinstance(p, np.ndarray) and p_kind in GOOD_PARAMS:
                g_kind = "same"  # the same immutable float: no aliasing
        elif g_kind == "none":
            g = None
        if g_kind != "missing":
            grads[key] = g
        # a 0-d or scalar param takes a 0-d array grad; scalar params with an
        # array grad of their dtype are fine too
        valid &= g_kind in GOOD_GRADS
    if key_fault == "int_key":
        key, p = next(iter(params.items()))
        params[7], grads[7] = params.pop(key), grads.pop(key, None)
        valid = False
    elif key_fault == "extra_grad":
        grads["extra"] = np.zeros(1, dtype)
        valid = False
    elif key_fault == "shared_array":
        arrays = [k for k, v in params.items() if isinstance(v, np.ndarray) and v.ndim and v.flags.writeable]
        if arrays:
            params["shared"] = params[arrays[0]]
            grads["shared"] = np.zeros_like(params[arrays[0]])
            valid = False
    return params, grads, valid


def snapshot(d):
    return {k: (np.array(v, copy=True) if isinstance(v, np.ndarray) else v) for k, v in d.items()}


def same_values(a, b):
    return a.keys() == b.keys() and all(
        (np.asarray(a[k]).tobytes() == np.asarray(b[k]).tobytes()) if a[k] is not None else b[k] is None
        for k in a
    )


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(cases())
def test_valid_input_matches_the_reference_and_malformed_input_changes_nothing(case):
    rule, dtype, entries, key_fault, seed = case
    rng = np.random.default_rng(seed)
    params, grads, valid = build(dtype, entries, key_fault, rng)
    fast = rule.fast()
    if not valid:
        before = snapshot(params)
        grads_before = snapshot(grads)
        try:
            fast.update(params, grads)
        except (fastopt.FastoptInputError, TypeError):
            pass
        else:
            raise AssertionError(f"accepted malformed input {entries} {key_fault}")
        assert same_values(params, before) and same_values(grads, grads_before)
        assert fast.step_count == 0 and fast.layout is None
        return
    ref = rule.reference()
    ref_params = snapshot(params)
    for _ in range(2):
        fast.update(params, grads)
        ref.update(ref_params, grads)
    assert_same(params, ref_params)
    assert_same_state(fast, ref)
