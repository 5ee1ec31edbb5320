"""Mapping a dict of params onto flat, contiguous 1-D buffers.

A :class:`Layout` fixes, at an optimizer's first update, which keys exist, in
which order, with which shapes and one float dtype.  Each key owns the slice
``[offset, offset + size)`` of every flat state buffer.  Offsets are Python
ints, so a layout larger than 2**31 elements needs no special care.

:func:`flatten` and :func:`zeros_like` build *arena* dicts: every value is a
view into one contiguous buffer laid out exactly as a :class:`Layout`.  Every
update is one kernel call either way; with arenas its memory is one contiguous
run per buffer, and grads filled in place let repeat calls skip validation.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum
from typing import Mapping

import numpy as np

from .errors import DTypeMismatchError, KeyTypeError, LayoutError

FLOAT_DTYPES = (np.dtype(np.float32), np.dtype(np.float64))


class Kind(Enum):
    """How a dict value is stored, which decides how it is updated."""

    ARRAY = "array"  # updated in place through a 1-D view
    PYTHON_FLOAT = "python float"  # immutable: computed in a copy, written back
    NUMPY_SCALAR = "numpy scalar"  # immutable: computed in a copy, written back


_FLOAT32, _FLOAT64 = FLOAT_DTYPES


def describe(role: str, key, value) -> tuple[Kind, np.dtype, tuple[int, ...]]:
    """Classify one dict value, or raise a typed error naming ``role[key]``."""
    if type(value) is np.ndarray:
        dtype = value.dtype
        if dtype is _FLOAT32 or dtype is _FLOAT64:  # the common case, without comparisons
            return Kind.ARRAY, dtype, value.shape
    if isinstance(value, np.ndarray):
        if isinstance(value, np.ma.MaskedArray):
            raise LayoutError(
                f"{role}[{key!r}]: masked arrays are not supported (the update would ignore the "
                "mask); pass value.data, or np.ma.filled(value, 0.0) for grads"
            )
        dtype = value.dtype
        if dtype not in FLOAT_DTYPES or not dtype.isnative:
            raise DTypeMismatchError(
                f"{role}[{key!r}]: expected a float32 or float64 array, "
                f"got an array of dtype {dtype.str if not dtype.isnative else dtype}"
            )
        return Kind.ARRAY, dtype, value.shape
    if type(value) is float:
        return Kind.PYTHON_FLOAT, FLOAT_DTYPES[1], ()
    if isinstance(value, (np.float32, np.float64)):
        return Kind.NUMPY_SCALAR, value.dtype, ()
    raise DTypeMismatchError(
        f"{role}[{key!r}]: expected a float32/float64 NumPy array, a Python float "
        f"or a NumPy float32/float64 scalar, got {type(value).__name__} {_short(value)}"
    )


def check_key(role: str, key) -> None:
    if type(key) is not str:
        raise KeyTypeError(
            f"{role}: keys must be str (state is kept by parameter name), "
            f"got {type(key).__name__} {key!r}"
        )


def _short(value) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


@dataclass(frozen=True)
class Layout:
    """Keys, shapes and dtype of a params dict, and each key's flat slice."""

    keys: tuple[str, ...]
    shapes: tuple[tuple[int, ...], ...]
    dtype: np.dtype
    sizes: tuple[int, ...]
    offsets: tuple[int, ...]
    total: int
    keyset: frozenset = frozenset()

    @classmethod
    def from_shapes(cls, keys, shapes, dtype) -> "Layout":
        shapes = tuple(tuple(int(d) for d in s) for s in shapes)
        sizes = tuple(_prod(s) for s in shapes)
        offsets, total = [], 0
        for n in sizes:
            offsets.append(total)
            total += n
        keys = tuple(keys)
        return cls(keys, shapes, np.dtype(dtype), sizes, tuple(offsets), total, frozenset(keys))

    def slices(self, flat: np.ndarray) -> list[np.ndarray]:
        """1-D views of ``flat``, one per key, in key order."""
        return [flat[o : o + n] for o, n in zip(self.offsets, self.sizes)]

    def views(self, flat: np.ndarray) -> dict[str, np.ndarray]:
        """Views of ``flat`` shaped like the params, by key."""
        return {
            k: s.reshape(shape)
            for k, s, shape in zip(self.keys, self.slices(flat), self.shapes)
        }

    def shape_of(self, key: str) -> tuple[int, ...]:
        return self.shapes[self.keys.index(key)]


def _prod(shape) -> int:
    n = 1
    for d in shape:
        n *= d
    return n


def flatten(params: Mapping, dtype=None) -> dict:
    """Copy ``params`` into one contiguous buffer; return views into it.

    The result has the same keys, in the same order, and values of the same
    shapes (a Python float or NumPy scalar becomes a 0-d array view).  Pass
    ``dtype`` to convert; without it every value must already share one of
    float32 or float64.  Hand the result to ``update`` as ``params`` (and
    :func:`zeros_like` of it as ``grads``) and each step is one kernel call.
    """
    keys, shapes, values = [], [], []
    dtypes = set()
    for key, value in params.items():
        check_key("params", key)
        if dtype is None:
            _, value_dtype, shape = describe("params", key, value)
            dtypes.add(value_dtype)
        else:
            shape = np.shape(value)
        keys.append(key)
        shapes.append(shape)
        values.append(value)
    if dtype is None:
        if len(dtypes) > 1:
            raise DTypeMismatchError(
                "flatten(params): values have dtypes "
                f"{sorted(str(d) for d in dtypes)}; pass dtype= to choose one"
            )
        dtype = dtypes.pop() if dtypes else FLOAT_DTYPES[1]
    dtype = np.dtype(dtype)
    if dtype not in FLOAT_DTYPES:
        raise DTypeMismatchError(f"flatten(params): dtype must be float32 or float64, got {dtype}")
    layout = Layout.from_shapes(keys, shapes, dtype)
    buffer = np.empty(layout.total, dtype)
    flat = layout.views(buffer)
    for key, value in zip(keys, values):
        flat[key][...] = value
    return flat


def zeros_like(flat: Mapping) -> dict:
    """A zero-filled arena with the keys, shapes and dtype of ``flat``.

    Use it for the grads of a :func:`flatten` ed params dict: fill it in place
    (``grads[k][...] = dW``) so both dicts stay arenas.
    """
    keys, shapes, dtypes = [], [], set()
    for key, value in flat.items():
        check_key("flat", key)
        _, value_dtype, shape = describe("flat", key, value)
        keys.append(key)
        shapes.append(shape)
        dtypes.add(value_dtype)
    if len(dtypes) > 1:
        raise DTypeMismatchError(
            f"zeros_like(flat): values have dtypes {sorted(str(d) for d in dtypes)}"
        )
    layout = Layout.from_shapes(keys, shapes, dtypes.pop() if dtypes else FLOAT_DTYPES[1])
    return layout.views(np.zeros(layout.total, layout.dtype))
