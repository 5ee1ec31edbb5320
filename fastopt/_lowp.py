"""Low-precision encodings: float32 to bfloat16, as uint16 bits.

bfloat16 is the upper half of a float32.  Rounding to nearest, ties to even,
from the float32's bits: add ``0x7FFF`` plus the lowest kept bit, keep the
upper 16 bits; finite values too large round to infinity, and a nan becomes
the quiet nan ``0x7FC0``.  Integer operations only, written so that LLVM
vectorises them (the nan case is a select, and no sum leaves 32 bits), so
the same function runs in the interpreter and in compiled kernels; the
reference does the same over whole NumPy arrays.

Every non-nan float32 gives the bits PyTorch's ``.to(torch.bfloat16)``
gives (checked over millions of bit patterns, ties included); PyTorch's
vectorised cast keeps more of a nan's payload, and a nan's bits are not part
of fastopt's contract.  Numba has no bfloat16 type: kernels read and write
the bits.
"""

from __future__ import annotations

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
    low = u & np.uint32(0xFFFF)
    high = u >> np.uint32(16)
    rounded = high + ((low + np.uint32(0x7FFF) + (high & np.uint32(1))) >> np.uint32(16))
    nan = (u & np.uint32(0x7FFFFFFF)) > np.uint32(0x7F800000)
    return np.uint16(BF16_NAN) if nan else np.uint16(rounded)


def reference_bits(x: np.ndarray) -> np.ndarray:
    """The bfloat16 bits of float32 ``x`` rounded to nearest even, by whole-array NumPy."""
    u = np.array(x, np.float32).view(np.uint32).astype(np.uint64)
    nan = (u & 0x7FFFFFFF) > 0x7F800000
    return np.where(nan, BF16_NAN, (u + 0x7FFF + ((u >> 16) & 1)) >> 16).astype(np.uint16)
