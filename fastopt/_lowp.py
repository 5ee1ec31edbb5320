"""Low-precision encodings: bfloat16 bits, and block-wise 8-bit codes.

**bfloat16** is the upper half of a float32.  Rounding to nearest, ties to
even, from the float32's bits: add ``0x7FFF`` plus the lowest kept bit, keep
the upper 16 bits; finite values too large round to infinity, and a nan
becomes the quiet nan ``0x7FC0``.  Integer operations only, written so that
LLVM vectorises them (the nan case is a select; checked equal to the
reference on all 2**32 bit patterns), so the same function runs in the interpreter and in compiled kernels; the
reference does the same over whole NumPy arrays.  Every non-nan float32
gives the bits PyTorch's ``.to(torch.bfloat16)`` gives (checked over
millions of bit patterns, ties included); PyTorch's vectorised cast keeps
more of a nan's payload, and a nan's bits are not part of fastopt's
contract.  Numba has no bfloat16 type: kernels read and write the bits.  A
float64 value is rounded to float32 first, then to bfloat16.

**int8** (block-wise dynamic quantization, Dettmers et al., "8-bit
Optimizers via Block-wise Quantization", ICLR 2022).  Each key's state
buffer is cut into blocks of :data:`BLOCK` (256) elements from the key's
start (the last block may be shorter); a block stores one float32
``absmax`` and one uint8 code per element, and element ``j`` stands for
``CODES[code_j] * absmax`` (a float32 product).  Storing a block (values
rounded to float32 first):

1. ``absmax`` = the largest ``|value|`` in the block;
2. each value is normalised, ``x = value / absmax`` (float32, so ``|x| <= 1``),
   and stored as the code whose value is nearest: the code ``k`` with
   ``MIDPOINTS[k-1] < x <= MIDPOINTS[k]``, where ``MIDPOINTS[k]`` is the
   float32 nearest to ``(CODES[k] + CODES[k+1]) / 2`` - a tie goes to the
   code below;
3. in an *unsigned* map (second moments, never negative) a positive ``x``
   never becomes the zero code: it is stored as at least the smallest
   positive code.  An element whose squared gradient is tiny next to its
   block's largest would otherwise read back as 0, and Adam would divide
   its first moment by ``eps`` alone (the divergence torchao's 8-bit AdamW
   shows); rounded up, the step stays bounded;
4. a block whose ``absmax`` is 0 stores the zero code everywhere; a block
   holding a nan or an infinity stores ``absmax = nan`` and the zero code, so
   every element of it reads back as nan (the non-finite value spreads over
   its block instead of being silently dropped).

The code maps are bitsandbytes' ``create_dynamic_map`` (7 decades of
``10**-6 .. 1``, more codes in the upper decades, plus 0 and 1): *signed*
(first moments, momentum) 127 negative values, 0 and 128 positive ones up to
1.0; *unsigned* (second moments) 0, 254 positive values and 1.0.  fastopt
computes them in float64 and rounds them to float32.

The nearest code is found without a search: the upper 16 bits of ``x``
(sign, exponent and 7 mantissa bits - its bfloat16 truncation) index two
tables of 2 x 3073 entries that give, for each such bucket of values, the
code just below the bucket's only midpoint and that midpoint, and one
comparison with it decides (every bucket holds at most one midpoint: checked
when the table is built).  The reference finds the same code by a binary
search over the midpoints (``np.searchsorted``).
"""

from __future__ import annotations

import math

import numba
import numpy as np
from numba import types as nbtypes
from numba.core import cgutils
from numba.extending import intrinsic, overload

BF16_NAN = 0x7FC0


def float32_bits(x):
    """The bits of float32 ``x`` as an unsigned integer (a bit cast, no conversion)."""
    return np.float32(x).view(np.uint32)


@intrinsic
def _bitcast_float32(typingctx, x):
    if x != nbtypes.float32:
        return None

    def codegen(context, builder, signature, args):
        return builder.bitcast(args[0], cgutils.ir.IntType(32))

    return nbtypes.uint32(x), codegen


@overload(float32_bits, inline="always")
def _float32_bits(x):
    return lambda x: _bitcast_float32(x)


@numba.extending.register_jitable
def bf16_bits(u):
    """The bfloat16 nearest to the float32 whose bits are ``u`` (uint32)."""
    u = np.uint32(u)
    # The sum wraps only for u >= 0xFFFF8000, negative nans, which the select
    # replaces; the nan test fits a signed compare, which AVX2 has.
    rounded = (u + np.uint32(0x7FFF) + ((u >> np.uint32(16)) & np.uint32(1))) >> np.uint32(16)
    nan = np.int32(u & np.uint32(0x7FFFFFFF)) > np.int32(0x7F800000)
    return np.uint16(BF16_NAN) if nan else np.uint16(rounded)


def reference_bits(x: np.ndarray) -> np.ndarray:
    """The bfloat16 bits of float32 ``x`` rounded to nearest even, by whole-array NumPy."""
    u = np.array(x, np.float32).view(np.uint32).astype(np.uint64)
    nan = (u & 0x7FFFFFFF) > 0x7F800000
    return np.where(nan, BF16_NAN, (u + 0x7FFF + ((u >> 16) & 1)) >> 16).astype(np.uint16)


@intrinsic
def _bitcast_uint32(typingctx, x):
    if x != nbtypes.uint32:
        return None

    def codegen(context, builder, signature, args):
        return builder.bitcast(args[0], cgutils.ir.FloatType())

    return nbtypes.float32(x), codegen


def bits_float32(u):
    """The float32 whose bits are uint32 ``u`` (a bit cast, no conversion)."""
    return np.uint32(u).view(np.float32)


@overload(bits_float32, inline="always")
def _bits_float32(u):
    return lambda u: _bitcast_uint32(np.uint32(u))


def reference_bf16_values(bits: np.ndarray) -> np.ndarray:
    """The float32 values of bfloat16 ``bits`` (uint16), by whole-array NumPy."""
    return (np.asarray(bits, np.uint16).astype(np.uint32) << 16).view(np.float32)


# -- the tiled kernels' state encodings ----------------------------------------------

#: State formats beside the float dtypes: the option's name -> the stored dtype.
STORAGE = {"bfloat16": np.dtype(np.uint16), "int8": np.dtype(np.uint8)}
#: The stored dtype -> the format's name.
FORMAT_OF = {v: k for k, v in STORAGE.items()}
#: Elements per int8 block (and per tile of a kernel over low-precision state).
BLOCK = 256


def blocks_of(size: int) -> int:
    return -(-size // BLOCK)


def _dynamic_map(signed: bool) -> np.ndarray:
    """bitsandbytes' ``create_dynamic_map(signed, max_exponent_bits=7, total_bits=8)``,
    computed in float64, rounded to float32, sorted."""
    values = [0.0, 1.0]
    for i in range(7):
        items = 2**i + 1 if signed else 2 ** (i + 1) + 1
        bounds = np.linspace(0.1, 1.0, items)
        means = (bounds[:-1] + bounds[1:]) / 2.0 * 10.0 ** (i - 6)
        values += list(means) + (list(-means) if signed else [])
    assert len(values) == 256
    return np.sort(np.array(values, np.float64)).astype(np.float32)


_SMALLEST_EXPONENT = 127 - 24  # buckets start at 2**-24; below, one bucket holds all
_FIRST_KEY = _SMALLEST_EXPONENT << 7
HALF = (0x3F80 - _FIRST_KEY) + 1  # buckets of [0, 1]: up to 1.0's key


def _bucket_table(midpoints: np.ndarray) -> np.ndarray:
    """For each bucket (sign, then the key of ``|x|``), the code just below
    the bucket's only midpoint."""
    keys = np.arange(_FIRST_KEY, _FIRST_KEY + HALF + 1, dtype=np.uint32)
    edges = (keys << np.uint32(16)).view(np.float32).astype(np.float64)
    lo, hi = edges[:-1].copy(), edges[1:]
    lo[0] = 0.0
    finite = midpoints[:-1].astype(np.float64)  # sorted
    # x in [lo, hi): codes below = midpoints < lo; x in (-hi, -lo]: midpoints <= -hi.
    below_positive = np.searchsorted(finite, lo, "left")
    below_negative = np.searchsorted(finite, -hi, "right")
    inside = np.maximum(np.searchsorted(finite, hi, "left") - below_positive,
                        np.searchsorted(finite, -lo, "right") - below_negative)
    if inside.max() > 1:
        raise AssertionError(f"bucket {int(np.argmax(inside))} holds {int(inside.max())} midpoints")
    return np.concatenate([below_positive, below_negative]).astype(np.uint8)


def _midpoints(codes: np.ndarray) -> np.ndarray:
    c = codes.astype(np.float64)
    return np.append(((c[:-1] + c[1:]) / 2.0).astype(np.float32), np.float32(np.inf))


#: The code maps (float32, 256 values each, sorted) and their midpoints.
SIGNED_CODES, UNSIGNED_CODES = _dynamic_map(True), _dynamic_map(False)
SIGNED_MIDPOINTS, UNSIGNED_MIDPOINTS = _midpoints(SIGNED_CODES), _midpoints(UNSIGNED_CODES)
SIGNED_ZERO = int(np.flatnonzero(SIGNED_CODES == 0)[0])
UNSIGNED_ZERO = 0
# The kernels' unsigned midpoints put the first one at 0: every x > 0 is then
# above it, which is rule 3 (a positive x never becomes the zero code)
# without a separate step.
_UNSIGNED_KERNEL_MIDPOINTS = UNSIGNED_MIDPOINTS.copy()
_UNSIGNED_KERNEL_MIDPOINTS[0] = 0.0
_SIGNED_BUCKETS, _UNSIGNED_BUCKETS = _bucket_table(SIGNED_MIDPOINTS), _bucket_table(_UNSIGNED_KERNEL_MIDPOINTS)


@numba.extending.register_jitable(inline="always")
def _bucket(x):
    """The bucket of float32 ``x``: sign, then the key of ``|x|``."""
    key = float32_bits(x) >> np.uint32(16)
    magnitude = key & np.uint32(0x7FFF)
    # Unsigned throughout: Numba then adds no negative-index wraparound.
    return (magnitude - np.uint32(_FIRST_KEY) if magnitude > np.uint32(_FIRST_KEY) else np.uint32(0)) \
        + (key >> np.uint32(15)) * np.uint32(HALF)


def _tile_codecs(signed: bool):
    """``decode(stored, absmax, block, n, tile)`` and ``encode(...)`` (the
    same arguments) for one map: ``stored`` is the tile's slice of codes,
    ``absmax[block]`` its scale.  (Indexing a slice by the loop's own
    counter, never ``start + j``, lets Numba drop its negative-index
    wraparound, so that LLVM vectorises.)"""
    codes_map = SIGNED_CODES if signed else UNSIGNED_CODES
    midpoints = SIGNED_MIDPOINTS if signed else _UNSIGNED_KERNEL_MIDPOINTS
    buckets = _SIGNED_BUCKETS if signed else _UNSIGNED_BUCKETS
    # Both indexed by the bucket, in 32-bit words: the lookups are then two
    # independent gathers that LLVM vectorises (x86 gathers no bytes, and a
    # midpoint looked up by the code below waits for the first lookup).
    below_of = buckets.astype(np.uint32)
    midpoint_of = midpoints[buckets]
    zero = SIGNED_ZERO if signed else UNSIGNED_ZERO

    def decode(stored, absmax, block, n, tile):
        scale = absmax[block]
        for j in range(n):
            tile[j] = codes_map[stored[j]] * scale

    def encode(stored, absmax, block, n, tile):
        top = np.uint32(0)
        for j in range(n):
            top = max(top, float32_bits(np.float32(tile[j])) & np.uint32(0x7FFFFFFF))
        if top == 0 or top >= np.uint32(0x7F800000):
            absmax[block] = np.float32(0.0) if top == 0 else np.float32(np.nan)
            for j in range(n):
                stored[j] = zero
            return
        scale = bits_float32(top)
        absmax[block] = scale
        for j in range(n):
            x = np.float32(tile[j]) / scale
            b = _bucket(x)
            stored[j] = below_of[b] + np.uint32(x > midpoint_of[b])

    # Each closure gets a name of its own.  Numba names a compiled function
    # after its module, qualified name and a per-process counter; the signed
    # and unsigned closures would share the first two, so two kernels compiled
    # in different processes (one read back from the cache) could define the
    # same symbol for different maps, and the JIT linker binds a kernel loaded
    # later to the map of the one loaded first.
    kind = "signed" if signed else "unsigned"
    for function, verb in ((decode, "decode"), (encode, "encode")):
        function.__name__ = f"{verb}_{kind}"
        function.__qualname__ = f"_tile_codecs.{verb}_{kind}"
    return numba.extending.register_jitable(decode), numba.extending.register_jitable(encode)


decode_signed, encode_signed = _tile_codecs(True)
decode_unsigned, encode_unsigned = _tile_codecs(False)


@numba.extending.register_jitable
def decode_bf16(stored, absmax, block, n, tile):
    """bfloat16 bits to float32 (a trust-ratio rule's norm pass; the update
    converts inside its own loop).  ``absmax`` and ``block`` are unused."""
    for j in range(n):
        tile[j] = bits_float32(np.uint32(stored[j]) << np.uint32(16))


# -- the reference's encodings: whole-array NumPy, another way -----------------------


def reference_quantize(values: np.ndarray, unsigned: bool) -> tuple[np.ndarray, np.ndarray]:
    """(codes uint8, absmax float32 per block) of one key's state (any shape)."""
    midpoints = (UNSIGNED_MIDPOINTS if unsigned else SIGNED_MIDPOINTS)[:-1]
    flat = np.asarray(values).astype(np.float32).ravel()
    n_blocks = blocks_of(flat.size)
    padded = np.zeros(n_blocks * BLOCK, np.float32)
    padded[: flat.size] = flat
    blocks = padded.reshape(n_blocks, BLOCK)
    with np.errstate(invalid="ignore"):
        absmax = np.max(np.abs(blocks), axis=1) if n_blocks else np.zeros(0, np.float32)
    bad = ~np.isfinite(absmax)
    empty = absmax == 0
    scale = np.where(bad | empty, np.float32(1), absmax).astype(np.float32)
    x = blocks / scale[:, None]
    codes = np.searchsorted(midpoints, x, side="left")  # midpoints below x
    if unsigned:
        codes = np.where(x > 0, np.maximum(codes, 1), codes)
    codes[bad | empty] = UNSIGNED_ZERO if unsigned else SIGNED_ZERO
    absmax = np.where(bad, np.float32(math.nan), absmax).astype(np.float32)
    return codes.astype(np.uint8).ravel()[: flat.size].reshape(np.shape(values)), absmax


def reference_dequantize(codes: np.ndarray, absmax: np.ndarray, unsigned: bool) -> np.ndarray:
    """The float32 values of one key's codes and its blocks' absmax."""
    codes_map = UNSIGNED_CODES if unsigned else SIGNED_CODES
    flat = np.asarray(codes).ravel()
    scale = np.repeat(np.asarray(absmax, np.float32), BLOCK)[: flat.size]
    return (codes_map[flat] * scale).astype(np.float32).reshape(np.shape(codes))
