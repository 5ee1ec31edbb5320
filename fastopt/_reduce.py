"""Reductions over the grads on a fixed grid: the non-finite check and the norm.

A sum of floats depends on the order of its additions, so a norm summed in
thread shares would change bits with the thread count.  fastopt sums on a
grid that depends only on the layout:

1. each key's elements are cut into blocks of ``BLOCK`` (4096) elements from
   the key's start (the last block of a key may be shorter);
2. in a block, element ``i`` goes to lane ``i % LANES`` (16 lanes) and is
   added to it in order: ``lane += float64(x) * float64(x)``, each lane
   starting at +0.0;
3. the lanes are combined pairwise (:func:`pairwise`): adjacent pairs, the
   odd one out carried to the next round, until one value is left;
4. a key's block sums are combined pairwise in block order, and the key sums
   pairwise in layout order (a key with no elements sums to 0.0).

Everything is float64.  ``x`` is the gradient after the ``clip_value``
clamp, done in the arithmetic dtype.  Blocks are shared out to threads, but
no sum crosses a block, so the result is the same on any thread count;
:func:`reference_sum_of_squares` computes it with whole-array NumPy.

The same pass checks for nan and inf (the largest exponent field of each
block, an integer max), so ``nonfinite="skip"`` with ``clip_norm`` reads
the grads once for both (:func:`_grad_prepass` says how).
"""

from __future__ import annotations

import math

import numba
import numpy as np
from llvmlite import ir as llvm_ir
from numba import types as nbtypes
from numba.core import cgutils
from numba.extending import intrinsic

from ._jit import (ENGINE_DIGEST, NUMBA_FLAGS, PARALLEL, FasterOf, _file_digest, _jit, _renamed_copy, array_at,
                   as_compute, bound_call, helper, serialized)

BLOCK = 4096
LANES = 16


def exponent_bits(values):
    """``values`` seen as integers, and the mask of a float's exponent field.

    A float is non-finite exactly when all its exponent bits are set.  This
    Python version serves the interpreter; compiled code uses the overload.
    """
    if values.dtype == np.float32:
        return values.view(np.int32), np.int32(0x7F800000)
    return values.view(np.int64), np.int64(0x7FF0000000000000)


@numba.extending.overload(exponent_bits)
def _exponent_bits(values):
    if values.dtype == numba.types.float32:
        return lambda values: (values.view(np.int32), np.int32(0x7F800000))
    return lambda values: (values.view(np.int64), np.int64(0x7FF0000000000000))


def block_table(sizes) -> np.ndarray:
    """Rows of (key, first element, length): every key cut into BLOCK-element blocks."""
    sizes = np.asarray(sizes, np.int64).reshape(-1)
    counts = -(-sizes // BLOCK)
    keys = np.repeat(np.arange(sizes.size, dtype=np.int64), counts)
    before = np.repeat(np.cumsum(counts) - counts, counts)
    firsts = (np.arange(keys.size, dtype=np.int64) - before) * BLOCK
    return np.stack([keys, firsts, np.minimum(BLOCK, sizes[keys] - firsts)], axis=1)


@numba.njit(inline="always", **NUMBA_FLAGS)
def _clamped(x, clip_value):
    if clip_value > 0:
        if x > clip_value:
            return clip_value
        if x < -clip_value:
            return -clip_value
    return x


@helper
def pair_rounds(x, n):
    """The rounds of :func:`_pairwise_in_place` on ``x[:n]``, in place, until
    ``x[0]`` holds the result (the ``n`` left: 1, or 0 for none).  The items
    may be rows of a 2-D ``x``: each column is then combined alike."""
    while n > 1:
        half = n // 2
        for j in range(half):
            x[j] = x[2 * j] + x[2 * j + 1]
        if n % 2:
            x[half] = x[n - 1]
            n = half + 1
        else:
            n = half
    return n


@helper
def _pairwise_in_place(x, n):
    """Combine ``x[:n]`` pairwise in place: adjacent pairs, the odd one out
    carried to the next round; 0.0 for n == 0."""
    return x[0] if pair_rounds(x, n) == 1 else 0.0


def _lane_total_intrinsic(square: bool):
    """An intrinsic ``(values, count) -> float64``: steps 2-3 above over
    ``x = float64(values[i])`` (squared when ``square``), ``i < count``.

    The sixteen lanes are four ``<4 x double>`` vectors, written out in
    LLVM IR because LLVM would not vectorise them without fastmath (neither
    as sixteen locals nor as an array: both ran scalar, 2-2.5x slower than
    a read of the same bytes), and the lanes live on the stack (a NumPy
    array of lanes per call cost more than the sum of a 1000-element row).
    The adds are the same IEEE adds in the same order as the scalar loop
    (row by row, then the tail into the first lanes, then the pairwise
    tree), so the bits are too (but for which of two different nans comes
    out: see "Guarantees" in the README).  ``values`` must be C-contiguous
    and hold at least ``count`` elements; nothing checks it here."""

    @intrinsic
    def lane_total(typingctx, values, count):
        if not (isinstance(values, nbtypes.Array) and values.ndim == 1 and values.layout == "C"
                and values.dtype in (nbtypes.float32, nbtypes.float64) and isinstance(count, nbtypes.Integer)):
            return None

        def codegen(context, builder, signature, args):
            values_type, count_type = signature.args
            source = context.make_array(values_type)(context, builder, args[0]).data
            intp = context.get_value_type(nbtypes.intp)
            count = context.cast(builder, args[1], count_type, nbtypes.intp)
            full = builder.sub(count, builder.srem(count, llvm_ir.Constant(intp, LANES)))
            double = llvm_ir.DoubleType()
            vector = llvm_ir.VectorType(double, 4)
            align = 4 if values_type.dtype == nbtypes.float32 else 8  # no more than the element's

            def as_double(x, like):
                if values_type.dtype == nbtypes.float32:
                    x = builder.fpext(x, like)
                return builder.fmul(x, x) if square else x

            sums = [cgutils.alloca_once_value(builder, llvm_ir.Constant(vector, [0.0] * 4)) for _ in range(4)]
            vector_in = llvm_ir.VectorType(source.type.pointee, 4).as_pointer()
            with cgutils.for_range_slice(builder, llvm_ir.Constant(intp, 0), full, llvm_ir.Constant(intp, LANES),
                                         intp) as (row, _):
                for k in range(4):
                    at = builder.gep(source, [builder.add(row, llvm_ir.Constant(intp, 4 * k))])
                    x = as_double(builder.load(builder.bitcast(at, vector_in), align=align), vector)
                    builder.store(builder.fadd(builder.load(sums[k]), x), sums[k])
            lanes = cgutils.alloca_once(builder, double, size=LANES)
            for k in range(4):
                total = builder.load(sums[k])
                for j in range(4):
                    builder.store(builder.extract_element(total, llvm_ir.Constant(llvm_ir.IntType(32), j)),
                                  builder.gep(lanes, [llvm_ir.Constant(intp, 4 * k + j)]))
            with cgutils.for_range(builder, builder.sub(count, full), intp=intp) as loop:
                x = as_double(builder.load(builder.gep(source, [builder.add(full, loop.index)])), double)
                lane = builder.gep(lanes, [loop.index])
                builder.store(builder.fadd(builder.load(lane), x), lane)
            level = [builder.load(builder.gep(lanes, [llvm_ir.Constant(intp, j)])) for j in range(LANES)]
            while len(level) > 1:  # _pairwise_in_place's tree for 16 values
                level = [builder.fadd(level[2 * j], level[2 * j + 1]) for j in range(len(level) // 2)]
            return level[0]

        return nbtypes.float64(values, count), codegen

    return lane_total


_lane_total = _lane_total_intrinsic(square=False)
_lane_total_of_squares = _lane_total_intrinsic(square=True)


def lane_sum(squares, count):
    """``squares[:count]`` (float64, at most one block) summed as steps 2-3
    above do: lane ``i % 16`` gets element ``i``, in order, then the lanes
    are combined pairwise.  Kernels compute their squares into scratch first
    and call this: adding to the lanes in the loop that computes them kept
    that loop scalar (2.5-3x slower).  Compiled code gets the vectorised
    overload below; this Python version serves the interpreter."""
    assert 0 <= count <= len(squares), (count, len(squares))
    lanes = np.zeros(LANES)
    full = count - count % LANES
    for row in range(0, full, LANES):
        lanes += squares[row : row + LANES]
    lanes[: count - full] += squares[full:count]
    return _pairwise_in_place.py_func(lanes, LANES)


def lane_sum_of_squares(values, count):
    """:func:`lane_sum` of ``float64(values[i]) ** 2`` for ``i < count``: the
    squares need no scratch when the grads are squared as they are."""
    x = np.asarray(values[:count], np.float64)
    return lane_sum(x * x, count)


@numba.extending.overload(lane_sum, jit_options=NUMBA_FLAGS)
def _lane_sum_compiled(squares, count):
    return lambda squares, count: _lane_total(squares, count)


@numba.extending.overload(lane_sum_of_squares, jit_options=NUMBA_FLAGS)
def _lane_sum_of_squares_compiled(values, count):
    return lambda values, count: _lane_total_of_squares(values, count)


@helper
def combine_by_key(blocks, block_sums, key_sums):
    """Each key's block sums (consecutive rows of ``blocks``) combined pairwise
    in block order into ``key_sums[key]``; 0.0 for a key with no blocks.
    ``block_sums`` is used as scratch."""
    n_blocks = blocks.shape[0]
    key_sums[:] = 0.0
    start = 0
    while start < n_blocks:
        key = blocks[start, 0]
        stop = start
        while stop < n_blocks and blocks[stop, 0] == key:
            stop += 1
        key_sums[key] = _pairwise_in_place(block_sums[start:stop], stop - start)
        start = stop


@numba.njit(inline="always", **NUMBA_FLAGS)
def _has_nonfinite(g, n):
    bits, mask = exponent_bits(g)
    top = mask & 0
    for i in range(n):
        exponent = bits[i] & mask
        if exponent > top:
            top = exponent
    return top == mask


def _grad_prepass(blocks, grad_base, g_like, c_like, want_norm, block_sums, key_sums):
    """(first key holding a nan or inf, or -1; float64 sum of squares).

    ``c_like`` is a row of scalars in the arithmetic dtype; ``c_like[0]`` is
    the clip value (0: none).  ``block_sums`` receives each block's sum and
    ``key_sums`` each key's (a sharded optimizer combines the block sums of
    every rank's shard).

    Unclamped grads squared as they are (no clip value; the arithmetic dtype
    at least as wide as theirs) need no scratch, and their block sum is
    finite exactly when every square is, so the exponent scan runs only on a
    block whose sum is not: one read of the grads for the norm and the
    check.  A clamp turns inf into a finite value, so with ``clip_value``
    every block is scanned.
    """
    clip_value = c_like[0]
    n_blocks = blocks.shape[0]
    want_norm = want_norm[0]
    squared_as_they_are = clip_value == 0 and c_like.itemsize >= g_like.itemsize
    bad = np.zeros(n_blocks, np.bool_)
    itemsize = g_like.itemsize
    for b in numba.prange(n_blocks):
        key = blocks[b, 0]
        n = blocks[b, 2]
        g = array_at(grad_base[key] + blocks[b, 1] * itemsize, n, g_like)
        if not want_norm:
            bad[b] = _has_nonfinite(g, n)
        elif squared_as_they_are:
            block_sums[b] = lane_sum_of_squares(g, n)
            bad[b] = not np.isfinite(block_sums[b]) and _has_nonfinite(g, n)
        else:
            bad[b] = _has_nonfinite(g, n)
            squares = np.empty(n)
            for i in range(n):
                y = np.float64(_clamped(as_compute(g[i], c_like), clip_value))
                squares[i] = y * y
            block_sums[b] = lane_sum(squares, n)
    first_bad = -1
    for b in range(n_blocks):
        if bad[b]:
            first_bad = blocks[b, 0]
            break
    if not want_norm:
        return first_bad, 0.0
    combine_by_key(blocks, block_sums.copy(), key_sums)  # the block sums stay readable
    scratch = key_sums.copy()
    return first_bad, _pairwise_in_place(scratch, scratch.size)


def _variant(parallel: bool):
    # Named by both files' digests: the clone inlines helpers from each.
    digest = ENGINE_DIGEST + _file_digest(__file__)
    clone = _renamed_copy(_grad_prepass, ("_parallel_" if parallel else "_serial_") + digest)
    return _jit(clone, parallel=parallel)


_VARIANTS: dict = {}


def prepass_variant(parallel: bool):
    """The compiled pre-pass (compiled, or loaded from the cache, when first used)."""
    if parallel not in _VARIANTS:
        _VARIANTS[parallel] = _variant(parallel)
    return _VARIANTS[parallel]


class GradPrepass:
    """A layout's pre-pass over the grads at ``grad_base`` (one address per key,
    rewritten in place by the plan)."""

    def __init__(self, sizes, grad_base, g_like, c_like, parallel_min_size: int):
        self.blocks = block_table(sizes)
        self.block_sums = np.zeros(len(self.blocks))
        self.key_sums = np.zeros(len(sizes))
        self.want_norm = np.zeros(1, np.bool_)
        args = (self.blocks, grad_base, g_like, c_like, self.want_norm, self.block_sums, self.key_sums)
        size = sum(sizes)
        serial = bound_call(prepass_variant(False), args)
        if PARALLEL.usable and size >= parallel_min_size:
            self._run = FasterOf(
                serial,
                lambda: serialized(bound_call(prepass_variant(True), args)),
                ("prepass", g_like.dtype.str, c_like.dtype.str, size.bit_length()),
            )
        else:
            self._run = serial

    def run(self, want_norm: bool) -> tuple[int, float]:
        """(index of the first key holding a nan or inf, or -1; sum of squares or 0.0)."""
        self.want_norm[0] = want_norm
        return self._run()


def reference_pairwise(values) -> float:
    """:func:`_pairwise_in_place` in whole-array NumPy (adjacent pairs, odd carried)."""
    x = np.asarray(values, np.float64)
    while x.size > 1:
        half = x.size // 2
        combined = x[0 : 2 * half : 2] + x[1 : 2 * half : 2]
        x = np.concatenate([combined, x[2 * half :]])
    return float(x[0]) if x.size else 0.0


def reference_pairwise_axis(values, axis: int) -> np.ndarray:
    """:func:`reference_pairwise` along one axis of an array."""
    x = np.moveaxis(np.asarray(values, np.float64), axis, -1)
    while x.shape[-1] > 1:
        half = x.shape[-1] // 2
        x = np.concatenate([x[..., 0 : 2 * half : 2] + x[..., 1 : 2 * half : 2], x[..., 2 * half :]], axis=-1)
    return x[..., 0] if x.shape[-1] else np.zeros(x.shape[:-1])


def reference_runs_sum_of_squares(rows) -> np.ndarray:
    """:func:`reference_key_sum_of_squares` of each row of a 2-D array (the
    rows in the arithmetic dtype), with whole-array NumPy."""
    x = np.asarray(rows)
    n_rows, m = x.shape
    n_blocks = max(1, -(-m // BLOCK))
    width = min(BLOCK, -(-m // LANES) * LANES)  # shorter rows need no padding beyond a lane row
    padded = np.zeros((n_rows, n_blocks * width if n_blocks == 1 else n_blocks * BLOCK))
    padded[:, :m] = x.astype(np.float64)
    width = padded.shape[1] // n_blocks
    squares = (padded * padded).reshape(n_rows, n_blocks, width // LANES, LANES)
    lanes = np.zeros((n_rows, n_blocks, LANES))
    for r in range(width // LANES):  # in order: lane += x*x, one row of lanes at a time
        lanes += squares[:, :, r, :]
    while lanes.shape[2] > 1:
        lanes = lanes[:, :, 0::2] + lanes[:, :, 1::2]
    return reference_pairwise_axis(lanes[:, :, 0], axis=1)


def reference_key_sum_of_squares(g, clip_value=0.0) -> float:
    """One key's sum of squares on the fixed grid, in whole-array NumPy.

    ``g`` is in the arithmetic dtype; ``clip_value`` is rounded to it.
    """
    x = np.asarray(g).ravel()
    if clip_value > 0:
        cv = x.dtype.type(clip_value)
        x = np.where(x > cv, cv, np.where(x < -cv, -cv, x))
    return float(reference_runs_sum_of_squares(x.reshape(1, -1))[0])


def reference_sum_of_squares(arrays, clip_value=0.0) -> float:
    """The fixed-grid sum of squares of ``arrays`` (in layout order)."""
    return reference_pairwise([reference_key_sum_of_squares(a, clip_value) for a in arrays])


def norm_from_sum(total: float) -> float:
    return math.sqrt(total)


def global_norm(grads) -> float:
    """The global L2 norm of a dict of grads, as ``clip_norm`` computes it.

    float64, summed on the fixed grid above: the same number as
    ``opt.last_grad_norm`` for the same grads, on any thread count.
    """
    from collections.abc import Mapping

    from ._layout import check_key, describe
    from .errors import DTypeMismatchError

    if not isinstance(grads, Mapping):
        raise TypeError(f"grads: expected a dict of arrays, got {type(grads).__name__}")
    arrays, dtype = [], None
    for key, value in grads.items():
        check_key("grads", key)
        _, value_dtype, _ = describe("grads", key, value)
        if dtype is not None and value_dtype != dtype:
            raise DTypeMismatchError(f"grads[{key!r}]: expected dtype {dtype} (the other grads'), got {value_dtype}")
        dtype = value_dtype
        arrays.append(np.ascontiguousarray(value, dtype=value_dtype).reshape(-1))
    if not arrays:
        return 0.0
    grad_base = np.array([a.__array_interface__["data"][0] if a.size else 0 for a in arrays], np.int64)
    prepass = GradPrepass([a.size for a in arrays], grad_base, np.empty(0, dtype), np.zeros(1, dtype), 30_000)
    _, total = prepass.run(True)
    return math.sqrt(total)
