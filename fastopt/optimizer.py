"""The ``Optimizer`` facade: dicts in, one kernel call per update.

One ``update(params, grads)`` is:

1. validate everything (keys, kinds, dtypes, shapes, contiguity, writability,
   aliasing) without writing anything;
2. on the first update, fix the :class:`~fastopt._layout.Layout` and allocate
   one flat zeroed buffer per state name;
3. build the segment table (see :mod:`fastopt._jit`): each key's run of
   elements in the params, grads and state, cut into one equal share per
   thread;
4. compute this step's scalars in Python floats, rounded to the param dtype;
5. call the rule's kernel once: it updates every key and advances the step
   counter, so an interrupt never leaves a step half-applied;
6. write the new values of Python-float and NumPy-scalar params back into the
   params dict (arrays were updated in place, so layers that hold them see the
   new values).

Steps 1 and 3 are done once and replayed while the caller keeps passing the
same arrays (see :class:`_Plan`).
"""

from __future__ import annotations

import bisect
import inspect
from collections.abc import Mapping
from dataclasses import dataclass, field

import numba
import numpy as np

from . import _checkpoint
from ._hyper import Hyperparameters
from ._jit import LENGTH as LENGTH_COLUMN
from ._jit import PARALLEL, FasterOf, Kernel, bound_call, helper, nonfinite_finder, serialized
from ._layout import Kind, Layout, check_key, describe
from .errors import (
    AliasingError,
    DTypeMismatchError,
    KeyMismatchError,
    LayoutError,
    NonFiniteGradientError,
    ShapeMismatchError,
)

#: Default size (elements in one update) from which the parallel kernel is
#: used.  Measured on a 2-core machine (``python -m fastopt bench``): below
#: ~3e4 elements an Adam-class step is faster serial, as a parallel launch
#: costs a few microseconds; SGD, with less work per element, breaks even
#: later.  Override per instance with ``opt.parallel_min_size = n``.
PARALLEL_MIN_SIZE = 30_000
NONFINITE_CHOICES = ("propagate", "skip", "raise")
_PROPAGATE = NONFINITE_CHOICES[0]
PARAM_COLUMN, GRAD_COLUMN = LENGTH_COLUMN + 1, LENGTH_COLUMN + 2


@dataclass
class _Step:
    """Everything one update needs, gathered while validating."""

    layout: Layout
    param_views: list = field(default_factory=list)  # 1-D, layout key order
    grad_views: list = field(default_factory=list)
    writeback: list = field(default_factory=list)  # (key, index, kind)
    #: (key, param, grad) of every array entry: what a repeat call must match.
    arrays: list = field(default_factory=list)
    #: (key, param) of every param that is an array (updated in place).
    param_arrays: list = field(default_factory=list)
    #: Address of each grad view, in layout key order.
    grad_starts: list = field(default_factory=list)
    per_call_copies: bool = False


class _Plan:
    """One validated update, ready to replay.

    A training loop passes the same param arrays (and, when it fills its grads
    in place, the same grad arrays) every step.  For such a repeat call,
    :meth:`matches` re-checks what can change on a live array - which object
    sits under each key, its shape, its dtype, whether it is writable - and
    the update replays the prepared kernel call.  Any difference sends the
    call through full validation instead, which raises the proper error.

    Contiguity is not re-checked: on a live array only the deprecated
    ``ndarray.strides`` setter can change it (``resize`` refuses while the
    plan's views exist), and even then the segment table covers exactly the
    memory the array was validated with.

    The plan holds every array whose address is in its table, so the memory
    stays valid as long as the plan exists.
    """

    __slots__ = ("table", "row_key", "keepalive", "writeback", "entries", "dtype", "n")

    def __init__(self, table, row_key, step: _Step):
        self.table = table
        self.row_key = row_key
        self.keepalive = (step.param_views, step.grad_views)
        self.writeback = [(key, step.param_views[i], kind) for key, i, kind in step.writeback]
        self.entries = [(k, p, g, p.shape) for k, p, g in step.arrays]
        self.dtype = step.layout.dtype
        self.n = len(step.layout.keys)

    def matches(self, params, grads) -> bool:
        if len(params) != self.n or len(grads) != self.n:
            return False
        dtype = self.dtype
        for key, p, g, shape in self.entries:
            try:
                if params[key] is not p or grads[key] is not g:
                    return False
            except KeyError:
                return False
            if p.shape != shape or g.shape != shape or p.dtype is not dtype or g.dtype is not dtype:
                return False
            if not p.flags.writeable:
                return False
        return True


class Optimizer(Hyperparameters):
    """Base of every rule: owns the layout, the flat state and the step count.

    A rule subclass provides its hyperparameters, ``state_names``, ``kernel``
    (a :class:`~fastopt._jit.Kernel` taking ``table, scalars, step``; see
    :mod:`fastopt._jit`), ``constant_scalars(hp)`` and, when some scalars
    depend on the step count, ``n_step_scalars`` and ``step_scalars(hp, t)``.
    The kernel finds the step scalars first in ``scalars``, then the constant
    ones.
    """

    state_names: tuple[str, ...] = ()
    kernel: Kernel
    #: Updates of at least this many elements use the parallel kernel.
    default_parallel_min_size: int = PARALLEL_MIN_SIZE
    #: How many leading kernel scalars step_scalars(hp, t) recomputes every
    #: step; the rest come from constant_scalars(hp), recomputed only after a
    #: hyperparameter changes.
    n_step_scalars: int = 0

    def __init_subclass__(cls, **kwargs):
        super().__init_subclass__(**kwargs)
        cls.__signature__ = cls.hyperparameter_signature.replace(
            parameters=[
                *cls.hyperparameter_signature.parameters.values(),
                inspect.Parameter("nonfinite", inspect.Parameter.KEYWORD_ONLY, default=_PROPAGATE),
            ]
        )

    def __init__(self, *args, nonfinite: str = _PROPAGATE, **kwargs):
        super().__init__(*args, **kwargs)
        self.nonfinite = nonfinite
        #: Updates skipped because of a non-finite gradient (nonfinite="skip").
        self.skipped_steps = 0
        # The kernel advances this counter in the same call that updates the
        # params, so the two can never disagree.
        self._step = np.zeros(1, np.int64)
        self._parallel_min_size = self.default_parallel_min_size
        self._parallel: bool | None = None
        self._run = None  # see _runner
        self._table_memo = None
        self._layout: Layout | None = None
        self._state_flat: dict[str, np.ndarray] = {}
        self._scalars = np.zeros(0)
        self._scalar_view = memoryview(self._scalars)
        self._scalars_version = -1
        self._plan: _Plan | None = None
        self._param_memo = None
        PARALLEL.optimizers.add(self)

    # -- what a rule provides -------------------------------------------------

    def constant_scalars(self, hp) -> tuple[float, ...]:
        """The kernel scalars that depend only on the hyperparameters.

        Python floats, in kernel order; ``hp`` holds the current
        hyperparameters as plain attributes.
        """
        raise NotImplementedError

    def step_scalars(self, hp, t: int) -> tuple[float, ...]:
        """The ``n_step_scalars`` kernel scalars of step ``t`` (Python floats)."""
        return ()

    # -- the step ---------------------------------------------------------------

    @property
    def step_count(self) -> int:
        """Updates applied so far (the ``t`` of the last one)."""
        return int(self._step[0])

    def update(self, params, grads) -> None:
        """Apply one step of the rule to ``params`` in place."""
        plan = self._plan
        if (
            plan is None
            or not isinstance(params, dict)
            or not isinstance(grads, dict)
            or not plan.matches(params, grads)
        ):
            plan = self._prepare(params, grads)
        if self._nonfinite is not _PROPAGATE:
            row = self._find_nonfinite(plan.table, self._scalars)
            if row >= 0:
                key = self._layout.keys[plan.row_key[row]]
                if self._nonfinite == "skip":
                    self.skipped_steps += 1
                    return
                raise NonFiniteGradientError(
                    f"grads[{key!r}] holds a non-finite value (nan or inf); nothing was updated "
                    "(nonfinite='raise')"
                )
        # Nothing below can fail on bad input.  Assigning a Python float to an
        # item of a float32 memoryview is one C cast: it rounds exactly as
        # np.float32(x) does (beyond float32's range to inf), several times
        # faster than going through NumPy.
        scalars = self._scalar_view
        if self._scalars_version != self.hyperparameter_version:
            for i, value in enumerate(self.constant_scalars(self.hp), self.n_step_scalars):
                scalars[i] = value
            self._scalars_version = self.hyperparameter_version
        if self.n_step_scalars:
            for i, value in enumerate(self.step_scalars(self.hp, self._step.item() + 1)):
                scalars[i] = value
        if not plan.writeback:
            self._run(plan.table, self._scalars, self._step)
            return
        try:
            self._run(plan.table, self._scalars, self._step)
        finally:
            # Also on an interrupt: the copies hold the new values if the
            # kernel ran and the old ones if it did not.
            for key, view, kind in plan.writeback:
                value = view[0]
                params[key] = value.item() if kind is Kind.PYTHON_FLOAT else value

    def _prepare(self, params, grads) -> _Plan:
        """Validate a call that does not repeat the last one; plan its kernel call."""
        # The segment table below may be rewritten in place; no stored plan may
        # point at it meanwhile, even if an interrupt lands in between.
        self._plan = None
        step = self._validate(params, grads)
        if self._layout is None:
            self._allocate_state(step.layout)
        may_run_parallel = self._may_run_parallel(step.layout.total)
        # Balanced for the thread count of now; numba.set_num_threads() later
        # changes no result, only how evenly the work is shared until the
        # next full validation.
        parts = numba.get_num_threads() if may_run_parallel else 1
        table, row_key = self._segment_table(step, parts)
        if self._run is None:
            self._run = self._runner(table, may_run_parallel)
            self._find_nonfinite = nonfinite_finder(parts > 1)
        plan = _Plan(table, row_key, step)
        # Copies made for this call only (scalar params, copied grads) cannot
        # be replayed.
        self._plan = None if (step.writeback or step.per_call_copies) else plan
        return plan

    def _may_run_parallel(self, size: int) -> bool:
        return self._parallel is not False and size >= self._parallel_min_size and PARALLEL.usable

    def _runner(self, table, may_run_parallel: bool):
        """What runs the kernel: the serial one, the parallel one, or a tuner."""
        args = (table, self._scalars, self._step)
        serial = bound_call(self.kernel.serial, args)
        if not may_run_parallel:
            return serial
        def parallel():
            return serialized(bound_call(self.kernel.parallel, args))

        if self._parallel is True:
            return parallel()
        return FasterOf(serial, parallel)

    def _segment_table(self, step: _Step, parts: int) -> tuple[np.ndarray, np.ndarray]:
        """Rows of (length, address in params, grads, each state buffer), and
        the layout key index of each row.

        The elements of all keys, in layout order, are cut into ``parts``
        equal shares, one per thread (see :func:`split_into_shares`).

        A training loop that makes new grad arrays every step keeps its param
        arrays: then only the grads column is recomputed, from a template.
        """
        layout = step.layout
        grad_starts = np.array(step.grad_starts, np.int64)
        memo = self._table_memo
        if (
            memo is not None
            and memo[1] == parts
            and len(step.param_arrays) == len(layout.keys)
            and _same_objects(memo[0], step.param_arrays)
        ):
            _, _, table, row_key, row_shift = memo
            table[:, GRAD_COLUMN] = grad_starts[row_key] + row_shift
            return table, row_key
        itemsize = layout.dtype.itemsize
        n_columns = 3 + len(self.state_names)
        rows = split_into_shares(layout.sizes, parts)
        row_key = np.array([key for key, _, _ in rows], np.int64)
        row_shift = np.array([start * itemsize for _, start, _ in rows], np.int64)
        table = np.zeros((len(rows), n_columns), np.int64)
        if rows:
            state_starts = [_address(self._state_flat[n]) for n in self.state_names]
            param_starts = np.array([_address(p) if p.size else 0 for p in step.param_views], np.int64)
            offsets = np.array(layout.offsets, np.int64) * itemsize
            table[:, LENGTH_COLUMN] = [length for _, _, length in rows]
            table[:, PARAM_COLUMN] = param_starts[row_key] + row_shift
            table[:, GRAD_COLUMN] = grad_starts[row_key] + row_shift
            for column, start in enumerate(state_starts, GRAD_COLUMN + 1):
                table[:, column] = start + offsets[row_key] + row_shift
        self._table_memo = (step.param_arrays, parts, table, row_key, row_shift)
        return table, row_key

    @property
    def parallel_min_size(self) -> int:
        """Updates of at least this many elements run the parallel kernel.

        0 makes every call parallel; a huge value, none.  Defaults to the
        rule's ``default_parallel_min_size``.
        """
        return self._parallel_min_size

    @parallel_min_size.setter
    def parallel_min_size(self, value: int) -> None:
        if isinstance(value, bool) or not isinstance(value, int) or value < 0:
            raise ValueError(f"parallel_min_size: expected an int >= 0, got {value!r}")
        self._parallel_min_size = value
        self._forget_kernel_choice()

    @property
    def nonfinite(self) -> str:
        """What an update does when a gradient holds nan or inf.

        ``"propagate"`` (the default, as PyTorch and optax do): nothing special,
        the non-finite values flow into the params and state.  ``"skip"``:
        leave params, state and step count as they are and count the step in
        ``skipped_steps``.  ``"raise"``: raise :class:`NonFiniteGradientError`
        naming the first offending key (layout order), with nothing changed.
        The check is one pass over the grads, before anything is written.
        """
        return self._nonfinite

    @nonfinite.setter
    def nonfinite(self, value: str) -> None:
        if value not in NONFINITE_CHOICES:
            raise ValueError(f"nonfinite: expected one of {NONFINITE_CHOICES}, got {value!r}")
        self._nonfinite = _PROPAGATE if value == _PROPAGATE else value

    @property
    def parallel(self) -> bool | None:
        """Which kernel runs updates of at least ``parallel_min_size`` elements.

        ``None`` (the default): whichever of the serial and the parallel kernel
        has been faster lately, timed in use.  Back-to-back updates favour the
        parallel kernel; in a training loop the BLAS threads of the forward and
        backward passes may still hold the cores, and then the serial one is
        faster.  ``True``: always the parallel kernel; ``False``: never.  The
        results are bitwise the same either way.
        """
        return self._parallel

    @parallel.setter
    def parallel(self, value: bool | None) -> None:
        if value not in (None, True, False) or isinstance(value, int) and not isinstance(value, bool):
            raise ValueError(f"parallel: expected None, True or False, got {value!r}")
        self._parallel = value
        self._forget_kernel_choice()

    def _forget_kernel_choice(self) -> None:
        self._plan = self._run = self._table_memo = None

    # -- validation (never writes) ----------------------------------------------

    def _validate(self, params, grads) -> _Step:
        if not isinstance(params, Mapping):
            raise TypeError(f"params: expected a dict of arrays, got {type(params).__name__}")
        if not isinstance(grads, Mapping):
            raise TypeError(f"grads: expected a dict of arrays, got {type(grads).__name__}")
        layout = self._layout
        if layout is None:
            for key in params:
                check_key("params", key)
            keys = tuple(params)
        else:
            keys = layout.keys
        _check_keys(params, grads, layout)

        step_dtype = None if layout is None else layout.dtype
        shapes = []
        step = _Step(layout)
        param_arrays, grad_arrays = [], []
        for i, key in enumerate(keys):
            p, g = params[key], grads[key]
            p_kind, p_dtype, p_shape = describe("params", key, p)
            if step_dtype is None:
                step_dtype = p_dtype
            elif p_dtype is not step_dtype and p_dtype != step_dtype:
                where = "the layout fixed at the first update" if layout else "other params"
                raise DTypeMismatchError(
                    f"params[{key!r}]: expected dtype {step_dtype} ({where}), got {p_dtype}; "
                    "all params of one optimizer share one dtype"
                )
            if layout is not None and p_shape != layout.shapes[i]:
                raise ShapeMismatchError(
                    f"params[{key!r}]: expected shape {layout.shapes[i]} "
                    f"(fixed at the first update), got {p_shape}"
                )
            g_kind, g_dtype, g_shape = describe("grads", key, g)
            if g_dtype is not p_dtype and g_dtype != p_dtype:
                raise DTypeMismatchError(
                    f"grads[{key!r}]: expected dtype {p_dtype} (the dtype of params[{key!r}]), "
                    f"got {g_dtype}"
                )
            if g_shape != p_shape:
                raise ShapeMismatchError(
                    f"grads[{key!r}]: expected shape {p_shape} (the shape of params[{key!r}]), "
                    f"got {g_shape}"
                )
            shapes.append(p_shape)

            if p_kind is Kind.ARRAY:
                flags = p.flags
                if not flags.c_contiguous:
                    raise LayoutError(
                        f"params[{key!r}]: expected a C-contiguous array to update in place, "
                        f"got strides {p.strides} for shape {p.shape}; store it with "
                        "np.ascontiguousarray, or use fastopt.flatten"
                    )
                if not flags.writeable:
                    raise LayoutError(f"params[{key!r}]: the array is read-only")
                step.param_views.append(p.ravel())
                param_arrays.append((key, p))
                if g_kind is Kind.ARRAY:
                    step.arrays.append((key, p, g))
            else:
                step.param_views.append(np.array([p], dtype=p_dtype))
                step.writeback.append((key, i, p_kind))
            if g_kind is Kind.ARRAY:
                lo, hi = _extent(g)
                grad_arrays.append((key, g, lo, hi))
                if g.flags.c_contiguous:
                    view, start = g.ravel(), lo
                else:
                    view = np.ascontiguousarray(g).ravel()
                    start = _address(view) if g.size else 0
                    step.per_call_copies = True
            else:
                view = np.array([g], dtype=g_dtype)
                start = _address(view)
                step.per_call_copies = True
            step.grad_views.append(view)
            step.grad_starts.append(start)

        if layout is None:
            step.layout = Layout.from_shapes(keys, shapes, step_dtype or np.float64)
        # A live array's address never changes, and everything that could
        # change its extent (shape, dtype, contiguity) was checked above, so
        # the overlap check of the same param objects is reused between steps.
        # The memo holds references, so an id cannot be recycled meanwhile.
        memo = self._param_memo
        if memo is None or not _same_objects(memo[0], param_arrays):
            memo = self._param_memo = (param_arrays, _OwnedMemory(param_arrays, self._state_flat))
        memo[1].check_grads(grad_arrays)
        step.param_arrays = param_arrays
        return step

    def _allocate_state(self, layout: Layout) -> None:
        n_scalars = self.n_step_scalars + len(self.constant_scalars(self.hp))
        scalars = np.zeros(n_scalars, layout.dtype)
        # One dict update (a single C call): a KeyboardInterrupt cannot leave
        # a layout without its buffers.
        self.__dict__.update(
            _layout=layout,
            _scalars=scalars,
            _scalar_view=memoryview(scalars),
            _scalars_version=-1,
            _state_flat={n: np.zeros(layout.total, layout.dtype) for n in self.state_names},
            _plan=None,
            _param_memo=None,
            _run=None,
            _table_memo=None,
        )

    # -- inspection -------------------------------------------------------------

    @property
    def layout(self) -> Layout | None:
        """The keys, shapes and dtype fixed at the first update (None before)."""
        return self._layout

    @property
    def state(self) -> dict[str, dict[str, np.ndarray]]:
        """The state, ``{state name: {key: view shaped like the param}}``.

        The arrays are views of the optimizer's flat buffers (empty before the
        first update).
        """
        if self._layout is None:
            return {n: {} for n in self.state_names}
        return {n: self._layout.views(b) for n, b in self._state_flat.items()}

    # -- state I/O --------------------------------------------------------------

    def state_dict(self) -> dict:
        """A self-contained copy of the state, keyed by parameter name.

        Holds the rule name, the format version, the step count, the
        hyperparameters, the layout (keys, shapes, dtype) and a copy of every
        state buffer, ``{state name: {key: array}}``.
        """
        return _checkpoint.state_dict(self)

    def load_state_dict(self, state: Mapping) -> None:
        """Restore what :meth:`state_dict` returned, after validating all of it.

        Nothing changes unless everything matches: the rule, the format
        version, the state names, and - once this optimizer has stepped - its
        keys, shapes and dtype.
        """
        _checkpoint.load_state_dict(self, state)

    def save(self, path) -> None:
        """Write :meth:`state_dict` atomically to a ``.npz`` file at ``path``."""
        _checkpoint.save(self, path)

    def load(self, path) -> None:
        """Read a file written by :meth:`save` (checked) and restore it."""
        _checkpoint.load(self, path)

    def _restore(self, layout: Layout | None, step_count: int, hyperparameters: dict, flat: dict) -> None:
        """Install a validated state.  Only _checkpoint calls this."""
        self.__dict__.update(hyperparameters)
        self.hp.__dict__.update(hyperparameters)
        self.hyperparameter_version += 1
        if layout is None:
            self._layout, self._state_flat = None, {}
            self._plan = self._param_memo = self._run = self._table_memo = None
        else:
            self._allocate_state(layout)
        for name, buffer in flat.items():
            self._state_flat[name][...] = buffer
        self._step[0] = step_count


def _check_keys(params: Mapping, grads: Mapping, layout: Layout | None) -> None:
    if params.keys() != grads.keys():
        missing = [k for k in params if k not in grads]
        extra = [k for k in grads if k not in params]
        raise KeyMismatchError(
            "params and grads must have the same keys: "
            + "; ".join(
                part
                for part in (
                    f"missing from grads: {missing}" if missing else "",
                    f"not in params: {extra}" if extra else "",
                )
                if part
            )
        )
    if layout is not None and params.keys() != layout.keyset:
        missing = [k for k in layout.keys if k not in params]
        extra = [k for k in params if k not in layout.keys]
        raise KeyMismatchError(
            "params must keep the keys of the first update "
            f"{list(layout.keys)}: missing {missing}, new {extra}"
        )


@helper
def _address(a):
    return a.ctypes.data


def _extent(a: np.ndarray) -> tuple[int, int]:
    """Byte range [lo, hi) an array can touch."""
    if a.flags.c_contiguous:
        lo = _address(a.ravel()) if a.size else 0
        return lo, lo + a.nbytes
    lo, hi = np.lib.array_utils.byte_bounds(a)
    return lo, hi


class _OwnedMemory:
    """The byte ranges an update writes: every param array and state buffer.

    Raises AliasingError if any two overlap (one array under two keys, views
    sharing memory); :meth:`check_grads` then rejects a grad inside any of them.
    """

    def __init__(self, param_arrays, state_flat):
        seen = {}
        for key, p in param_arrays:
            other = seen.setdefault(id(p), key)
            if other != key:
                raise AliasingError(
                    f"params[{other!r}] and params[{key!r}] are the same array; "
                    "it would be updated twice per step"
                )
        # Params are C-contiguous, so their byte ranges are exact.
        ranges = [(*_extent(p), f"params[{key!r}]", p) for key, p in param_arrays if p.size]
        ranges += [
            (*_extent(b), f"the optimizer's {n!r} state", b) for n, b in state_flat.items() if b.size
        ]
        ranges.sort(key=lambda r: r[0])
        for (_, hi0, name0, _), (lo1, _, name1, _) in zip(ranges, ranges[1:]):
            if lo1 < hi0:
                raise AliasingError(f"{name0} and {name1} share memory")
        self.ranges = ranges
        self.ends = [r[1] for r in ranges]

    def check_grads(self, grad_arrays) -> None:
        """``grad_arrays``: (key, grad, first byte, byte after the last) each."""
        ranges, ends = self.ranges, self.ends
        for key, g, lo, hi in grad_arrays:
            if lo == hi:
                continue
            j = bisect.bisect_right(ends, lo)
            while j < len(ranges) and ranges[j][0] < hi:
                # A strided grad's extent can straddle a param it never touches.
                if g.flags.c_contiguous or np.shares_memory(g, ranges[j][3]):
                    raise AliasingError(f"grads[{key!r}] shares memory with {ranges[j][2]}")
                j += 1


def split_into_shares(sizes, parts: int) -> list[tuple[int, int, int]]:
    """Cut runs of ``sizes`` elements (in order) into ``parts`` equal shares.

    Returns rows of (run index, first element in the run, length): a share
    that spans several runs gets a row per run, and every share is padded with
    empty rows ``(0, 0, 0)`` to the same row count, so that the static
    schedule of ``prange`` - equal blocks of rows, in order - hands each
    thread exactly one share.  Python ints throughout: layouts beyond 2**31
    elements need no care.
    """
    total = sum(sizes)
    if not total:
        return []
    share = -(-total // parts)
    shares = [[] for _ in range(parts)]
    offset = 0
    for run, size in enumerate(sizes):
        start = 0
        while start < size:
            j = (offset + start) // share
            length = min(size - start, (j + 1) * share - (offset + start))
            shares[j].append((run, start, length))
            start += length
        offset += size
    width = max(len(rows) for rows in shares)
    return [row for rows in shares for row in rows + [(0, 0, 0)] * (width - len(rows))]


def _same_objects(keyed_a, keyed_b) -> bool:
    return len(keyed_a) == len(keyed_b) and all(a is b for (_, a), (_, b) in zip(keyed_a, keyed_b))
