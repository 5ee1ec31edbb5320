"""Planning: the segment table of a validated call, and its cheap re-use.

A :class:`Plan` is built once from a full validation (see
:mod:`fastopt._validate`) and re-bound on every later call with the same
param arrays: the book's loop passes the same params and *new* grad arrays
every step, so re-binding must cost microseconds, not a validation.

:meth:`Plan.bind` does it in one compiled call that reads the C header of
every array (``PyArrayObject``: data pointer, ndim, dims, dtype, flags - a
stable part of NumPy's ABI, probed at import and used only if the probe
agrees with NumPy's own attributes) and checks, per key, what a full
validation would: the same param object at the same address, still
C-contiguous and writable, the same shape; a grad that is exactly an ndarray
(its type word, read before anything else of the object), of the same dtype
and shape, C-contiguous, whose bytes overlap no param and no state buffer.  It
then writes the grads' addresses into the table.  Any difference sends the
call through full validation, which raises the proper error or plans anew.
Nothing of the caller's grads is kept after ``update`` returns.
"""

from __future__ import annotations

import ctypes
import functools

import numba
import numpy as np

from ._jit import FIRST_STATE, GRAD, GROUP, LENGTH, PARAM, array_at, helper, word_at
from ._lowp import BLOCK
from ._state import ABSMAX, INT8

_C_CONTIGUOUS, _WRITEABLE = 0x0001, 0x0400
# Byte offsets of the words of PyArrayObject (64-bit) that the check reads,
# of refcount, type, data, nd, dimensions, strides, base, descr, flags.  The
# first two words begin every Python object.
_TYPE, _DATA, _ND, _DIMS, _DESCR, _FLAGS = 8, 16, 24, 32, 56, 64
_LOW32 = 0xFFFFFFFF


def _probe_headers() -> bool:
    """Whether the header words above agree with NumPy's attributes here."""
    if ctypes.sizeof(ctypes.c_void_p) != 8:
        return False
    base = np.arange(24.0).reshape(4, 6)
    samples = [base, base[1:3], base[:, ::2], np.zeros((), np.float32), np.zeros(0), base.T]
    samples[1].flags.writeable = False
    for a in samples:
        at = id(a)
        flags = word_at(at + _FLAGS) & _LOW32
        dims = tuple(word_at(word_at(at + _DIMS) + 8 * d) for d in range(a.ndim))
        if (
            word_at(at + _TYPE) != id(np.ndarray)
            or word_at(at + _DATA) != a.__array_interface__["data"][0]
            or word_at(at + _ND) & _LOW32 != a.ndim
            or dims != a.shape
            or word_at(at + _DESCR) != id(a.dtype)
            or bool(flags & _C_CONTIGUOUS) != a.flags.c_contiguous
            or bool(flags & _WRITEABLE) != a.flags.writeable
        ):
            return False
    return True


HEADERS_READABLE = _probe_headers()

# The bind block: one int64 array holding everything the check needs and
# where the kernel's table, scalars and step counter live, so that a kernel
# takes one array (each array passed costs a call ~25 ns) and its dtypes as
# NumPy scalars (~10 ns each).  Its first words give the offsets of its parts.
(FLAG, N_KEYS, N_OWNED, N_ROWS, IDS, EXPECT, OWNED, DIMS, GRAD_BASE, ROW_KEY, ROW_SHIFT, ARRAY_TYPE,
 TABLE, TABLE_WIDTH, SCALARS, SCALARS_ROW_BYTES, SCALARS_WIDTH, STEP) = range(18)
_HEAD = 18
# Words of each key's EXPECT record.
_P_ID, _P_DATA, _NDIM, _DIM0, _DESCR_ID, _NBYTES = range(6)
_EXPECT_WORDS = 6


def check_and_bind(block):
    """-1 when every key checks out (and the grad column of the table the
    block points at is written) or when the block asks for no check; else
    the index of the first key that needs full validation.  Writes nothing
    else.

    It reads single header words (:func:`word_at`), in one function: views
    of the headers or helper functions cost its first compile more than
    all its checks cost a call."""
    if block[FLAG] == 0:
        return -1
    ids, owned, dims, grad_base = block[IDS], block[OWNED], block[DIMS], block[GRAD_BASE]
    for key in range(block[N_KEYS]):
        expect = block[EXPECT] + _EXPECT_WORDS * key
        p, g = block[ids + 2 * key], block[ids + 2 * key + 1]
        descr = block[expect + _DESCR_ID]
        if (
            p != block[expect + _P_ID]
            or word_at(p + _DATA) != block[expect + _P_DATA]
            or word_at(p + _DESCR) != descr
            or word_at(p + _FLAGS) & (_C_CONTIGUOUS | _WRITEABLE) != (_C_CONTIGUOUS | _WRITEABLE)
        ):
            return key
        if word_at(g + _TYPE) != block[ARRAY_TYPE]:  # exactly an ndarray: read before anything else of g
            return key
        if word_at(g + _DESCR) != descr or not (word_at(g + _FLAGS) & _C_CONTIGUOUS):
            return key
        nd, shape = block[expect + _NDIM], dims + block[expect + _DIM0]
        for array in (p, g):
            if word_at(array + _ND) & _LOW32 != nd:
                return key
            array_dims = word_at(array + _DIMS)
            for d in range(nd):
                if word_at(array_dims + 8 * d) != block[shape + d]:
                    return key
        lo = word_at(g + _DATA)
        hi = lo + block[expect + _NBYTES]
        if hi > lo:
            for r in range(block[N_OWNED]):
                if lo < block[owned + 2 * r + 1] and block[owned + 2 * r] < hi:
                    return key
        block[grad_base + key] = lo
    row_key, row_shift, width = block[ROW_KEY], block[ROW_SHIFT], block[TABLE_WIDTH]
    table = array_at(block[TABLE], block[N_ROWS] * width, block)
    for row in range(block[N_ROWS]):
        table[row * width + GRAD] = block[grad_base + block[row_key + row]] + block[row_shift + row]
    return -1


check_and_bind_compiled = helper(check_and_bind)


def split_into_shares(sizes, parts: int, align: int = 1) -> list[tuple[int, int, int]]:
    """Cut runs of ``sizes`` elements (in order) into ``parts`` equal shares,
    cutting a run only at multiples of ``align`` from its start (a block of
    int8 state is never split between threads).

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
            end = start + min(size - start, (j + 1) * share - (offset + start))
            if end < size and end % align:
                end = min(size, end + align - end % align)
            length = end - start
            shares[j].append((run, start, length))
            start += length
        offset += size
    width = max(len(rows) for rows in shares)
    return [row for rows in shares for row in rows + [(0, 0, 0)] * (width - len(rows))]


class _WriteBack:
    """Params that are Python floats or NumPy scalars are immutable: the
    kernel updates copies, which go back into the caller's dict (a mixin of
    :class:`Plan`)."""

    def run_and_write_back(self, params) -> None:
        """Run, then give Python-float and NumPy-scalar params their new values."""
        try:
            self.run()
        finally:
            # Also on an interrupt: the copies hold the new values if the
            # kernel ran and the old ones if it did not.  Writing back is
            # idempotent, so an interrupt in the middle of it (which would
            # leave some keys old) is held until every key is written.
            interrupted = None
            while True:
                try:
                    self.write_back(params)
                    break
                except KeyboardInterrupt as exc:
                    interrupted = exc
            if interrupted is not None:
                raise interrupted

    def write_back(self, params) -> None:
        """Python-float and NumPy-scalar params get their new values."""
        if self.scalar_types is not None:
            p_view = self.scalar_views[0]
            for k, key in enumerate(self.keys):
                value_type = self.scalar_types[k]
                params[key] = p_view[k] if value_type is float else value_type(p_view[k])
            return
        for key, view, to_python in self.writeback:
            value = view[0]
            params[key] = value.item() if to_python else value


def _refuse(params, grads) -> bool:
    return False


# Plans of up to this many keys get a collect function with one line per key
# (0.17 us for one key against 0.32 for the loop); beyond, generating it would
# cost planning more than the loop costs the calls.
_KEYS_WRITTEN_OUT = 64

_COLLECT = '''
def collect(params, grads):
    if type(grads) is not dict or len(grads) != {n} or len(params) != {n}:
        return False
    if type(params) is not dict:  # params[key] may call a subclass's __missing__
        return by_get(params, grads)
    try:
{lines}
    except KeyError:
        return False
    flag[0] = 1
    return True
'''


def _scalars_collector(keys, types, views):
    """``collect`` of a plan of Python floats or NumPy scalars: copy this
    call's values into the plan's buffers ``views`` (params, grads)."""
    n = len(keys)
    p_view, g_view = views

    def collect(params, grads):
        if type(grads) is not dict or len(grads) != n or len(params) != n:
            return False
        get_p, get_g = params.get, grads.get
        for k, key in enumerate(keys):
            value_type = types[k]
            p, g = get_p(key), get_g(key)
            if type(p) is not value_type or type(g) is not value_type:
                return False
            p_view[k] = p
            g_view[k] = g
        return True

    return collect


def _collector_by_get(keys, ids, flag):
    """``collect`` by ``get``: a plan of more keys than :func:`_collector`
    writes out, or params that are not exactly a dict.  (Closures, not bound
    methods: a plan that refers to itself lives until the garbage collector
    runs.)"""
    n = len(keys)

    def collect(params, grads):
        if type(grads) is not dict or len(grads) != n or len(params) != n:
            return False
        get_p, get_g = params.get, grads.get
        for k, key in enumerate(keys):
            ids[2 * k] = id(get_p(key))
            ids[2 * k + 1] = id(get_g(key))
        flag[0] = 1
        return True

    return collect


def _collector(keys, ids, flag, by_get):
    """``collect`` for a plan of ``keys``: the ids of each key's param and grad
    into ``ids`` (and 1 into ``flag``), the keys written out.

    Only ids here: the kernel checks each object's type before it reads more
    than the two words every Python object begins with.  A missing key sends
    the call to full validation, which names it."""
    lines = [f"        ids[{2 * k}] = id(params[key_{k}])\n        ids[{2 * k + 1}] = id(grads[key_{k}])"
             for k in range(len(keys))]
    namespace = {"ids": ids, "flag": flag, "by_get": by_get, **{f"key_{k}": key for k, key in enumerate(keys)}}
    exec(_COLLECT.format(n=len(keys), lines="\n".join(lines or ["        pass"])), namespace)
    return namespace["collect"]


class Plan(_WriteBack):
    """One validated call's kernel table, ready to be re-bound to new grads."""

    def __init__(self, call, state, key_group, parts: int, copies=None):
        """``copies``: per key in layout order, the uint16 array that the
        kernel writes the new params into, rounded (None: no copies)."""
        # Every attribute first, in one order, and no more than 30 of them:
        # CPython 3.11 keeps an object's attributes inline only while its
        # class's instances add them in the same order and number at most 30;
        # else the object gets a dict, and each read of it costs ~3x (a dict
        # of Python floats plans differently from one of arrays).
        #: ``collect(params, grads) -> bool``: take this call's arrays for the
        #: check that runs inside the kernel (or :meth:`check`); False:
        #: validate fully.  Generated per plan (see :func:`_collector`).
        self.collect = _refuse
        self.scalar_types = self.scalar_views = None
        self.scalars = self.scalars_rows = self.prepass = self.norms = self.run = None
        #: Set by the planner: nothing but the kernel call (see ``Optimizer.update``).
        self.plain = False
        #: Set by the planner for a dict of Python floats that steps in the
        #: interpreter (a :class:`fastopt._floats.FloatStep`).
        self.floats = None
        layout = call.layout
        self.copies = copies
        #: The caller's copies dict and its arrays, which later calls must pass again.
        self.copies_given = (None, None)
        self.layout = layout
        self.key_group = key_group
        self.params = call.params  # keeps the params dict alive: its id keys the plan
        self.scalar_types = None
        if call.writeback and len(call.writeback) == len(layout.keys) and all(
            type(g) is not np.ndarray for g in (call.grads[k] for k in layout.keys)
        ):
            self._own_scalar_buffers(call)
        self.writeback = call.writeback
        self.keepalive = (call.param_views, call.grad_views, state.buffers, state.scale_root)
        n_keys = len(layout.keys)
        itemsize = layout.dtype.itemsize
        state_itemsize = state.itemsize
        int8 = state.state_dtype is not None and state.state_dtype == INT8
        rows = split_into_shares(layout.sizes, parts, BLOCK if int8 else 1)
        self.row_key = np.array([key for key, _, _ in rows], np.int64)
        row_shift = np.array([start * itemsize for _, start, _ in rows], np.int64)
        state_shift = np.array([start * state_itemsize for _, start, _ in rows], np.int64)
        self.grad_base = np.array(call.grad_addresses, np.int64).reshape(n_keys)
        self.param_base = np.array(call.param_addresses, np.int64).reshape(n_keys)
        n_state = len(state.state_names)
        n_columns = FIRST_STATE + n_state * (2 if int8 else 1) + (1 if copies is not None else 0)
        self.table = table = np.zeros((len(rows), n_columns), np.int64)
        if rows:
            table[:, LENGTH] = [length for _, _, length in rows]
            table[:, GROUP] = np.asarray(key_group, np.int64)[self.row_key]
            table[:, PARAM] = self.param_base[self.row_key] + row_shift
            table[:, GRAD] = self.grad_base[self.row_key] + row_shift
            offsets = np.array(layout.offsets, np.int64) * state_itemsize
            if state.shaped_like_params:  # else the rule's kernel finds its state itself
                for j, name in enumerate(state.state_names):
                    table[:, FIRST_STATE + j] = state.buffers[name].ctypes.data + offsets[self.row_key] + state_shift
                if int8:  # each row's first block's absmax
                    first_block = np.array([start // BLOCK for _, start, _ in rows], np.int64)
                    for j, name in enumerate(state.state_names):
                        block_offsets = np.array(state.layouts[name + ABSMAX].offsets, np.int64)
                        table[:, FIRST_STATE + n_state + j] = (state.buffers[name + ABSMAX].ctypes.data
                                                              + (block_offsets[self.row_key] + first_block) * 4)
            if copies is not None:
                copy_base = np.array([c.ctypes.data for c in copies], np.int64)
                table[:, -1] = copy_base[self.row_key] + np.array([start * 2 for _, start, _ in rows], np.int64)
        self.keys = layout.keys
        self.n_keys = n_keys
        self.block = np.zeros(_HEAD, np.int64)  # FLAG 0: nothing to check
        self.flag = memoryview(self.block[FLAG : FLAG + 1])
        if HEADERS_READABLE and not call.writeback:
            self._prepare_binding(call, state, row_shift)
        self.block[N_ROWS], self.block[TABLE_WIDTH] = table.shape
        self.block[TABLE] = table.ctypes.data
        args = (self.block,)
        try:
            from ._jit import load_or_compile

            signature = tuple(numba.typeof(a) for a in args)
            load_or_compile(check_and_bind_compiled, signature)
            entry = check_and_bind_compiled.overloads[signature].entry_point
        except (AttributeError, KeyError, TypeError):
            entry = check_and_bind_compiled
        self._check = functools.partial(entry, *args)

    def point_at(self, scalars_table: np.ndarray, step: np.ndarray) -> None:
        """Let the block give the kernel ``scalars_table`` (float, 2-D) and the
        step counter ``step`` (one int64), which outlive the plan's calls."""
        block = self.block
        block[SCALARS_ROW_BYTES], block[SCALARS_WIDTH] = scalars_table.strides[0], scalars_table.shape[1]
        block[SCALARS] = scalars_table.ctypes.data
        block[STEP] = step.ctypes.data
        self.keepalive = (*self.keepalive, scalars_table, step)

    def _own_scalar_buffers(self, call) -> None:
        """A dict of Python floats or NumPy scalars (the book's 2-D example):
        the plan keeps one buffer of params and one of grads, so that a later
        call only copies the values in (its :attr:`collect`)."""
        layout = call.layout
        scalar_params = np.array([call.params[k] for k in layout.keys], layout.dtype)
        scalar_grads = np.array([call.grads[k] for k in layout.keys], layout.dtype)
        self.scalar_types = [type(call.params[k]) for k in layout.keys]
        self.scalar_views = (memoryview(scalar_params), memoryview(scalar_grads))  # the call's views keep them
        self.collect = _scalars_collector(layout.keys, self.scalar_types, self.scalar_views)
        itemsize = layout.dtype.itemsize
        base_p, base_g = scalar_params.ctypes.data, scalar_grads.ctypes.data
        call.param_addresses = [base_p + k * itemsize for k in range(len(layout.keys))]
        call.grad_addresses = [base_g + k * itemsize for k in range(len(layout.keys))]
        call.param_views = [scalar_params]
        call.grad_views = [scalar_grads]
        call.writeback = [
            (key, scalar_params[k : k + 1], to_python) for k, (key, _, to_python) in enumerate(call.writeback)
        ]

    def _prepare_binding(self, call, state, row_shift) -> None:
        n = self.n_keys
        expect, dims = [], []
        for k, (key, p) in enumerate(call.param_arrays):
            expect += [id(p), call.param_addresses[k] if p.size else p.__array_interface__["data"][0],
                       p.ndim, len(dims), id(self.layout.dtype), p.nbytes]
            dims.extend(p.shape)
        owned = [(a, a + p.nbytes) for a, (_, p) in zip(call.param_addresses, call.param_arrays) if p.size]
        owned += [(b.ctypes.data, b.ctypes.data + b.nbytes) for b in state.buffers.values() if b.size]
        if self.copies is not None:  # a later call's grads must not lie in a copy either
            owned += [(c.ctypes.data, c.ctypes.data + c.nbytes) for c in self.copies if c.size]
        parts = [[0] * (2 * n), expect, [w for pair in owned for w in pair], dims,
                 list(self.grad_base), list(self.row_key), list(row_shift)]
        offsets, at = [], _HEAD
        for part in parts:
            offsets.append(at)
            at += len(part)
        head = [0, n, len(owned), len(self.row_key), *offsets, id(np.ndarray)]
        head += [0] * (_HEAD - len(head))  # the kernel's arrays: see __init__ and point_at
        self.block = np.array(head + [w for part in parts for w in part], np.int64)
        self.grad_base = self.block[offsets[4] : offsets[4] + n]  # the pre-pass reads the addresses here
        ids = memoryview(self.block[offsets[0] : offsets[0] + 2 * n])
        self.flag = memoryview(self.block[FLAG : FLAG + 1])
        self.keepalive = (*self.keepalive, [p for _, p in call.param_arrays])  # their ids must stay theirs
        self.collect = _collector_by_get(self.keys, ids, self.flag)
        if n <= _KEYS_WRITTEN_OUT:
            self.collect = _collector(self.keys, ids, self.flag, self.collect)

    def same_copies(self, copies) -> bool:
        """Whether ``copies`` holds the very arrays this plan writes."""
        if copies is None:
            return self.copies_given[0] is None
        source, arrays = self.copies_given
        if copies is not source or len(copies) != self.n_keys:
            return False
        get = copies.get
        return all(get(key) is array for key, array in zip(self.keys, arrays))

    def check(self) -> int:
        """The kernel's check, run on its own (before a pre-pass reads the grads)."""
        if self.flag[0] == 0:
            return -1
        bad = self._check()
        self.flag[0] = 0
        return bad
