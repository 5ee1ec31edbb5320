"""Bad input: a typed error naming the key, raised before anything is written.

Every case runs against an optimizer that has already stepped (so it has
state), snapshots params, grads, state and step count, checks the error, checks
that nothing changed, and finally checks that the next good update still
matches a reference optimizer that never saw the bad call: nothing lost.
The offending key comes last in the dict, so an implementation that validated
key by key while updating would already have stepped the keys before it.
"""

from __future__ import annotations

import math

import numpy as np
import pytest

import fastopt
from fastopt.registry import RULES

from conftest import assert_same, assert_same_state, copy_params

rules = pytest.mark.parametrize("rule", RULES, ids=lambda r: r.name)


def good_params():
    rng = np.random.default_rng(0)
    return {"W": rng.standard_normal((3, 4)).astype(np.float32), "b": rng.standard_normal(4).astype(np.float32)}


def good_grads(params, seed=1):
    rng = np.random.default_rng(seed)
    return {k: rng.standard_normal(v.shape).astype(v.dtype) for k, v in params.items()}


def stepped(rule):
    params = good_params()
    opt, ref = rule.fast(lr=0.1), rule.reference(lr=0.1)
    ref_params = copy_params(params)
    for seed in (1, 2):
        opt.update(params, good_grads(params, seed))
        ref.update(ref_params, good_grads(params, seed))
    return opt, ref, params, ref_params


def snapshot(opt, *dicts):
    return (
        opt.step_count,
        {n: {k: v.copy() for k, v in views.items()} for n, views in opt.state.items()},
        [{k: (np.array(v, copy=True) if isinstance(v, np.ndarray) else v) for k, v in d.items()} for d in dicts],
    )


def assert_untouched(before, opt, *dicts):
    step, state, copies = before
    assert opt.step_count == step
    for name in state:
        assert_same(opt.state[name], state[name], what=f"state {name!r}")
    for d, c in zip(dicts, copies):
        assert d.keys() == c.keys()
        for k in d:
            assert np.asarray(d[k]).tobytes() == np.asarray(c[k]).tobytes(), k


def check_rejected(rule, make_bad, error, key_in_message):
    opt, ref, params, ref_params = stepped(rule)
    bad_params, bad_grads = make_bad(params, good_grads(params, 3))
    before = snapshot(opt, bad_params, bad_grads, params)
    with pytest.raises(error) as info:
        opt.update(bad_params, bad_grads)
    assert key_in_message in str(info.value), str(info.value)
    assert_untouched(before, opt, bad_params, bad_grads, params)
    grads = good_grads(params, 4)
    opt.update(params, grads)
    ref.update(ref_params, grads)
    assert_same(params, ref_params)
    assert_same_state(opt, ref)
    return str(info.value)


def with_(d, **changes):
    out = dict(d)
    out.update(changes)
    return out


CASES = {
    "grads missing a key": (lambda p, g: (p, {"W": g["W"]}), fastopt.KeyMismatchError, "'b'"),
    "grads with an extra key": (lambda p, g: (p, with_(g, extra=np.zeros(1, np.float32))), fastopt.KeyMismatchError, "'extra'"),
    "new key after the first update": (
        lambda p, g: (with_(p, new=np.zeros(2, np.float32)), with_(g, new=np.zeros(2, np.float32))),
        fastopt.KeyMismatchError,
        "'new'",
    ),
    "key gone after the first update": (lambda p, g: ({"W": p["W"]}, {"W": g["W"]}), fastopt.KeyMismatchError, "'b'"),
    "grad shape differs": (lambda p, g: (p, with_(g, b=np.zeros(5, np.float32))), fastopt.ShapeMismatchError, "grads['b']"),
    "param shape differs from the layout": (
        lambda p, g: (with_(p, b=np.zeros(5, np.float32)), with_(g, b=np.zeros(5, np.float32))),
        fastopt.ShapeMismatchError,
        "params['b']",
    ),
    "grad dtype differs": (lambda p, g: (p, with_(g, b=g["b"].astype(np.float64))), fastopt.DTypeMismatchError, "grads['b']"),
    "param dtype differs from the layout": (
        lambda p, g: (with_(p, b=p["b"].astype(np.float64)), with_(g, b=g["b"].astype(np.float64))),
        fastopt.DTypeMismatchError,
        "params['b']",
    ),
    "integer param": (lambda p, g: (with_(p, b=np.arange(4)), g), fastopt.DTypeMismatchError, "params['b']"),
    "bool param": (lambda p, g: (with_(p, b=np.ones(4, bool)), g), fastopt.DTypeMismatchError, "params['b']"),
    "complex param": (lambda p, g: (with_(p, b=np.ones(4, np.complex64)), g), fastopt.DTypeMismatchError, "params['b']"),
    "float16 param": (lambda p, g: (with_(p, b=np.ones(4, np.float16)), g), fastopt.DTypeMismatchError, "params['b']"),
    "big-endian param": (lambda p, g: (with_(p, b=p["b"].astype(">f4")), g), fastopt.DTypeMismatchError, "params['b']"),
    "integer grad": (lambda p, g: (p, with_(g, b=np.arange(4))), fastopt.DTypeMismatchError, "grads['b']"),
    "list grad": (lambda p, g: (p, with_(g, b=[0.0] * 4)), fastopt.DTypeMismatchError, "grads['b']"),
    "None grad": (lambda p, g: (p, with_(g, b=None)), fastopt.DTypeMismatchError, "grads['b']"),
    "non-contiguous param": (
        lambda p, g: (with_(p, b=np.repeat(p["b"], 2)[::2]), g),
        fastopt.LayoutError,
        "params['b']",
    ),
    "read-only param": (lambda p, g: (with_(p, b=_read_only(p["b"])), g), fastopt.LayoutError, "params['b']"),
    "one array under two keys": (lambda p, g: (with_(p, b=p["W"][0]), g), fastopt.AliasingError, "params['b']"),
    "grad is its param": (lambda p, g: (p, with_(g, b=p["b"])), fastopt.AliasingError, "grads['b']"),
    "grad is a view of another param": (
        lambda p, g: (p, with_(g, b=p["W"][1])),
        fastopt.AliasingError,
        "grads['b']",
    ),
    "strided grad inside a param": (
        lambda p, g: (p, with_(g, b=p["W"].reshape(-1)[::3])),
        fastopt.AliasingError,
        "grads['b']",
    ),
}


def _read_only(a):
    a = a.copy()
    a.flags.writeable = False
    return a


#: Errors only because the first update fixed a layout: a stateless rule
#: (SGD without momentum) takes any layout on every call, as the book's does.
LAYOUT_CASES = (
    "new key after the first update",
    "key gone after the first update",
    "param shape differs from the layout",
)


@pytest.mark.parametrize("case", list(CASES))
@rules
def test_bad_input_is_rejected_before_anything_changes(rule, case):
    make_bad, error, key = CASES[case]
    if case in LAYOUT_CASES and not rule.fast().state_names:
        opt, ref, params, ref_params = stepped(rule)
        bad_params, bad_grads = make_bad(params, good_grads(params, 3))
        ref_bad = copy_params(bad_params)
        opt.update(bad_params, bad_grads)
        ref.update(ref_bad, bad_grads)
        assert_same(bad_params, ref_bad)
        return
    check_rejected(rule, make_bad, error, key)


def test_error_messages_say_what_was_expected():
    rule = RULES[0]
    msg = check_rejected(rule, CASES["grad shape differs"][0], fastopt.ShapeMismatchError, "grads['b']")
    assert "(4,)" in msg and "(5,)" in msg
    msg = check_rejected(rule, CASES["grad dtype differs"][0], fastopt.DTypeMismatchError, "grads['b']")
    assert "float32" in msg and "float64" in msg
    msg = check_rejected(rule, CASES["integer param"][0], fastopt.DTypeMismatchError, "params['b']")
    assert "int64" in msg


def test_errors_are_also_the_builtin_exceptions_callers_expect():
    assert issubclass(fastopt.KeyMismatchError, KeyError)
    assert issubclass(fastopt.ShapeMismatchError, ValueError)
    assert issubclass(fastopt.DTypeMismatchError, TypeError)
    assert issubclass(fastopt.HyperparameterError, ValueError)
    assert str(fastopt.KeyMismatchError("plain text")) == "plain text"


@rules
def test_bad_first_update_fixes_no_layout(rule):
    opt = rule.fast()
    with pytest.raises(fastopt.DTypeMismatchError):
        opt.update({"a": np.ones(2, np.float32), "b": np.ones(2)}, {"a": np.ones(2, np.float32), "b": np.ones(2)})
    assert opt.layout is None and opt.step_count == 0
    params = {"a": np.ones(3)}
    opt.update(params, {"a": np.ones(3)})
    if opt.state_names:  # a stateless rule fixes no layout at all
        assert opt.layout.keys == ("a",) and opt.layout.dtype == np.float64


def test_non_str_keys_and_non_dicts_are_rejected():
    opt = fastopt.SGD()
    with pytest.raises(fastopt.KeyTypeError, match="str"):
        opt.update({1: np.ones(2)}, {1: np.ones(2)})
    with pytest.raises(TypeError, match="params"):
        opt.update([np.ones(2)], [np.ones(2)])
    with pytest.raises(TypeError, match="grads"):
        opt.update({"a": np.ones(2)}, None)
    assert opt.layout is None


def test_overlapping_param_views_are_rejected():
    base = np.zeros(10)
    opt = fastopt.SGD()
    with pytest.raises(fastopt.AliasingError, match="share memory"):
        opt.update({"a": base[:6], "b": base[4:]}, {"a": np.ones(6), "b": np.ones(6)})


def test_size_zero_arrays_never_alias():
    base = np.zeros(10)
    params = {"a": base[:5], "b": base[5:5], "c": base[5:]}
    fastopt.Adam().update(params, {k: np.ones_like(v) for k, v in params.items()})


BAD_HYPERPARAMETERS = [
    ("lr", -0.1, fastopt.HyperparameterError),
    ("lr", math.nan, fastopt.HyperparameterError),
    ("lr", math.inf, fastopt.HyperparameterError),
    ("lr", "0.1", TypeError),
    ("lr", True, TypeError),
    ("lr", None, TypeError),
    ("lr", 10**400, fastopt.HyperparameterError),
    ("momentum", 1.0, fastopt.HyperparameterError),
    ("momentum", -0.5, fastopt.HyperparameterError),
    ("beta1", 1.0, fastopt.HyperparameterError),
    ("beta1", math.nan, fastopt.HyperparameterError),
    ("beta2", -0.001, fastopt.HyperparameterError),
    ("beta2", 1.5, fastopt.HyperparameterError),
    ("decay_rate", 1.0, fastopt.HyperparameterError),
    ("eps", 0.0, fastopt.HyperparameterError),
    ("eps", -1e-8, fastopt.HyperparameterError),
    ("weight_decay", -0.01, fastopt.HyperparameterError),
    ("weight_decay", math.nan, fastopt.HyperparameterError),
]


@pytest.mark.parametrize(
    "rule, name, value, error",
    [
        pytest.param(rule, name, value, error, id=f"{rule.name}-{name}={value!r}")
        for rule in RULES
        for name, value, error in BAD_HYPERPARAMETERS
        if name in rule.fast.hyperparameter_names
        # momentum=1.0 is fine for SGD (torch's range): the rule's own check decides.
        and not (isinstance(value, float) and math.isfinite(value) and getattr(rule.fast, name).check(value))
    ],
)
def test_invalid_hyperparameters_rejected_at_construction_and_assignment(rule, name, value, error):
    for cls in (rule.fast, rule.reference):
        with pytest.raises(error, match=name):
            cls(**{name: value})
        opt = cls()
        before = getattr(opt, name)
        with pytest.raises(error, match=name):
            setattr(opt, name, value)
        assert getattr(opt, name) == before


def test_valid_edge_hyperparameters_are_accepted():
    opt = fastopt.Adam(lr=0, beta1=0.0, beta2=0.0, eps=1e-300, weight_decay=0)
    opt.lr = np.float32(0.5)
    assert type(opt.lr) is float and opt.lr == 0.5
