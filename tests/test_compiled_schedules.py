"""Built-in schedules evaluated in compiled code (fastopt._compiled_schedules)
give the Python schedule's bits at every count, for every golden case (each
built-in, optax's argument sets) and edge cases; a value out of range is
left to Python, which raises the usual error; schedules are immutable."""

from __future__ import annotations

import math

import numpy as np
import pytest

import fastopt
from fastopt import schedules as S
from fastopt._compiled_schedules import CHECKS, fill_schedules_compiled, program_of
from fastopt._hyper import non_negative, positive, unit_interval
from conftest import assert_same, assert_same_state, copy_params, random_grads
from test_schedules import GOLDEN_CASES, _case_id

COUNTS = [*range(0, 160), 997, 1000, 1001, 12_345, 10**6, 2**40]
EDGES = [
    S.linear(2.0, 1.0, 0), S.linear(1.0, 0.1, 7, -3), S.polynomial(1.0, 0.5, 0.5, 13, 2), S.polynomial(0.0, 1.0, 3.0, 5),
    S.cosine_decay(0.2, 37, 0.1, 1.7), S.exponential_decay(0.1, 7, 0.9, 5, True, 0.01),
    S.exponential_decay(0.1, 3, 1.5, 0, False, 0.4), S.exponential_decay(0.1, 0, 0.5), S.exponential_decay(0.1, 4, 0.0),
    S.piecewise_constant(0.1, {10: 0.5, 30: 0.1, 5: 2.0}), S.piecewise_constant(0.3),
    S.warmup_exponential_decay(0.0, 0.1, 5, 10, 0.7, 2, True, 0.001), S.cosine_onecycle(37, 0.2, 0.25, 10.0, 100.0),
    S.inverse_sqrt(0.1, 1, 0.05), S.join([S.constant(0.1), S.inverse_sqrt(0.1, 10), S.cosine_decay(0.05, 20)], [5, 12]),
    S.join([S.constant(0.1), S.constant(0.2)], [7]),
    S.join([S.join([S.constant(1.0), S.linear(2.0, 0.0, 9)], [2]), S.constant(3.0),
            S.join([S.inverse_sqrt(0.5, 3), S.constant(0.25)], [40])], [5, 30]),
]
SCHEDULES = [S.from_config(case) for case, _, _ in GOLDEN_CASES] + EDGES
IDS = [_case_id(case) for case, _, _ in GOLDEN_CASES] + [repr(s)[:60] for s in EDGES]


def compiled_value(schedule, count: int, check=non_negative):
    """(the slot's verdict, the value written) for one schedule at ``count``."""
    words = np.array(program_of(schedule))
    slots = np.array([[0, CHECKS.index(check), 0, 1, 0]], np.int64)
    hyper, table = np.full(1, -7.0), np.zeros(1)
    bad = fill_schedules_compiled(words, slots, np.zeros(1, np.int64), count, hyper, table, np.zeros(1))
    return bad, hyper[0]


@pytest.mark.parametrize("schedule", SCHEDULES, ids=IDS)
def test_compiled_schedule_equals_python_at_every_count(schedule):
    assert program_of(schedule) is not None
    for count in COUNTS:
        want = schedule(count)
        bad, got = compiled_value(schedule, count, check=CHECKS[0] if want >= 0 else CHECKS[-1])
        if math.isfinite(want):
            assert bad == -1 and np.float64(got).tobytes() == np.float64(want).tobytes(), (schedule, count, got, want)
        else:
            assert bad == 0 and got == -7.0, (schedule, count)  # nothing written: Python raises


def test_out_of_range_values_are_left_to_python():
    assert compiled_value(S.linear(0.5, -0.5, 10), 3)[0] == -1
    assert compiled_value(S.linear(0.5, -0.5, 10), 6) == (0, -7.0)  # -0.1 is not >= 0
    assert compiled_value(S.constant(0.0), 0, positive) == (0, -7.0)
    assert compiled_value(S.constant(1.0), 0, unit_interval) == (0, -7.0)


def test_what_has_no_program_runs_in_python():
    assert program_of(lambda count: 0.1) is None
    assert program_of(S.linear(0.0, 1.0, 2**60)) is None  # an int beyond float64's exact range


def test_schedules_are_immutable_values():
    lr = S.warmup_cosine_decay(0.0, 0.01, 5, 50)
    with pytest.raises(AttributeError, match="immutable"):
        lr.peak_value = 1.0
    import copy
    import pickle

    for twin in (pickle.loads(pickle.dumps(lr)), copy.deepcopy(lr)):
        assert [twin(c) for c in range(60)] == [lr(c) for c in range(60)]


@pytest.mark.parametrize("lr", [S.warmup_cosine_decay(0.0, 0.01, 5, 50), S.cosine_onecycle(40, 0.02),
                                lambda count: 0.01 / (1 + count)], ids=["built-in", "onecycle", "callable"])
def test_an_optimizer_with_schedules_matches_the_reference(lr):
    wd = S.exponential_decay(0.1, 4, 0.5)
    fast, ref = fastopt.Adam(lr=lr, weight_decay=wd), fastopt.reference.Adam(lr=lr, weight_decay=wd)
    rng = np.random.default_rng(5)
    params = {"W": rng.standard_normal((9, 4)), "b": rng.standard_normal(4)}
    expected = copy_params(params)
    for _ in range(45):
        grads = random_grads(params, rng)
        fast.update(params, grads)
        ref.update(expected, grads)
    scalars = fast._planner.plan_for(params).scalars
    assert (scalars.schedule_call is not None) == (not callable(lr) or isinstance(lr, S.Schedule))
    assert_same(params, expected)
    assert_same_state(fast, ref)
