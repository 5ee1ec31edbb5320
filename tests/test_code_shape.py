"""The shape of the code that engine v2 promised: classes of one concern, and
the objects an update reads kept fast to read."""

from __future__ import annotations

import ast
import gc
import pathlib
import pickle
import platform

import numpy as np
import pytest

import fastopt

PACKAGE = pathlib.Path(fastopt.__file__).parent
MOST_LINES = 205  # "no class over ~200 lines"


def test_no_class_is_over_about_200_lines():
    long = []
    for path in sorted(PACKAGE.rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ClassDef) and node.end_lineno - node.lineno + 1 > MOST_LINES:
                long.append(f"{path.relative_to(PACKAGE)}:{node.lineno} {node.name} "
                            f"({node.end_lineno - node.lineno + 1} lines)")
    assert not long, long


def _dict_materialized(obj, key: str) -> bool:
    # CPython 3.11+ keeps an object's attributes as inline values until
    # something reads its __dict__; from then on it holds a dict object, which
    # the garbage collector sees, and every attribute read is ~3x slower.
    return any(type(r) is dict and key in r for r in gc.get_referents(obj))


@pytest.mark.skipif(platform.python_implementation() != "CPython", reason="CPython's object layout")
def test_the_objects_an_update_reads_keep_inline_attributes():
    opt = fastopt.Adam(lr=fastopt.schedules.constant(1e-3), groups={"b": {"lr": 0.1}})
    params = {"w": np.ones(3), "b": np.ones(2)}
    floats = {"x": 1.0}
    sgd = fastopt.Momentum()
    for _ in range(3):
        opt.update(params, {k: np.ones_like(v) for k, v in params.items()})
        sgd.update(floats, {"x": 0.5})
    # What the book's code and checkpoints do in between must not spoil them.
    opt.m, opt.iter, sgd.v, opt.state_dict(), pickle.loads(pickle.dumps(opt))
    opt.iter = 3
    opt.lr = 1e-3
    plan = opt._plans[id(params)]
    for obj, key in [(opt, "_state"), (opt._state, "step_view"), (plan, "scalars"), (plan.scalars, "python_rows"),
                     (sgd, "_state"), (sgd._state, "step_view")]:
        assert not _dict_materialized(obj, key), type(obj).__name__
