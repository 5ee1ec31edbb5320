"""Adafactor: Adam-like steps from a factored second moment, in sublinear memory.

Equations (torch.optim.Adafactor's; ``t`` is the step count, 1 at the first
update; a key of two or more dimensions is a stack of ``n x m`` matrices
over its last two axes, and ``R``, ``C`` are its row and column factors;
means and norms are per key)::

    w     = t**beta2_decay                      (weight of the new mean; 1 at t = 1)
    rho   = min(lr, 1 / t**0.5)
    alpha = max(eps2, rms(p)) * rho             (rms of the params before the decay)
    p    *= 1 - lr * weight_decay
    factored:  R = lerp(R, mean(g*g, axis=-1), w)        (n x 1 per matrix)
               C = lerp(C, mean(g*g, axis=-2), w)        (1 x m per matrix)
               u = g / sqrt(max(V, eps1 * eps1)),  V = (R * C) / max(mean(R), eps1)
    otherwise: variance = lerp(variance, g*g, w)
               u = g / sqrt(max(variance, eps1 * eps1))
    p    += -(alpha / max(1, rms(u) / d)) * u

``lerp(a, b, w)`` is torch's: ``a + w * (b - a)`` for ``w < 0.5``, else
``b - (b - a) * (1 - w)``.  ``eps1=None`` (the default) is the machine
epsilon of the params' dtype, as in torch.

Defaults: ``lr=0.01, beta2_decay=-0.8, eps1=None, eps2=0.001, d=1.0,
weight_decay=0.0`` (torch's; its ``eps=(eps1, eps2)`` tuple is two names
here).  State: ``row_var`` (shape ``(..., n, 1)``) and ``col_var`` (``(...,
1, m)``) for keys of two or more dimensions, ``variance`` (the param's shape)
for vectors and scalars; each key's entry in the buffers it does not use is
empty.  A 4096 x 4096 matrix keeps 8192 state elements, 1/4096 of Adam's.

Reference: Shazeer & Stern, "Adafactor: Adaptive Learning Rates with
Sublinear Memory Cost", ICML 2018, with torch's departures (its docstring):
``lr`` caps the relative step and scales the decoupled weight decay, and
``eps1`` is applied to the variance estimate, not to the squared gradient.
No first moment (torch has none).

Rounding (how fastopt computes the same values; agreement with torch is
pinned by golden trajectories at ``rtol=1e-12`` in float64): a factored
key's ``sqrt(V)`` is the product of ``sqrt(R / max(mean(R), eps1))`` (per
row) and ``sqrt(C)`` (per column), and ``u = g * (1/row root) * (1/column
root)``, or ``g / eps1`` where that product is below ``eps1``; the roots and
their inverses are taken once per step, so the update needs no square root
and no division per element (torch: ``g * rsqrt(clamp(V, eps1**2))``; the
step of a float32 10000 x 1000 matrix went from 19.3 to 15.5 ms here).  Sums run in float64 on a fixed grid that depends only
on the shapes (see :data:`GRID`), so results are the same on any thread
count.  A key with no elements is left as it is (torch turns the column
factor of an ``(0, m)`` key into nan).

Traffic: a step reads the grads three times and the params twice for a
factored key (its factors are tiny) and writes the params once: 6 array
transfers per element (Adam: 7); a vector also reads its variance twice
and writes it once: 8.
"""
from __future__ import annotations

import hashlib
import inspect
import math
import types
from typing import NamedTuple

import numba
import numpy as np

from .. import _jit, _plan, _reduce
from .._hyper import Hyperparameter, Hyperparameters, at_least_one, non_negative, non_positive
from .._jit import NUMBA_FLAGS, Kernel, RuleMath, array_at, as_compute, nan_maximum
from .._reduce import BLOCK
from ..optimizer import Optimizer

# The kernel's helpers.  _build_kernel binds these names anew for each
# variant (compiled or interpreted); here they serve readers and linters.
from numba import prange  # noqa: E402, F401
from .._plan import check_and_bind  # noqa: E402, F401
from .._reduce import lane_sum, lane_sum_of_squares, pair_rounds, _pairwise_in_place as pairwise  # noqa: E402, F401

GRID = """The fixed grid.  Every sum is float64 of values in the arithmetic dtype:

* a *run* (a whole vector, or one row - last axis - of a matrix) is summed
  as :mod:`fastopt._reduce` sums a key: blocks of 4096 from the run's start,
  16 lanes per block added in order, lanes then blocks combined pairwise;
* a key's sum of a factored key is its rows' sums combined pairwise in row
  order (all matrices of the stack, in order);
* a column of one matrix: its rows cut into chunks of ``rows_per_chunk(m)``
  rows from the top; in a chunk, added row by row in order from +0.0; the
  chunk sums combined pairwise in chunk order;
* ``mean(R)`` of one matrix: its new row factors combined pairwise.
"""


class AdafactorHyperparameters(Hyperparameters):
    lr = Hyperparameter(0.01, non_negative, "cap of the relative step size; scales the weight decay")
    beta2_decay = Hyperparameter(-0.8, non_positive, "exponent of the second-moment weight t**beta2_decay")
    eps1 = Hyperparameter(None, non_negative, "floor of the variance estimate (squared); None: machine epsilon",
                          nullable=True)
    eps2 = Hyperparameter(0.001, non_negative, "floor of rms(params) in the step size")
    d = Hyperparameter(1.0, at_least_one, "clipping threshold of rms(update)")
    weight_decay = Hyperparameter(0.0, non_negative, "decoupled decay, scaled by lr")


class Scalars(NamedTuple):
    w: float
    rho: float
    eps1: float
    eps1_squared: float
    eps2: float
    d: float
    decay: float


def scalars(hp, t) -> Scalars:
    w = float(t) ** hp.beta2_decay
    eps1 = math.nan if hp.eps1 is None else hp.eps1  # nan: the kernel takes the params' epsilon
    return Scalars(
        w=w,
        rho=min(hp.lr, 1 / (float(t) ** 0.5)),
        eps1=eps1,
        eps1_squared=eps1 * eps1,
        eps2=hp.eps2,
        d=hp.d,
        decay=1 - hp.lr * hp.weight_decay,
    )


def state_shape(name: str, shape: tuple) -> tuple:
    factored = len(shape) >= 2
    if name == "row_var":
        return shape[:-1] + (1,) if factored else (0,)
    if name == "col_var":
        return shape[:-2] + (1, shape[-1]) if factored else (0,)
    return (0,) if factored else shape


def rows_per_chunk(m: int) -> int:
    """Rows in one chunk of a column sum (and one unit of work): a fixed
    function of the row length, at least 64 rows and 4096 elements."""
    return max(64, -(-BLOCK // max(m, 1)))


# -- the kernel ------------------------------------------------------------------------
#
# Tables built once per plan (Python ints, then int64 arrays):
# keys[k]:   FACTORED, GROUP, N, M, SIZE, ROW_OFF, COL_OFF, VAR_OFF, FIRST_ROW, FIRST_UNIT, N_UNITS
#            (N, M: a matrix's rows and columns; FIRST_ROW: the key's first row in the row scratch)
# units[u]:  KEY, MATRIX (index in the key's stack), FIRST (row, or element of a vector), COUNT, COLPART,
#            GLOBAL_MATRIX (row of ``matrices``)
# matrices:  KEY, MATRIX, FIRST_UNIT, N_UNITS

K_FACTORED, K_GROUP, K_N, K_M, K_SIZE, K_ROW_OFF, K_COL_OFF, K_VAR_OFF, K_FIRST_ROW, K_FIRST_UNIT, K_N_UNITS = range(11)
U_KEY, U_MATRIX, U_FIRST, U_COUNT, U_COLPART, U_GLOBAL = range(6)
M_KEY, M_MATRIX, M_FIRST_UNIT, M_N_UNITS = range(4)
# Columns of ``scalars`` (after the engine's prologue).
_W, _RHO, _EPS1, _EPS1_SQ, _EPS2, _D, _DECAY = range(3, 10)


def machine_eps(like):
    """The machine epsilon of ``like``'s dtype, as that dtype."""
    return like.dtype.type(np.finfo(like.dtype).eps)


@numba.extending.overload(machine_eps)
def _machine_eps(like):
    if like.dtype == numba.types.float32:
        value = np.float32(np.finfo(np.float32).eps)
        return lambda like: value
    value = np.float64(np.finfo(np.float64).eps)
    return lambda like: value


def lerp(a, b, w, one_minus_w):
    """torch's lerp with a scalar weight, in the operands' dtype."""
    if w < 0.5:
        return a + w * (b - a)
    return b - (b - a) * one_minus_w


def clamp_and_scale(x, sc, clip, grad_scale):
    """The engine's prologue (Adafactor has no coupled decay): clamp to
    ``[-clip, clip]`` (``clip`` is inf when clipping is off: a no-op, and
    branch-free, so the loops stay vectorised), then scale."""
    g = as_compute(x, sc)
    g = clip if g > clip else g
    g = -clip if g < -clip else g
    return g * grad_scale


def clip_of(sc):
    return sc[0] if sc[0] > 0 else as_compute(np.inf, sc)


# Each helper below walks one run (a vector unit, or one row of a matrix) in
# blocks of BLOCK; a block's squares go to scratch, then to the lanes
# (fastopt._reduce.lane_sum, which says why).


def squares_of_run(g, start, count, col, sc, clip, grad_scale, block_sums, scratch):
    """Adds each squared grad of the run into ``col`` (by column); returns the run's sum."""
    as_they_are = clip == as_compute(np.inf, sc) and grad_scale == 1 and sc.itemsize >= g.itemsize
    n_blocks = 0
    for first in range(0, count, BLOCK):
        size = min(count - first, BLOCK)
        # Slices, not offsets into the run: with offsets LLVM kept such loops scalar.
        gs = g[start + first : start + first + size]
        cs = col[first : first + size]
        if as_they_are:  # grads squared as they are: no scratch to write and read back
            for j in range(size):
                y = np.float64(gs[j])
                cs[j] += y * y
            block_sums[n_blocks] = lane_sum_of_squares(gs, size)
        else:
            for j in range(size):
                y = np.float64(clamp_and_scale(gs[j], sc, clip, grad_scale))
                scratch[j] = y * y
                cs[j] += y * y
            block_sums[n_blocks] = lane_sum(scratch, size)
        n_blocks += 1
    return pairwise(block_sums, n_blocks)


def factored_direction(g, row_root, row_inverse, col_root, col_inverse, eps1, inverse_eps1):
    """``g / sqrt(max(V, eps1**2))`` with ``sqrt(V)`` as the product of the
    row's and the column's roots, and no division: a nan root is not below
    ``eps1``, so it stays nan."""
    return g * (inverse_eps1 if row_root * col_root < eps1 else row_inverse * col_inverse)


def vector_direction(g, new_variance, eps1_squared):
    return g / np.sqrt(nan_maximum(new_variance, eps1_squared))


def eps1_floors(sc, p_like):
    """(eps1, eps1**2, 1/eps1) in the arithmetic dtype; a nan eps1 (None) is
    the params' machine epsilon."""
    eps1, eps1_squared = sc[_EPS1], sc[_EPS1_SQ]
    if eps1 != eps1:
        eps1, eps1_squared = machine_eps(p_like), machine_eps(p_like) * machine_eps(p_like)
    return eps1, eps1_squared, as_compute(1.0, sc) / eps1


def norms_of_row(p, g, start, count, sc, clip, grad_scale, row_root, row_inverse, col_roots, col_inverses, eps1,
                 inverse_eps1, p_blocks, u_blocks, p_scratch, u_scratch):
    """(sum of p*p, sum of u*u) over one matrix row."""
    n_blocks = 0
    for first in range(0, count, BLOCK):
        size = min(count - first, BLOCK)
        ps = p[start + first : start + first + size]
        gs = g[start + first : start + first + size]
        cr = col_roots[first : first + size]
        ci = col_inverses[first : first + size]
        for j in range(size):
            gj = clamp_and_scale(gs[j], sc, clip, grad_scale)
            u = np.float64(factored_direction(gj, row_root, row_inverse, cr[j], ci[j], eps1, inverse_eps1))
            x = np.float64(as_compute(ps[j], sc))
            p_scratch[j] = x * x
            u_scratch[j] = u * u
        p_blocks[n_blocks] = lane_sum(p_scratch, size)
        u_blocks[n_blocks] = lane_sum(u_scratch, size)
        n_blocks += 1
    return pairwise(p_blocks, n_blocks), pairwise(u_blocks, n_blocks)


def norms_of_vector(p, g, v, count, sc, clip, grad_scale, w, one_minus_w, eps1_squared, p_scratch, u_scratch):
    """(sum of p*p, sum of u*u) over one vector unit (at most one block)."""
    for i in range(count):
        gi = clamp_and_scale(g[i], sc, clip, grad_scale)
        u = np.float64(vector_direction(gi, lerp(as_compute(v[i], sc), gi * gi, w, one_minus_w), eps1_squared))
        x = np.float64(as_compute(p[i], sc))
        p_scratch[i] = x * x
        u_scratch[i] = u * u
    return lane_sum(p_scratch, count), lane_sum(u_scratch, count)


def adafactor_kernel(table, scalars, step, p_like, block, keys, units, matrices, param_base, grad_base,
                     row_var, col_var, variance, row_sums, unit_sums, colpart, row_roots, row_inverses, col_roots,
                     col_inverses, key_step, widest):
    bad = check_and_bind(block)
    if bad >= 0:
        return bad
    p_size = p_like.itemsize
    n_units = units.shape[0]
    n_matrices = matrices.shape[0]

    # 1. Squared grads by rows and by columns of every matrix.
    for u in prange(n_units):
        key = units[u, U_KEY]
        if keys[key, K_FACTORED] == 0:
            continue
        sc = scalars[keys[key, K_GROUP]]
        clip, grad_scale = clip_of(sc), sc[1]
        n, m = keys[key, K_N], keys[key, K_M]
        first = units[u, U_MATRIX] * n + units[u, U_FIRST]  # row in the key
        count = units[u, U_COUNT]
        g = array_at(grad_base[key] + first * m * p_size, count * m, p_like)
        col = colpart[units[u, U_COLPART] : units[u, U_COLPART] + m]
        col[:] = 0.0
        block_sums = np.empty(widest[0])
        scratch = np.empty(BLOCK)
        for r in range(count):
            row_sums[keys[key, K_FIRST_ROW] + first + r, 0] = squares_of_run(
                g, r * m, m, col, sc, clip, grad_scale, block_sums, scratch)

    # 2. New factors, and each matrix's mean row factor.
    for x in range(n_matrices):  # a row and a column per matrix: small beside the passes
        key = matrices[x, M_KEY]
        b = matrices[x, M_MATRIX]
        sc = scalars[keys[key, K_GROUP]]
        w = sc[_W]
        one_minus_w = as_compute(1.0, sc) - w  # torch's lerp: 1 - weight in the tensors' dtype
        eps1 = eps1_floors(sc, p_like)[0]
        n, m = keys[key, K_N], keys[key, K_M]
        n_chunks = matrices[x, M_N_UNITS]
        # A matrix's chunks are consecutive rows of the column scratch (zeroed
        # again in pass 1), combined a row at a time: the same adds as column
        # by column, but vectorised and without a stride of a row.
        first_part = units[matrices[x, M_FIRST_UNIT], U_COLPART]
        chunks = colpart[first_part : first_part + n_chunks * m].reshape((n_chunks, m))
        pair_rounds(chunks, n_chunks)
        column_sums = chunks[0]
        col_state = keys[key, K_COL_OFF] + b * m
        for j in range(m):
            mean = as_compute(column_sums[j] / n, sc)
            value = lerp(as_compute(col_var[col_state + j], sc), mean, w, one_minus_w)
            col_var[col_state + j] = value
            root = np.sqrt(value)
            col_roots[col_state + j] = root
            col_inverses[col_state + j] = as_compute(1.0, sc) / root
        row_state = keys[key, K_ROW_OFF] + b * n
        first_row = keys[key, K_FIRST_ROW] + b * n
        new_rows = np.empty(n)
        for i in range(n):
            mean = as_compute(row_sums[first_row + i, 0] / m, sc)
            value = lerp(as_compute(row_var[row_state + i], sc), mean, w, one_minus_w)
            row_var[row_state + i] = value
            new_rows[i] = np.float64(value)
        den = nan_maximum(as_compute(pairwise(new_rows.copy(), n) / n, sc), eps1)
        for i in range(n):
            root = np.sqrt(as_compute(new_rows[i], sc) / den)
            row_roots[first_row + i] = root
            row_inverses[first_row + i] = as_compute(1.0, sc) / root

    # 3. Sums of p*p and u*u.
    for u in prange(n_units):
        key = units[u, U_KEY]
        sc = scalars[keys[key, K_GROUP]]
        clip, grad_scale = clip_of(sc), sc[1]
        w = sc[_W]
        one_minus_w = as_compute(1.0, sc) - w
        eps1, eps1_squared, inverse_eps1 = eps1_floors(sc, p_like)
        p_scratch = np.empty(BLOCK)
        u_scratch = np.empty(BLOCK)
        count = units[u, U_COUNT]
        if keys[key, K_FACTORED] == 0:
            first = units[u, U_FIRST]
            p = array_at(param_base[key] + first * p_size, count, p_like)
            g = array_at(grad_base[key] + first * p_size, count, p_like)
            v = variance[keys[key, K_VAR_OFF] + first : keys[key, K_VAR_OFF] + first + count]
            unit_sums[u, 0], unit_sums[u, 1] = norms_of_vector(
                p, g, v, count, sc, clip, grad_scale, w, one_minus_w, eps1_squared, p_scratch, u_scratch)
        else:
            n, m = keys[key, K_N], keys[key, K_M]
            b = units[u, U_MATRIX]
            first = b * n + units[u, U_FIRST]
            p = array_at(param_base[key] + first * m * p_size, count * m, p_like)
            g = array_at(grad_base[key] + first * m * p_size, count * m, p_like)
            col_first = keys[key, K_COL_OFF] + b * m
            cols, inverses = col_roots[col_first : col_first + m], col_inverses[col_first : col_first + m]
            p_blocks = np.empty(widest[0])
            u_blocks = np.empty(widest[0])
            for r in range(count):
                row = keys[key, K_FIRST_ROW] + first + r
                row_sums[row, 1], row_sums[row, 2] = norms_of_row(
                    p, g, r * m, m, sc, clip, grad_scale, row_roots[row], row_inverses[row], cols, inverses, eps1,
                    inverse_eps1, p_blocks, u_blocks, p_scratch, u_scratch)

    # 4. Each key's step: -(max(eps2, rms(p)) * rho / max(1, rms(u) / d)).
    n_keys = keys.shape[0]
    for key in range(n_keys):  # a few keys: not worth a parallel region
        size = keys[key, K_SIZE]
        if size == 0:
            key_step[key] = 0.0
            continue
        sc = scalars[keys[key, K_GROUP]]
        if keys[key, K_FACTORED] == 0:
            first, count = keys[key, K_FIRST_UNIT], keys[key, K_N_UNITS]
            p_sums = unit_sums[first : first + count, 0].copy()
            u_sums = unit_sums[first : first + count, 1].copy()
        else:
            first, count = keys[key, K_FIRST_ROW], size // keys[key, K_M]
            p_sums = row_sums[first : first + count, 1].copy()
            u_sums = row_sums[first : first + count, 2].copy()
        root_size = np.sqrt(np.float64(size))
        rms_p = np.sqrt(pairwise(p_sums, count)) / root_size
        eps2 = np.float64(sc[_EPS2])
        alpha = (rms_p if rms_p > eps2 else eps2) * np.float64(sc[_RHO])
        ratio = np.sqrt(pairwise(u_sums, count)) / (root_size * np.float64(sc[_D]))
        key_step[key] = -(alpha / (ratio if ratio > 1.0 else 1.0))

    # 5. The update.
    for u in prange(n_units):
        key = units[u, U_KEY]
        sc = scalars[keys[key, K_GROUP]]
        clip, grad_scale = clip_of(sc), sc[1]
        w = sc[_W]
        one_minus_w = as_compute(1.0, sc) - w
        eps1, eps1_squared, inverse_eps1 = eps1_floors(sc, p_like)
        decay = sc[_DECAY]
        step_size = as_compute(key_step[key], sc)
        count = units[u, U_COUNT]
        if keys[key, K_FACTORED] == 0:
            first = units[u, U_FIRST]
            p = array_at(param_base[key] + first * p_size, count, p_like)
            g = array_at(grad_base[key] + first * p_size, count, p_like)
            v = variance[keys[key, K_VAR_OFF] + first : keys[key, K_VAR_OFF] + first + count]
            for i in range(count):
                gi = clamp_and_scale(g[i], sc, clip, grad_scale)
                vi = lerp(as_compute(v[i], sc), gi * gi, w, one_minus_w)
                v[i] = vi
                ui = vector_direction(gi, vi, eps1_squared)
                p[i] = as_compute(p[i], sc) * decay + step_size * ui
        else:
            n, m = keys[key, K_N], keys[key, K_M]
            b = units[u, U_MATRIX]
            first = b * n + units[u, U_FIRST]
            p = array_at(param_base[key] + first * m * p_size, count * m, p_like)
            g = array_at(grad_base[key] + first * m * p_size, count * m, p_like)
            col_first = keys[key, K_COL_OFF] + b * m
            cols, inverses = col_roots[col_first : col_first + m], col_inverses[col_first : col_first + m]
            for r in range(count):
                row = keys[key, K_FIRST_ROW] + first + r
                row_root, row_inverse = row_roots[row], row_inverses[row]
                pr = p[r * m : (r + 1) * m]
                gr = g[r * m : (r + 1) * m]
                for j in range(m):
                    gj = clamp_and_scale(gr[j], sc, clip, grad_scale)
                    uj = factored_direction(gj, row_root, row_inverse, cols[j], inverses[j], eps1, inverse_eps1)
                    pr[j] = as_compute(pr[j], sc) * decay + step_size * uj
    step[0] += 1
    return -1


# -- the kernel's tables, and the rule ------------------------------------------------------


class _Tables:
    """One plan's work units and scratch (float64) for the kernel above."""

    def __init__(self, layout, key_group, layouts, compute):
        row_offsets, col_offsets = layouts["row_var"].offsets, layouts["col_var"].offsets
        var_offsets = layouts["variance"].offsets
        keys, units, matrices = [], [], []
        n_rows = colpart = 0
        widest = 1
        for k, (shape, size) in enumerate(zip(layout.shapes, layout.sizes)):
            first_unit = len(units)
            group = int(key_group[k])
            if len(shape) >= 2:
                n, m = shape[-2], shape[-1]
                if size:
                    chunk = rows_per_chunk(m)
                    for b in range(size // (n * m)):
                        first_of_matrix = len(units)
                        for r in range(0, n, chunk):
                            units.append((k, b, r, min(chunk, n - r), colpart, len(matrices)))
                            colpart += m
                        matrices.append((k, b, first_of_matrix, len(units) - first_of_matrix))
                    widest = max(widest, -(-m // BLOCK))
                keys.append((1, group, n, m, size, row_offsets[k], col_offsets[k], 0, n_rows, first_unit,
                             len(units) - first_unit))
                n_rows += size // m if size else 0
            else:
                for first in range(0, size, BLOCK):
                    units.append((k, 0, first, min(BLOCK, size - first), 0, 0))
                keys.append((0, group, 0, 0, size, 0, 0, var_offsets[k], 0, first_unit, len(units) - first_unit))
        self.keys = np.array(keys, np.int64).reshape(len(keys), 11)
        self.units = np.array(units, np.int64).reshape(len(units), 6)
        self.matrices = np.array(matrices, np.int64).reshape(len(matrices), 4)
        self.row_sums = np.zeros((n_rows, 3))
        self.unit_sums = np.zeros((len(units), 2))
        self.colpart = np.zeros(colpart)
        # In the arithmetic dtype: sqrt(R / max(mean(R), eps1)), sqrt(C), and their inverses.
        self.row_roots, self.row_inverses = np.zeros(n_rows, compute), np.zeros(n_rows, compute)
        n_cols = layouts["col_var"].total
        self.col_roots, self.col_inverses = np.zeros(n_cols, compute), np.zeros(n_cols, compute)
        self.key_step = np.zeros(len(keys))
        self.widest = np.array([widest], np.int64)


def _with_globals(function, namespace: dict, name: str):
    clone = types.FunctionType(function.__code__, namespace, name, function.__defaults__)
    clone.__qualname__ = name
    clone.__module__ = __name__
    return clone


_HELPERS = (lerp, clamp_and_scale, clip_of, eps1_floors, squares_of_run, factored_direction, vector_direction,
            norms_of_row, norms_of_vector)


def _build_kernel() -> Kernel:
    digest = hashlib.sha256("".join(
        _jit._file_digest(f) for f in (_jit.__file__, _plan.__file__, _reduce.__file__, inspect.getsourcefile(scalars))
    ).encode()).hexdigest()[:10]
    constants = {n: v for n, v in globals().items() if n.isupper() and isinstance(v, int)}

    def namespace(compiled: bool) -> dict:
        ns = dict(constants, np=np, array_at=array_at, as_compute=as_compute, nan_maximum=nan_maximum,
                  machine_eps=machine_eps)
        if compiled:
            ns.update(prange=numba.prange, check_and_bind=_plan.check_and_bind_compiled,
                      pairwise=_reduce._pairwise_in_place, pair_rounds=_reduce.pair_rounds, lane_sum=_reduce.lane_sum,
                      lane_sum_of_squares=_reduce.lane_sum_of_squares)
        else:
            ns.update(prange=range, check_and_bind=_plan.check_and_bind, pairwise=_reduce._pairwise_in_place.py_func,
                      pair_rounds=_reduce.pair_rounds.py_func,
                      lane_sum=_reduce.lane_sum, lane_sum_of_squares=_reduce.lane_sum_of_squares)
        # Plain functions that LLVM inlines: Numba's IR inlining (inline="always")
        # of a helper that calls as_compute kept the loops scalar (3x slower).
        inline = numba.njit(**NUMBA_FLAGS) if compiled else (lambda f: f)
        for helper in _HELPERS:
            ns[helper.__name__] = inline(_with_globals(helper, ns, helper.__name__))
        return ns

    def variant(name: str):
        return _with_globals(adafactor_kernel, namespace(name != "interpreted"), f"adafactor_kernel_{name}_{digest}")

    return Kernel(
        name="Adafactor",
        py_func=variant("interpreted"),
        serial=_jit._jit(variant("serial"), parallel=False),
        parallel=_jit._jit(variant("parallel"), parallel=True),
    )


class FactoredMath(RuleMath):
    """Adafactor's math: no per-element update the engine's loop could run
    (its state is not shaped like the params and its step needs three
    reductions in turn), so it brings its own kernel and binds it to a plan
    itself; everything else - validation, plans, the prologue's scalars,
    groups, schedules, clipping, checkpoints - is the engine's."""

    def __init__(self):
        self.name = "Adafactor"
        self.carry = self.direction = self.trust_ratio = self.nan_update = self.update = None
        self.state_shape = state_shape
        self.state_names = ("row_var", "col_var", "variance")
        self.Scalars = Scalars
        self.scalar_names = tuple(Scalars._fields)
        self.scalars = scalars
        self.depends_on_step = True
        self.coupled_decay = None
        self.width = len(_jit.PROLOGUE) + len(self.scalar_names)
        self._kernel = None

    @property
    def kernel(self) -> Kernel:
        if self._kernel is None:
            self._kernel = _build_kernel()
        return self._kernel

    #: For matrices: the grads read for the factors, params and grads read
    #: for the norms, then read again for the update, which writes the params
    #: (the factors are a row and a column per matrix).  A vector's passes
    #: also read its variance twice and write it once: ((3, 0), (3, 2)).
    passes = ((1, 0), (2, 0), (2, 1))

    #: Its own kernel writes no low-precision copies.
    supports_copies = False

    def low_precision_error(self, state_format: str) -> str:
        return ("Adafactor keeps its state in float (its factored second moments are already a row and a "
                "column per matrix; its own kernel reads no low-precision state)")

    def bind(self, runner, plan, kernel, scalars_, state, state_dtype) -> None:
        layout = plan.layout
        tables = _Tables(layout, plan.key_group, state.layouts_for(layout, state_dtype),
                         np.result_type(layout.dtype, state_dtype))
        buffers = state.buffers
        args = (plan.table, scalars_.table, state.step, np.empty(0, layout.dtype), plan.block, tables.keys,
                tables.units, tables.matrices, plan.param_base, plan.grad_base, buffers["row_var"],
                buffers["col_var"], buffers["variance"], tables.row_sums, tables.unit_sums, tables.colpart,
                tables.row_roots, tables.row_inverses, tables.col_roots, tables.col_inverses, tables.key_step,
                tables.widest)
        key = (kernel.name, layout.dtype.str, np.dtype(state_dtype).str, layout.total.bit_length())
        plan.run = runner.choose(kernel.serial, kernel.parallel, args, layout.total, key)
        plan.tables = tables


MATH = FactoredMath()


class Adafactor(AdafactorHyperparameters, Optimizer):
    __doc__ = __doc__
    math = MATH
