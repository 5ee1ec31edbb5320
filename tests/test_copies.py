"""``update_and_copy``: the new params rounded to bfloat16 in the same pass,
bit for bit as the reference rounds them, for every rule that supports it."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import fastopt
from fastopt._lowp import bf16_bits, float32_bits, reference_bits
from fastopt.errors import AliasingError, DTypeMismatchError, KeyMismatchError, LayoutError, ShapeMismatchError
from fastopt.registry import RULES

from conftest import PARALLEL, SERIAL, assert_same, use_kernel

COPYING = [r for r in RULES if not r.factored]
SHAPES = {"W": (40, 30), "b": (30,), "s": ()}


def arrays(rng, scale=1.0):
    return {k: np.asarray(rng.standard_normal(s) * scale, dtype=np.float32) for k, s in SHAPES.items()}


@pytest.mark.parametrize("variant", [SERIAL, PARALLEL])
@pytest.mark.parametrize("rule", COPYING, ids=lambda r: r.name)
def test_copies_match_the_reference(rule, variant):
    config = list(rule.configs.values())[-1]
    fast, ref = rule.fast(**config), rule.reference(**config)
    use_kernel(fast, variant)
    rng = np.random.default_rng(3)
    p_fast = arrays(rng, 3.0)
    p_ref = {k: v.copy() for k, v in p_fast.items()}
    c_fast = {k: np.zeros(s, np.uint16) for k, s in SHAPES.items()}
    c_ref = {k: np.zeros(s, np.uint16) for k, s in SHAPES.items()}
    for _ in range(6):
        grads = arrays(rng)
        fast.update_and_copy(p_fast, grads, c_fast)
        ref.update_and_copy(p_ref, grads, c_ref)
        assert_same(p_fast, p_ref)
        for k in SHAPES:
            assert np.array_equal(c_fast[k], c_ref[k]), k
            assert np.array_equal(c_fast[k], reference_bits(p_fast[k])), k


def test_the_rounding_is_torchs():
    rng = np.random.default_rng(0)
    bits = np.concatenate([
        rng.integers(0, 2**32, 2_000_000, dtype=np.uint64).astype(np.uint32),
        np.array([(s << 31) | (e << 23) | m for e in range(256) for s in (0, 1)
                  for m in (0, 1, 0x7FFF, 0x8000, 0x8001, 0x17FFF, 0x18000, 0x7F8000, 0x7FFFFF)], np.uint32),
    ])
    x = bits.view(np.float32)
    theirs = torch.from_numpy(x.copy()).to(torch.bfloat16).view(torch.int16).numpy().view(np.uint16)
    ours = reference_bits(x)
    finite_or_inf = ~np.isnan(x)
    assert np.array_equal(ours[finite_or_inf], theirs[finite_or_inf])
    assert np.all(ours[~finite_or_inf] == 0x7FC0)
    sample = x[::1009]  # the scalar function (interpreted here) agrees with the reference
    assert np.array_equal(np.array([bf16_bits(float32_bits(v)) for v in sample], np.uint16), ours[::1009])


def test_new_copy_arrays_are_followed():
    opt = fastopt.AdamW()
    rng = np.random.default_rng(1)
    params = arrays(rng)
    first = {k: np.zeros(s, np.uint16) for k, s in SHAPES.items()}
    opt.update_and_copy(params, arrays(rng), first)
    second = dict(first, W=np.zeros(SHAPES["W"], np.uint16))
    opt.update_and_copy(params, arrays(rng), second)
    assert np.array_equal(second["W"], reference_bits(params["W"]))
    assert not np.array_equal(first["W"], second["W"])
    opt.update(params, arrays(rng))  # and back to plain updates
    assert np.array_equal(second["b"], first["b"])


def test_a_skipped_update_writes_no_copy():
    opt = fastopt.Adam(nonfinite="skip")
    rng = np.random.default_rng(2)
    params = arrays(rng)
    copies = {k: np.full(s, 7, np.uint16) for k, s in SHAPES.items()}
    grads = arrays(rng)
    grads["b"][3] = np.nan
    opt.update_and_copy(params, grads, copies)
    assert opt.skipped_steps == 1 and all(np.all(c == 7) for c in copies.values())


def bad_copies(case, params, grads, state):
    copies = {k: np.zeros(s, np.uint16) for k, s in SHAPES.items()}
    if case == "float16":
        copies["W"] = np.zeros(SHAPES["W"], np.float16)
    elif case == "shape":
        copies["b"] = np.zeros(31, np.uint16)
    elif case == "strided":
        copies["W"] = np.zeros((30, 40), np.uint16).T
    elif case == "read-only":
        copies["b"].flags.writeable = False
    elif case == "missing key":
        del copies["s"]
    elif case == "inside a grad":
        copies["b"] = grads["W"].reshape(-1).view(np.uint16)[:30]
    elif case == "inside a param":
        copies["b"] = params["W"].reshape(-1).view(np.uint16)[:30]
    elif case == "inside another copy":
        copies["b"] = copies["W"][0]
    elif case == "inside the state":
        copies["b"] = state.view(np.uint16)[:30]
    return copies


ERRORS = {"float16": DTypeMismatchError, "shape": ShapeMismatchError, "strided": LayoutError,
          "read-only": LayoutError, "missing key": KeyMismatchError, "inside a grad": AliasingError,
          "inside a param": AliasingError, "inside another copy": AliasingError, "inside the state": AliasingError}


@pytest.mark.parametrize("case", list(ERRORS))
def test_bad_copies_are_refused_before_anything_is_written(case):
    opt = fastopt.Adam()
    rng = np.random.default_rng(4)
    params = arrays(rng)
    opt.update(params, arrays(rng))  # the state exists
    before = {k: v.copy() for k, v in params.items()}
    state_before = {n: b.copy() for n, b in opt.optimizer_state.buffers.items()}
    grads = arrays(rng)
    copies = bad_copies(case, params, grads, opt.optimizer_state.buffers["v"])
    with pytest.raises(ERRORS[case]):
        opt.update_and_copy(params, grads, copies)
    assert_same(params, before)
    assert_same(opt.optimizer_state.buffers, state_before)


def test_float64_params_and_adafactor_have_no_copies():
    params = {"w": np.ones(4)}
    with pytest.raises(DTypeMismatchError, match="float32 masters"):
        fastopt.Adam().update_and_copy(params, {"w": np.ones(4)}, {"w": np.zeros(4, np.uint16)})
    assert not fastopt.Adafactor().supports_copies and fastopt.Adam().supports_copies
    with pytest.raises(LayoutError, match="writes no copies"):
        fastopt.Adafactor().update_and_copy({"w": np.ones(4, np.float32)}, {"w": np.ones(4, np.float32)},
                                            {"w": np.zeros(4, np.uint16)})


def test_a_later_grad_inside_a_copy_is_refused():
    opt = fastopt.Adam()
    params = {"w": np.ones(64, np.float32)}
    buffer = np.zeros(256, np.uint16)
    copies = {"w": buffer[:64]}
    opt.update_and_copy(params, {"w": np.ones(64, np.float32)}, copies)  # planned
    before = params["w"].copy()
    with pytest.raises(AliasingError):  # the per-call check of the kept plan sees it
        opt.update_and_copy(params, {"w": buffer.view(np.float32)[:64]}, copies)
    assert np.array_equal(params["w"], before)
