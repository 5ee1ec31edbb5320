"""The optimizer state: layout, flat state buffers, step counter, groups.

One :class:`OptimizerState` per optimizer.  It owns what a checkpoint holds
and nothing else; the checkpoint code reads it with :meth:`snapshot` and
installs a validated one with :meth:`restore`.

Each state name is one flat, contiguous buffer in the state dtype, an
allocation of its own, with a layout of its own (:func:`state_layouts`).  For most rules every buffer is shaped like the
params, so each key owns the slice ``[offset, offset + size)`` of every one
of them; a rule whose state has other shapes (Adafactor's row and column
factors) declares ``state_shape(name, param_shape)``.

State kept as int8 codes (``state_dtype="int8"``, stored dtype uint8) has
one more buffer per state name, ``"<name>.absmax"``: a float32 per block of
:data:`~fastopt._lowp.BLOCK` elements of each key, in a float32 array of
its own (``scale_root``).
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass
from typing import NamedTuple

import numpy as np

from ._layout import Layout
from ._lowp import SIGNED_ZERO, STORAGE, UNSIGNED_ZERO, blocks_of

#: The largest step count a state may be given (a checkpoint, ``opt.iter``):
#: far beyond any training run, and far from where the kernel's int64
#: counter would wrap.
MAX_STEP = 2**62


#: Suffix of the per-block absmax buffer of each int8 state buffer.
ABSMAX = ".absmax"
INT8 = STORAGE["int8"]


def state_layouts(state_names, state_shape, layout: Layout, state_dtype) -> dict[str, Layout]:
    """Each stored buffer's layout: the params' (``state_shape`` None), or the
    shapes ``state_shape(name, param_shape)`` gives, key by key; for int8
    state also each ``"<name>.absmax"`` (one float32 per block of each key)."""
    if state_shape is None:
        layouts = {n: layout for n in state_names}
    else:
        layouts = {n: Layout.from_shapes(layout.keys, [state_shape(n, s) for s in layout.shapes], state_dtype)
                   for n in state_names}
    if np.dtype(state_dtype) == INT8:
        for n in state_names:
            layouts[n + ABSMAX] = Layout.from_shapes(
                layout.keys, [(blocks_of(size),) for size in layouts[n].sizes], np.float32)
    return layouts


def stored_names(state_names, state_dtype) -> tuple[str, ...]:
    """The names of the stored buffers: the state names, then (int8) their absmax."""
    if state_dtype is not None and np.dtype(state_dtype) == INT8:
        return tuple(state_names) + tuple(n + ABSMAX for n in state_names)
    return tuple(state_names)


@dataclass(frozen=True)
class Snapshot:
    """A consistent copy of the state, taken at one moment."""

    layout: Layout | None
    step: int
    state_dtype: np.dtype | None
    buffers: dict  # state name -> flat copy


class Carried:
    """The values a rule carries across updates (:class:`~fastopt._jit.Carry`),
    per scalars row, valid after ``count`` updates.

    The values for update ``count + 1`` are proposed when its scalars are
    filled and adopted at the next fill only if the step counter then shows
    that the update ran (a skipped or interrupted update leaves them unused).
    Anything else - a restore, ``iter`` set, a first use - replays the
    rule's ``advance`` from the start with the hyperparameters resolved at
    each past count.
    """

    def __init__(self, carry):
        self.carry = carry
        self.forget()

    def forget(self) -> None:
        self.count, self.values, self.proposed = None, None, None

    def for_update(self, count: int, rows, rows_at) -> list:
        """The values after update ``count + 1``, whose rows are ``rows``."""
        if self.proposed is not None and self.proposed[0] == count:
            self.count, self.values = self.proposed
        if self.count != count or len(self.values) != len(rows):
            self.values, self.count = self._replay(count, len(rows), rows_at), count
        advance = self.carry.advance
        values = [advance(hp, count + 1, v) for hp, v in zip(rows, self.values)]
        self.proposed = (count + 1, values)
        return values

    def _replay(self, count: int, n_rows: int, rows_at) -> list:
        advance = self.carry.advance
        values = [self.carry.initial] * n_rows
        for c in range(count):
            values = [advance(hp, c + 1, v) for hp, v in zip(rows_at(c), values)]
        return values


class _Fixed(NamedTuple):
    layout: Layout | None
    state_dtype: np.dtype | None
    buffers: dict
    layouts: dict
    scale_root: np.ndarray


class OptimizerState:
    def __init__(self, state_names: tuple[str, ...], carry=None, state_shape=None, int8_unsigned=()):
        self.state_names = state_names
        self.state_shape = state_shape
        #: State names stored with the unsigned code map (int8 state).
        self.int8_unsigned = tuple(int8_unsigned or ())
        #: The rule's carried floats (NAdam's), rebuilt after a restore.
        self.carried = Carried(carry) if carry is not None else None
        self._fixed = _Fixed(None, None, {}, {}, np.zeros(0, np.float32))
        # The kernel advances this counter in the same call that updates the
        # params, so the two can never disagree.
        self.step = np.zeros(1, np.int64)
        self.step_view = memoryview(self.step)
        #: Odd while a step runs: a snapshot taken meanwhile is retried
        #: (a sequence lock: updates never wait for a snapshot).
        self.sequence = 0
        #: Held by a snapshot; updates that start meanwhile wait for it.
        self.lock = threading.Lock()
        self.snapshot_waiting = False

    @property
    def step_count(self) -> int:
        return int(self.step[0])

    def set_step(self, value: int) -> None:
        self.step[0] = value
        if self.carried is not None:
            self.carried.forget()

    @property
    def shaped_like_params(self) -> bool:
        return self.state_shape is None

    def layouts_for(self, layout: Layout, state_dtype) -> dict[str, Layout]:
        return state_layouts(self.state_names, self.state_shape, layout, state_dtype)

    def allocate(self, layout: Layout, state_dtype: np.dtype) -> None:
        """Fix the layout and allocate buffers that hold zeros."""
        layouts = self.layouts_for(layout, state_dtype)
        arrays = {n: np.zeros(layouts[n].total, state_dtype) for n in self.state_names}
        scale_root = None
        if np.dtype(state_dtype) == INT8:
            for n in self.state_names:  # the zero code, in each buffer's map
                arrays[n][...] = UNSIGNED_ZERO if n in self.int8_unsigned else SIGNED_ZERO
            scale_root = np.zeros(sum(layouts[n + ABSMAX].total for n in self.state_names), np.float32)
        self._install(layout, state_dtype, arrays, layouts, scale_root)

    def _install(self, layout, state_dtype, arrays, layouts, scale_root=None) -> None:
        """``arrays``: each state buffer, an allocation of its own.  (Slices of
        one allocation made Adam's parallel update at 1e7 float32 elements
        3-7% slower on 2 cores, measured side by side; wave 1 allocated them
        apart too.)"""
        buffers = dict(arrays)
        if scale_root is None:
            scale_root = np.zeros(0, np.float32)
        else:
            start = 0
            for n in self.state_names:
                buffers[n + ABSMAX] = scale_root[start : start + layouts[n + ABSMAX].total]
                start += layouts[n + ABSMAX].total
        # One attribute store: an interrupt cannot leave a layout without its buffers.
        self._fixed = _Fixed(layout, state_dtype, buffers, layouts, scale_root)

    def forget_layout(self) -> None:
        self._fixed = _Fixed(None, None, {}, {}, np.zeros(0, np.float32))

    # Read through _fixed, replaced whole.  (Not ``self.__dict__.update``:
    # reading an object's __dict__ materializes it, and every attribute read
    # of the object - those of each update included - is then ~3x slower.)
    layout = property(lambda self: self._fixed.layout, doc="The params' layout (None before the first update).")
    state_dtype = property(lambda self: self._fixed.state_dtype, doc="The stored state's dtype.")
    buffers = property(lambda self: self._fixed.buffers, doc="Each state buffer, flat, by name.")
    layouts = property(lambda self: self._fixed.layouts, doc="Each buffer's layout (the params' unless the rule shapes its state).")
    scale_root = property(lambda self: self._fixed.scale_root, doc="The int8 state's absmax scales (empty otherwise).")

    @property
    def itemsize(self) -> int:
        """Bytes per element of the stored state (8 before there is any)."""
        return 8 if self.state_dtype is None else np.dtype(self.state_dtype).itemsize

    @property
    def nbytes(self) -> int:
        """Bytes the stored state occupies."""
        return sum(self.buffers[n].nbytes for n in self.state_names if n in self.buffers) + self.scale_root.nbytes

    def views(self) -> dict[str, dict[str, np.ndarray]]:
        """``{state name: {key: view shaped as the state of that key}}`` (empty before the layout)."""
        if self.layout is None:
            return {n: {} for n in self.state_names}
        return {n: self.layouts[n].views(b) for n, b in self.buffers.items()}

    def snapshot(self) -> Snapshot:
        """Copies of everything, taken together (``save`` writes exactly this).

        Another thread may be stepping.  Updates never wait in the common
        case: a step makes ``sequence`` odd while it runs, and a copy made
        while it changed is retried.  A snapshot raises ``snapshot_waiting``
        and holds ``lock`` so that updates starting meanwhile wait for it
        (without that, a copy slower than a step would never finish).
        """
        with self.lock:
            self.snapshot_waiting = True
            try:
                while True:
                    before = self.sequence
                    if before % 2 == 0:
                        snapshot = Snapshot(self.layout, self.step_count, self.state_dtype,
                                            {n: b.copy() for n, b in self.buffers.items()})
                        if self.sequence == before:
                            return snapshot
                    time.sleep(0)
            finally:
                self.snapshot_waiting = False

    def restore(self, snapshot: Snapshot) -> None:
        """Install a validated snapshot (the caller checked it against the rule)."""
        if snapshot.layout is None:
            self.forget_layout()
        else:
            layouts = self.layouts_for(snapshot.layout, snapshot.state_dtype)
            arrays = {n: np.array(snapshot.buffers[n], snapshot.state_dtype).reshape(-1) for n in self.state_names}
            scale_root = None
            if np.dtype(snapshot.state_dtype) == INT8:
                scale_root = np.concatenate([np.zeros(0, np.float32)]
                                            + [snapshot.buffers[n + ABSMAX] for n in self.state_names])
            self._install(snapshot.layout, snapshot.state_dtype, arrays, layouts, scale_root)
        self.set_step(snapshot.step)
