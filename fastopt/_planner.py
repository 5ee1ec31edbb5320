"""Planning: a call that no plan matches is validated and planned here, and
the plans are kept per params dict (by ``id``) for the next calls."""

from __future__ import annotations

from collections import OrderedDict

import numpy as np

from . import _floats
from ._jit import PROLOGUE, RuleMath
from ._lowp import FORMAT_OF
from ._plan import Plan
from ._run import KernelRunner, NormPrepass, Scalars
from ._state import OptimizerState
from ._validate import validate, validate_copies
from .errors import LayoutError

#: Param dicts whose plans an optimizer keeps (a stateless rule shared by
#: several networks re-binds each network's plan instead of re-validating).
PLANS_KEPT = 8


class Planner:
    """One optimizer's plans, and how a new one is made."""

    def __init__(self, math: RuleMath, state: OptimizerState, runner: KernelRunner):
        self.math = math
        self.state = state
        self.runner = runner
        self.plans: OrderedDict = OrderedDict()

    def plan_for(self, params) -> Plan | None:
        return self.plans.get(id(params))

    def clear(self) -> None:
        self.plans.clear()

    def init(self, params, groups, owner: str, state_dtype_for) -> None:
        """Fix the layout of ``params`` (only read) and allocate the state."""
        state = self.state
        if state.layout is not None:
            raise LayoutError(f"{owner}.init: the layout is already fixed")
        grads = {k: (np.zeros_like(v) if isinstance(v, np.ndarray) else v) for k, v in params.items()} \
            if isinstance(params, dict) else params
        call = validate(params, grads, None, {})
        groups.assign(call.layout.keys, owner)
        if self.math.state_names:
            state.allocate(call.layout, state_dtype_for(call.layout.dtype))

    def plan(self, params, grads, kernel, groups, owner: str, state_dtype_for, copies=None) -> Plan:
        """Validate a call that no plan matches; plan its kernel call (that
        also writes ``copies``, see :meth:`fastopt.Optimizer.update_and_copy`)."""
        math, state, runner = self.math, self.state, self.runner
        stateful = bool(math.state_names)
        call = validate(params, grads, state.layout if stateful else None, state.buffers)
        key_group = groups.assign(call.layout.keys, owner)
        if state.layout is None and stateful:
            state.allocate(call.layout, state_dtype_for(call.layout.dtype))
        state_dtype = state.state_dtype if stateful else state_dtype_for(call.layout.dtype)
        if not stateful and state_dtype in FORMAT_OF:  # no state to store: the params' kernel
            state_dtype = call.layout.dtype
        copy_views = None
        kind = None
        if copies is not None:
            if not math.supports_copies:
                raise LayoutError(f"{owner}.update_and_copy: {owner} brings its own kernel, which writes no copies")
            kind, copy_views = validate_copies(call, copies, state.buffers, owner)
        if kind is not None or (stateful and state_dtype in FORMAT_OF):
            kernel = math.kernel_for(state_dtype if stateful else None, kind)
        parts = _thread_count() if runner.may_run_parallel(call.layout.total) else 1
        per_key = math.direction is not None
        n_keys = len(call.layout.keys)
        # A rule with a trust ratio gives every key a scalars row of its own.
        plan = Plan(call, state, np.arange(n_keys) if per_key else key_group, parts, copy_views)
        if copies is not None:
            plan.copies_given = (copies, [copies[k] for k in call.layout.keys])
        plan.scalars_rows = (lambda rows: [rows[g] for g in key_group]) if per_key else (lambda rows: rows)
        # Low-precision state computes in the params' dtype (float32 at least).
        compute = call.layout.dtype if state_dtype in FORMAT_OF else np.result_type(call.layout.dtype, state_dtype)
        plan.scalars = Scalars(n_keys if per_key else 1 + len(groups), math.width, compute)
        plan.prepass = None
        plan.norms = None
        if per_key:
            column = len(PROLOGUE) + math.scalar_names.index("trust_ratio")
            plan.norms = NormPrepass(plan, kernel, plan.scalars, state, state_dtype, runner)
            plan.norms.trust_ratio_column = _ColumnWriter(plan.scalars.table, column)
        math.bind(runner, plan, kernel, plan.scalars, state, state_dtype)
        #: Nothing but the kernel call: no write-back, copies or norm pre-pass.
        plan.plain = not plan.writeback and copies is None and plan.norms is None
        if _floats.takes(math, plan, state_dtype, copies):
            plan.floats = _floats.FloatStep(math, plan, state)
        # Copies made for this call only (scalar params mixed with arrays)
        # cannot be re-bound; a dict of scalars keeps its own buffers.
        plans = self.plans
        plans.pop(id(params), None)
        if plan.writeback and plan.scalar_types is None:
            return plan
        plans[id(params)] = plan
        while len(plans) > PLANS_KEPT:
            plans.popitem(last=False)
        return plan


class _ColumnWriter:
    """Writes one column of a scalars table, rounding as the table's dtype does."""

    def __init__(self, table, column: int):
        self.flat = memoryview(table.reshape(-1))
        self.width = table.shape[1]
        self.column = column

    def __setitem__(self, row: int, value: float) -> None:
        self.flat[row * self.width + self.column] = value


def _thread_count() -> int:
    """Numba's thread count, without starting its threads when nothing has
    yet: until ``numba.set_num_threads`` or a parallel region starts them,
    the count is ``NUMBA_NUM_THREADS``.  Starting them costs ~20 ms, which
    a first update that runs serially (every kernel's first calls do, see
    ``FasterOf``) need not pay, and after a fork the child of a parent that
    started GNU OpenMP threads runs serially only (``_ParallelPolicy``)."""
    import numba
    from numba.np.ufunc import parallel

    if not getattr(parallel, "_is_initialized", True):
        return numba.config.NUMBA_NUM_THREADS
    return numba.get_num_threads()
