"""The roof: a case's memory traffic with trivial arithmetic.

One roof kernel per pass the rule makes over memory (``RuleMath.passes``:
params and state read and written and grads read; a trust-ratio rule's norm
pass and Adafactor's sums as read-only passes), over arrays of the dtypes the
case stores (bfloat16 bits, int8 codes), compiled with fastopt's own Numba
flags; the faster of its serial and parallel variants is what this machine
gives that traffic.  "% of roof" is roof time / fastopt time.
"""

from __future__ import annotations

import numpy as np
from numba import prange

try:  # fastopt's flags, so the roof is compiled as the kernels are
    from fastopt._jit import _jit, _renamed_copy
except ImportError:  # a commit before them (asv measures old commits too)
    import numba

    def _jit(py_func, parallel):
        return numba.njit(parallel=parallel, cache=True, nogil=True, error_model="numpy")(py_func)

    def _renamed_copy(py_func, suffix):
        import types

        clone = types.FunctionType(py_func.__code__, py_func.__globals__, py_func.__name__ + suffix,
                                   py_func.__defaults__, py_func.__closure__)
        clone.__qualname__ = py_func.__qualname__ + suffix
        return clone

VARIANTS = ("serial", "parallel")


class RoofKernel:
    """A harness-only kernel compiled twice: ``serial`` and ``parallel``, each
    under a name of its own (Numba's cache index ignores ``parallel``)."""

    def __init__(self, py_func):
        self.py_func = py_func
        self.serial = _jit(_renamed_copy(py_func, "_serial"), parallel=False)
        self.parallel = _jit(_renamed_copy(py_func, "_parallel"), parallel=True)


@RoofKernel
def roof_no_state(p, g):
    for i in prange(p.size):
        p[i] = p[i] + g[i]


@RoofKernel
def roof_one_state(p, g, a):
    for i in prange(p.size):
        ai = a[i] + g[i]
        a[i] = ai
        p[i] = p[i] + ai


@RoofKernel
def roof_two_states(p, g, a, b):
    for i in prange(p.size):
        ai = a[i] + g[i]
        bi = b[i] + g[i]
        a[i] = ai
        b[i] = bi
        p[i] = p[i] + ai + bi


#: Update passes by the number of state buffers written besides the params.
WRITE_ROOFS = (roof_no_state, roof_one_state, roof_two_states)


# A read-only roof takes the max, not the sum: without fastmath a float sum
# is one chain of dependent adds that LLVM may not reorder, which ran at
# 40% of the bandwidth (a max vectorises), and would have flattered the
# rules' norm passes.


@RoofKernel
def roof_read_one(a):
    top = a.dtype.type(0)
    for i in prange(a.size):
        top = max(top, a[i])
    return top


@RoofKernel
def roof_read_two(a, b):
    top = a.dtype.type(0)
    for i in prange(a.size):
        top = max(top, a[i] + b[i])
    return top


@RoofKernel
def roof_read_three(a, b, c):
    top = a.dtype.type(0)
    for i in prange(a.size):
        top = max(top, a[i] + b[i] + c[i])
    return top


@RoofKernel
def roof_read_four(a, b, c, d):
    top = a.dtype.type(0)
    for i in prange(a.size):
        top = max(top, a[i] + b[i] + c[i] + d[i])
    return top


#: Read-only passes (a trust ratio's norms, Adafactor's sums, clip_norm's norm), by arrays read.
READ_ROOFS = {1: roof_read_one, 2: roof_read_two, 3: roof_read_three, 4: roof_read_four}

#: The stored dtype of a state buffer per state format (the int8 absmax,
#: 1.6% of an int8 state's bytes, is left out of the roof).
STORED = {"float32": np.float32, "bfloat16": np.uint16, "int8": np.uint8}


def make_roofs(passes, n: int, state_format: str = "float32", norm_pass: bool = False) -> dict:
    """One update's traffic, {"roof-serial": ..., "roof-parallel": ...}: a roof
    kernel per pass, run one after the other over ``n``-element params, grads
    and state buffers (``norm_pass``: first a read of the grads, as
    clip_norm's global norm).  The two variants share their arrays."""
    rng = np.random.default_rng(1)
    p = rng.standard_normal(n, dtype=np.float32)
    g = rng.standard_normal(n, dtype=np.float32) * np.float32(1e-3)
    n_arrays = max(read for read, _ in passes)
    arrays = [p, g] + [np.zeros(n, STORED[state_format]) for _ in range(max(0, n_arrays - 2))]
    return {f"roof-{variant}": _roof(passes, arrays, variant, norm_pass) for variant in VARIANTS}


def _roof(passes, arrays, variant: str, norm_pass: bool):
    g = arrays[1]
    calls = [(getattr(READ_ROOFS[1], variant), [g])] if norm_pass else []
    for read, written in passes:
        if written == 0:
            calls.append((getattr(READ_ROOFS[read], variant), arrays[:read]))
        else:
            assert read == written + 1, (read, written)
            calls.append((getattr(WRITE_ROOFS[written - 1], variant), arrays[:read]))
    if len(calls) == 1:
        fn, args = calls[0]
        return lambda: fn(*args)

    def roof():
        for fn, args in calls:
            fn(*args)

    return roof


def bytes_per_element(passes, state_format: str = "float32", norm_pass: bool = False, itemsize: int = 4) -> float:
    """Bytes one update moves per element: in each pass the arrays read
    (params, grads, state) and written (params, state), the state in its
    stored form (int8: a code plus 4 bytes of absmax per 256 elements)."""
    per_state = {"float32": float(itemsize), "bfloat16": 2.0, "int8": 1.0 + 4.0 / 256}[state_format]
    total = float(itemsize) if norm_pass else 0.0
    for read, written in passes:
        total += min(read, 2) * itemsize + max(read - 2, 0) * per_state
        total += min(written, 1) * itemsize + max(written - 1, 0) * per_state
    return total
