"""The one place that decides how fastopt compiles its kernels.

Every rule kernel runs one whole update in one call.  It takes a *segment
table* - one row per contiguous run of elements: its length, then the
addresses of that run in the params, the grads and each state buffer - and
loops over the rows with ``numba.prange``, and over each row's elements with
a plain loop.  A dict of a dozen arrays, an arena, or one array are all one
call: no per-key dispatch, threads shared across keys, and nothing a
``KeyboardInterrupt`` can split (the kernel also advances the step counter).
:func:`kernel` compiles each such function twice: a serial variant (``prange``
acts as ``range``) and a ``parallel=True`` variant; the facade picks one by
size.

The flags and why:

* ``error_model="numpy"``: division and sqrt follow IEEE semantics instead of
  raising ``ZeroDivisionError``; with the default ("python") model the extra
  checks stop LLVM from vectorising and the division rules run 3-8x slower.
* no ``fastmath``: fast-math lets LLVM contract ``a * b + c`` into an FMA and
  reassociate, which changes rounding.  The kernels promise bit-for-bit
  agreement with the NumPy reference, and at large sizes the work is
  memory-bound anyway.
* ``nogil=True``: kernels touch no Python objects, so other Python threads run
  while a step is computed.
* ``cache=True`` only where Numba finds a writable cache directory; otherwise
  the kernels compile in memory and ``import fastopt`` still works.

Numba's cache index does not record the ``parallel`` flag, and it notices
edits to a kernel's own file only - not to helpers such as :func:`array_at`
in this one.  So each variant is compiled from a copy of the function whose
qualified name carries the variant and a digest of this file: a changed
helper means new cache entries, never stale machine code.
"""

from __future__ import annotations

import ctypes
import hashlib
import os
import threading
import types
import weakref
from time import perf_counter as _perf_counter
from dataclasses import dataclass
from typing import Callable

# After each parallel region, OpenMP workers spin waiting for more work: with
# GNU OpenMP's default (300,000 spins, milliseconds) a book-style training
# loop ran 2.4x slower in total on a 2-core machine, because the spinning
# workers fought NumPy's BLAS threads for the cores during the forward and
# backward passes.  Never spinning (OMP_WAIT_POLICY=PASSIVE) cost ~80 us to
# wake the workers on every parallel call.  10,000 spins keeps back-to-back
# parallel calls at ~2 us and lets the workers sleep before the next matmul.
# A value the user set wins; it must be in place before Numba first loads its
# OpenMP layer, and it applies to every GNU OpenMP runtime started later in
# this process.
os.environ.setdefault("GOMP_SPINCOUNT", "10000")

import numba  # noqa: E402
import numpy as np  # noqa: E402
from numba import types as nbtypes  # noqa: E402
from numba.core import cgutils  # noqa: E402
from numba.extending import intrinsic, overload  # noqa: E402

_HELPERS_DIGEST = hashlib.sha256(open(__file__, "rb").read()).hexdigest()[:10]

NUMBA_FLAGS = dict(nogil=True, error_model="numpy", fastmath=False)


def _jit(py_func: Callable, parallel: bool) -> numba.core.registry.CPUDispatcher:
    try:
        return numba.njit(parallel=parallel, cache=True, **NUMBA_FLAGS)(py_func)
    except RuntimeError:
        # "cannot cache function ...: no locator available": no writable
        # __pycache__, NUMBA_CACHE_DIR or user cache directory.
        return numba.njit(parallel=parallel, cache=False, **NUMBA_FLAGS)(py_func)


def _renamed_copy(py_func: Callable, suffix: str) -> Callable:
    clone = types.FunctionType(
        py_func.__code__,
        py_func.__globals__,
        py_func.__name__ + suffix,
        py_func.__defaults__,
        py_func.__closure__,
    )
    clone.__qualname__ = py_func.__qualname__ + suffix
    clone.__module__ = py_func.__module__
    clone.__doc__ = py_func.__doc__
    return clone


@dataclass(frozen=True)
class Kernel:
    """A rule's loop, compiled serial and parallel."""

    py_func: Callable
    serial: numba.core.registry.CPUDispatcher
    parallel: numba.core.registry.CPUDispatcher

    @property
    def name(self) -> str:
        return self.py_func.__name__

    def variants(self):
        return (self.serial, self.parallel)


def bound_call(dispatcher, args: tuple):
    """The cheapest callable that runs ``dispatcher(*args)`` for these exact objects.

    A Numba dispatcher works out the argument types on every call (about
    150 ns for a kernel's five arrays, most of a small update's budget).  Once
    it has compiled for ``args``, the compiled entry point can be called
    directly.  The entry point does not check types, so this is only for
    argument objects whose types cannot change: the facade's own 1-D views and
    buffers, which it re-validates through their owners on every call.
    Falls back to the dispatcher when Numba does not expose the overload.
    """
    try:
        signature = tuple(dispatcher.typeof_pyval(a) for a in args)
        dispatcher.compile(signature)  # or load it from the cache; runs nothing
        entry_point = dispatcher.overloads[signature].entry_point
    except (AttributeError, KeyError):
        return dispatcher
    return entry_point if callable(entry_point) else dispatcher


def kernel(py_func: Callable) -> Kernel:
    """Compile ``py_func`` (a ``prange`` loop) as a serial and a parallel kernel."""
    return Kernel(
        py_func=py_func,
        serial=_jit(_renamed_copy(py_func, f"_serial_{_HELPERS_DIGEST}"), parallel=False),
        parallel=_jit(_renamed_copy(py_func, f"_parallel_{_HELPERS_DIGEST}"), parallel=True),
    )


# -- threads and fork -------------------------------------------------------------
#
# Numba's threading layers differ (numba.readthedocs.io, "The Threading
# Layers"): "tbb" is safe with threads and fork; "omp" with GNU OpenMP (what
# Numba uses on Linux when TBB is not installed) is thread-safe, but a child
# forked after a parallel region aborts ("Terminating: fork() called from a
# process already using GNU OpenMP") when it starts another; "workqueue"
# aborts when two threads launch parallel regions at once.  fastopt's policy,
# whatever layer Numba picks:
#
# * parallel kernels run one at a time in a process, under one lock: Python
#   threads that each step their own optimizer never launch two at once.  A
#   parallel kernel already uses every core, so nothing is lost;
# * a child forked after GNU OpenMP started uses the serial kernels: the same
#   results, on one core, instead of an abort.


class _ParallelPolicy:
    def __init__(self):
        self.lock = threading.Lock()
        self.usable = True
        #: Optimizers whose prepared calls must be dropped after a fork.
        self.optimizers = weakref.WeakSet()

    def after_fork_in_child(self):
        self.lock = threading.Lock()  # the parent's may have been held by another thread
        try:
            layer = numba.threading_layer()
        except ValueError:
            return  # no parallel region ran in the parent: the child starts its own
        if layer == "omp" and _openmp_vendor() == "GNU":
            self.usable = False
            for optimizer in list(self.optimizers):
                optimizer._forget_kernel_choice()


def _openmp_vendor():
    try:
        from numba.np.ufunc import omppool

        return getattr(omppool, "openmp_vendor", "GNU")
    except ImportError:
        return None


PARALLEL = _ParallelPolicy()
if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=PARALLEL.after_fork_in_child)


def serialized(call: Callable) -> Callable:
    """``call`` (a parallel kernel) run under the process-wide parallel lock."""

    def run_alone(*args):
        with PARALLEL.lock:
            return call(*args)

    return run_alone


class FasterOf:
    """Runs whichever of two equivalent kernels has been faster lately.

    The serial and parallel kernels give bitwise identical results, but which
    one is faster depends on what else holds the cores: back to back, the
    parallel kernel wins from a few ten thousand elements; in a training loop,
    the threads of NumPy's BLAS keep spinning after each matrix product, and
    on a small machine the parallel kernel then loses at every size (measured
    on 2 cores with a 128x512x512 matmul between updates: serial 446 us,
    parallel 724 us at 3e5 elements).  So calls are timed: each kernel runs
    ``WINDOW`` calls in a row at first, then the faster one runs, and after a
    while the other gets ``WINDOW`` calls in a row again.  Each is judged by
    the fastest of its last ``WINDOW`` timings - noise only ever adds time, and
    the first call of a run may have to wake sleeping threads.  A re-run
    that confirms the choice doubles the wait before the next (from
    ``PROBE_EVERY`` up to ``MAX_PROBE_EVERY`` calls); one that overturns it
    resets the wait.  Timing costs ~0.1 us, next to kernels of 10 us and more
    at the sizes where the parallel kernel is considered at all.
    """

    PROBE_EVERY = 32
    MAX_PROBE_EVERY = 1024
    WINDOW = 3

    __slots__ = ("calls", "bound", "recent", "choice", "probe_every", "next_probe", "probing")

    def __init__(self, serial: Callable, parallel: Callable[[], Callable]):
        """``parallel`` makes the parallel call when first needed (it compiles)."""
        self.calls = [serial, parallel]
        self.bound = False
        self.recent = ([], [])
        self.choice = 0
        self.probe_every = self.PROBE_EVERY
        self.next_probe = self.probe_every
        # Calls left in the current run of the other kernel; the first runs
        # time the parallel kernel after WINDOW serial calls.
        self.probing = -self.WINDOW

    def __call__(self, *args):
        probing = self.probing
        if probing < 0:  # the first WINDOW calls: serial
            which = 0
        elif probing > 0:
            which = 1 - self.choice
        else:
            which = self.choice
        if which and not self.bound:
            self.calls[1] = self.calls[1]()
            self.bound = True
        start = _perf_counter()
        self.calls[which](*args)
        elapsed = _perf_counter() - start
        recent = self.recent[which]
        recent.append(elapsed)
        if len(recent) > self.WINDOW:
            del recent[0]
        if probing < 0:
            self.probing = probing + 1 or self.WINDOW
        elif probing > 0:
            self.probing = probing - 1
            if probing == 1:  # a run of the other kernel just ended: decide again
                serial, parallel = self.recent
                choice = 0 if min(serial) <= min(parallel) else 1
                if choice == self.choice:
                    self.probe_every = min(2 * self.probe_every, self.MAX_PROBE_EVERY)
                else:
                    self.probe_every = self.PROBE_EVERY
                self.choice = choice
                self.next_probe = self.probe_every
        else:
            self.next_probe -= 1
            if self.next_probe <= 0:
                self.probing = self.WINDOW


# -- segment tables -------------------------------------------------------------

#: Column 0 of a segment table is the run's length; then one address per array.
LENGTH = 0


def array_at(address, size, like):
    """The ``size`` elements of ``like``'s dtype at ``address``, as a 1-D array.

    No copy and no ownership: the caller keeps the memory alive.  This Python
    version serves the interpreter (tests run the kernel bodies uncompiled);
    compiled kernels use the overload below.
    """
    ctype = np.ctypeslib.as_ctypes_type(like.dtype)
    return np.ctypeslib.as_array(ctypes.cast(int(address), ctypes.POINTER(ctype)), (int(size),))


@intrinsic
def _void_pointer(typingctx, address):
    if not isinstance(address, nbtypes.Integer):
        return None

    def codegen(context, builder, signature, args):
        return builder.inttoptr(args[0], cgutils.voidptr_t)

    return nbtypes.voidptr(address), codegen


@overload(array_at)
def _array_at(address, size, like):
    dtype = like.dtype

    def impl(address, size, like):
        return numba.carray(_void_pointer(address), size, dtype)

    return impl


def helper(py_func: Callable) -> numba.core.registry.CPUDispatcher:
    """Compile a small serial helper that the Python facade calls (never a kernel)."""
    return _jit(py_func, parallel=False)



# -- the non-finite check -----------------------------------------------------


def exponent_bits(values):
    """``values`` seen as integers, and the mask of a float's exponent field.

    A float is non-finite exactly when all its exponent bits are set.  This
    Python version serves the interpreter; compiled code uses the overload.
    """
    if values.dtype == np.float32:
        return values.view(np.int32), np.int32(0x7F800000)
    return values.view(np.int64), np.int64(0x7FF0000000000000)


@overload(exponent_bits)
def _exponent_bits(values):
    if values.dtype == nbtypes.float32:
        return lambda values: (values.view(np.int32), np.int32(0x7F800000))
    return lambda values: (values.view(np.int64), np.int64(0x7FF0000000000000))


def _find_nonfinite(table, like):
    """Index of the first row whose grads hold a nan or inf, or -1.

    The largest exponent field of a row is an integer max, which vectorises
    (an early exit or a float reduction would not).  Every row is checked, in
    parallel when compiled so; the answer is the lowest such row, whatever the
    thread count.
    """
    bad = np.zeros(table.shape[0], np.bool_)
    for row in numba.prange(table.shape[0]):
        bits, mask = exponent_bits(array_at(table[row, 2], table[row, 0], like))
        top = mask & 0
        for i in range(bits.size):
            exponent = bits[i] & mask
            if exponent > top:
                top = exponent
        bad[row] = top == mask
    for row in range(bad.size):
        if bad[row]:
            return row
    return -1


_NONFINITE = kernel(_find_nonfinite)


def nonfinite_finder(parallel: bool) -> Callable:
    """The non-finite check, parallel (under the parallel lock) or serial."""
    if parallel:
        return serialized(_NONFINITE.parallel)
    return _NONFINITE.serial
