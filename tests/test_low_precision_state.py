"""State kept as bfloat16 bits or as block-wise int8 codes: every rule that
offers it matches the reference on params and on the stored bytes (bits,
codes and absmax), serial and parallel, on any thread count; the encodings
themselves; checkpoints of the compact state; the refusals."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap

import numba
import numpy as np
import pytest

import fastopt
from fastopt import _lowp, schedules
from fastopt.registry import RULES

from conftest import PARALLEL, SERIAL, assert_same, assert_same_state, copy_params, random_grads, use_kernel

FORMATS = ("bfloat16", "int8")


def _net(dtype=np.float32, seed=0):
    """Keys of 1, 5, 777 (not a multiple of 256) and 900 elements."""
    rng = np.random.default_rng(seed)
    return {"W1": rng.standard_normal((37, 21)).astype(dtype), "b1": rng.standard_normal(5).astype(dtype),
            "W2": rng.standard_normal((300, 3)).astype(dtype), "s": np.array(0.5, dtype)}


def _offers(rule, state_format, config) -> bool:
    try:
        rule.fast(state_dtype=state_format, **config)
    except fastopt.HyperparameterError as exc:
        assert state_format in str(exc) and rule.name in str(exc)
        return False
    return True


def _cases():
    return [pytest.param(rule, name, config, f, id=f"{rule.name}-{name}-{f}")
            for rule in RULES for name, config in rule.configs.items() for f in FORMATS]


def _compare(rule, kwargs, params, steps=12, variants=(SERIAL, PARALLEL), scale=3.0):
    ref, rp = rule.reference(**kwargs), copy_params(params)
    runs = []
    for variant in variants:
        fast = rule.fast(**kwargs)
        use_kernel(fast, variant)
        runs.append((fast, copy_params(params)))
    rng = np.random.default_rng(1)
    for _ in range(steps):
        grads = random_grads(params, rng, scale)
        for fast, fp in runs:
            fast.update(fp, grads)
        ref.update(rp, grads)
    for fast, fp in runs:
        assert_same(fp, rp)
        assert_same_state(fast, ref)  # bits, codes and every block's absmax
    return runs[0][0]


@pytest.mark.parametrize("rule, name, config, state_format", _cases())
def test_every_rule_matches_the_reference_bit_for_bit(rule, name, config, state_format):
    if not _offers(rule, state_format, config):
        assert rule.factored or state_format == "int8"  # Adafactor; int8 where it does not fit
        return
    # The parallel kernels of every config would double the compile time of
    # this file; each rule's default runs both (the parallel variant is the
    # same generated loop under prange).
    variants = (SERIAL, PARALLEL) if name == "default" else (SERIAL,)
    fast = _compare(rule, dict(config, state_dtype=state_format), _net(), variants=variants)
    stored = fast.state
    for n in fast.state_names:
        assert stored[n]["W1"].dtype == _lowp.STORAGE[state_format]


def test_the_rules_that_offer_int8_state():
    offered = {r.name for r in RULES if _offers(r, "int8", {})}
    assert {"Momentum", "Nesterov", "AdaGrad", "RMSprop", "Adam", "AdamW", "Lion", "AdaBelief"} <= offered
    assert offered.isdisjoint({"LAMB", "LARS", "Rprop", "Adafactor"})
    assert _offers(next(r for r in RULES if r.name == "SGD"), "int8", {"momentum": 0.9})


@pytest.mark.parametrize("state_format", FORMATS)
@pytest.mark.parametrize("name", ["Adam", "Lion", "Momentum"])
def test_float64_params_compute_in_float64_and_store_rounded(name, state_format):
    rule = next(r for r in RULES if r.name == name)
    _compare(rule, {"state_dtype": state_format}, _net(np.float64))


@pytest.mark.parametrize("state_format", FORMATS)
def test_engine_options_with_low_precision_state(state_format):
    rule = next(r for r in RULES if r.name == "AdamW")
    kwargs = {"state_dtype": state_format, "clip_norm": 1.5, "clip_value": 0.8, "maximize": True,
              "groups": {"b*": {"weight_decay": 0.0}}, "lr": schedules.linear(0.01, 0.001, 20)}
    _compare(rule, kwargs, _net())


def test_trust_ratio_rules_keep_bfloat16_state():
    for name in ("LAMB", "LARS"):
        rule = next(r for r in RULES if r.name == name)
        _compare(rule, {"state_dtype": "bfloat16", "clip_norm": 1.0}, _net())


def test_int8_blocks_are_never_split_between_threads():
    """1-4 threads (a fresh interpreter with 4): the rows of a parallel call
    are cut only at block boundaries, so every count gives the same bytes."""
    script = textwrap.dedent("""
        import sys
        sys.path.insert(0, sys.argv[1])
        import numba, numpy as np
        from fastopt.registry import BY_NAME
        from test_low_precision_state import _compare
        params = {"a": np.random.default_rng(2).standard_normal(3 * 256 + 17).astype(np.float32),
                  "b": np.random.default_rng(3).standard_normal(1000).astype(np.float32)}
        for threads in (1, 2, 3, 4):
            numba.set_num_threads(threads)
            for name in ("Adam", "Lion"):
                _compare(BY_NAME[name], {"state_dtype": "int8"}, params, steps=6, variants=("parallel",))
        print("ok", numba.get_num_threads())
    """)
    env = dict(os.environ, NUMBA_NUM_THREADS="4")
    result = subprocess.run([sys.executable, "-c", script, os.path.dirname(__file__)], env=env,
                            capture_output=True, text=True, timeout=600)
    assert result.returncode == 0 and result.stdout.split() == ["ok", "4"], (result.stdout + result.stderr)[-3000:]


# -- the encodings ----------------------------------------------------------------------


@numba.njit
def _kernel_quantize(values, signed):
    n = values.size
    codes = np.empty(n, np.uint8)
    absmax = np.empty((n + 255) // 256, np.float32)
    for start in range(0, n, 256):
        tile = min(256, n - start)
        scratch = values[start:start + tile].copy()
        if signed:
            _lowp.encode_signed(codes[start:start + tile], absmax, start // 256, tile, scratch)
        else:
            _lowp.encode_unsigned(codes[start:start + tile], absmax, start // 256, tile, scratch)
    return codes, absmax


@pytest.mark.parametrize("signed", [True, False], ids=["signed", "unsigned"])
def test_the_kernels_nearest_code_is_the_references_binary_search(signed):
    rng = np.random.default_rng(4)
    midpoints = (_lowp.SIGNED_MIDPOINTS if signed else _lowp.UNSIGNED_MIDPOINTS)[:-1]
    for trial in range(60):
        n = int(rng.integers(1, 1500))
        v = (rng.standard_normal(n) * np.exp(rng.uniform(-30, 3, n))).astype(np.float32)
        if trial % 3 == 0:  # exactly on the midpoints (ties go to the code below), and 1.0
            k = min(n, 255)
            v[:k] = midpoints[rng.integers(0, 255, k)] * (1 if trial % 2 else -1)
            v[0] = 1.0
        if trial % 7 == 0:
            v[:300] = 0.0
        if trial % 11 == 0:
            v[rng.integers(0, n)] = np.nan if trial % 2 else -np.inf
        codes, absmax = _kernel_quantize(v, signed)
        ref_codes, ref_absmax = _lowp.reference_quantize(v, unsigned=not signed)
        assert np.array_equal(codes, ref_codes)
        assert np.array_equal(absmax, ref_absmax, equal_nan=True)


def test_the_code_maps_and_the_rounding_rules():
    assert _lowp.SIGNED_CODES.size == _lowp.UNSIGNED_CODES.size == 256
    assert np.all(np.diff(_lowp.SIGNED_CODES) > 0) and np.all(np.diff(_lowp.UNSIGNED_CODES) > 0)
    assert _lowp.SIGNED_CODES[_lowp.SIGNED_ZERO] == 0 and _lowp.UNSIGNED_CODES[0] == 0
    assert _lowp.SIGNED_CODES[-1] == _lowp.UNSIGNED_CODES[-1] == 1.0
    codes, absmax = _lowp.reference_quantize(np.array([1e-30, 0.0, -2.0, 4.0], np.float32), unsigned=True)
    assert list(codes) == [1, 0, 0, 255] and absmax[0] == 4.0  # positive never 0, negative clamps to 0
    codes, absmax = _lowp.reference_quantize(np.array([3.0, np.inf], np.float32), unsigned=False)
    assert np.isnan(absmax[0]) and np.all(np.isnan(_lowp.reference_dequantize(codes, absmax, False)))
    codes, absmax = _lowp.reference_quantize(np.zeros(300, np.float32), unsigned=False)
    assert list(absmax) == [0.0, 0.0] and np.all(_lowp.reference_dequantize(codes, absmax, False) == 0)


def test_bfloat16_state_keeps_nan_and_inf():
    params = {"w": np.zeros(4, np.float32)}
    opt, ref = fastopt.Momentum(state_dtype="bfloat16"), fastopt.reference.Momentum(state_dtype="bfloat16")
    rp = copy_params(params)
    grads = {"w": np.array([np.nan, np.inf, -np.inf, 1.0], np.float32)}
    opt.update(params, grads)
    ref.update(rp, grads)
    assert_same(params, rp)
    assert_same_state(opt, ref)
    values = _lowp.reference_bf16_values(opt.state["v"]["w"])
    assert np.isnan(values[0]) and values[1] == -np.inf and values[2] == np.inf


def test_a_block_whose_grads_span_decades_does_not_blow_up():
    """torchao's 8-bit AdamW divided m by eps where a block's v rounded to 0."""
    rng = np.random.default_rng(5)
    magnitude = np.where(np.arange(256) % 2 == 0, 1e3, 1e-1).astype(np.float32)
    params = {"w": np.zeros(256, np.float32)}
    opt = fastopt.Adam(lr=1e-3, state_dtype="int8")
    largest = 0.0
    for _ in range(200):
        before = params["w"].copy()
        opt.update(params, {"w": magnitude * rng.choice([-1.0, 1.0], 256).astype(np.float32)})
        largest = max(largest, float(np.max(np.abs(params["w"] - before))))
    assert np.all(np.isfinite(params["w"]))
    assert largest < 10 * opt.lr  # float32 Adam's steps are at most a few lr here


# -- memory, checkpoints, refusals ------------------------------------------------------


def test_bytes_per_param():
    params = {"w": np.zeros(100_000, np.float32)}
    for state_format, limit in (("float32", 8.0), ("bfloat16", 4.0), ("int8", 2.1)):
        opt = fastopt.AdamW(state_dtype=state_format)
        opt.init(params)
        assert opt.optimizer_state.nbytes / 100_000 <= limit


def _train(opt, params, steps, seed):
    rng = np.random.default_rng(seed)
    for _ in range(steps):
        opt.update(params, random_grads(params, rng))


@pytest.mark.parametrize("state_format", FORMATS)
def test_checkpoints_store_the_compact_state_and_continue_exactly(state_format, tmp_path):
    params = dict(_net(), big=np.random.default_rng(9).standard_normal(50_000).astype(np.float32))
    opt = fastopt.AdamW(state_dtype=state_format)
    _train(opt, params, 5, 0)
    opt.save(tmp_path / "state.npz")
    resumed, resumed_params = fastopt.AdamW(state_dtype=state_format), copy_params(params)
    resumed.load(tmp_path / "state.npz")
    _train(opt, params, 5, 1)
    _train(resumed, resumed_params, 5, 1)
    assert_same(resumed_params, params)
    assert_same_state(resumed, opt)

    full = fastopt.AdamW(state_dtype="float32")
    full.init(params)
    full.save(tmp_path / "full.npz")
    ratio = (tmp_path / "state.npz").stat().st_size / (tmp_path / "full.npz").stat().st_size
    assert ratio < (0.51 if state_format == "bfloat16" else 0.26)  # 2 of 4 bytes; ~1.03 of 4

    with pytest.raises(fastopt.StateFileError, match="state_dtype must match"):
        fastopt.AdamW(state_dtype="float32").load(tmp_path / "state.npz")
    other = "int8" if state_format == "bfloat16" else "bfloat16"
    with pytest.raises(fastopt.StateFileError, match=f"stored as {state_format}"):
        fastopt.AdamW(state_dtype=other).load_state_dict(opt.state_dict())


@pytest.mark.parametrize("state_format", FORMATS)
def test_state_dict_can_give_dequantized_float32_state(state_format):
    params = _net()
    opt = fastopt.Adam(state_dtype=state_format)
    _train(opt, params, 3, 0)
    decoded = opt.state_dict(dequantize=True)
    assert decoded["state_dtype"] == "float32" and set(decoded["state"]) == {"m", "v"}
    stored = opt.state
    for n in ("m", "v"):
        for key in params:
            if state_format == "bfloat16":
                expected = _lowp.reference_bf16_values(stored[n][key])
            else:
                expected = _lowp.reference_dequantize(stored[n][key], stored[n + ".absmax"][key], n == "v")
            assert np.array_equal(decoded["state"][n][key], expected)
    full = fastopt.Adam(state_dtype="float32")
    full.load_state_dict(decoded)
    assert np.array_equal(full.state["m"]["W1"], decoded["state"]["m"]["W1"])


def test_a_plan_keeps_the_absmax_buffers_it_points_into_alive():
    """The segment table holds raw addresses of the absmax buffers; a load
    replaces them while a plan (maybe running in another thread) exists."""
    import gc
    import weakref

    params = {"w": np.ones(1000, np.float32)}
    opt = fastopt.Adam(state_dtype="int8")
    opt.update(params, {"w": np.ones(1000, np.float32)})
    plan = opt._planner.plan_for(params)
    scales = weakref.ref(opt.optimizer_state.scale_root)
    opt.load_state_dict(opt.state_dict())
    gc.collect()
    assert scales() is not None and plan is not None


def test_refusals_name_the_rule_and_the_format():
    with pytest.raises(fastopt.HyperparameterError, match="LAMB.*int8"):
        fastopt.LAMB(state_dtype="int8")
    with pytest.raises(fastopt.HyperparameterError, match="Adafactor.*bfloat16"):
        fastopt.Adafactor(state_dtype="bfloat16")
    with pytest.raises(fastopt.HyperparameterError, match="state_dtype"):
        fastopt.Adam(state_dtype="int4")


def test_the_signed_and_unsigned_codecs_compile_under_names_of_their_own():
    # Numba names a compiled function by module, qualified name and a counter
    # that restarts in every process.  Two kernels compiled in two processes
    # (read back from the cache into a third) once defined the same symbol for
    # the signed and the unsigned map, and the JIT linker bound the second
    # kernel to the first one's map: int8 state then differed from the
    # reference depending on which cached kernel a process loaded first.
    names = {f.__qualname__ for f in (_lowp.decode_signed, _lowp.encode_signed,
                                      _lowp.decode_unsigned, _lowp.encode_unsigned)}
    assert len(names) == 4
