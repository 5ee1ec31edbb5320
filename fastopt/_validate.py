"""Full validation of one ``update(params, grads)`` call; never writes.

:func:`validate` checks keys, kinds, dtypes, shapes, contiguity,
writability and aliasing, and returns a :class:`ValidatedCall`: 1-D views of
every param and grad in layout order with their addresses, and the
Python-float/NumPy-scalar params that must be written back.  Every error is
typed and names the key and what was expected.

Which ndarray subclasses are accepted: those whose elements are their data
(``np.matrix``, ``np.memmap``, ...) are updated like plain arrays.
``numpy.ma.MaskedArray`` is rejected: the kernels would update masked
entries too, which the reference (and NumPy) would leave alone.
"""

from __future__ import annotations

import bisect
from collections.abc import Mapping, MutableMapping
from dataclasses import dataclass, field

import numpy as np

from ._layout import Kind, Layout, check_key, describe
from .errors import (
    AliasingError,
    DTypeMismatchError,
    EmptyParamsError,
    KeyMismatchError,
    LayoutError,
    ShapeMismatchError,
)


@dataclass
class ValidatedCall:
    layout: Layout
    params: Mapping
    grads: Mapping
    param_views: list = field(default_factory=list)  # 1-D, layout key order
    grad_views: list = field(default_factory=list)
    param_addresses: list = field(default_factory=list)
    grad_addresses: list = field(default_factory=list)
    #: (key, 1-D copy, whether the value was a Python float) per scalar param.
    writeback: list = field(default_factory=list)
    #: (key, array) of every param that is an array (updated in place).
    param_arrays: list = field(default_factory=list)


def address(a: np.ndarray) -> int:
    return a.__array_interface__["data"][0] if a.size else 0


def validate(params, grads, layout: Layout | None, state_buffers) -> ValidatedCall:
    """Check one call against ``layout`` (None: any layout; this call fixes it)."""
    if not isinstance(params, Mapping):
        raise TypeError(f"params: expected a dict of arrays, got {type(params).__name__}")
    if not isinstance(grads, Mapping):
        raise TypeError(f"grads: expected a dict of arrays, got {type(grads).__name__}")
    if layout is None:
        if not len(params):
            raise EmptyParamsError("params: the dict is empty; an optimizer needs at least one parameter")
        for key in params:
            check_key("params", key)
        keys = tuple(params)
    else:
        keys = layout.keys
    _check_keys(params, grads, layout)

    call_dtype = None if layout is None else layout.dtype
    shapes = []
    call = ValidatedCall(layout, params, grads)
    grad_arrays = []
    for i, key in enumerate(keys):
        p, g = params[key], grads[key]
        p_kind, p_dtype, p_shape = describe("params", key, p)
        if call_dtype is None:
            call_dtype = p_dtype
        elif p_dtype is not call_dtype and p_dtype != call_dtype:
            where = "the layout fixed at the first update" if layout else "other params"
            raise DTypeMismatchError(
                f"params[{key!r}]: expected dtype {call_dtype} ({where}), got {p_dtype}; "
                "all params of one optimizer share one dtype"
            )
        if layout is not None and p_shape != layout.shapes[i]:
            raise ShapeMismatchError(
                f"params[{key!r}]: expected shape {layout.shapes[i]} (fixed at the first update), got {p_shape}"
            )
        g_kind, g_dtype, g_shape = describe("grads", key, g)
        if g_dtype is not p_dtype and g_dtype != p_dtype:
            raise DTypeMismatchError(
                f"grads[{key!r}]: expected dtype {p_dtype} (the dtype of params[{key!r}]), got {g_dtype}"
            )
        if g_shape != p_shape:
            raise ShapeMismatchError(
                f"grads[{key!r}]: expected shape {p_shape} (the shape of params[{key!r}]), got {g_shape}"
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
            view = p.reshape(-1)
            call.param_arrays.append((key, p))
        else:
            if not isinstance(params, MutableMapping):
                raise LayoutError(
                    f"params[{key!r}]: a {p_kind.value} cannot be updated in place and params is a "
                    f"read-only {type(params).__name__}; the new value could not be written back"
                )
            view = np.array([p], dtype=p_dtype)
            call.writeback.append((key, view, p_kind is Kind.PYTHON_FLOAT))
        call.param_views.append(view)
        call.param_addresses.append(address(view))
        if g_kind is Kind.ARRAY:
            if g.flags.c_contiguous:
                view = g.reshape(-1)
                if g.size:
                    grad_arrays.append((key, g, address(view), address(view) + g.nbytes))
            else:
                if g.size:
                    lo, hi = np.lib.array_utils.byte_bounds(g)
                    grad_arrays.append((key, g, lo, hi))
                view = np.ascontiguousarray(g).reshape(-1)
        else:
            view = np.array([g], dtype=g_dtype)
        call.grad_views.append(view)
        call.grad_addresses.append(address(view))

    if layout is None:
        call.layout = Layout.from_shapes(keys, shapes, call_dtype or np.float64)
    _OwnedMemory(call.param_arrays, state_buffers).check_grads(grad_arrays)
    return call


def _check_keys(params: Mapping, grads: Mapping, layout: Layout | None) -> None:
    # Key views only: indexing a defaultdict would insert the missing key.
    if params.keys() != grads.keys():
        missing = [k for k in params.keys() if k not in grads.keys()]
        extra = [k for k in grads.keys() if k not in params.keys()]
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
        missing = [k for k in layout.keys if k not in params.keys()]
        extra = [k for k in params.keys() if k not in layout.keyset]
        raise KeyMismatchError(
            f"params must keep the keys of the first update {list(layout.keys)}: missing {missing}, new {extra}"
        )


class _OwnedMemory:
    """The byte ranges an update writes: every param array and state buffer.

    Raises AliasingError if any two overlap (one array under two keys, views
    sharing memory); :meth:`check_grads` then rejects a grad inside any of them.
    """

    def __init__(self, param_arrays, state_buffers):
        seen = {}
        for key, p in param_arrays:
            other = seen.setdefault(id(p), key)
            if other != key:
                raise AliasingError(
                    f"params[{other!r}] and params[{key!r}] are the same array; it would be updated twice per step"
                )
        ranges = [(address(p), address(p) + p.nbytes, f"params[{key!r}]", p) for key, p in param_arrays if p.size]
        ranges += [
            (address(b), address(b) + b.nbytes, f"the optimizer's {n!r} state", b)
            for n, b in state_buffers.items()
            if b.size
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
            j = bisect.bisect_right(ends, lo)
            while j < len(ranges) and ranges[j][0] < hi:
                # A strided grad's extent can straddle a param it never touches.
                if g.flags.c_contiguous or np.shares_memory(g, ranges[j][3]):
                    raise AliasingError(f"grads[{key!r}] shares memory with {ranges[j][2]}")
                j += 1


#: The dtypes a low-precision copy may have, and the rounding each gets.
COPY_KINDS = {np.dtype(np.uint16): "bfloat16"}


def validate_copies(call: ValidatedCall, copies, state_buffers, owner: str):
    """Check the ``copies`` of :meth:`fastopt.Optimizer.update_and_copy`
    against a validated call; never writes.  Returns (the rounding kind,
    uint16 views of the copies in layout order)."""
    layout = call.layout
    if layout.dtype != np.float32:
        raise DTypeMismatchError(
            f"{owner}.update_and_copy: the params are the float32 masters of the copies; got {layout.dtype} params"
        )
    if not isinstance(copies, Mapping):
        raise TypeError(f"copies: expected a dict of arrays, got {type(copies).__name__}")
    if copies.keys() != layout.keyset:
        missing = [k for k in layout.keys if k not in copies.keys()]
        extra = [k for k in copies.keys() if k not in layout.keyset]
        raise KeyMismatchError(f"copies must have the keys of params: missing {missing}, not in params {extra}")
    if len(call.param_arrays) != len(layout.keys):
        raise LayoutError("copies: every param must be an array (a float cannot have a copy)")
    kind, views, ranges = None, [], []
    for key, p in call.param_arrays:
        c = copies[key]
        if not isinstance(c, np.ndarray) or c.dtype not in COPY_KINDS:
            got = c.dtype if isinstance(c, np.ndarray) else type(c).__name__
            raise DTypeMismatchError(f"copies[{key!r}]: expected a uint16 array (bfloat16 bits), got {got}")
        if kind is None:
            kind = COPY_KINDS[c.dtype]
        elif COPY_KINDS[c.dtype] != kind:
            raise DTypeMismatchError(f"copies[{key!r}]: every copy must have one dtype; got {kind} and {c.dtype}")
        if c.shape != p.shape:
            raise ShapeMismatchError(f"copies[{key!r}]: expected shape {p.shape} (the shape of params[{key!r}]), "
                                     f"got {c.shape}")
        if not c.flags.c_contiguous or not c.flags.writeable:
            raise LayoutError(f"copies[{key!r}]: expected a writable C-contiguous array")
        views.append(c.reshape(-1).view(np.uint16))
        if c.size:
            ranges.append((address(c), address(c) + c.nbytes, f"copies[{key!r}]"))
    owned = _OwnedMemory(call.param_arrays, state_buffers).ranges
    grads = [(address(v), address(v) + v.nbytes, f"grads[{k!r}]") for k, v in zip(layout.keys, call.grad_views)
             if v.size]
    # In order of first byte: a span overlaps an earlier one iff it starts
    # before that one's end; only pairs with a copy in them matter here.
    spans = sorted([(lo, hi, name, True) for lo, hi, name in ranges]
                   + [(lo, hi, name, False) for lo, hi, name in [r[:3] for r in owned] + grads])
    reach = {True: (0, None), False: (0, None)}  # the furthest end so far, among copies and the rest
    for lo, hi, name, is_copy in spans:
        for earlier_is_copy in ((True, False) if is_copy else (True,)):
            end, other = reach[earlier_is_copy]
            if lo < end:
                raise AliasingError(f"{other} and {name} share memory")
        if hi > reach[is_copy][0]:
            reach[is_copy] = (hi, name)
    return kind, views
