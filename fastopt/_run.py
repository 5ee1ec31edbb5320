"""Per-step scalars and the kernel runner.

:class:`Scalars` fills a plan's ``scalars[group, name]`` table in the
arithmetic dtype: the engine's prologue columns, then the rule's named
scalars.  Assigning a Python float to an item of a float32 memoryview is one
C cast that rounds exactly as ``np.float32(x)`` does (beyond float32's range
to inf), several times faster than going through NumPy.

:class:`KernelRunner` turns a plan into the cheapest callable that runs its
kernel: the serial one, the parallel one, or a :class:`~fastopt._jit.FasterOf`
choosing between them by measurement shared across the process.
"""

from __future__ import annotations

import math

import numba
import numpy as np

from ._compiled_schedules import CHECKS, program_of
from ._jit import PARALLEL, PROLOGUE, FasterOf, bound_call, flushes_denormals, serialized
from ._reduce import GradPrepass, block_table

_CLIP_VALUE, _GRAD_SCALE, _COUPLED_DECAY = range(len(PROLOGUE))


class Scalars:
    """One plan's scalars table and what it was last filled for."""

    def __init__(self, n_rows: int, width: int, dtype):
        self.table = np.zeros((n_rows, width), dtype)
        self.flat = memoryview(self.table.reshape(-1))
        self.width = width
        self.version = self.count = None
        self.grad_scale = None
        #: The rule's scalars compiled and bound to this table (see
        #: :attr:`fastopt._jit.RuleMath.scalars_filler`); False: they run in
        #: Python; None: not decided before the first fill.
        self.compiled = None
        #: The rows of hyperparameters the compiled scalars last read.
        self.rows_source = None
        #: Where each schedule's value goes (see :meth:`follow_schedules`),
        #: and the compiled call that evaluates and writes them (None: Python).
        self.slots = self.schedule_call = None
        #: The table as Python rows for :mod:`fastopt._floats`; None after every write.
        self.python_rows = None
        #: ``follow(self, count, owner)`` fills the table for update ``count``
        #: when only the count moved since the last fill (:meth:`refill` or
        #: :meth:`advance`, unbound: a bound method would make the object
        #: refer to itself); None: only a full :meth:`fill` can.
        self.follow = None
        # Set by _compile and follow_schedules; named here so that every
        # instance adds its attributes in one order (see Plan.__init__).
        self.names = self.hyper_flat = self.hyper_values = self.t_array = self.t_cell = None
        self.hyper = self.scheduled_filler = self.schedule_t = None

    def fill(self, version, rows, math, clip_value, maximize: bool, count: int, carried=None, source=None,
             every_step: bool = False) -> None:
        """Every row for update ``count``: ``rows`` holds each row's resolved
        hyperparameters (row 0 the optimizer's own, then one per group);
        ``source``, when given, is the object they were derived from, the
        same one as long as they are the same (None: new rows).  The clip
        and sign columns are rewritten only when the hyperparameters changed,
        the coupled decay whenever the rows are new (a schedule moves it),
        the rule's own columns whenever this is called.  ``every_step``: this
        is called on every update (a schedule), so compile the scalars even
        for a rule whose scalars do not change with the step count."""
        flat, width, first = self.flat, self.width, len(PROLOGUE)
        changed = version != self.version
        fresh = changed or source is None or source is not self.rows_source
        if changed:
            for r in range(len(rows)):
                base = r * width
                flat[base + _CLIP_VALUE] = clip_value or 0.0
                flat[base + _GRAD_SCALE] = -1.0 if maximize else 1.0
            self.grad_scale = None
            self.slots = None
        if fresh:  # a scheduled weight decay moves with every update
            decay = math.coupled_decay
            for r, hp in enumerate(rows):
                flat[r * width + _COUPLED_DECAY] = getattr(hp, decay) if decay else 0.0
        compiled = self.compiled
        if compiled is None and (math.depends_on_step or every_step):
            compiled = self._compile(math, rows)
        if compiled and carried is None and (not fresh or self._write_hyper(rows)):
            self.t_cell[0] = count + 1
            compiled()
        else:
            scalars, t = math.scalars, count + 1
            for r, hp in enumerate(rows):
                j = r * width + first
                for value in (scalars(hp, t) if carried is None else scalars(hp, t, carried[r])):
                    flat[j] = value
                    j += 1
        self.version, self.count, self.rows_source = version, count, source
        self.python_rows = None
        self.follow = Scalars.refill if self.slots is not None else (
            Scalars.advance if self.compiled and not every_step else None)

    def _compile(self, math, rows):
        self.compiled = False
        filler = math.scalars_filler
        if filler is None:
            return False
        self.names = tuple(vars(rows[0]))
        values = np.zeros((len(rows), len(self.names)))
        hyper = values.view(np.dtype([(name, np.float64) for name in self.names])).reshape(len(rows))
        self.hyper_flat = values.reshape(-1)
        self.hyper_values = memoryview(self.hyper_flat)
        self.t_array = np.zeros(1)
        self.t_cell = memoryview(self.t_array)
        try:
            self.compiled = bound_call(filler, (hyper, self.t_array, self.table))
        except numba.core.errors.NumbaError:
            math.drop_scalars_filler()
        self.hyper = hyper
        self.scheduled_filler = math.scheduled_scalars_filler
        return self.compiled

    def follow_schedules(self, slots, coupled_decay: str | None) -> None:
        """Let :meth:`refill` do the next updates while the hyperparameters do
        not change: ``slots`` holds, per schedule, ``(hyperparameter, schedule,
        rows)`` - its descriptor, the schedule and the rows that take its value.
        Only with compiled scalars; built-in schedules are then evaluated in
        compiled code too (:mod:`fastopt._compiled_schedules`), in the same
        call as the rule's scalars."""
        self.schedule_call = None
        if not self.compiled:
            return
        n = len(self.names)
        self.follow = Scalars.refill
        self.slots = [
            (hyper, schedule, [r * n + self.names.index(hyper.name) for r in rows],
             [r * self.width + _COUPLED_DECAY for r in rows] if hyper.name == coupled_decay else [])
            for hyper, schedule, rows in slots
        ]
        programs = [program_of(schedule) for _, schedule, _, _ in self.slots]
        if any(p is None for p in programs) or any(h.check not in CHECKS for h, _, _, _ in self.slots):
            return
        words, table, targets = [], [], []
        for (hyper, _, at, decay_at), program in zip(self.slots, programs):
            table.append((len(words), CHECKS.index(hyper.check), len(targets), len(at), len(decay_at)))
            words += program
            targets += at + decay_at
        words = np.array([*words, *[0.0] * len(table), 0.0])  # scratch per schedule, then t
        # The filler finds words and the table at these addresses; schedule_t
        # (a view of words) and self.table keep them alive.
        self.schedule_t = memoryview(words)[len(words) - 1:]
        layout = np.array([len(table), words.ctypes.data, len(words), self.table.ctypes.data, *self.table.shape,
                           *(w for row in table for w in row), *targets], np.int64)
        try:
            self.schedule_call = bound_call(self.scheduled_filler, (layout, self.hyper, self.table.dtype.type(0)))
        except numba.core.errors.NumbaError:
            pass  # evaluated in Python, as a user's callable is

    def refill(self, count: int, owner) -> None:
        """Update ``count`` with the same hyperparameters: each schedule is
        evaluated and checked (raising before anything is written, naming
        ``owner``, the optimizer), then the compiled scalars run."""
        call = self.schedule_call
        if call is not None:
            self.schedule_t[0] = count + 1
            if call() < 0:  # the schedules, then the rule's scalars
                self.count = count
                self.python_rows = None
                return
            # A value out of range: Python's evaluation raises the error.
        slots = self.slots
        name = owner._owner_name()
        values = [hyper.evaluate(schedule, count, name) for hyper, schedule, _, _ in slots]
        hyper_values, flat = self.hyper_values, self.flat
        for (_, _, at, decay_at), value in zip(slots, values):
            for i in at:
                hyper_values[i] = value
            for i in decay_at:
                flat[i] = value
        self.advance(count)

    def advance(self, count: int, owner=None) -> None:
        """The compiled scalars for update ``count``, the hyperparameters unchanged."""
        self.t_cell[0] = count + 1
        self.compiled()
        self.count = count
        self.python_rows = None

    def _write_hyper(self, rows) -> bool:
        """The hyperparameter rows for the compiled scalars; False when one
        is not a float (a nullable one set to None), which Python handles."""
        values, names, at = self.hyper_values, self.names, 0
        try:
            for hp in rows:
                got = vars(hp)
                for name in names:
                    values[at] = got[name]
                    at += 1
        except TypeError:
            self.compiled = False
            return False
        return True

    def scale_for_norm(self, norm: float, clip_norm: float, maximize: bool) -> None:
        """torch's clip coefficient ``min(1, clip_norm / (norm + 1e-6))`` as the grad scale."""
        coef = clip_norm / (norm + 1e-6)
        coef = 1.0 if coef >= 1.0 else coef  # torch.clamp(max=1.0): nan stays nan
        self.set_grad_scale(-coef if maximize else coef)

    def set_grad_scale(self, value: float) -> None:
        if value != self.grad_scale:
            flat, width = self.flat, self.width
            for base in range(0, len(flat), width):
                flat[base + _GRAD_SCALE] = value
            self.grad_scale = value
            self.python_rows = None


class KernelRunner:
    """Binds a plan to a kernel variant; one per optimizer."""

    def __init__(self, parallel: bool | None, parallel_min_size: int, on_invalidate):
        self.parallel = parallel
        self.parallel_min_size = parallel_min_size
        self.on_invalidate = on_invalidate
        PARALLEL.runners.add(self)

    def invalidate(self) -> None:
        """Forget every binding (after a fork, or a change of preference)."""
        self.on_invalidate()

    def may_run_parallel(self, size: int) -> bool:
        return self.parallel is not False and size >= self.parallel_min_size and PARALLEL.usable

    def bind(self, plan, kernel, scalars: Scalars, step, state_dtype) -> None:
        layout = plan.layout
        plan.point_at(scalars.table, step)
        # The dtypes as NumPy scalars: the kernel is compiled for each combination.
        args = (plan.block, layout.dtype.type(0), np.dtype(state_dtype).type(0), scalars.table.dtype.type(0))
        key = (kernel.name, layout.dtype.str, np.dtype(state_dtype).str, layout.total.bit_length())
        plan.run = self.choose(kernel.serial, kernel.parallel, args, layout.total, key)

    def choose(self, serial_kernel, parallel_kernel, args: tuple, size: int, key: tuple):
        """The callable running ``args`` through the serial kernel, the parallel
        one, or the faster of the two (measured, shared under ``key``)."""
        serial = bound_call(serial_kernel, args)
        if not self.may_run_parallel(size):
            return serial

        def parallel():
            return serialized(bound_call(parallel_kernel, args))

        if self.parallel is True:
            forced = parallel()
            # The workers do not share the caller's FTZ/DAZ mode.
            return lambda: serial() if flushes_denormals() else forced()
        return FasterOf(serial, parallel, key)

    def prepass(self, plan, scalars: Scalars) -> GradPrepass:
        if plan.prepass is None:
            plan.prepass = GradPrepass(
                plan.layout.sizes, plan.grad_base, np.empty(0, plan.layout.dtype), scalars.table[0],
                self.parallel_min_size if self.parallel is not False else 2**62,
            )
        return plan.prepass


class NormPrepass:
    """Per-key sums of ``p*p`` and ``u*u`` on the fixed grid (rules with a
    trust ratio): the rule's generated norm kernel over one plan."""

    def __init__(self, plan, kernel, scalars: Scalars, state, state_dtype, runner: KernelRunner):
        layout = plan.layout
        self.blocks = block_table(layout.sizes)
        #: Writes each key's trust ratio into its scalars row (set by the planner).
        self.trust_ratio_column = None
        n_keys = len(layout.keys)
        s_size = np.dtype(state_dtype).itemsize
        self.bases = np.zeros((n_keys, 1 + len(state.state_names)), np.int64)
        self.bases[:, 0] = plan.param_base
        offsets = np.array(layout.offsets, np.int64) * s_size
        for j, buffer in enumerate(state.buffers.values()):
            self.bases[:, 1 + j] = buffer.ctypes.data + offsets
        self.p_key_sums, self.u_key_sums = np.zeros(n_keys), np.zeros(n_keys)
        args = (self.blocks, self.bases, plan.grad_base, scalars.table, np.empty(0, layout.dtype),
                np.empty(0, state_dtype), np.zeros(len(self.blocks)), np.zeros(len(self.blocks)),
                self.p_key_sums, self.u_key_sums)
        _, serial_kernel, parallel_kernel = kernel.norms
        key = (kernel.name + " norms", layout.dtype.str, np.dtype(state_dtype).str, layout.total.bit_length())
        self._run = runner.choose(serial_kernel, parallel_kernel, args, layout.total, key)
        self.keepalive = state.buffers

    def run(self) -> tuple[np.ndarray, np.ndarray]:
        """Per key: (sums of p*p, sums of u*u), float64."""
        self._run()
        return self.p_key_sums, self.u_key_sums

    def write_trust_ratios(self, rows, trust_ratio, column) -> None:
        """Each key's ``trust_ratio(hp, norm of p, norm of u)`` into ``column[key]``."""
        p_sums, u_sums = self.run()
        for k, hp in enumerate(rows):
            column[k] = trust_ratio(hp, math.sqrt(p_sums[k]), math.sqrt(u_sums[k]))
