"""A rule's per-step scalars, compiled (``RuleMath.scalars_filler``), equal
the same ``scalars(hp, t)`` run by Python bit for bit, at every step count and
for hyperparameters drawn from each one's declared range; and every rule whose
scalars change with the step count gets them compiled (so a lost compilation
shows here, not only as a slower update)."""

from __future__ import annotations

import zlib

import numpy as np
import pytest

from conftest import assert_same, assert_same_state, copy_params, random_grads
from fastopt._run import Scalars
from fastopt.registry import RULES
from fastopt.rules.torch_adagrad import TorchAdagrad
from fastopt.rules.torch_adam import TorchAdam

COUNTS = [0, 1, 2, 3, 4, 5, 6, 9, 10, 99, 1000, 12_345, 10**6, 2**31 + 5, 2**45]

FORMS = [(rule.fast, config, rule.configs[config]) for rule in RULES for config in rule.configs]
FORMS += [(TorchAdam, "torch", {}), (TorchAdam, "torch-amsgrad", {"amsgrad": True}), (TorchAdagrad, "torch", {})]
# NAdam carries a product across steps: its scalars stay in Python, by design.
STEP_DEPENDENT = [(c, name, cfg) for c, name, cfg in FORMS
                  if c(**cfg)._math.depends_on_step and c(**cfg)._math.carry is None]


def drawn_rows(cls, config: dict, rng, n_rows: int) -> list:
    """Resolved hyperparameter rows: the config's values in row 0, then
    values drawn from each hyperparameter's test range."""
    rows = []
    for r in range(n_rows):
        opt = cls(**config)
        if r:
            for name in cls.hyperparameter_names:
                value = opt.hyperparameters()[name]
                if value is None:
                    continue
                low, high = _range(cls, name)
                setattr(opt, name, float(rng.uniform(low, high)))
        # As the optimizer resolves them, without its cross-checks (SGD's
        # nesterov=True wants dampening 0): the scalars take any values.
        object.__setattr__(opt, "check_resolved", lambda rows: None)
        rows.append(opt._resolve_rows(0)[0])
    return rows


def _range(cls, name):
    from fastopt._hyper import TEST_RANGES

    return TEST_RANGES[getattr(cls, name).check]


@pytest.mark.parametrize("dtype", [np.float32, np.float64], ids=["float32", "float64"])
@pytest.mark.parametrize("cls,config_name,config", STEP_DEPENDENT,
                         ids=[f"{c.__name__}-{n}" for c, n, _ in STEP_DEPENDENT])
def test_compiled_scalars_equal_python_scalars(cls, config_name, config, dtype):
    math = cls(**config)._math
    rows = drawn_rows(cls, config, np.random.default_rng(zlib.crc32(config_name.encode())), 4)
    in_python, compiled = Scalars(len(rows), math.width, dtype), Scalars(len(rows), math.width, dtype)
    in_python.compiled = False
    for version, count in enumerate(COUNTS):
        in_python.fill(version, rows, math, None, False, count)
        compiled.fill(version, rows, math, None, False, count, source=rows)
        assert np.array_equal(in_python.table, compiled.table, equal_nan=True), (math.name, count)
        # Same rows, next count: only the step count is written.
        compiled.fill(version, rows, math, None, False, count + 1, source=rows)
        in_python.fill(version, rows, math, None, False, count + 1)
        assert np.array_equal(in_python.table, compiled.table, equal_nan=True), (math.name, count + 1)
    # A hyperparameter that is None (Adafactor's eps1: "the params' epsilon")
    # sends the rows back to Python; every other row set stays compiled.
    assert bool(compiled.compiled) == all(v is not None for hp in rows for v in vars(hp).values()), math.name


def test_every_step_dependent_rule_without_carried_values_is_compiled():
    names = {cls(**cfg)._math.name for cls, _, cfg in STEP_DEPENDENT}
    assert {"Adam", "AdamW", "RAdam", "Adamax", "Rprop", "AdaBelief", "LAMB", "TorchAdam", "TorchAdagrad",
            "Adafactor"} <= names
    for cls, _, cfg in FORMS:
        math = cls(**cfg)._math
        assert (math.scalars_filler is None) == (math.carry is not None), math.name


def test_a_schedule_and_groups_reach_the_compiled_scalars():
    from fastopt import AdamW, reference, schedules

    lr = schedules.warmup_cosine_decay(0.0, 0.01, 5, 50)
    config = dict(lr=lr, groups={"b*": {"weight_decay": 0.0, "beta1": 0.8}})
    fast, ref = AdamW(**config), reference.AdamW(**config)
    rng = np.random.default_rng(3)
    params = {"W": rng.standard_normal((20, 7)), "b": rng.standard_normal(7)}
    expected = copy_params(params)
    for _ in range(12):
        grads = random_grads(params, rng)
        fast.update(params, grads)
        ref.update(expected, grads)
    assert fast._planner.plan_for(params).scalars.compiled
    assert_same(params, expected)
    assert_same_state(fast, ref)
