"""The ``Optimizer`` facade: dicts in, one kernel call per update.

``update(params, grads)`` reads as: validate (or re-bind a plan, which checks
the same things in one compiled call) -> plan -> scalars -> run -> write
back.  The concerns live elsewhere, each with one way to invalidate it:

* :mod:`fastopt._validate` - full validation, returns a validated call;
* :mod:`fastopt._planner` - plans a validated call, keeps the plans;
* :mod:`fastopt._plan` - the segment table, re-bound cheaply to new grads;
* :mod:`fastopt._run` - the per-step scalars and the serial/parallel runner;
* :mod:`fastopt._grad_prepass` - the non-finite check and the clip norm,
  one read of the grads before the kernel;
* :mod:`fastopt._floats` - a dict of Python floats, stepped in the interpreter;
* :mod:`fastopt._state` - layout, state buffers, step counter (what a
  checkpoint holds; :mod:`fastopt._checkpoint` reads and restores it);
* :mod:`fastopt._groups`, :mod:`fastopt._hyper` - hyperparameters.
"""

from __future__ import annotations

import inspect

import numpy as np

from ._grad_prepass import GradPrepassStep
from ._groups import Groups
from ._options import EngineOptions, checked_state_dtype
from ._checkpoint import StateIO
from ._hyper import Hyperparameters
from ._jit import RuleMath
from ._lowp import STORAGE
from ._plan import Plan
from ._planner import Planner
from ._run import KernelRunner
from ._state import OptimizerState
from ._step_scalars import StepScalars
from .errors import HyperparameterError

#: Default size (elements in one update) from which the parallel kernel may
#: run.  Measured on a 2-core machine: below ~3e4 elements an Adam-class step
#: is faster serial (a parallel launch costs a few microseconds); SGD, with
#: less work per element, breaks even later.
PARALLEL_MIN_SIZE = 30_000
#: The public attributes an instance holds itself (the others are the class's descriptors).
_OWN_ATTRIBUTES = ("skipped_steps", "last_grad_norm", "hyperparameter_version")
_ENGINE_OPTIONS = ("nonfinite", "clip_norm", "clip_value", "maximize", "state_dtype", "groups")


class _BookState:
    """The book's attributes ``opt.m``, ``opt.v``, ``opt.h``: a state buffer as
    a dict of per-key views.  A descriptor on the class, installed by the
    first instance that keeps such a buffer: a ``__getattr__`` on the class
    would slow down every attribute read of every update (about 3x each)."""

    def __init__(self, name: str):
        self.name = name

    def __get__(self, obj, objtype=None):
        if obj is None:
            return self
        state = getattr(obj, "_state", None)
        if state is not None and self.name in state.state_names:
            return state.views()[self.name]
        raise AttributeError(f"{type(obj).__name__!r} object has no attribute {self.name!r}")

    def __set__(self, obj, value):
        raise AttributeError(f"{type(obj).__name__}.{self.name} is read-only: write into its arrays")


def _keyword(name, default):
    return inspect.Parameter(name, inspect.Parameter.KEYWORD_ONLY, default=default)


class Optimizer(StepScalars, GradPrepassStep, EngineOptions, StateIO, Hyperparameters):
    """Base of every rule: hyperparameters and engine options around a
    :class:`~fastopt._jit.RuleMath`.

    A rule subclass declares its hyperparameters, ``math`` (a RuleMath, or a
    property choosing one from ``structure`` options fixed at construction)
    and optionally ``structure`` (keyword options with defaults, e.g.
    ``amsgrad``).
    """

    math: RuleMath
    structure: dict = {}
    default_parallel_min_size: int = PARALLEL_MIN_SIZE

    def __init_subclass__(cls, **kwargs):
        super().__init_subclass__(**kwargs)
        for name in cls.structure:
            setattr(cls, name, property(lambda self, name=name: self._structure[name],
                                        doc=f"{name} (fixed at construction)"))
        cls.__signature__ = cls.hyperparameter_signature.replace(
            parameters=[
                *cls.hyperparameter_signature.parameters.values(),
                *(_keyword(n, d) for n, d in cls.structure.items()),
                _keyword("nonfinite", "propagate"), _keyword("clip_norm", None), _keyword("clip_value", None),
                _keyword("maximize", False), _keyword("state_dtype", None), _keyword("groups", None),
            ]
        )

    def __init__(self, *args, nonfinite="propagate", clip_norm=None, clip_value=None, maximize=False,
                 state_dtype=None, groups=None, **kwargs):
        structure = {}
        for name, default in self.structure.items():
            value = kwargs.pop(name, default)
            if not isinstance(value, bool):
                raise HyperparameterError(f"{type(self).__name__}.{name}: expected True or False, got {value!r}")
            structure[name] = value
        super().__init__(*args, **kwargs)
        object.__setattr__(self, "_structure", structure)
        self.nonfinite = nonfinite
        self.clip_norm = clip_norm
        self.clip_value = clip_value
        self.maximize = maximize
        self._state_dtype = checked_state_dtype(state_dtype, type(self).__name__)
        self._groups = Groups(self, groups)
        object.__setattr__(self, "_math", self.choose_math())
        if self._state_dtype in STORAGE and self._math.state_names:
            refused = self._math.low_precision_error(self._state_dtype)
            if refused:
                raise HyperparameterError(f"{type(self).__name__}(state_dtype={self._state_dtype!r}): {refused}")
        self._state = OptimizerState(self._math.state_names, self._math.carry, self._math.state_shape,
                                     self._math.int8_unsigned)
        for name in self._math.state_names:
            if not hasattr(type(self), name):
                setattr(type(self), name, _BookState(name))
        self._runner = KernelRunner(None, self.default_parallel_min_size, self._clear_plans)
        self._planner = Planner(self._math, self._state, self._runner)
        self._plans = self._planner.plans
        #: Updates skipped because of a non-finite gradient (nonfinite="skip").
        self.skipped_steps = 0
        #: The global L2 norm (float64) of the last update's grads (with clip_norm).
        self.last_grad_norm = None
        self._prepass_reduction = None
        self._refresh_time_dependence()

    def choose_math(self) -> RuleMath:
        """The math of this instance (a rule with structural options overrides it)."""
        return type(self).math

    # -- attributes ---------------------------------------------------------------

    def __setattr__(self, name, value):
        # Not ``name in self.__dict__``: reading __dict__ materializes it, and
        # every attribute read of the object is then about 3x slower.
        if name.startswith("_") or name in _OWN_ATTRIBUTES or hasattr(type(self), name):
            object.__setattr__(self, name, value)
            return
        raise AttributeError(
            f"{type(self).__name__} has no attribute {name!r}; its hyperparameters are "
            f"{list(self.hyperparameter_names)}, its options {list(_ENGINE_OPTIONS)}"
        )

    # -- the update -----------------------------------------------------------------

    def update(self, params, grads) -> None:
        """Apply one step of the rule to ``params`` in place."""
        state = self._state
        if state.snapshot_waiting:
            with state.lock:  # a snapshot is being taken: wait for it
                return self._update(params, grads)
        # The book's loop, inlined: same params dict, grads re-bound inside
        # the kernel, no pre-pass.  Anything else takes _update.
        plan = self._plans.get(id(params))
        if plan is None or not plan.plain or self._needs_prepass or not plan.collect(params, grads):
            floats = None if plan is None else plan.floats
            if floats is not None and floats.step(floats, self, plan, params, grads):
                return None  # a dict of Python floats, stepped in the interpreter
            return self._update(params, grads, None, plan)
        scalars = plan.scalars
        if scalars.version != self.hyperparameter_version:
            self._fill_scalars(plan, state.step_view[0])
        elif self._time_dependent:
            count = state.step_view[0]
            if scalars.count != count:
                follow = scalars.follow
                if follow is None:
                    self._fill_scalars(plan, count)
                else:  # the compiled scalars (and schedules) for this count
                    follow(scalars, count, self)
        state.sequence += 1
        try:
            bad = plan.run()
        finally:
            state.sequence = (state.sequence | 1) + 1
        if bad >= 0:  # the kernel's check found a changed array and ran nothing
            self._update(params, grads)

    def update_and_copy(self, params, grads, copies) -> None:
        """``update``, and in the same pass each new param rounded to the
        nearest bfloat16 (ties to even) into ``copies[key]``, a uint16 array
        of the param's shape holding the bits.  For float32 params that are
        the master weights of a bfloat16 model (``fastopt.torch`` uses it for
        bf16 params); every rule but Adafactor."""
        state = self._state
        if state.snapshot_waiting:
            with state.lock:
                return self._update(params, grads, copies)
        return self._update(params, grads, copies)

    def _update(self, params, grads, copies=None, plan=False) -> None:
        """``plan``: the plan of ``params`` when the caller looked it up (None: there is none)."""
        if plan is False:
            plan = self._plans.get(id(params))
        if plan is None or not plan.same_copies(copies) or not plan.collect(params, grads):
            plan = self._prepare(params, grads, copies)  # validate, plan
        state = self._state
        count = state.step_view[0]
        if self._needs_prepass or plan.norms is not None:
            if plan.check() >= 0:  # the pre-passes read the grads: bind them first
                plan = self._prepare(params, grads, copies)
            self._fill_scalars(plan, count)
            if self._needs_prepass and not self._prepass(plan):
                return
            if plan.norms is not None:
                self._trust_ratios(plan, count)
        else:
            scalars = plan.scalars
            if scalars.version != self.hyperparameter_version or (self._time_dependent and scalars.count != count):
                self._fill_scalars(plan, count)
        try:
            state.sequence += 1  # odd: a snapshot taken meanwhile is retried
            if plan.writeback:
                plan.run_and_write_back(params)
            elif plan.run() >= 0:
                # The kernel's own check of this call's arrays found a change
                # and ran nothing: validate fully (raises, or plans anew).
                plan = self._prepare(params, grads, copies)
                self._fill_scalars(plan, count)
                if plan.norms is not None:
                    self._trust_ratios(plan, count)
                plan.run()
        finally:
            state.sequence = (state.sequence | 1) + 1  # even again, whatever interrupted

    def _clear_plans(self) -> None:
        self._planner.clear()

    def _prepare(self, params, grads, copies=None) -> Plan:
        return self._planner.plan(params, grads, self.kernel, self._groups, type(self).__name__,
                                  self.state_dtype_for, copies)

    @property
    def supports_copies(self) -> bool:
        """Whether :meth:`update_and_copy` is available (every rule but Adafactor)."""
        return self._math.supports_copies

    def structure_options(self) -> dict:
        """The structural options fixed at construction (``amsgrad``, ...)."""
        return dict(self._structure)

    def state_dtype_for(self, param_dtype) -> np.dtype:
        """The dtype this optimizer stores state in for params of ``param_dtype``
        (uint16 for bfloat16 bits, uint8 for int8 codes)."""
        if self._state_dtype in STORAGE:
            return STORAGE[self._state_dtype]
        return np.dtype(param_dtype if self._state_dtype is None else self._state_dtype)

    def init(self, params) -> None:
        """Fix the layout and allocate the state without stepping.

        ``params`` is a dict like the one ``update`` will get; its arrays are
        only read.  A later update with another layout raises.
        """
        self._planner.init(params, self._groups, type(self).__name__, self.state_dtype_for)
