"""Shared helpers: the registry drives every parametrized test."""

from __future__ import annotations

import numpy as np
import pytest

from fastopt.registry import RULES

RULE_IDS = [r.name for r in RULES]
DTYPES = [np.float32, np.float64]
SERIAL, PARALLEL = "serial", "parallel"


def use_kernel(opt, variant: str) -> None:
    """Make ``opt`` run one kernel variant on every update, whatever the size."""
    opt.parallel_min_size = 0
    opt.parallel = variant == PARALLEL


def rule_configs():
    """(rule, config name, hyperparameters) for every named config of every rule."""
    return [
        pytest.param(rule, kwargs, id=f"{rule.name}-{name}")
        for rule in RULES
        for name, kwargs in rule.configs.items()
    ]


def make_params(case: str, dtype, rng) -> dict:
    """A params dict of one of the shape cases the equivalence tests cover."""
    dt = np.dtype(dtype)
    arr = lambda *shape: rng.standard_normal(shape).astype(dt)
    if case == "scalar":
        # The book's 2-D example keeps Python floats; float32 has no Python
        # type, so it gets NumPy float32 scalars.
        x, y = float(rng.standard_normal()), float(rng.standard_normal())
        return {"x": x, "y": y} if dt == np.float64 else {"x": dt.type(x), "y": dt.type(y)}
    if case == "0-d":
        return {"w": np.array(rng.standard_normal(), dtype=dt)}
    if case == "size-0":
        return {"w": np.zeros((0, 3), dt)}
    if case == "1-D":
        return {"w": arr(37)}
    if case == "2-D":
        return {"W": arr(5, 7)}
    if case == "4-D":
        return {"conv": arr(2, 3, 4, 5)}
    if case == "several":
        return {
            "W1": arr(6, 4),
            "b1": arr(4),
            "gamma": np.array(rng.standard_normal(), dtype=dt),
            "empty": np.zeros(0, dt),
            "W2": arr(4, 3, 2),
            "b2": arr(1),
        }
    raise ValueError(case)


SHAPE_CASES = ["scalar", "0-d", "size-0", "1-D", "2-D", "4-D", "several"]


def random_grads(params: dict, rng, scale: float = 1.0) -> dict:
    """Fresh gradients shaped like ``params`` (Python floats for Python floats)."""
    grads = {}
    for key, p in params.items():
        g = rng.standard_normal(np.shape(p)) * scale
        if type(p) is float:
            grads[key] = float(g)
        elif isinstance(p, np.generic):
            grads[key] = p.dtype.type(g)
        else:
            grads[key] = g.astype(p.dtype)
    return grads


def copy_params(params: dict) -> dict:
    return {k: (v.copy() if isinstance(v, np.ndarray) else v) for k, v in params.items()}


def _nans_alike(x: np.ndarray) -> np.ndarray:
    if x.dtype.kind != "f" or not np.isnan(x).any():
        return x
    return np.where(np.isnan(x), x.dtype.type(np.nan), x)


def assert_same(a: dict, b: dict, what: str = "params") -> None:
    """Bitwise equality of two dicts of arrays/scalars (NaNs compare equal)."""
    assert a.keys() == b.keys(), what
    for key in a:
        x, y = np.asarray(a[key]), np.asarray(b[key])
        assert x.dtype == y.dtype, f"{what}[{key!r}]: dtype {x.dtype} != {y.dtype}"
        assert x.shape == y.shape, f"{what}[{key!r}]: shape {x.shape} != {y.shape}"
        # Bytes, not just values: the sign of a zero must agree too.  Not a
        # nan's sign or payload: IEEE 754 leaves to the implementation which
        # of two nans an operation returns, and LLVM may swap the operands of
        # a commutative operation where NumPy does not (README, "Guarantees").
        assert np.array_equal(x, y, equal_nan=True) and _nans_alike(x).tobytes() == _nans_alike(y).tobytes(), (
            f"{what}[{key!r}] differs; max abs diff "
            f"{np.max(np.abs(x.astype(np.float64) - y.astype(np.float64)), initial=0.0)}"
        )


def assert_same_state(fast, ref) -> None:
    fast_state, ref_state = fast.state, ref.state
    assert fast_state.keys() == ref_state.keys()
    for name in fast_state:
        assert_same(fast_state[name], ref_state[name], what=f"state {name!r}")
