"""The one place that decides how fastopt compiles its kernels.

A rule supplies only its math (see :class:`RuleMath`): named scalars and a
per-element update.  This module owns everything around it - the loop
skeleton, the gradient prologue, the Numba flags, the cache, serial and
parallel variants, threads and fork.

**The kernel interface.**  Every update is one call of a generated kernel::

    kernel(block, p_like, s_like, c_like) -> -1, or a key index

``block`` (int64, see :mod:`fastopt._plan`) gives the addresses and shapes
of the kernel's arrays, and the check below.  ``table`` is the *segment
table*, one row per contiguous run of elements: ``LENGTH, GROUP, PARAM, GRAD,
STATE...`` - the run's length, its group (a row of ``scalars``), then the
run's address in the params, the grads and each state buffer.  ``scalars``
is 2-D, ``[group, name]``, in the *arithmetic dtype* (the wider of the
params' and the state's); ``step`` is the one-word step counter.
``p_like``, ``s_like`` and ``c_like`` are NumPy scalars (zeros) whose types
are the params', the state's and the arithmetic dtype, so each buffer is read
and written in its own dtype.  One array and three scalars: each array a
compiled function takes costs the call ~25 ns to unbox, a scalar ~10.  The
kernel loops over the rows with ``prange`` and over each row's elements
with a plain loop, and advances the step counter, so a dict of arrays is one
call and nothing can split a step.
First, serially, it runs :func:`fastopt._plan.check_and_bind` on ``block``:
the check that this call's arrays are the validated ones (and the writing of
the grads' addresses into the table); when it fails the kernel returns the
key's index having written nothing, and the facade validates fully.
A kernel made by :meth:`RuleMath.copying_kernel` has one more column, the
address of a uint16 array that receives each new param's bfloat16 bits in
the same pass (:meth:`fastopt.Optimizer.update_and_copy`).  For state kept
as bfloat16 bits or int8 codes (``state_dtype=``), :meth:`RuleMath.kernel_for`
makes the tiled variant: ``s_like`` is uint16 or uint8, and int8 state has
one more column per state buffer, the address of its blocks' float32 absmax.

**The prologue** (the engine's, identical for every rule, in this order):
clamp to ``[-clip_value, clip_value]`` (when ``clip_value > 0``), multiply
by ``grad_scale`` (the clip-norm coefficient, negated for ``maximize``;
``x * 1.0`` is exact, and IEEE rounding is symmetric in sign), then add
``coupled_decay * p`` (when not 0).  The rule's update then gets ``p`` and
``g`` already in the arithmetic dtype.

**Generated, not chained.**  The kernel is generated from source text when a
rule is defined: the skeleton, the prologue and the rule's update inlined
into one loop, so one pass over memory does everything in a fixed operation
order.  The text is compiled with this file as its file name, so Numba's
on-disk cache works for it; its qualified name carries the rule, the
variant and a digest of this file and the rule's file, so an edit to either
means new cache entries, never stale machine code.

The flags and why:

* ``error_model="numpy"``: division and sqrt follow IEEE semantics instead of
  raising ``ZeroDivisionError``; with the default ("python") model the extra
  checks stop LLVM from vectorising and the division rules run 3-8x slower.
* no ``fastmath``: fast-math lets LLVM contract ``a * b + c`` into an FMA and
  reassociate, which changes rounding.  The kernels promise bit-for-bit
  agreement with the NumPy reference.
* ``nogil=True``: kernels touch no Python objects, and other threads run
  while a large update does.  The small helpers (the compiled scalars, the
  bind check) keep the GIL: releasing it costs more than they run.
* ``cache=True`` only where Numba finds a writable cache directory; otherwise
  the kernels compile in memory and ``import fastopt`` still works.
"""

from __future__ import annotations

import ctypes
import dis
import functools
import hashlib
import inspect
import os
import signal
import textwrap
import threading
import types
import warnings
import weakref
from dataclasses import dataclass
from time import perf_counter as _perf_counter
from typing import Callable

# After each parallel region, OpenMP workers spin waiting for more work: with
# GNU OpenMP's default (300,000 spins, milliseconds) a book-style training
# loop ran 2.4x slower in total on a 2-core machine, because the spinning
# workers fought NumPy's BLAS threads for the cores during the forward and
# backward passes.  Never spinning (OMP_WAIT_POLICY=PASSIVE) cost ~80 us to
# wake the workers on every parallel call.  10,000 spins keeps back-to-back
# parallel calls at ~2 us and lets the workers sleep before the next matmul.
# A value the user set wins; it must be in place before Numba first loads its
# OpenMP layer.
os.environ.setdefault("GOMP_SPINCOUNT", "10000")

import numba  # noqa: E402
import numpy as np  # noqa: E402
from numba import types as nbtypes  # noqa: E402
from numba.core import cgutils  # noqa: E402
from numba.extending import intrinsic, overload  # noqa: E402
from llvmlite import ir as llvm_ir  # noqa: E402


def _file_digest(path: str) -> str:
    with open(path, "rb") as f:
        return hashlib.sha256(f.read()).hexdigest()[:10]


_THIS_FILE = os.path.abspath(__file__)
ENGINE_DIGEST = _file_digest(_THIS_FILE)

NUMBA_FLAGS = dict(nogil=True, error_model="numpy", fastmath=False)

#: Segment table columns.
LENGTH, GROUP, PARAM, GRAD, FIRST_STATE = 0, 1, 2, 3, 4
#: The engine's prologue scalars, first in every row of ``scalars``.
PROLOGUE = ("clip_value", "grad_scale", "coupled_decay")


#: Every dispatcher fastopt made, for recovering from a corrupt cache.
_DISPATCHERS: list = []


def _jit(py_func: Callable, parallel: bool, **options) -> numba.core.registry.CPUDispatcher:
    flags = {**NUMBA_FLAGS, **options}
    try:
        dispatcher = numba.njit(parallel=parallel, cache=True, **flags)(py_func)
    except RuntimeError:
        # "cannot cache function ...: no locator available": no writable
        # __pycache__, NUMBA_CACHE_DIR or user cache directory.
        dispatcher = numba.njit(parallel=parallel, cache=False, **flags)(py_func)
    _DISPATCHERS.append(dispatcher)
    return dispatcher


def _renamed_copy(py_func: Callable, suffix: str) -> Callable:
    """A copy of ``py_func`` under another name: Numba's cache index ignores
    the ``parallel`` flag, so each variant needs a name of its own."""
    clone = types.FunctionType(
        py_func.__code__, py_func.__globals__, py_func.__name__ + suffix,
        py_func.__defaults__, py_func.__closure__,
    )
    clone.__qualname__ = py_func.__qualname__ + suffix
    clone.__module__ = py_func.__module__
    clone.__doc__ = py_func.__doc__
    return clone


def helper(py_func: Callable) -> numba.core.registry.CPUDispatcher:
    """Compile a small serial helper that the Python facade calls (never a
    kernel).  It keeps the GIL: releasing and taking it back costs a call
    ~30-50 ns, more than a helper runs."""
    return _jit(py_func, parallel=False, nogil=False)


def bound_call(dispatcher, args: tuple):
    """The cheapest callable that runs ``dispatcher(*args)`` for these exact objects.

    A Numba dispatcher works out the argument types on every call (about
    150 ns for a kernel's five arrays).  Once it has compiled for ``args``,
    the compiled entry point can be called directly.  The entry point does
    not check types, so this is only for argument objects whose types cannot
    change: the facade's own table, scalars and witnesses.  Falls back to the
    dispatcher when Numba does not expose the overload (or runs uncompiled).
    """
    if not isinstance(dispatcher, numba.core.registry.CPUDispatcher):
        return lambda: dispatcher(*args)
    try:
        signature = tuple(dispatcher.typeof_pyval(a) for a in args)
        load_or_compile(dispatcher, signature)  # or load it from the cache; runs nothing
        entry_point = dispatcher.overloads[signature].entry_point
    except (AttributeError, KeyError):
        return lambda: dispatcher(*args)
    if not callable(entry_point):
        return lambda: dispatcher(*args)
    return functools.partial(entry_point, *args)  # called from C: no Python frame of its own


# -- memory and dtypes inside kernels ---------------------------------------------


def array_at(address, size, like):
    """The ``size`` elements of ``like``'s dtype at ``address``, as a 1-D array
    (``like``: an array or a NumPy scalar).

    No copy and no ownership: the caller keeps the memory alive.  This Python
    version serves the interpreter (tests run the kernel bodies uncompiled);
    compiled kernels use the overload below.
    """
    ctype = np.ctypeslib.as_ctypes_type(like.dtype)
    return np.ctypeslib.as_array(ctypes.cast(int(address), ctypes.POINTER(ctype)), (int(size),))


@intrinsic
def _view_at(typingctx, address, size, like):
    # What numba.carray does, without its overloads: their compiles cost a
    # first compile with an empty cache more than the view costs a call.
    if not isinstance(address, nbtypes.Integer) or not isinstance(size, nbtypes.Integer):
        return None
    dtype = like.dtype if isinstance(like, nbtypes.Array) else like
    view = nbtypes.Array(dtype, 1, "C")

    def codegen(context, builder, signature, args):
        from numba.np.arrayobj import make_array, populate_array  # loaded when first compiling, not at import

        out = make_array(view)(context, builder)
        itemsize = cgutils.intp_t(context.get_abi_sizeof(context.get_data_type(dtype)))
        populate_array(
            out,
            data=builder.inttoptr(args[0], context.get_data_type(dtype).as_pointer()),
            shape=[context.cast(builder, args[1], signature.args[1], nbtypes.intp)],
            strides=[itemsize],
            itemsize=itemsize,
            meminfo=None,  # not memory-managed: the caller keeps the memory alive
        )
        return out._getvalue()

    return view(address, size, like), codegen


@overload(array_at)
def _array_at(address, size, like):
    return lambda address, size, like: _view_at(address, size, like)


def word_at(address):
    """The int64 at ``address`` (no ownership: the caller keeps the memory
    alive).  Python for the interpreter; one load in compiled code."""
    return ctypes.c_int64.from_address(int(address)).value


@intrinsic
def _load_word(typingctx, address):
    if not isinstance(address, nbtypes.Integer):
        return None

    def codegen(context, builder, signature, args):
        return builder.load(builder.inttoptr(args[0], llvm_ir.IntType(64).as_pointer()))

    return nbtypes.int64(address), codegen


@overload(word_at)
def _word_at(address):
    return lambda address: _load_word(address)


def as_compute(x, like):
    """``x`` converted to the arithmetic dtype (``like.dtype``)."""
    return like.dtype.type(x)


@overload(as_compute)
def _as_compute(x, like):
    if like.dtype == nbtypes.float32:
        return lambda x, like: np.float32(x)
    return lambda x, like: np.float64(x)


@numba.extending.register_jitable(inline="always")
def nan_maximum(a, b):
    """``np.maximum`` of two scalars: a nan in either argument wins.

    A plain function for the interpreter (it keeps float32 as float32) and
    inlined into compiled kernels."""
    if a > b or a != a:
        return a
    return b


def sign(x):
    """``np.sign`` of a scalar, in its own dtype: 1, -1, +0 for either zero,
    nan for nan.  NumPy's for the interpreter; the overload below for kernels
    (a literal 1.0 would make float32 arithmetic float64)."""
    return np.sign(x)


@overload(sign, inline="always")
def _sign(x):
    scalar = numba.np.numpy_support.as_dtype(x).type
    one, minus_one = scalar(1), scalar(-1)

    def impl(x):
        if x > 0:
            return one
        if x < 0:
            return minus_one
        return x - x  # +0 for either zero, nan for nan

    return impl


# -- compiling: SIGINT deferred, a corrupt cache recovered ---------------------------


class _DeferredInterrupt:
    def __init__(self):
        self.pending = False

    def __call__(self, signum, frame):
        self.pending = True


class compiling:
    """Defer SIGINT while Numba compiles or loads from its cache.

    An interrupt inside LLVM can crash the process (llvmlite's dispose) or
    leave a dispatcher half-built; deferred, it lands as a KeyboardInterrupt
    (or the caller's own handler) right after the compile.  Only the main
    thread can install signal handlers; elsewhere nothing changes.
    """

    def __enter__(self):
        self.previous = None
        if threading.current_thread() is threading.main_thread():
            self.deferred = _DeferredInterrupt()
            try:
                self.previous = signal.signal(signal.SIGINT, self.deferred)
            except (ValueError, TypeError):
                self.previous = None
        return self

    def __exit__(self, *exc):
        if self.previous is None:
            return False
        signal.signal(signal.SIGINT, self.previous)
        if self.deferred.pending and exc[0] is None:
            if callable(self.previous):
                self.previous(signal.SIGINT, None)
            elif self.previous == signal.SIG_DFL:
                raise KeyboardInterrupt
        return False


def load_or_compile(dispatcher, signature) -> None:
    """Make ``dispatcher`` hold machine code for ``signature``.

    A garbage or truncated cache file makes Numba raise from deep inside
    (``UnpicklingError``, ``EOFError``, ...) on every call in every process.
    Then the cache index of this function is emptied, with a warning naming
    the directory, and the kernel compiles afresh (and is cached again).
    """
    if signature in dispatcher.overloads:
        return
    with compiling():
        try:
            dispatcher.compile(signature)
        except Exception as exc:
            path = getattr(getattr(dispatcher, "_cache", None), "cache_path", None)
            if path is None or type(exc).__module__.startswith("numba"):
                raise
            warnings.warn(
                f"fastopt: a Numba cache entry in {path} is unreadable ({type(exc).__name__}: {exc}) "
                f"while loading {dispatcher.py_func.__qualname__}; recompiling fastopt's kernels",
                RuntimeWarning,
                stacklevel=3,
            )
            # The bad entry may belong to a helper compiled into this kernel:
            # empty the cache index of every fastopt function.
            for other in [dispatcher, *_DISPATCHERS]:
                cache = getattr(other, "_cache", None)
                if getattr(cache, "cache_path", None) is not None:
                    cache.flush()
            dispatcher.compile(signature)


# -- kernels generated from a rule's math ---------------------------------------------


# Every kernel's start: the bind check, then per row its length and its
# group's prologue scalars (the rule's follow in {load_scalars}).
_ROW_HEAD = '''
def {name}(block, p_like, s_like, c_like):
    bad = check_and_bind(block)
    if bad >= 0:
        return bad
    # Flat views and offsets, not reshaped arrays: a reshape took a third
    # of the kernel's compile time.
    width = block[{TABLE_WIDTH}]
    table = array_at(block[{TABLE}], block[{N_ROWS}] * width, block)
    scalars_at = block[{SCALARS}]
    row_bytes = block[{SCALARS_ROW_BYTES}]
    n_scalars = block[{SCALARS_WIDTH}]
    for row in prange(block[{N_ROWS}]):
        at = row * width
        n = table[at + {LENGTH}]
        sc = array_at(scalars_at + table[at + {GROUP}] * row_bytes, n_scalars, c_like)
        clip_value = sc[0]
        grad_scale = sc[1]
        coupled_decay = sc[2]
{load_scalars}
'''

_SKELETON = _ROW_HEAD + '''        p = array_at(table[at + {PARAM}], n, p_like)
        g = array_at(table[at + {GRAD}], n, p_like)
{load_state}{load_copy}
{loops}
    array_at(block[{STEP}], 1, block)[0] += 1
    return -1
'''

# State stored in a low-precision format (bfloat16 bits, int8 codes) goes
# through tiles of BLOCK elements, and the rule's update runs on float
# scratch arrays of one tile as it would on float state: bfloat16 is
# converted element by element inside the update's loop; an int8 tile - one
# quantization block - is decoded before the loop and requantized after it.
# One pass over memory, the tile in L1.
_TILED_SKELETON = _ROW_HEAD + '''        row_p = array_at(table[at + {PARAM}], n, p_like)
        row_g = array_at(table[at + {GRAD}], n, p_like)
{load_state}{load_copy}
        for start in range(0, n, BLOCK):
            tile = min(BLOCK, n - start)
            p = row_p[start:start + tile]
            g = row_g[start:start + tile]
{tile_copy}{decode}
{loops}
{encode}
    array_at(block[{STEP}], 1, block)[0] += 1
    return -1
'''

# The gradient prologue, one text wherever the engine runs a rule's update
# (the kernels, the norm pre-pass, fastopt._floats for Python floats), so
# that every path does the same operations in the same order.
GRAD_PROLOGUE = '''if clip_value > 0:
    if {g} > clip_value:
        {g} = clip_value
    elif {g} < -clip_value:
        {g} = -clip_value
{g} = {g} * grad_scale
if coupled_decay != 0:
    {g} = {g} + coupled_decay * {p}
'''

_ELEMENT_LOOP = '''for i in range({count}):{decode_element}
    pi = as_compute(p[i], sc)
    gi = as_compute(g[i], sc)
''' + textwrap.indent(GRAD_PROLOGUE.format(g="gi", p="pi"), "    ") + '''    p[i] = {update}(pi, gi, i{state_args}{scalar_args}){store_copy}{encode_element}'''

# The loop without the clamp and the coupled decay (both off), the same
# operations as _ELEMENT_LOOP then does.
_PLAIN_ELEMENT_LOOP = '''for i in range({count}):{decode_element}
    pi = as_compute(p[i], sc)
    gi = as_compute(g[i], sc) * grad_scale
    p[i] = {update}(pi, gi, i{state_args}{scalar_args}){store_copy}{encode_element}'''

# A kernel that also writes a low-precision copy of each new param (the
# bf16/fp16 params of a model whose float32 masters these are) stores it
# right after the param, from the stored float32 value, in the same pass.
_STORE_COPY = """
    copy[i] = to_bits(float32_bits(p[i]))"""

# With the copy's store in the loop LLVM no longer unswitched the prologue's
# branches (1.8x slower at 1e6 elements): the choice is made once per row.
_SPLIT_LOOPS = '''if clip_value > 0 or coupled_decay != 0:
{loop}
else:
{plain_loop}'''

# A trust-ratio rule's rows whose ratio is nan run its nan_update instead: a
# branch on the ratio inside the element loop kept LLVM from vectorising it
# (3-4x slower), so the choice is made once per row - and then so is the
# prologue's (with three loops in the row LLVM no longer unswitched it: 2x).
_TRUST_RATIO_LOOPS = '''if trust_ratio != trust_ratio:
{nan_loop}
elif clip_value > 0 or coupled_decay != 0:
{loop}
else:
{plain_loop}'''


_NORMS_SKELETON = '''
def {name}(blocks, bases, grad_base, scalars, p_like, s_like, p_sums, u_sums, p_key_sums, u_key_sums):
    p_size = p_like.itemsize
    s_size = s_like.itemsize
    n_blocks = blocks.shape[0]
    for b in prange(n_blocks):
        key = blocks[b, 0]
        first = blocks[b, 1]
        n = blocks[b, 2]
        sc = scalars[key]
        clip_value = sc[0]
        grad_scale = sc[1]
        coupled_decay = sc[2]
{load_scalars}
        p = array_at(bases[key, 0] + first * p_size, n, p_like)
        g = array_at(grad_base[key] + first * p_size, n, p_like)
{load_state}
        # The squares go to scratch first, in a loop without a carried
        # dependence that LLVM vectorises, then into the lanes (see
        # fastopt._reduce.lane_sum); computing the direction and adding to
        # the lanes in one loop kept its sqrt and division scalar (3x).  The
        # prologue's branches are taken outside the loop, else it stays scalar.
        p_squares = np.empty(n)
        u_squares = np.empty(n)
        if clip_value > 0 or coupled_decay != 0:
            for i in range(n):
{element}
        else:
            for i in range(n):
{plain}
        p_sums[b] = lane_sum(p_squares, n)
        u_sums[b] = lane_sum(u_squares, n)
    combine_by_key(blocks, p_sums, p_key_sums)
    combine_by_key(blocks, u_sums, u_key_sums)
'''

_NORMS_ELEMENT = '''pi = as_compute(p[i], sc)
gi = as_compute(g[i], sc)
''' + GRAD_PROLOGUE.format(g="gi", p="pi") + '''u = np.float64(direction(pi, gi, i{state_args}{scalar_args}))
x = np.float64(pi)
p_squares[i] = x * x
u_squares[i] = u * u'''

# The element without the clamp and the coupled decay (both off): the same
# operations as _NORMS_ELEMENT then does.
_NORMS_PLAIN_ELEMENT = '''pi = as_compute(p[i], sc)
gi = as_compute(g[i], sc) * grad_scale
u = np.float64(direction(pi, gi, i{state_args}{scalar_args}))
x = np.float64(pi)
p_squares[i] = x * x
u_squares[i] = u * u'''


@dataclass
class Kernel:
    """A rule's generated loop: serial and parallel dispatchers, and the
    same source run by the plain interpreter (for tests and coverage)."""

    name: str
    py_func: Callable
    serial: numba.core.registry.CPUDispatcher
    parallel: numba.core.registry.CPUDispatcher
    #: The per-key norm pre-pass (rules with a trust ratio): interpreted,
    #: serial, parallel; else None.
    norms: tuple | None = None

    def variants(self):
        return (self.serial, self.parallel) + (self.norms[1:] if self.norms else ())


@dataclass(frozen=True)
class Carry:
    """Floats a rule carries across updates, one tuple per scalars row.

    ``advance(hp, t, previous) -> tuple`` gives the values after update ``t``
    from those after update ``t - 1`` (``initial`` before the first).  They
    depend only on the hyperparameters of each past update, so after a
    restore they are rebuilt by replaying ``advance`` with the
    hyperparameters resolved at each past count (exact for constants and
    schedules; a value assigned mid-run is taken as if it had held from the
    start).
    """

    initial: tuple
    advance: Callable


class RuleMath:
    """A rule's math: state buffer names, named scalars and the element update.

    ``update(p, g, i, *state, *scalars) -> new p`` is a plain function of
    the param and grad values (already in the arithmetic dtype, after the
    prologue), the element index ``i``, the rule's state arrays (read and
    written at ``i``) and its scalars, by name; its parameters must be named
    exactly ``p, g, i``, then ``state_names``, then the fields of
    ``Scalars`` (checked here).  ``scalars(hp, t) -> Scalars`` computes them
    in Python floats from the resolved hyperparameters and the step count
    ``t`` (1 at the first update).  ``depends_on_step`` says whether they
    change with ``t`` (otherwise they are recomputed only when a
    hyperparameter changes).  ``coupled_decay`` names the hyperparameter
    that the prologue adds as ``g + value * p`` (None for rules that decay
    the params themselves).  ``carry`` (a :class:`Carry`) declares Python
    floats that a rule carries from update to update per scalars row (NAdam's
    product of momentum coefficients); then ``scalars(hp, t, carried)`` also
    gets this update's carried values.

    A rule with a per-key *trust ratio* (LAMB, LARS) also gives
    ``direction(p, g, i, *state, *scalars)`` - the update direction ``u`` at
    element ``i``, computed from the old state without writing it - and
    ``trust_ratio(hp, param_norm, direction_norm) -> float``.  The engine then
    runs a pre-pass that sums ``p*p`` and ``u*u`` per key on the fixed grid of
    :mod:`fastopt._reduce`, writes each key's ratio into its own scalars row
    (field ``trust_ratio``), and runs the update, which recomputes ``u`` with
    the same operations (so the same bits) and writes the state.  Rows whose
    ratio is nan (a nan or inf in the key's norms) run ``nan_update`` instead:
    ``u * nan`` may return either operand's nan, whose sign bits differ
    between compiled code and NumPy, so that case gets its own definition.

    ``int8_unsigned`` offers int8 state (``state_dtype="int8"``) and names the
    state buffers that are never negative (second moments), which use the
    unsigned code map; None: the rule keeps no int8 state.  Any rule of this
    kind may keep bfloat16 state.
    """

    def __init__(self, name: str, state_names, Scalars, scalars, update, *,
                 depends_on_step: bool, coupled_decay: str | None = "weight_decay", carry: "Carry | None" = None,
                 direction: Callable | None = None, trust_ratio: Callable | None = None,
                 nan_update: Callable | None = None, int8_unsigned: tuple | None = None):
        self.name = name
        if int8_unsigned is not None:
            self.int8_unsigned = tuple(int8_unsigned)
        self.carry = carry
        #: ``state_shape(name, param_shape) -> shape``; None: every state
        #: buffer is shaped like the params (every rule but Adafactor).
        self.state_shape = None
        self.direction = direction
        self.trust_ratio = trust_ratio
        self.nan_update = nan_update
        if not ((direction is None) == (trust_ratio is None) == (nan_update is None)):
            raise TypeError(f"{name}: direction, trust_ratio and nan_update come together")
        if direction is not None and "trust_ratio" not in Scalars._fields:
            raise TypeError(f"{name}: a rule with a direction needs a 'trust_ratio' scalar")
        self.state_names = tuple(state_names)
        self.Scalars = Scalars
        self.scalar_names = tuple(Scalars._fields)
        self.scalars = scalars
        self.update = update
        self.depends_on_step = depends_on_step
        self.coupled_decay = coupled_decay
        expected = ["p", "g", "i", *self.state_names, *self.scalar_names]
        for function in (update, direction, nan_update) if direction is not None else (update,):
            got = list(inspect.signature(function).parameters)
            if got != expected:
                raise TypeError(f"{name}: {function.__name__}() must take {expected}, takes {got}")
        self.width = len(PROLOGUE) + len(self.scalar_names)
        self._kernel = None

    @property
    def kernel(self) -> Kernel:
        if self._kernel is None:
            self._kernel = _generate(self)
        return self._kernel

    #: Whether :meth:`copying_kernel` exists (the engine generates the loop).
    supports_copies = True

    def copying_kernel(self, kind: str) -> Kernel:
        """The kernel that also writes each new param rounded to ``kind``
        ("bfloat16" or "float16") into the plan's copy column."""
        return self.kernel_for(None, kind)

    def kernel_for(self, storage: np.dtype | None, copy_to: str | None = None) -> Kernel:
        """The kernel for state stored as ``storage`` (None or a float dtype:
        :attr:`kernel`; uint16: bfloat16 bits; uint8: int8 codes), writing
        copies rounded to ``copy_to`` (None: no copies)."""
        tiled = storage is not None and np.dtype(storage) in _lowp_storage()
        if not tiled and copy_to is None:
            return self.kernel
        key = (np.dtype(storage).str if tiled else None, copy_to)
        kernels = self.__dict__.setdefault("_variant_kernels", {})
        if key not in kernels:
            storage = np.dtype(storage) if tiled else None
            shared_norms = self.kernel.norms if storage is None else None
            kernels[key] = _generate(self, copy_to=copy_to, norms=shared_norms, storage=storage)
        return kernels[key]

    #: Which state buffers hold values that are never negative (int8 stores
    #: them with the unsigned code map); None: int8 state is not offered.
    int8_unsigned: tuple | None = None

    def low_precision_error(self, state_format: str) -> str | None:
        """Why this rule cannot keep its state as ``state_format`` (None: it can)."""
        if state_format == "int8" and (self.int8_unsigned is None or self.direction is not None):
            return (f"{self.name} does not offer int8 state (block-wise quantization suits "
                    "elementwise moment estimates; use state_dtype='bfloat16')")
        return None

    @property
    def passes(self) -> tuple[tuple[int, int], ...]:
        """Per pass over memory that one update makes: (arrays read, arrays
        written), each array one element per param (what a same-traffic
        roof must move).  A trust-ratio rule reads everything once for its
        norms before the update pass."""
        n = len(self.state_names)
        update = (2 + n, 1 + n)
        if self.direction is None:
            return (update,)
        # The norm pass touches the state buffers that the direction reads.
        loaded = {i.argval for i in dis.get_instructions(self.direction) if i.opname.startswith("LOAD_FAST")}
        return ((2 + len(loaded & set(self.state_names)), 0), update)

    def bind(self, runner, plan, kernel: Kernel, scalars, state, state_dtype) -> None:
        """Give ``plan`` its ``run``: the kernel bound to the plan's arrays."""
        runner.bind(plan, kernel, scalars, state.step, state_dtype)

    @property
    def scalars_filler(self) -> numba.core.registry.CPUDispatcher | None:
        """``scalars`` compiled: ``filler(hyper, t_cell, out)`` writes, for
        each row ``r`` of the structured array ``hyper`` (one float64 field per
        hyperparameter), ``scalars(hyper[r], t_cell[0])`` into the rule's
        columns of ``out[r]``.  None for a rule that carries values across
        updates, or whose ``scalars`` Numba cannot compile: the engine then
        calls it in Python.  The step count arrives as a float; ``x ** t``
        is then C's ``pow`` in both, as ``x ** int`` is in Python, and every
        other operation is one IEEE operation either way, so the bits agree
        (tested for every rule, like the kernels)."""
        fillers = getattr(self, "_fillers", None)
        if fillers is None:
            fillers = self._fillers = False if self.carry is not None else _generate_fillers(self)
        return fillers[0] if fillers else None

    @property
    def scheduled_scalars_filler(self) -> numba.core.registry.CPUDispatcher | None:
        """:attr:`scalars_filler` after :func:`fastopt._compiled_schedules.fill_schedules`,
        in one call: ``(layout, hyper, c_like) -> -1`` or the slot whose
        value is out of range (then nothing was written).  ``layout``
        (int64): the number of slots; the address and length of ``words``
        (float64: the schedules' programs, a scratch word per schedule, then
        ``t``, the count plus one, as the last word); the address, rows and
        width of the scalars table (``c_like``, a NumPy scalar, gives its
        dtype); then the slots' rows of ``fill_schedules`` and its targets,
        flat.  ``hyper``'s values are read and written as float64 through
        its address.  Two arrays and a scalar, not seven arrays: each array
        passed costs the call ~25 ns."""
        return self._fillers[1] if self.scalars_filler is not None else None

    def drop_scalars_filler(self) -> None:
        """Numba could not type ``scalars``: keep calling it in Python."""
        self._fillers = False


_FILLERS = '''
def {name}(hyper, t_cell, out):
    t = t_cell[0]
    for r in range(hyper.shape[0]):
        s = scalars(hyper[r], t)
{stores}


def {name}_scheduled(layout, hyper, c_like):
    n_slots = layout[0]
    words = array_at(layout[1], layout[2], np.float64(0.0))
    out = array_at(layout[3], layout[4] * layout[5], c_like).reshape((layout[4], layout[5]))
    end = words.shape[0] - 1
    t = words[end]
    slots = layout[6:6 + 5 * n_slots].reshape((n_slots, 5))
    targets = layout[6 + 5 * n_slots:]
    hyper_flat = array_at(hyper.ctypes.data, hyper.size * hyper.itemsize // 8, words)
    bad = fill_schedules(words, slots, targets, int(t) - 1, hyper_flat, out.reshape(-1), words[end - n_slots:end])
    if bad < 0:
        for r in range(hyper.shape[0]):
            s = scalars(hyper[r], t)
{stores_inside}
    return bad
'''


def _generate_fillers(math: RuleMath) -> tuple:
    from . import _compiled_schedules

    inlined: dict = {}
    scalars = _inlined_with_helpers(math.scalars, inlined)
    # Inlined with its helpers: a call of a separately compiled function
    # takes and drops a reference per array it passes; the calls cost 0.25 us
    # of the 0.4 us the filler took.
    fill_schedules = _inlined_with_helpers(_compiled_schedules.fill_schedules, inlined)
    # Named by every source file it inlines: an edit there means new cache entries.
    files = sorted({inspect.getsourcefile(f) for f in inlined})
    digest = hashlib.sha256("".join([ENGINE_DIGEST, *map(_file_digest, files)]).encode()).hexdigest()[:10]
    name = f"{math.name.lower()}_scalars_{digest}"
    first = len(PROLOGUE)
    stores = [f"out[r, {first + k}] = s[{k}]" for k in range(len(math.scalar_names))]
    source = _FILLERS.format(name=name, stores="\n".join(" " * 8 + line for line in stores),
                             stores_inside="\n".join(" " * 12 + line for line in stores))
    namespace = {"scalars": scalars, "fill_schedules": fill_schedules, "array_at": array_at, "np": np}
    exec(compile(source, _THIS_FILE, "exec"), namespace)
    fillers = []
    for function_name in (name, name + "_scheduled"):
        function = namespace[function_name]
        function.__module__ = __name__
        function.__qualname__ = function_name
        fillers.append(_jit(function, parallel=False, nogil=False))  # tiny: see helper()
    return tuple(fillers)


def _inlined_with_helpers(function: Callable, inlined: dict):
    """``function`` for inlining into compiled code, with the plain functions
    of the rule modules that it names (RAdam's ``rectification``) and the
    compiled helpers of its own module compiled the same way; ``inlined``
    collects every function so treated."""
    if function in inlined:
        return inlined[function]
    namespace = dict(function.__globals__)
    clone = types.FunctionType(function.__code__, namespace, function.__name__, function.__defaults__,
                               function.__closure__)
    inlined[function] = compiled = numba.njit(inline="always", **NUMBA_FLAGS)(clone)
    rules_package = __name__.rpartition(".")[0] + ".rules"
    for name in function.__code__.co_names:
        value = function.__globals__.get(name)
        if isinstance(value, types.FunctionType) and value.__module__.startswith(rules_package):
            namespace[name] = _inlined_with_helpers(value, inlined)
        elif isinstance(value, numba.core.registry.CPUDispatcher) and value.py_func.__module__ == function.__module__:
            namespace[name] = _inlined_with_helpers(value.py_func, inlined)  # a helper of the same module
    return compiled


def _lowp_storage():
    from ._lowp import FORMAT_OF

    return FORMAT_OF


def _generate(math: RuleMath, copy_to: str | None = None, norms=None, storage: np.dtype | None = None) -> Kernel:
    """The rule's kernels; with ``copy_to``, the variant that also writes the
    new params rounded to that dtype (and reuses ``norms``); with
    ``storage`` (uint16 or uint8), the tiled variant for low-precision state."""
    from . import _lowp, _plan, _reduce

    update = math.update
    digest = hashlib.sha256(
        (ENGINE_DIGEST + _file_digest(_plan.__file__) + _file_digest(_reduce.__file__)
         + _file_digest(_lowp.__file__) + _file_digest(inspect.getsourcefile(update))).encode()
    ).hexdigest()[:10]
    indent = " " * 8
    columns = dict(LENGTH=LENGTH, GROUP=GROUP, PARAM=PARAM, GRAD=GRAD, **{
        word: getattr(_plan, word) for word in ("TABLE", "N_ROWS", "TABLE_WIDTH", "SCALARS", "SCALARS_ROW_BYTES",
                                                "SCALARS_WIDTH", "STEP")})
    load_scalars = "\n".join(
        f"{indent}{n} = sc[{j}]" for j, n in enumerate(math.scalar_names, len(PROLOGUE))
    )
    n_state = len(math.state_names)
    tiled = storage is not None
    if tiled:
        int8 = storage == _lowp.STORAGE["int8"]
        unsigned = set(math.int8_unsigned or ())
        lines = []
        for j, n in enumerate(math.state_names):
            lines.append(f"{indent}stored_{n} = array_at(table[at + {FIRST_STATE + j}], n, s_like)")
            lines.append(f"{indent}{n} = np.empty(BLOCK, sc.dtype)")
            if int8:
                lines.append(f"{indent}absmax_{n} = array_at(table[at + {FIRST_STATE + n_state + j}], "
                             f"(n + BLOCK - 1) // BLOCK, absmax_like)")
        load_state = "\n".join(lines)
        if int8:  # a block's codes need its absmax: decode, update, encode the tile in turn
            codec = {n: "unsigned" if n in unsigned else "signed" for n in math.state_names}
            decode = "\n".join(f"{indent}    decode_{codec[n]}(stored_{n}[start:start + tile], absmax_{n}, "
                               f"start // BLOCK, tile, {n})" for n in math.state_names)
            encode = "\n".join(f"{indent}    encode_{codec[n]}(stored_{n}[start:start + tile], absmax_{n}, "
                               f"start // BLOCK, tile, {n})" for n in math.state_names)
        else:  # bfloat16 converts each element inside the update's loop: one loop per tile
            decode = "\n".join(f"{indent}    tile_{n} = stored_{n}[start:start + tile]" for n in math.state_names)
            encode = ""
            decode_element = "".join(f"\n    {n}[i] = bits_float32(np.uint32(tile_{n}[i]) << np.uint32(16))"
                                     for n in math.state_names)
            encode_element = "".join(f"\n    tile_{n}[i] = to_bits(float32_bits(np.float32({n}[i])))"
                                     for n in math.state_names)
    else:
        load_state = "\n".join(
            f"{indent}{n} = array_at(table[at + {FIRST_STATE + j}], n, s_like)"
            for j, n in enumerate(math.state_names)
        )
    copy_column = FIRST_STATE + n_state * (2 if tiled and int8 else 1)

    if not (tiled and not int8):
        decode_element = encode_element = ""
    call_args = dict(decode_element=decode_element, encode_element=encode_element,
                     state_args="".join(f", {n}" for n in math.state_names),
                     scalar_args="".join(f", {n}" for n in math.scalar_names),
                     store_copy=_STORE_COPY if copy_to else "")
    copy_name = "row_copy" if tiled else "copy"
    load_copy = f"\n{indent}{copy_name} = array_at(table[at + {copy_column}], n, copy_like)" if copy_to else ""
    tag = (f"_to_{copy_to}" if copy_to else "") + (f"_{_lowp.FORMAT_OF[storage]}_state" if tiled else "")
    call_args["count"] = "tile" if tiled else "n"
    loops = _ELEMENT_LOOP.format(update="update", **call_args)
    if (copy_to or tiled) and math.nan_update is None:
        loops = _SPLIT_LOOPS.format(
            loop=textwrap.indent(loops, " " * 4),
            plain_loop=textwrap.indent(_PLAIN_ELEMENT_LOOP.format(update="update", **call_args), " " * 4),
        )
    if math.nan_update is not None:
        loops = _TRUST_RATIO_LOOPS.format(
            loop=textwrap.indent(loops, " " * 4),
            plain_loop=textwrap.indent(_PLAIN_ELEMENT_LOOP.format(update="update", **call_args), " " * 4),
            nan_loop=textwrap.indent(_ELEMENT_LOOP.format(update="nan_update", **call_args), " " * 4),
        )

    def build(variant: str, namespace: dict) -> Callable:
        name = f"{math.name.lower()}_kernel{tag}_{variant}_{digest}"
        if tiled:
            source = _TILED_SKELETON.format(
                name=name, load_scalars=load_scalars, load_state=load_state, load_copy=load_copy,
                tile_copy=f"{indent}    copy = row_copy[start:start + tile]\n" if copy_to else "",
                decode=decode, encode=encode, loops=textwrap.indent(loops, " " * 12), **columns,
            )
        else:
            source = _SKELETON.format(
                name=name,
                load_scalars=load_scalars,
                load_state=load_state,
                load_copy=load_copy,
                loops=textwrap.indent(loops, " " * 8),
                **columns,
            )
        # Blank lines keep the generated function's line numbers apart from
        # this file's real code in tracebacks; the file name lets Numba cache.
        exec(compile(source, _THIS_FILE, "exec"), namespace)
        function = namespace[name]
        function.__module__ = __name__
        function.__qualname__ = name
        return function

    compiled_update = numba.njit(inline="always", **NUMBA_FLAGS)(update)
    jit_namespace = dict(prange=numba.prange, array_at=array_at, as_compute=as_compute,
                         update=compiled_update, np=np, check_and_bind=_plan.check_and_bind_compiled)
    py_namespace = dict(prange=range, array_at=array_at, as_compute=as_compute,
                        update=update, np=np, check_and_bind=_plan.check_and_bind)
    if math.nan_update is not None:
        jit_namespace["nan_update"] = numba.njit(inline="always", **NUMBA_FLAGS)(math.nan_update)
        py_namespace["nan_update"] = math.nan_update
    if copy_to:
        witnesses = dict(copy_like=np.empty(0, np.uint16), to_bits=_lowp.bf16_bits,
                         float32_bits=_lowp.float32_bits)
        jit_namespace.update(witnesses)
        py_namespace.update(witnesses)
    if tiled:
        codecs = dict(BLOCK=_lowp.BLOCK, absmax_like=np.empty(0, np.float32), to_bits=_lowp.bf16_bits,
                      float32_bits=_lowp.float32_bits, bits_float32=_lowp.bits_float32,
                      decode_bf16=_lowp.decode_bf16,
                      decode_signed=_lowp.decode_signed, encode_signed=_lowp.encode_signed,
                      decode_unsigned=_lowp.decode_unsigned, encode_unsigned=_lowp.encode_unsigned)
        jit_namespace.update(codecs)
        py_namespace.update({n: getattr(f, "py_func", f) for n, f in codecs.items()})
    if math.direction is not None and norms is None:
        from ._reduce import combine_by_key, lane_sum

        if tiled:  # bfloat16 (a trust-ratio rule offers no int8 state): decode the block
            norms_load_state = "\n".join(
                f"{indent}stored_{n} = array_at(bases[key, {1 + j}] + first * s_size, n, s_like)\n"
                f"{indent}{n} = np.empty(n, sc.dtype)\n"
                f"{indent}decode_bf16(stored_{n}, stored_{n}, 0, n, {n})"
                for j, n in enumerate(math.state_names)
            )
        else:
            norms_load_state = "\n".join(
                f"{indent}{n} = array_at(bases[key, {1 + j}] + first * s_size, n, s_like)"
                for j, n in enumerate(math.state_names)
            )

        def build_norms(variant: str, namespace: dict) -> Callable:
            name = f"{math.name.lower()}_norms{tag}_{variant}_{digest}"
            arguments = dict(state_args="".join(f", {n}" for n in math.state_names),
                             scalar_args="".join(f", {n}" for n in math.scalar_names))
            element = _NORMS_ELEMENT.format(**arguments)
            source = _NORMS_SKELETON.format(
                name=name, load_scalars=load_scalars, load_state=norms_load_state,
                element=textwrap.indent(element, " " * 16),
                plain=textwrap.indent(_NORMS_PLAIN_ELEMENT.format(**arguments), " " * 16),
            )
            exec(compile(source, _THIS_FILE, "exec"), namespace)
            function = namespace[name]
            function.__module__ = __name__
            function.__qualname__ = name
            return function

        compiled_direction = numba.njit(inline="always", **NUMBA_FLAGS)(math.direction)
        jit_norms = dict(jit_namespace, direction=compiled_direction, lane_sum=lane_sum,
                         combine_by_key=combine_by_key)
        py_norms = dict(py_namespace, direction=math.direction, lane_sum=lane_sum,
                        combine_by_key=combine_by_key.py_func)
        norms = (
            build_norms("interpreted", py_norms),
            _jit(build_norms("serial", dict(jit_norms)), parallel=False),
            _jit(build_norms("parallel", dict(jit_norms)), parallel=True),
        )
    return Kernel(
        name=math.name + (f" to {copy_to}" if copy_to else "") + (f" {_lowp.FORMAT_OF[storage]} state" if tiled else ""),
        py_func=build("interpreted", py_namespace),
        serial=_jit(build("serial", dict(jit_namespace)), parallel=False),
        parallel=_jit(build("parallel", dict(jit_namespace)), parallel=True),
        norms=norms,
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
        self.runners = weakref.WeakSet()

    def after_fork_in_child(self):
        self.lock = threading.Lock()  # the parent's may have been held by another thread
        try:
            layer = numba.threading_layer()
        except ValueError:
            return  # no parallel region ran in the parent: the child starts its own
        if layer == "omp" and _openmp_vendor() == "GNU":
            self.usable = False
            for runner in list(self.runners):
                runner.invalidate()


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


# -- the calling thread's floating-point mode -------------------------------------
#
# Flush-to-zero and denormals-are-zero are per-thread bits of the x86 MXCSR
# register.  Set in the calling thread after the worker pool started (by
# torch.set_flush_denormal(True), or a library built with -ffast-math), they
# would apply to the serial kernel and the NumPy reference but not to the
# workers' share of a parallel kernel.  fastopt then runs the serial kernel.

_FTZ_DAZ = 0x8040
_X86 = ctypes.sizeof(ctypes.c_void_p) == 8 and os.uname().machine in ("x86_64", "AMD64")


@intrinsic
def _mxcsr(typingctx):
    def codegen(context, builder, signature, args):
        slot = cgutils.alloca_once(builder, cgutils.ir.IntType(32))
        fnty = cgutils.ir.FunctionType(cgutils.ir.VoidType(), [cgutils.voidptr_t])
        fn = cgutils.get_or_insert_function(builder.module, fnty, "llvm.x86.sse.stmxcsr")
        builder.call(fn, [builder.bitcast(slot, cgutils.voidptr_t)])
        return builder.zext(builder.load(slot), cgutils.ir.IntType(64))

    return nbtypes.int64(), codegen


@intrinsic
def _set_mxcsr(typingctx, value):
    def codegen(context, builder, signature, args):
        slot = cgutils.alloca_once(builder, cgutils.ir.IntType(32))
        builder.store(builder.trunc(args[0], cgutils.ir.IntType(32)), slot)
        fnty = cgutils.ir.FunctionType(cgutils.ir.VoidType(), [cgutils.voidptr_t])
        fn = cgutils.get_or_insert_function(builder.module, fnty, "llvm.x86.sse.ldmxcsr")
        builder.call(fn, [builder.bitcast(slot, cgutils.voidptr_t)])
        return context.get_dummy_value()

    return nbtypes.none(nbtypes.int64), codegen


def _read_mxcsr():
    return _mxcsr()


def _write_mxcsr(value):
    _set_mxcsr(value)


_mxcsr_dispatcher = helper(_read_mxcsr) if _X86 else None
#: For tests: set the calling thread's MXCSR.
write_mxcsr = helper(_write_mxcsr) if _X86 else (lambda value: None)
_read_mxcsr_entry = None


def read_mxcsr() -> int:
    global _read_mxcsr_entry
    if _mxcsr_dispatcher is None:
        return 0
    if _read_mxcsr_entry is None:
        load_or_compile(_mxcsr_dispatcher, ())
        _read_mxcsr_entry = _mxcsr_dispatcher.overloads[()].entry_point
    return _read_mxcsr_entry()


def flushes_denormals() -> bool:
    """Whether the calling thread flushes denormals to zero (FTZ or DAZ)."""
    return bool(read_mxcsr() & _FTZ_DAZ)


# -- serial or parallel, by measurement shared across the process ------------------


class _Timings:
    """What one kind of update (kernel, dtypes, size class) has cost lately.

    Shared by every optimizer in the process, so a new optimizer never pays
    probes that another one already paid."""

    __slots__ = ("recent", "choice", "probe_every", "next_probe", "probing")

    def __init__(self, window: int, probe_every: int):
        self.recent = ([], [])
        self.choice = 0
        self.probe_every = probe_every
        self.next_probe = probe_every
        # Calls left in the current run of the other kernel; the first
        # WINDOW calls time the serial kernel, the next WINDOW the parallel.
        self.probing = -window


_TIMINGS: dict = {}


def forget_timings() -> None:
    """Drop every shared timing: the next calls of each kind are timed afresh."""
    _TIMINGS.clear()


class FasterOf:
    """Runs whichever of the serial and parallel kernel has been faster lately.

    Both give bitwise identical results, but which is faster depends on what
    else holds the cores: back to back, the parallel kernel wins from a few
    ten thousand elements; in a training loop, the threads of NumPy's BLAS
    keep spinning after each matrix product, and on a small machine the
    parallel kernel then loses at every size (measured on 2 cores with a
    128x512x512 matmul between updates: serial 446 us, parallel 724 us at 3e5
    elements).  So calls are timed, and the timings are shared process-wide
    per (kernel, dtypes, size class - a power of two): each kernel runs
    ``WINDOW`` calls in a row at first, then the faster one runs, and after a
    while the other gets ``WINDOW`` calls again.  Each is judged by the
    fastest of its last ``WINDOW`` timings - noise only ever adds time.  A
    re-run that confirms the choice doubles the wait before the next (from
    ``PROBE_EVERY`` up to ``MAX_PROBE_EVERY`` calls); one that overturns it
    resets it.  The parallel kernel only runs at sizes of at least the
    optimizer's ``parallel_min_size``, and never while the calling thread
    flushes denormals (see :func:`flushes_denormals`).
    """

    PROBE_EVERY = 32
    MAX_PROBE_EVERY = 1024
    WINDOW = 3

    __slots__ = ("serial", "parallel", "bound", "timings")

    def __init__(self, serial: Callable, parallel: Callable[[], Callable], key):
        """``parallel`` makes the parallel call when first needed (it compiles)."""
        self.serial = serial
        self.parallel = parallel
        self.bound = False
        timings = _TIMINGS.get(key)
        if timings is None:
            timings = _TIMINGS[key] = _Timings(self.WINDOW, self.PROBE_EVERY)
        self.timings = timings

    def __call__(self):
        t = self.timings
        probing = t.probing
        if probing < 0:
            which = 0
        elif probing > 0:
            which = 1 - t.choice
        else:
            which = t.choice
        if which:
            if flushes_denormals():
                return self.serial()
            if not self.bound:
                self.parallel = self.parallel()
                self.bound = True
            call = self.parallel
        else:
            call = self.serial
        start = _perf_counter()
        result = call()
        elapsed = _perf_counter() - start
        recent = t.recent[which]
        recent.append(elapsed)
        if len(recent) > self.WINDOW:
            del recent[0]
        if probing < 0:
            t.probing = probing + 1 or self.WINDOW
        elif probing > 0:
            t.probing = probing - 1
            if probing == 1:  # a run of the other kernel just ended: decide again
                serial, parallel = t.recent
                choice = 0 if min(serial) <= min(parallel) else 1
                if choice == t.choice:
                    t.probe_every = min(2 * t.probe_every, self.MAX_PROBE_EVERY)
                else:
                    t.probe_every = self.PROBE_EVERY
                t.choice = choice
                t.next_probe = t.probe_every
        else:
            t.next_probe -= 1
            if t.next_probe <= 0:
                t.probing = self.WINDOW
        return result
