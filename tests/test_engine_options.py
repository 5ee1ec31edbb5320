"""The engine's options on every rule: groups, schedules, clipping, maximize,
state_dtype, init - each bit-exact against the reference, each malformed
value a typed error with nothing changed."""

from __future__ import annotations

import math

import numba
import numpy as np
import pytest

import fastopt
from fastopt import schedules
from fastopt._reduce import lane_sum, lane_sum_of_squares, reference_key_sum_of_squares, reference_sum_of_squares
from fastopt.registry import RULES

from conftest import PARALLEL, SERIAL, assert_same, assert_same_state, copy_params, random_grads, use_kernel

rules = pytest.mark.parametrize("rule", RULES, ids=lambda r: r.name)


def _net(dtype=np.float64, seed=0):
    rng = np.random.default_rng(seed)
    return {
        "W1": rng.standard_normal((7, 5)).astype(dtype),
        "b1": rng.standard_normal(5).astype(dtype),
        "W2": rng.standard_normal((5, 3)).astype(dtype),
        "b2": rng.standard_normal(3).astype(dtype),
        "gamma": rng.standard_normal(3).astype(dtype),
    }


def _run(rule, kwargs, params, steps=25, seed=1, variants=(SERIAL,), scale=1.0):
    """One fast optimizer per kernel variant and the reference, on the same grads."""
    ref, rp = rule.reference(**kwargs), copy_params(params)
    runs = []
    for variant in variants:
        fast = rule.fast(**kwargs)
        use_kernel(fast, variant)
        runs.append((fast, copy_params(params)))
    rng = np.random.default_rng(seed)
    for _ in range(steps):
        grads = random_grads(params, rng, scale)
        for fast, fp in runs:
            fast.update(fp, grads)
        ref.update(rp, grads)
    for fast, fp in runs:
        assert_same(fp, rp)
        assert_same_state(fast, ref)
    return runs[0][0], ref


OPTIONS = {
    "groups": {"groups": {"b*": {"lr": 0.002, "weight_decay": 0.0}, "gamma": {"lr": 0.0}}},
    "overlapping groups": {"groups": {"b1": {"lr": 0.003}, "b*": {"lr": 0.0}}},
    "schedule": {"lr": schedules.warmup_cosine_decay(0.0, 0.01, 5, 30)},
    "schedule in a group": {"groups": {"W*": {"lr": schedules.exponential_decay(0.02, 3, 0.5)}}},
    "clip_norm": {"clip_norm": 0.7},
    "clip_value": {"clip_value": 0.3},
    "clip both": {"clip_norm": 1.5, "clip_value": 0.5},
    "maximize": {"maximize": True},
    "float64 state": {"state_dtype": "float64"},
    "float32 state": {"state_dtype": "float32"},
    "everything": {"clip_norm": 2.0, "maximize": True, "state_dtype": "float64",
                   "groups": {"b*": {"weight_decay": 0.0}}, "lr": schedules.linear(0.01, 0.001, 20)},
}


@pytest.mark.parametrize("dtype", [np.float32, np.float64], ids=["f32", "f64"])
@pytest.mark.parametrize("option", list(OPTIONS))
@rules
def test_every_option_matches_the_reference(rule, option, dtype):
    kwargs = dict(OPTIONS[option])
    if "groups" in kwargs:  # new dicts: OPTIONS serves every rule
        kwargs["groups"] = {pattern: {n: v for n, v in overrides.items() if n in rule.hyperparameter_names}
                            for pattern, overrides in kwargs["groups"].items()}
    _run(rule, kwargs, _net(dtype), variants=(SERIAL, PARALLEL), scale=3.0)


def _every_hyperparameter_scheduled(rule, config: dict) -> dict:
    """``config`` with each non-zero float hyperparameter turned into a
    schedule from its value to half (or 1.5x) of it, inside its range."""
    kwargs = dict(config)
    values = rule.fast(**config).hyperparameters()
    for name in rule.hyperparameter_names:
        value = values[name]
        if type(value) is not float or value == 0.0:
            continue
        check = getattr(rule.fast, name).check
        end = next((e for e in (value * 0.5, value * 1.5) if check(e)), None)
        if end is not None:
            kwargs[name] = schedules.linear(value, end, 20)
    return kwargs


@pytest.mark.parametrize("dtype", [np.float32, np.float64], ids=["f32", "f64"])
@rules
def test_every_hyperparameter_may_be_scheduled(rule, dtype):
    # Weight decay included: the prologue's coupled decay follows its
    # schedule like the rule's own scalars (it once kept the first value).
    for config in rule.configs.values():
        _run(rule, _every_hyperparameter_scheduled(rule, config), _net(dtype), steps=12,
             variants=(SERIAL, PARALLEL), scale=3.0)


def test_a_rules_own_checks_see_every_value_of_a_schedule():
    # SGD(nesterov=True) needs momentum > 0: a momentum schedule that reaches
    # 0 at count 3 is refused at that update, with nothing written.
    opt = fastopt.SGD(lr=schedules.linear(0.1, 0.05, 10), momentum=schedules.linear(0.9, 0.0, 3), nesterov=True)
    params = _net()
    for _ in range(3):
        opt.update(params, {k: np.ones_like(v) for k, v in params.items()})
    before = copy_params(params)
    with pytest.raises(fastopt.HyperparameterError, match="nesterov=True needs momentum > 0"):
        opt.update(params, {k: np.ones_like(v) for k, v in params.items()})
    assert opt.step_count == 3
    assert_same(params, before)


def test_first_matching_pattern_wins_and_unmatched_keys_use_the_defaults():
    params = _net()
    opt = fastopt.SGD(lr=0.1, groups={"b1": {"lr": 0.5}, "b*": {"lr": 0.0}})
    before = copy_params(params)
    opt.update(params, {k: np.ones_like(v) for k, v in params.items()})
    assert np.array_equal(params["b1"], before["b1"] - 0.5)
    assert np.array_equal(params["b2"], before["b2"])  # lr 0 from "b*"
    assert np.array_equal(params["W1"], before["W1"] - 0.1)


def test_group_overrides_are_validated_attributes_and_never_recompile():
    params = _net(np.float32)
    opt = fastopt.Adam(groups={"b*": {"weight_decay": 0.0}})
    ref = fastopt.reference.Adam(groups={"b*": {"weight_decay": 0.0}})
    rp = copy_params(params)
    rng = np.random.default_rng(0)
    for i in range(12):
        if i == 4:
            opt.groups["b*"].weight_decay = ref.groups["b*"]["weight_decay"] = 0.1
        if i == 8:
            opt.groups["b*"].lr = ref.groups["b*"]["lr"] = 0.01
        grads = random_grads(params, rng)
        opt.update(params, grads)
        ref.update(rp, grads)
    assert_same(params, rp)
    with pytest.raises(fastopt.HyperparameterError, match="weight_decay"):
        opt.groups["b*"].weight_decay = -1.0
    with pytest.raises(AttributeError, match="momentum"):
        opt.groups["b*"].momentum = 0.5
    assert opt.groups["b*"].weight_decay == 0.1
    f32 = [s for s in opt.kernel.serial.signatures if str(s[1]) == str(s[2]) == "float32"]
    assert len(f32) == 1


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"groups": {"nothing*": {"lr": 0.1}}}, "nothing"),
        ({"groups": {"b*": {"momentum": 0.1}}}, "momentum"),
        ({"groups": {"b*": {"lr": -0.1}}}, "lr"),
        ({"groups": {"b*": 0.1}}, "b\\*"),
    ],
)
def test_bad_groups_are_typed_errors_before_anything_changes(kwargs, match):
    params = _net()
    before = copy_params(params)
    with pytest.raises(fastopt.HyperparameterError, match=match):
        opt = None
        opt = fastopt.Adam(**kwargs)  # bad values fail here, an unmatched pattern at the update
        opt.update(params, {k: np.ones_like(v) for k, v in params.items()})
    assert opt is None or opt.step_count == 0
    assert_same(params, before)


@pytest.mark.parametrize(
    "schedule, match",
    [
        (lambda count: -0.1 if count >= 2 else 0.1, "count 2"),
        (lambda count: math.nan if count >= 2 else 0.1, "count 2"),
        (lambda count: "0.1" if count >= 2 else 0.1, "count 2"),
        (lambda count: 1 / (2 - count) if count <= 1 else 1 / 0, "ZeroDivisionError"),
    ],
    ids=["negative", "nan", "not a number", "raises"],
)
def test_a_bad_schedule_value_raises_naming_the_hyperparameter_and_changes_nothing(schedule, match):
    params = _net()
    opt = fastopt.Adam(lr=schedule)
    for _ in range(2):
        opt.update(params, {k: np.ones_like(v) for k, v in params.items()})
    before, state = copy_params(params), opt.state_dict()
    with pytest.raises(fastopt.HyperparameterError, match="lr") as info:
        opt.update(params, {k: np.ones_like(v) for k, v in params.items()})
    assert match in str(info.value)
    assert opt.step_count == 2
    assert_same(params, before)
    assert_same(opt.state["m"], state["state"]["m"])


def test_non_callable_non_numbers_are_rejected():
    with pytest.raises(TypeError, match="lr"):
        fastopt.Adam(lr="0.1")
    with pytest.raises(fastopt.HyperparameterError, match="clip_norm"):
        fastopt.Adam(clip_norm=0.0)
    with pytest.raises(fastopt.HyperparameterError, match="clip_value"):
        fastopt.Adam(clip_value=-1.0)
    with pytest.raises(fastopt.HyperparameterError, match="state_dtype"):
        fastopt.Adam(state_dtype="float16")
    with pytest.raises(fastopt.HyperparameterError, match="maximize"):
        fastopt.Adam(maximize=1)


def test_schedules_use_optax_count_and_survive_save_and_load(tmp_path):
    lr = schedules.warmup_cosine_decay(0.0, 1e-2, warmup_steps=3, decay_steps=20)
    params = _net()
    straight, resumed = fastopt.Adam(lr=lr), fastopt.Adam(lr=lr)
    sp, rp = copy_params(params), copy_params(params)
    rng = np.random.default_rng(3)
    grads = [random_grads(params, rng) for _ in range(10)]
    for g in grads[:5]:
        straight.update(sp, g)
        resumed.update(rp, g)
    resumed.save(tmp_path / "ckpt.npz")
    loaded = fastopt.Adam()  # a constant lr: load brings the schedule back
    loaded.load(tmp_path / "ckpt.npz")
    assert isinstance(loaded.lr, schedules.Schedule) and loaded.lr(7) == lr(7)
    for g in grads[5:]:
        straight.update(sp, g)
        loaded.update(rp, g)
    assert_same(sp, rp)
    ref = fastopt.reference.Adam(lr=lr)
    refp = copy_params(params)
    for g in grads:
        ref.update(refp, g)
    assert_same(sp, refp)


def test_carried_values_follow_the_steps_that_ran_through_skips_groups_schedules_and_loads(tmp_path):
    # NAdam carries a running product of per-step momentum coefficients.  A
    # skipped step must not advance it, each group has its own, a scheduled
    # beta1 multiplies in each step's own value, and after a load (which does
    # not store it) the replay must give the same product.
    kwargs = dict(nonfinite="skip", beta1=schedules.linear(0.8, 0.95, 30),
                  groups={"b*": {"beta1": 0.7, "momentum_decay": 0.02}})
    params = _net()
    fast, ref = fastopt.NAdam(**kwargs), fastopt.reference.NAdam(**kwargs)
    fp, rp = copy_params(params), copy_params(params)
    rng = np.random.default_rng(4)
    for step in range(40):
        grads = random_grads(params, rng)
        if step in (3, 25):
            grads["W2"][1, 1] = np.nan
        if step == 20:
            fast.save(tmp_path / "nadam.npz")
            fast = fastopt.NAdam(nonfinite="skip")  # the file brings hyperparameters, groups, schedules
            fast.load(tmp_path / "nadam.npz")
        fast.update(fp, grads)
        ref.update(rp, grads)
    assert fast.skipped_steps == 1 and ref.skipped_steps == 2 and fast.step_count == 38
    assert_same(fp, rp)
    assert_same_state(fast, ref)


def test_a_users_own_schedule_must_be_set_again_after_loading(tmp_path):
    def my_schedule(count):
        return 0.01 / (1 + count)

    params = _net()
    opt = fastopt.Adam(lr=my_schedule)
    opt.update(params, {k: np.ones_like(v) for k, v in params.items()})
    opt.save(tmp_path / "ckpt.npz")
    other = fastopt.Adam()
    other.load(tmp_path / "ckpt.npz")
    with pytest.raises(fastopt.HyperparameterError, match="my_schedule.*assign it again"):
        other.update(params, {k: np.ones_like(v) for k, v in params.items()})
    assert other.step_count == 1
    other.lr = my_schedule
    other.update(params, {k: np.ones_like(v) for k, v in params.items()})
    assert other.step_count == 2


def test_clip_norm_uses_torchs_formula_and_never_writes_the_grads():
    params = {"w": np.zeros(5000), "v": np.zeros(3)}
    rng = np.random.default_rng(0)
    grads = {"w": rng.standard_normal(5000), "v": rng.standard_normal(3)}
    kept = copy_params(grads)
    opt = fastopt.SGD(lr=1.0, clip_norm=1.0)
    opt.update(params, grads)
    assert_same(grads, kept)
    norm = math.sqrt(reference_sum_of_squares([grads["w"], grads["v"]]))
    assert opt.last_grad_norm == norm == fastopt.global_norm(grads)
    coef = 1.0 / (norm + 1e-6)
    assert np.array_equal(params["w"], 0.0 - grads["w"] * coef)


def test_the_norm_is_the_same_on_any_thread_count_and_kernel():
    import numba

    rng = np.random.default_rng(5)
    grads = {"a": rng.standard_normal(100_003).astype(np.float32), "b": rng.standard_normal(4097).astype(np.float32),
             "c": np.zeros(0, np.float32)}
    expected = math.sqrt(reference_sum_of_squares(list(grads.values())))
    seen = set()
    for threads in range(1, min(4, numba.config.NUMBA_NUM_THREADS) + 1):
        numba.set_num_threads(threads)
        for variant in (SERIAL, PARALLEL):
            opt = fastopt.SGD(lr=0.0, clip_norm=1.0)
            use_kernel(opt, variant)
            params = {k: np.zeros_like(v) for k, v in grads.items()}
            opt.update(params, grads)
            seen.add(opt.last_grad_norm)
    numba.set_num_threads(numba.config.NUMBA_NUM_THREADS)
    assert seen == {expected} and fastopt.global_norm(grads) == expected


@numba.njit
def _compiled_lane_sums(values, count):
    squares = np.empty(count)
    for i in range(count):
        squares[i] = np.float64(values[i]) * np.float64(values[i])
    return lane_sum(squares, count), lane_sum_of_squares(values, count)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_the_vectorised_lane_sums_are_the_grid_sum_at_every_tail_and_alignment(dtype):
    rng = np.random.default_rng(3)
    values = rng.standard_normal(4200).astype(dtype)
    for offset in (0, 1, 3):  # the vector loads must not assume more than the element's alignment
        for count in [*range(0, 49), 1000, 4095, 4096]:
            run = values[offset : offset + count]
            expected = reference_key_sum_of_squares(run)
            assert _compiled_lane_sums(values[offset:], count) == (expected, expected), (offset, count)
            assert lane_sum_of_squares(values[offset:], count) == expected  # the interpreter's twin


def test_maximize_ascends():
    params = {"x": np.array([1.0])}
    opt = fastopt.SGD(lr=0.5, maximize=True)
    opt.update(params, {"x": np.array([2.0])})
    assert params["x"][0] == 2.0


def test_state_dtype_keeps_state_in_its_dtype_and_checkpoints_check_it(tmp_path):
    params = _net(np.float32)
    opt = fastopt.Adam(state_dtype="float64")
    opt.update(params, {k: np.ones_like(v) for k, v in params.items()})
    assert opt.state["m"]["W1"].dtype == np.float64 and params["W1"].dtype == np.float32
    opt.save(tmp_path / "ckpt.npz")
    other = fastopt.Adam()  # float32 state for float32 params
    with pytest.raises(fastopt.StateFileError, match="state_dtype"):
        other.load(tmp_path / "ckpt.npz")
    same = fastopt.Adam(state_dtype="float64")
    same.load(tmp_path / "ckpt.npz")
    assert_same(same.state["v"], opt.state["v"])


def test_init_fixes_the_layout_without_stepping():
    params = _net()
    opt = fastopt.Adam()
    opt.init(params)
    assert opt.step_count == 0 and opt.layout.keys == tuple(params)
    assert all(np.all(v == 0) for v in opt.state["m"].values())
    with pytest.raises(fastopt.ShapeMismatchError, match="b1"):
        opt.update({**params, "b1": np.zeros(4)}, {k: np.ones(4) if k == "b1" else np.ones_like(v)
                                                    for k, v in params.items()})
    with pytest.raises(fastopt.LayoutError, match="already"):
        opt.init(params)
    ref = fastopt.reference.Adam()
    rp = copy_params(params)
    grads = {k: np.ones_like(v) for k, v in params.items()}
    opt.update(params, grads)
    ref.update(rp, grads)
    assert_same(params, rp)


def test_changing_schedules_and_options_never_recompiles():
    params = {"w": np.ones(10, np.float32)}
    opt = fastopt.AdamW(lr=schedules.cosine_decay(0.01, 10))
    for i in range(8):
        if i == 3:
            opt.lr = 0.001
        if i == 5:
            opt.lr = schedules.constant(0.002)
            opt.clip_norm = 0.5
        opt.update(params, {"w": np.full(10, 0.1 * i, np.float32)})
    f32 = [s for s in opt.kernel.serial.signatures if str(s[1]) == str(s[2]) == "float32"]
    assert len(f32) == 1
