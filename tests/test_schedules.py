"""fastopt.schedules against optax's own values (tests/golden/schedules.npz).

The golden file is written by ``tools/golden_schedules.py`` in a separate venv
with jax and optax (see its docstring); this test needs neither.
"""

from __future__ import annotations

import json
import pathlib
import pickle

import numpy as np
import pytest

from fastopt import schedules as S
from fastopt.errors import HyperparameterError

GOLDEN = pathlib.Path(__file__).parent / "golden" / "schedules.npz"


def _load_golden():
    if not GOLDEN.is_file():
        raise FileNotFoundError(
            f"{GOLDEN} is missing: run tools/golden_schedules.py with a venv that has optax")
    with np.load(GOLDEN) as z:
        cases = [json.loads(str(c)) for c in z["cases"]]
        data = [(c, z[f"counts_{i}"], z[f"values_{i}"]) for i, c in enumerate(cases)]
        return data, [str(v) for v in z["versions"]]


GOLDEN_CASES, VERSIONS = _load_golden()


def _case_id(case) -> str:
    return f"{case['schedule']}-" + json.dumps(case["args"], separators=(",", ":"))[:60]


def _names(case):
    """Every schedule name in a case, nested ones included."""
    yield case["schedule"]
    for sub in case["args"].get("schedules", []) if case["schedule"] == "join" else []:
        yield from _names(sub)


@pytest.mark.parametrize("case,counts,expected", GOLDEN_CASES, ids=[_case_id(c) for c, _, _ in GOLDEN_CASES])
def test_matches_optax(case, counts, expected):
    sched = S.from_config(case)
    assert sched.to_config() == case  # the golden file uses to_config()'s exact format
    got = np.array([sched(int(c)) for c in counts], dtype=np.float64)
    np.testing.assert_allclose(got, expected, rtol=1e-12, atol=0, err_msg=f"{case} vs {VERSIONS}")


def test_golden_file_records_versions():
    text = " ".join(VERSIONS)
    assert "optax 0.2.8" in text and "jax " in text and "jax_enable_x64 True" in text


def test_every_public_schedule_has_a_golden_case():
    public = {n for n in S.__all__ if n not in ("Schedule", "from_config", "SCHEDULE_NAMES")}
    assert public == set(S.SCHEDULE_NAMES)
    for name in public:
        assert callable(getattr(S, name)) and isinstance(getattr(S, name).__doc__, str)
    covered = {n for case, _, _ in GOLDEN_CASES for n in _names(case)}
    assert public <= covered, f"no golden case for {sorted(public - covered)}"
    for case, counts, _ in GOLDEN_CASES:
        assert len(counts) >= 25 and counts[0] == 0


@pytest.mark.parametrize("case", [c for c, _, _ in GOLDEN_CASES], ids=[_case_id(c) for c, _, _ in GOLDEN_CASES])
def test_round_trips(case):
    sched = S.from_config(case)
    counts = list(range(40)) + [1000, 10**6]
    want = [sched(c) for c in counts]
    for other in (pickle.loads(pickle.dumps(sched)),
                  S.from_config(json.loads(json.dumps(sched.to_config()))),
                  eval(repr(sched), vars(S))):  # the repr is the call that builds it
        assert type(other) is type(sched) and other.to_config() == sched.to_config()
        got = [other(c) for c in counts]
        assert got == want or np.array_equal(got, want, equal_nan=True)
    assert all(type(v) is float for v in want)


def test_returns_python_float_for_int_arguments():
    for sched in (S.constant(3), S.linear(1, 0, 4), S.piecewise_constant(2, {1: 3}),
                  S.join([S.constant(1), S.constant(2)], [1]), S.inverse_sqrt(1, 1)):
        for count in (0, 1, 5, np.int64(7)):
            assert type(sched(count)) is float
    assert S.constant(3).value == 3.0 and type(S.constant(3).value) is float


def test_repr_and_config_format():
    s = S.warmup_cosine_decay(0.0, 1e-3, 10, 100)
    assert repr(s) == ("warmup_cosine_decay(init_value=0.0, peak_value=0.001, warmup_steps=10, "
                       "decay_steps=100, end_value=0.0, exponent=1.0)")
    p = S.piecewise_constant(1.0, {200: 0.1, 100: 0.5})
    assert p.to_config() == {"schedule": "piecewise_constant",
                             "args": {"init_value": 1.0, "boundaries_and_scales": [[100, 0.5], [200, 0.1]]}}
    assert S.from_config(p.to_config()).boundaries_and_scales == {100: 0.5, 200: 0.1}
    j = S.join([S.constant(1.0), p], [5])
    assert j.to_config()["args"]["schedules"][1] == p.to_config()
    json.dumps(j.to_config())


def test_optax_constant_fallbacks():
    # optax logs and returns init_value for transition_steps <= 0 (and decay_rate == 0).
    for s in (S.linear(0.3, 0.9, 0), S.polynomial(0.3, 0.9, 2.0, -5),
              S.exponential_decay(0.3, 0, 0.5), S.exponential_decay(0.3, 10, 0.0, end_value=0.9)):
        assert [s(c) for c in (0, 1, 100)] == [0.3, 0.3, 0.3]
    # a negative transition_begin counts as 0
    assert S.linear(1.0, 0.0, 10, -3)(5) == S.linear(1.0, 0.0, 10)(5) == 0.5


BAD = [
    (S.constant, dict(value="1"), "value"),
    (S.constant, dict(value=float("nan")), "value"),
    (S.constant, dict(value=True), "value"),
    (S.linear, dict(init_value=1.0, end_value=0.0, transition_steps=10.0), "transition_steps"),
    (S.linear, dict(init_value=1.0, end_value=0.0, transition_steps=10, transition_begin=None),
     "transition_begin"),
    (S.polynomial, dict(init_value=1.0, end_value=0.0, power="2", transition_steps=10), "power"),
    (S.cosine_decay, dict(init_value=1.0, decay_steps=0), "decay_steps"),
    (S.cosine_decay, dict(init_value=1.0, decay_steps=10, alpha=float("inf")), "alpha"),
    (S.exponential_decay, dict(init_value=1.0, transition_steps=10, decay_rate=0.5, staircase=1),
     "staircase"),
    (S.exponential_decay, dict(init_value=1.0, transition_steps=10, decay_rate=0.5, end_value="x"),
     "end_value"),
    (S.piecewise_constant, dict(init_value=1.0, boundaries_and_scales={10: -0.5}), "boundaries_and_scales"),
    (S.piecewise_constant, dict(init_value=1.0, boundaries_and_scales={1.5: 0.5}), "boundaries_and_scales"),
    (S.piecewise_constant, dict(init_value=1.0, boundaries_and_scales=[[1, 0.5], [1, 0.1]]),
     "boundaries_and_scales"),
    (S.piecewise_constant, dict(init_value=1.0, boundaries_and_scales="3:0.5"), "boundaries_and_scales"),
    (S.warmup_cosine_decay, dict(init_value=0.0, peak_value=1.0, warmup_steps=10, decay_steps=10),
     "decay_steps"),
    (S.warmup_cosine_decay, dict(init_value=0.0, peak_value=1.0, warmup_steps=1.5, decay_steps=10),
     "warmup_steps"),
    (S.warmup_exponential_decay, dict(init_value=0.0, peak_value=1.0, warmup_steps=5,
                                      transition_steps=5, decay_rate=[0.5]), "decay_rate"),
    (S.cosine_onecycle, dict(transition_steps=0, peak_value=1.0), "transition_steps"),
    (S.cosine_onecycle, dict(transition_steps=10, peak_value=1.0, div_factor=0.0), "div_factor"),
    (S.inverse_sqrt, dict(peak_value=1.0, warmup_steps=0), "warmup_steps"),
    (S.join, dict(schedules=[S.constant(1.0), S.constant(2.0)], boundaries=[]), "boundaries"),
    (S.join, dict(schedules=[S.constant(1.0), S.constant(2.0)], boundaries=[1.0]), "boundaries"),
    (S.join, dict(schedules=[S.constant(1.0), lambda c: 0.5], boundaries=[1]), "schedules"),
    (S.join, dict(schedules=[], boundaries=[]), "schedules"),
]


@pytest.mark.parametrize("fn,kwargs,arg", BAD, ids=[f"{f.__name__}-{a}-{i}" for i, (f, _, a) in enumerate(BAD)])
def test_bad_arguments_raise(fn, kwargs, arg):
    with pytest.raises(HyperparameterError, match=arg) as info:
        fn(**kwargs)
    assert fn.__name__ in str(info.value)
    assert isinstance(info.value, ValueError)


@pytest.mark.parametrize("config", [
    {"schedule": "nope", "args": {}},
    {"schedule": "linear", "args": {"init_value": 1.0}},
    {"schedule": "constant", "args": {"value": 1.0, "extra": 2}},
    {"schedule": "constant", "args": [1.0]},
    {"schedule": "constant"},
    "constant",
    {"schedule": "join", "args": {"schedules": [{"schedule": "bogus", "args": {}}], "boundaries": []}},
])
def test_bad_configs_raise(config):
    with pytest.raises(HyperparameterError):
        S.from_config(config)


@pytest.mark.parametrize("count", [-1, 1.0, "3", None])
def test_bad_counts_raise(count):
    with pytest.raises(HyperparameterError, match="count"):
        S.constant(1.0)(count)
