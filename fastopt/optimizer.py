"""The ``Optimizer`` facade: dicts in, one kernel call per flat segment.

One ``update(params, grads)`` is:

1. validate everything (keys, kinds, dtypes, shapes, contiguity, writability,
   aliasing) without writing anything;
2. on the first update, fix the :class:`~fastopt._layout.Layout` and allocate
   one flat zeroed buffer per state name;
3. compute this step's scalars in Python floats and round them to the param
   dtype;
4. call the rule's kernel once for the whole arena (when params and grads are
   :func:`~fastopt.flatten` arenas) or once per key on 1-D views;
5. write the new values of Python-float and NumPy-scalar params back into the
   params dict (arrays were updated in place, so layers that hold them see the
   new values).
"""

from __future__ import annotations

import bisect
from collections.abc import Mapping
from dataclasses import dataclass, field

import numpy as np

from . import _checkpoint
from ._hyper import Hyperparameters
from ._jit import Kernel
from ._layout import Kind, Layout, check_key, describe
from .errors import (
    AliasingError,
    DTypeMismatchError,
    KeyMismatchError,
    LayoutError,
    ShapeMismatchError,
)

#: Default size (elements in one kernel call) from which the parallel kernel
#: is used.  Measured on a 2-core machine: below ~3e4 elements an Adam-class
#: step is faster serial (a parallel launch costs a few microseconds); SGD,
#: with less work per element, breaks even later.  Override per instance with
#: ``opt.parallel_min_size = n`` (0: always parallel; a huge value: never).
PARALLEL_MIN_SIZE = 30_000


@dataclass
class _Step:
    """Everything one update needs, gathered while validating."""

    layout: Layout
    param_views: list = field(default_factory=list)  # 1-D, layout key order
    grad_views: list = field(default_factory=list)
    writeback: list = field(default_factory=list)  # (key, index, kind)
    arena: tuple | None = None  # (param buffer, grad buffer)


class Optimizer(Hyperparameters):
    """Base of every rule: owns the layout, the flat state and the step count.

    A rule subclass provides its hyperparameters, ``state_names``, ``kernel``
    (a :class:`~fastopt._jit.Kernel` taking ``p, g, *state, *scalars``) and
    ``step_scalars(t)``.
    """

    state_names: tuple[str, ...] = ()
    kernel: Kernel
    parallel_min_size: int = PARALLEL_MIN_SIZE

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.step_count = 0
        self._layout: Layout | None = None
        self._state_flat: dict[str, np.ndarray] = {}
        self._state_slices: dict[str, list[np.ndarray]] = {}
        self._memo_arrays: tuple = ()
        self._memo_arena: tuple | None = None

    # -- what a rule provides -------------------------------------------------

    def step_scalars(self, t: int) -> tuple[float, ...]:
        """The kernel's scalar arguments for step ``t``, as Python floats."""
        raise NotImplementedError

    # -- the step ---------------------------------------------------------------

    def update(self, params, grads) -> None:
        """Apply one step of the rule to ``params`` in place."""
        step = self._validate(params, grads)
        if self._layout is None:
            self._allocate_state(step.layout)
        t = self.step_count + 1
        cast = step.layout.dtype.type
        scalars = tuple(cast(s) for s in self.step_scalars(t))
        if step.arena is not None:
            p, g = step.arena
            state = [self._state_flat[n] for n in self.state_names]
            self._pick(p.size)(p, g, *state, *scalars)
        else:
            slices = [self._state_slices[n] for n in self.state_names]
            for i, (p, g) in enumerate(zip(step.param_views, step.grad_views)):
                self._pick(p.size)(p, g, *[s[i] for s in slices], *scalars)
        self.step_count = t
        for key, i, kind in step.writeback:
            value = step.param_views[i][0]
            params[key] = value.item() if kind is Kind.PYTHON_FLOAT else value

    def _pick(self, size: int):
        if size >= self.parallel_min_size:
            return self.kernel.parallel
        return self.kernel.serial

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
            elif p_dtype != step_dtype:
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
            if g_dtype != p_dtype:
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
            else:
                step.param_views.append(np.array([p], dtype=p_dtype))
                step.writeback.append((key, i, p_kind))
            if g_kind is Kind.ARRAY:
                grad_arrays.append((key, g))
                if not g.flags.c_contiguous:
                    g = np.ascontiguousarray(g)
                step.grad_views.append(g.ravel())
            else:
                step.grad_views.append(np.array([g], dtype=g_dtype))

        if layout is None:
            step.layout = Layout.from_shapes(keys, shapes, step_dtype or np.float64)
        self._check_aliasing_and_find_arena(step, param_arrays, grad_arrays)
        return step

    def _check_aliasing_and_find_arena(self, step: _Step, param_arrays, grad_arrays) -> None:
        # Memory addresses of a live array never change, and every property that
        # could change its extent (shape, dtype, strides) was re-checked above,
        # so the result for the same array objects can be reused.  The memo
        # holds references, so an id cannot be recycled while it is kept.
        arrays = tuple(a for _, a in param_arrays) + tuple(a for _, a in grad_arrays)
        memo = self._memo_arrays
        if len(memo) == len(arrays) and all(a is b for a, b in zip(arrays, memo)) and len(arrays):
            arena = self._memo_arena
        else:
            _check_aliasing(param_arrays, grad_arrays, self._state_flat)
            arena = _find_arena(param_arrays, grad_arrays, step.layout)
            self._memo_arrays, self._memo_arena = arrays, arena
        if arena is not None and all(_usable_arena(b, step.layout) for b in arena):
            step.arena = arena

    def _allocate_state(self, layout: Layout) -> None:
        self._layout = layout
        self._state_flat = {n: np.zeros(layout.total, layout.dtype) for n in self.state_names}
        self._state_slices = {n: layout.slices(b) for n, b in self._state_flat.items()}
        self._memo_arrays, self._memo_arena = (), None

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

    def _restore(self, layout: Layout, step_count: int, hyperparameters: dict, flat: dict) -> None:
        """Install a validated state.  Only _checkpoint calls this."""
        self.__dict__.update(hyperparameters)
        self._allocate_state(layout)
        for name, buffer in flat.items():
            self._state_flat[name][...] = buffer
        self.step_count = step_count


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
    if layout is not None and (len(params) != len(layout.keys) or any(k not in params for k in layout.keys)):
        missing = [k for k in layout.keys if k not in params]
        extra = [k for k in params if k not in layout.keys]
        raise KeyMismatchError(
            "params must keep the keys of the first update "
            f"{list(layout.keys)}: missing {missing}, new {extra}"
        )


def _extent(a: np.ndarray) -> tuple[int, int]:
    """Byte range [lo, hi) an array can touch."""
    if a.flags.c_contiguous:
        lo = a.__array_interface__["data"][0]
        return lo, lo + a.nbytes
    lo, hi = np.lib.array_utils.byte_bounds(a)
    return lo, hi


def _check_aliasing(param_arrays, grad_arrays, state_flat) -> None:
    seen = {}
    for key, p in param_arrays:
        other = seen.setdefault(id(p), key)
        if other != key:
            raise AliasingError(
                f"params[{other!r}] and params[{key!r}] are the same array; "
                "it would be updated twice per step"
            )
    if len(param_arrays) == 1 and len(grad_arrays) == 1 and not state_flat:
        (pk, p), (gk, g) = param_arrays[0], grad_arrays[0]
        if np.shares_memory(p, g):
            raise AliasingError(f"grads[{gk!r}] shares memory with params[{pk!r}]")
        return
    # Params are C-contiguous, so their byte ranges are exact: sort them with
    # the state buffers and look for overlaps, then find each grad's range.
    owned = [(*_extent(p), f"params[{key!r}]", p) for key, p in param_arrays if p.size]
    owned += [(*_extent(b), f"the optimizer's {n!r} state", b) for n, b in state_flat.items() if b.size]
    owned.sort(key=lambda r: r[0])
    for (lo0, hi0, name0, _), (lo1, hi1, name1, _) in zip(owned, owned[1:]):
        if lo1 < hi0:
            raise AliasingError(f"{name0} and {name1} share memory")
    his = [r[1] for r in owned]
    for key, g in grad_arrays:
        if not g.size:
            continue
        lo, hi = _extent(g)
        j = bisect.bisect_right(his, lo)
        while j < len(owned) and owned[j][0] < hi:
            if g.flags.c_contiguous or np.shares_memory(g, owned[j][3]):
                raise AliasingError(f"grads[{key!r}] shares memory with {owned[j][2]}")
            j += 1


def _find_arena(param_arrays, grad_arrays, layout: Layout):
    """(params buffer, grads buffer) when both dicts tile one buffer each."""
    if len(param_arrays) != len(layout.keys) or len(grad_arrays) != len(layout.keys):
        return None
    buffers = []
    for arrays in (param_arrays, grad_arrays):
        base = arrays[0][1].base
        if base is None or not isinstance(base, np.ndarray) or not _usable_arena(base, layout):
            return None
        start = base.__array_interface__["data"][0]
        itemsize = layout.dtype.itemsize
        for (key, a), offset in zip(arrays, layout.offsets):
            if a.base is not base:
                return None
            if a.size and a.__array_interface__["data"][0] - start != offset * itemsize:
                return None
        buffers.append(base)
    return tuple(buffers)


def _usable_arena(buffer: np.ndarray, layout: Layout) -> bool:
    return (
        buffer.ndim == 1
        and buffer.size == layout.total
        and buffer.dtype == layout.dtype
        and buffer.flags.c_contiguous
        and buffer.flags.writeable
    )
