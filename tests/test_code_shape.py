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
    # Plans and scalars tables of every kind, in an order where a later one
    # adds attributes that an earlier one lacked: a dict of Python floats,
    # a rule with trust ratios, a schedule, compiled and Python scalars.
    made = [
        (fastopt.Momentum(), {"x": 1.0}),
        (fastopt.LAMB(), {"w": np.ones(3)}),
        (fastopt.Adam(lr=fastopt.schedules.constant(1e-3), groups={"b": {"lr": 0.1}}), {"w": np.ones(3), "b": np.ones(2)}),
        (fastopt.Adam(), {"w": np.ones(3)}),
        (fastopt.SGD(), {"w": np.ones(3)}),
        (fastopt.SGD(), {"x": 1.0, "y": 2.0}),
    ]
    for _ in range(3):
        for opt, params in made:
            opt.update(params, {k: 0.5 if type(v) is float else np.ones_like(v) for k, v in params.items()})
    for opt, params in made:
        # What the book's code and checkpoints do in between must not spoil them.
        opt.iter, opt.state_dict(), pickle.loads(pickle.dumps(opt))
        opt.iter = 3
        opt.lr = 1e-3
        opt.update(params, {k: 0.5 if type(v) is float else np.ones_like(v) for k, v in params.items()})
        plan = opt._plans[id(params)]
        for obj, key in [(opt, "_state"), (opt._state, "step_view"), (plan, "scalars"), (plan.scalars, "python_rows")]:
            assert not _dict_materialized(obj, key), (type(opt).__name__, type(obj).__name__)
    fastopt.Adam().m, fastopt.Momentum().v
