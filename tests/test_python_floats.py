"""Python-float params (the book's 2-D example) stepped in the interpreter
(fastopt._floats): the same bits as the float64 kernel, nothing written when
it hands a call to the kernel, and the path really taken where it should be."""

from __future__ import annotations

import math
from typing import NamedTuple

import numpy as np
import pytest

import fastopt
from fastopt import schedules
from fastopt._hyper import Hyperparameter, Hyperparameters, non_negative
from fastopt._jit import RuleMath
from fastopt.optimizer import Optimizer
from fastopt.registry import RULES

#: Values that take every branch of the prologue and of the rules' updates.
EXTREMES = [0.0, -0.0, 1e-310, -3.5, 2.0, 1e300, -1e300, math.inf, -math.inf, math.nan]


def interpreted(rule) -> bool:
    opt, params = rule.fast(), {"x": -7.0, "y": 2.0}
    opt.update(params, {"x": 1.0, "y": 0.5})
    return opt._plans[id(params)].floats is not None


INTERPRETED = [r for r in RULES if interpreted(r)]
OPTIONS = [
    {},
    {"maximize": True},
    {"clip_value": 0.75},
    {"weight_decay": 0.25},
    {"groups": {"y": {"lr": 0.5}}},
    {"lr": schedules.warmup_cosine_decay(0.0, 0.1, 3, 20)},
]


def test_the_plain_arithmetic_rules_step_in_the_interpreter():
    names = {r.name for r in INTERPRETED}
    assert {"SGD", "Momentum", "Nesterov"} <= names
    assert not names & {"Adam", "AdaGrad", "RMSprop", "LARS"}  # np.sqrt, helpers, trust ratios: the kernel
    opt = fastopt.SGD(momentum=0.9, nesterov=True)
    params = {"x": -7.0, "y": 2.0}
    opt.update(params, {"x": 1.0, "y": 0.5})
    assert opt._plans[id(params)].floats is not None


@pytest.mark.parametrize("options", OPTIONS, ids=lambda o: ",".join(o) or "default")
@pytest.mark.parametrize("rule", INTERPRETED, ids=lambda r: r.name)
def test_same_bits_as_the_kernel(rule, options):
    if "weight_decay" in options and "weight_decay" not in rule.fast.hyperparameter_names:
        pytest.skip(f"{rule.name} has no weight_decay")
    rng = np.random.default_rng(3)
    floats_opt, kernel_opt = rule.fast(**options), rule.fast(**options)
    floats = {"x": -7.0, "y": 2.0}
    arrays = {k: np.array(v) for k, v in floats.items()}  # 0-d arrays: the kernel
    for step in range(60):
        pick = rng.integers(len(EXTREMES) + 4, size=2)
        grads = [EXTREMES[j] if j < len(EXTREMES) else float(rng.standard_normal()) for j in pick]
        if step % 20 == 19:  # let a nan or inf wash out
            floats, arrays = {"x": -7.0, "y": 2.0}, {"x": np.array(-7.0), "y": np.array(2.0)}
            floats_opt, kernel_opt = rule.fast(**options), rule.fast(**options)
        floats_opt.update(floats, dict(zip(floats, grads)))
        kernel_opt.update(arrays, {k: np.array(g) for k, g in zip(arrays, grads)})
        assert floats_opt._plans[id(floats)].floats is not None
        assert kernel_opt._plans[id(arrays)].floats is None
        for key in floats:
            assert type(floats[key]) is float
            assert np.array_equal(np.float64(floats[key]), arrays[key], equal_nan=True), (step, key)
            assert math.copysign(1, floats[key]) == math.copysign(1, arrays[key])
        for name in floats_opt.state_names:
            for key in floats:
                assert np.array_equal(floats_opt.state[name][key], kernel_opt.state[name][key], equal_nan=True)
        assert floats_opt.step_count == kernel_opt.step_count


def test_changed_hyperparameters_and_step_count_take_effect():
    opt = fastopt.Momentum(lr=0.1)
    params = {"x": 1.0}
    opt.update(params, {"x": 1.0})
    assert params["x"] == 1.0 - 0.1 and opt.v["x"] == -0.1
    opt.lr = 0.5
    opt.momentum = 0.0
    opt.update(params, {"x": 1.0})
    assert params["x"] == (1.0 - 0.1) - 0.5 and opt.v["x"] == -0.5 and opt.iter == 2
    opt.iter = 7
    opt.update(params, {"x": 0.0})
    assert opt.iter == 8


def test_another_value_type_takes_the_kernel_path():
    opt = fastopt.SGD(lr=0.5)
    params = {"x": 1.0, "y": 2.0}
    opt.update(params, {"x": 1.0, "y": 1.0})
    opt.update(params, {"x": 1.0, "y": np.float64(1.0)})  # a NumPy scalar grad: validated, kernel
    assert params == {"x": 0.0, "y": 1.0} and opt.iter == 2
    with pytest.raises(fastopt.KeyMismatchError):
        opt.update(params, {"x": 1.0, "z": 1.0})
    with pytest.raises(fastopt.DTypeMismatchError):
        opt.update(params, {"x": 1.0, "y": "1.0"})
    assert params == {"x": 0.0, "y": 1.0} and opt.iter == 2


# A rule with a division: in the interpreter a zero divisor raises, which the
# kernel turns into inf.  The interpreted step must hand that call to the
# kernel with nothing written (not the state of the keys before the zero).
class _DivScalars(NamedTuple):
    lr: float


class _DivHyperparameters(Hyperparameters):
    lr = Hyperparameter(1.0, non_negative, "learning rate")


def _div_scalars(hp, t):
    return _DivScalars(lr=hp.lr)


def _div_update(p, g, i, s, lr):
    s[i] = s[i] + g
    return p - lr * g / s[i]


class _Div(_DivHyperparameters, Optimizer):
    math = RuleMath("Div", ("s",), _DivScalars, _div_scalars, _div_update, depends_on_step=False,
                    coupled_decay=None)


def test_a_call_the_interpreter_cannot_finish_runs_in_the_kernel_with_nothing_written_twice():
    opt = _Div()
    params = {"a": 1.0, "b": 1.0}
    opt.update(params, {"a": 1.0, "b": 1.0})
    assert opt._plans[id(params)].floats is not None
    assert params == {"a": 0.0, "b": 0.0} and opt.state["s"]["a"] == 1.0
    opt.update(params, {"a": 1.0, "b": -1.0})  # b's divisor is 0: ZeroDivisionError, then the kernel
    assert opt.state["s"]["a"] == 2.0 and opt.state["s"]["b"] == 0.0  # a's sum advanced once
    assert params["a"] == -0.5 and params["b"] == math.inf and opt.iter == 2
