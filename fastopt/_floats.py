"""Params that are Python floats (the book's 2-D example), stepped in the interpreter.

Such a dict holds a handful of numbers, and a compiled call costs more than
the book's whole update of them.  For a rule whose element update is plain
arithmetic - its function reads no global name and returns once, at its
end: SGD, Momentum, Nesterov - the update runs here on Python floats.  They
are IEEE doubles, and the float64 kernel compiles the same operations in the
same order without contraction or reassociation (``fastmath=False``), so the
bits are the kernel's (tests/test_python_floats.py compares the two paths).

Each rule and set of keys gets a function, generated once and shared by
the plans of such dicts: the prologue (the kernel's, operation for
operation) and the rule's update inlined per key, with the keys as
constants and each state element in a local - a call of the book's size
costs a few hundred nanoseconds, not a compiled call's microseconds.  Every new value is computed before anything is written; a
call this path does not take - another type of value, a ``ZeroDivisionError``
or ``OverflowError`` where the kernel gives inf or nan - returns False with
nothing written, and the kernel path runs it.
"""

from __future__ import annotations

import ast
import copy
import inspect
import textwrap

import numpy as np

from ._jit import GRAD_PROLOGUE, PROLOGUE, RuleMath

#: Dicts with more keys than this take the kernel path (the code is unrolled per key).
MOST_KEYS = 64

_HEAD = '''
def float_step(floats, owner, plan, params, grads):
    if owner._needs_prepass or type(grads) is not dict or len(grads) != {n_keys} or len(params) != {n_keys}:
        return False
    scalars = floats.scalars
    step_view = floats.step_view
    count = step_view[0]
    if scalars.version != owner.hyperparameter_version or (
            owner._time_dependent and scalars.count != count):
        owner._fill_scalars(plan, count)  # raises before anything is written
    rows = scalars.python_rows
    if rows is None:
        rows = floats.read_scalars()
    plain, {unpack_rows} = rows
    try:
{views}{load}
        if plain:
{plain}
        else:
{compute}
    except (KeyError, ArithmeticError):  # the kernel gives inf or nan where Python raises
        return False
    interrupted = None
{begin}
    try:
        while True:  # the writes are idempotent: an interrupt among them is held until all are done
            try:
{store}
                step_view[0] = count + 1
                break
            except KeyboardInterrupt as exc:
                interrupted = exc
    finally:
{end}
    if interrupted is not None:
        raise interrupted
    return True
'''

# A stateless rule's update writes one word of the optimizer's state, the
# step count: a snapshot cannot see half of it, and needs no sequence.
_BEGIN = """    state = floats.state
    state.sequence += 1  # odd: a snapshot taken meanwhile is retried"""
_END = "        state.sequence = (state.sequence | 1) + 1"

# Without the clamp and the coupled decay (both off): the same operations as
# _PROLOGUE then does.
_PLAIN_PROLOGUE = "g = g * grad_scale"

_PROLOGUE = GRAD_PROLOGUE.format(g="g", p="p")  # the kernels' own


class _PerKey(ast.NodeTransformer):
    """Rewrites an update's body for key ``k``: every name gets the suffix
    ``_k``, ``i`` becomes ``k`` and ``state[i]`` the local ``state_k``."""

    def __init__(self, k: int, state_names):
        self.k = k
        self.state_names = set(state_names)

    def visit_Subscript(self, node):
        if isinstance(node.value, ast.Name) and node.value.id in self.state_names:
            return ast.copy_location(ast.Name(f"{node.value.id}_{self.k}", node.ctx), node)
        return self.generic_visit(node)

    def visit_Name(self, node):
        if node.id == "i":
            return ast.copy_location(ast.Constant(self.k), node)
        return ast.copy_location(ast.Name(f"{node.id}_{self.k}", node.ctx), node)


_BODIES: dict = {}  # rule -> its inlinable body, or None


def _inlinable_body(math: RuleMath):
    """The update's body as statements whose last assigns the result to
    ``new``, or None when the function is not plain arithmetic."""
    if math not in _BODIES:
        _BODIES[math] = _parse_body(math)
    return _BODIES[math]


def _parse_body(math: RuleMath):
    update = math.update
    if math.direction is not None or update.__code__.co_names or update.__code__.co_freevars:
        return None
    try:
        tree = ast.parse(textwrap.dedent(inspect.getsource(update)))
    except (OSError, TypeError, SyntaxError):
        return None
    function = tree.body[0]
    body = function.body
    if body and isinstance(body[0], ast.Expr) and isinstance(body[0].value, ast.Constant):
        body = body[1:]  # a docstring
    returns = [n for n in ast.walk(function) if isinstance(n, ast.Return)]
    if not body or returns != [body[-1]] or body[-1].value is None:
        return None
    allowed = (ast.Assign, ast.AugAssign, ast.If, ast.Expr, ast.Return, ast.Pass)
    if any(not isinstance(s, allowed) for s in ast.walk(function) if isinstance(s, ast.stmt) and s is not function):
        return None
    for node in ast.walk(function):
        if isinstance(node, (ast.Call, ast.Attribute, ast.Lambda, ast.comprehension)):
            return None
        if isinstance(node, ast.Name) and node.id == "i" and not isinstance(node.ctx, ast.Load):
            return None  # i becomes a constant
        if isinstance(node, ast.Subscript) and not (
            isinstance(node.value, ast.Name) and node.value.id in math.state_names
            and isinstance(node.slice, ast.Name) and node.slice.id == "i"
        ):
            return None
    subscripted = {id(n.value) for n in ast.walk(function) if isinstance(n, ast.Subscript)}
    if any(isinstance(n, ast.Name) and n.id in math.state_names and id(n) not in subscripted
           for n in ast.walk(function) if n is not function):
        return None  # a state array used whole
    body = [*body[:-1], ast.Assign([ast.Name("new", ast.Store())], body[-1].value)]
    return body


def takes(math, plan, state_dtype, copies) -> bool:
    """Whether ``plan`` (of a dict of Python floats) may step in the interpreter."""
    return (
        type(math) is RuleMath
        and plan.scalar_types is not None
        and 0 < len(plan.scalar_types) <= MOST_KEYS
        and all(t is float for t in plan.scalar_types)
        and copies is None
        and plan.layout.dtype == np.float64
        and np.dtype(state_dtype) == np.float64
        and plan.scalars.table.dtype == np.float64
        and _inlinable_body(math) is not None
    )


def _source(math: RuleMath, keys) -> str:
    body = _inlinable_body(math)
    n_keys = len(keys)
    names = (*PROLOGUE, *math.scalar_names)
    unpack_rows = "(" + ", ".join("(" + ", ".join(f"{n}_{k}" for n in names) + ",)" for k in range(n_keys)) + ",)"
    load, compute, plain, store = [], [], [], []
    for k, key in enumerate(keys):
        load.append(f"p_{k} = params[{key!r}]")
        load.append(f"g_{k} = grads[{key!r}]")
        load.append(f"if type(p_{k}) is not float or type(g_{k}) is not float:")
        load.append("    return False")
    for k, key in enumerate(keys):
        for j, n in enumerate(math.state_names):
            load.append(f"{n}_{k} = views[{j}][{k}]")
        for prologue, out in ((_PROLOGUE, compute), (_PLAIN_PROLOGUE, plain)):
            per_key = _PerKey(k, math.state_names)
            statements = [per_key.visit(s) for s in [*ast.parse(prologue).body, *copy.deepcopy(body)]]
            out.append(ast.unparse(ast.fix_missing_locations(ast.Module(statements, []))))
        store.append(f"params[{key!r}] = new_{k}")
        store.extend(f"views[{j}][{k}] = {n}_{k}" for j, n in enumerate(math.state_names))
    stateful = bool(math.state_names)
    return _HEAD.format(
        n_keys=n_keys,
        unpack_rows=unpack_rows,
        views="        views = floats.views\n" if stateful else "",
        load=textwrap.indent("\n".join(load), " " * 8),
        begin=_BEGIN if stateful else "",
        end=_END if stateful else "        pass",
        compute=textwrap.indent("\n".join(compute), " " * 12),
        plain=textwrap.indent("\n".join(plain), " " * 12),
        store=textwrap.indent("\n".join(store), " " * 16),
    )


# One function per rule and keys, shared by every plan of such a dict: a
# call site that meets several function objects (one SGD stepping three
# networks) loses CPython's call specialization, 0.1 us per call.
_STEPS: dict = {}  # (rule, keys) -> its update of a dict of floats
_STEPS_KEPT = 32


def _step(math: RuleMath, keys):
    step = _STEPS.get((math, keys))
    if step is None:
        namespace: dict = {}
        exec(compile(_source(math, keys), f"<fastopt: {math.name} on Python floats>", "exec"), namespace)
        step = namespace["float_step"]
        if len(_STEPS) >= _STEPS_KEPT:
            _STEPS.pop(next(iter(_STEPS)))
        _STEPS[math, keys] = step
    return step


class FloatStep:
    """One plan's interpreted update (see the module's docstring).

    ``floats.step(floats, owner, plan, params, grads)`` runs one update of
    ``owner`` (the optimizer whose plan this is); False: nothing was
    written, take the kernel path.
    """

    def __init__(self, math: RuleMath, plan, state):
        self.keys = plan.layout.keys
        self.key_group = list(plan.key_group)
        self.scalars = plan.scalars
        self.state = state
        self.step_view = state.step_view
        # A dict of floats has one state element per key, at the key's index.
        self.views = [memoryview(state.buffers[n]) for n in math.state_names]
        self.step = _step(math, self.keys)

    def read_scalars(self) -> tuple:
        """(whether every row has the clamp and the coupled decay off, each key's row)."""
        table = self.scalars.table.tolist()
        rows = tuple(tuple(table[g]) for g in self.key_group)
        clip, decay = PROLOGUE.index("clip_value"), PROLOGUE.index("coupled_decay")
        plain = all(not row[clip] > 0 and row[decay] == 0 for row in rows)
        self.scalars.python_rows = (plain, rows)
        return self.scalars.python_rows
