"""Data-parallel training over MPI with the optimizer state sharded (ZeRO stage 1).

    from fastopt import Adam
    from fastopt.distributed import ShardedOptimizer
    opt = ShardedOptimizer(Adam(lr=1e-3))      # comm defaults to MPI.COMM_WORLD
    opt.update(params, local_grads)            # every rank, same layout

Run with ``mpiexec -n N python train.py``.  Each rank holds the whole params
and computes grads on its part of the batch; ``update`` averages the grads,
each rank updates only its shard of the flat layout with only its shard of
the state, and the params are gathered back, so every rank ends each step
with the same params: the same bits as one process calling
``opt.update(params, averaged)`` with the averaged grads of
:func:`average_grads` (:func:`reference_step` does exactly that).

The averaging, exactly
----------------------
For every element, in the params' dtype (float32 or float64)::

    total = g[0]            # the grads of rank 0
    total = total + g[1]    # then rank 1, 2, ... in rank order
    ...
    averaged = total / N    # one division by the rank count, N = comm.size

Rank order is fixed by the exchange, not by the MPI library: the grads move
with ``Alltoallv`` (a copy, no arithmetic; in rounds of about
``bucket_size`` elements, so the buffers stay small), and each rank adds
the N chunks of its shard itself (its own from its grads, the others as
received), so the sum is the same on any MPI implementation, any network
and any rank placement.  (MPI's own ``Reduce_scatter`` may add in any order;
it moves the same bytes.)

The shards
----------
The layout (keys in dict order, each key's elements in C order, as
:class:`fastopt._layout.Layout`) is cut into N contiguous ranges, one per
rank, of nearly equal size.  A cut falls inside a key only at a multiple of
:data:`ALIGN` (4096) elements from the key's start: the fixed grid of the
norms (:mod:`fastopt._reduce`) and the 256-element blocks of int8 state
then never straddle two ranks, which is what makes the global norm and the
int8 codes identical to one process.  Rules that reduce over a whole key
(LAMB and LARS's trust ratios, Adafactor's factored moments) are cut at key
boundaries only.  ``clip_norm`` and ``nonfinite`` use every rank's per-block
sums, combined on the fixed grid in the single-process order, so the norm
is the same float64 on every rank and equal to the single-process norm.

Faults
------
Every update first agrees on a status word across ranks (one small
collective): bad input on any rank (a wrong key, shape or dtype in its
grads) or a KeyboardInterrupt during the local checks makes every rank raise
before anything is sent or written - the rank at fault raises its own error,
the others a :class:`DistributedError` naming it.  Every collective waits
at most ``timeout`` seconds: a rank that stops taking part (killed, stuck,
interrupted outside ``update``) makes the others raise
:class:`DistributedTimeoutError` instead of hanging.  After a timeout, or an
interrupt in the middle of the exchange, the ranks may hold different
params: the optimizer refuses further updates, and training resumes from a
checkpoint (:meth:`ShardedOptimizer.save` / :meth:`ShardedOptimizer.load`).

``import fastopt`` and ``import fastopt.distributed`` never import mpi4py;
making a :class:`ShardedOptimizer` does.
"""

from __future__ import annotations

import copy
import hashlib
import json
import math
import os
import time
from bisect import bisect_right
from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np

from ._groups import Groups
from ._jit import helper
from ._layout import FLOAT_DTYPES, Layout, check_key, describe
from ._lowp import BLOCK as INT8_BLOCK
from ._reduce import BLOCK as NORM_BLOCK, block_table, reference_pairwise
from .errors import (DTypeMismatchError, EmptyParamsError, KeyMismatchError, LayoutError, NonFiniteGradientError,
                     ShapeMismatchError, StateFileError)
from .optimizer import Optimizer

#: A cut inside a key falls at a multiple of this many elements from the key's start.
ALIGN = NORM_BLOCK
assert ALIGN % INT8_BLOCK == 0

#: Default seconds a collective may wait for the other ranks.
DEFAULT_TIMEOUT = 60.0
#: Default elements moved per round of the exchange (64 MiB of float32): the
#: exchange buffers hold about this many, whatever the layout's size.
DEFAULT_BUCKET = 2**24

MANIFEST = "manifest.json"
MANIFEST_FORMAT = "fastopt.sharded-state"
MANIFEST_VERSION = 1

_OK, _BAD_INPUT, _INTERRUPTED = 0, 1, 2


class DistributedError(RuntimeError):
    """Another rank failed (bad input, an interrupt), so this rank's update was refused."""


class DistributedTimeoutError(DistributedError, TimeoutError):
    """A collective waited longer than ``timeout`` seconds for the other ranks."""


# -- the shards -------------------------------------------------------------------------------


def whole_keys_only(opt: Optimizer) -> bool:
    """Whether ``opt``'s rule reduces over whole keys (trust ratios, factored state)."""
    rule_math = opt.choose_math()
    return rule_math.trust_ratio is not None or rule_math.state_shape is not None


def shard_ranges(layout: Layout, n_ranks: int, whole_keys: bool) -> list[tuple[int, int]]:
    """The ``[start, stop)`` flat range of each rank: cut near ``r * total / N``
    at the nearest allowed position (a key's start, or a multiple of
    :data:`ALIGN` inside a key unless ``whole_keys``); empty ranges are possible
    when there are fewer allowed positions than ranks."""
    allowed = []
    for offset, size in zip(layout.offsets, layout.sizes):
        allowed.append(offset)
        if not whole_keys:
            allowed.extend(range(offset + ALIGN, offset + size, ALIGN))
    allowed.append(layout.total)
    allowed = np.unique(np.asarray(allowed, np.int64))
    cuts = [0]
    for r in range(1, n_ranks):
        target = (r * layout.total) // n_ranks
        i = int(np.searchsorted(allowed, target))
        candidates = [allowed[j] for j in (i - 1, i) if 0 <= j < allowed.size]
        cut = int(min(candidates, key=lambda c: (abs(c - target), c)))
        cuts.append(max(cut, cuts[-1]))
    cuts.append(layout.total)
    return [(cuts[r], cuts[r + 1]) for r in range(n_ranks)]


def pieces_of(layout: Layout, start: int, stop: int) -> list[tuple[int, int, int]]:
    """The keys a flat range covers: ``(key index, first element, stop element)``
    within each key, in layout order."""
    pieces = []
    for k, (offset, size) in enumerate(zip(layout.offsets, layout.sizes)):
        a, b = max(start, offset), min(stop, offset + size)
        if a < b or (size == 0 and start <= offset < stop):
            pieces.append((k, a - offset, b - offset))
    return pieces


def average_grads(grads_per_rank, layout_keys=None) -> dict:
    """The averaged grads of :class:`ShardedOptimizer`, computed in one process:
    per element, in the grads' dtype, ``((g[0] + g[1]) + ...) / N`` in rank order."""
    grads_per_rank = list(grads_per_rank)
    if not grads_per_rank:
        raise ValueError("average_grads: no ranks")
    n = len(grads_per_rank)
    keys = list(grads_per_rank[0]) if layout_keys is None else list(layout_keys)
    averaged = {}
    for key in keys:
        first = np.asarray(grads_per_rank[0][key])
        total = np.array(first, dtype=first.dtype, copy=True)
        for g in grads_per_rank[1:]:
            np.add(total, np.asarray(g[key]), out=total)
        np.divide(total, total.dtype.type(n), out=total)
        averaged[key] = total
    return averaged


def reference_step(opt, params, grads_per_rank) -> None:
    """What one :class:`ShardedOptimizer` update over ``len(grads_per_rank)``
    ranks does, in one process: ``opt.update(params, average_grads(...))``."""
    opt.update(params, average_grads(grads_per_rank, list(params)))


@helper
def _average_in_rank_order(target, rows, rank, own, first, divisor):
    """``target`` = the rank-order sum of ``rows[:, first:first + len(own)]``,
    with ``own`` as this rank's row, divided by ``divisor`` (the rank count
    in the grads' dtype).

    ``rows[r]`` holds rank r's part of this shard as received; this rank's
    own is ``own`` (read from its grads, never copied into ``rows``).  Two
    ranks: one pass.  More: blocks of 2048 elements stay in the L1 cache
    while each source is added to them, each inner loop indexing 1-D views
    from 0 (so that LLVM vectorises it); every element still sees
    ``((g0 + g1) + g2 ...) / N``."""
    n_ranks = rows.shape[0]
    count = own.size
    if n_ranks == 2:  # one pass
        g0 = own if rank == 0 else rows[0, first : first + count]
        g1 = own if rank == 1 else rows[1, first : first + count]
        for i in range(count):
            target[i] = (g0[i] + g1[i]) / divisor
        return
    for lo in range(0, count, 2048):
        n = min(2048, count - lo)
        block = target[lo : lo + n]
        for r in range(n_ranks):
            source = own[lo : lo + n] if r == rank else rows[r, first + lo : first + lo + n]
            if r == 0:
                for i in range(n):
                    block[i] = source[i]
            else:
                for i in range(n):
                    block[i] += source[i]
        for i in range(n):
            block[i] /= divisor


# -- collectives that give up ---------------------------------------------------------------


class _Collectives:
    """The few collectives an update needs, each waiting at most ``timeout`` s."""

    def __init__(self, comm, timeout: float):
        self.comm = comm
        self.rank = comm.Get_rank()
        self.size = comm.Get_size()
        self.timeout = float(timeout)
        self.broken = None  # why this optimizer refuses further updates
        self._abandoned = []  # requests (and their buffers) given up on

    def wait(self, request, what: str, keep=()) -> None:
        """``request.Wait()``, but raise after ``timeout`` seconds.

        MPI progresses a transfer inside its calls, so this polls ``Test``
        as a blocking wait spins; after a second (another rank is late: no
        transfer of a bucket takes that long) it sleeps 50 us every 64 polls."""
        started = time.monotonic()
        deadline = started + self.timeout
        polls = 0
        try:
            while not request.Test():
                polls += 1
                if polls % 64 == 0:
                    now = time.monotonic()
                    if now > deadline:
                        self._abandoned.append((request, keep))
                        self.broken = (f"rank {self.rank}: {what} timed out after {self.timeout:g} s (another "
                                       "rank stopped taking part)")
                        raise DistributedTimeoutError(
                            f"{self.broken}; the ranks may now hold different params: restore a checkpoint")
                    if now - started > 1.0:
                        time.sleep(0.00005)
        except BaseException as exc:
            if not isinstance(exc, DistributedTimeoutError):
                self._abandoned.append((request, keep))
                self.broken = f"rank {self.rank}: {what} was interrupted ({type(exc).__name__})"
            raise

    def allgather_ints(self, values, what: str) -> np.ndarray:
        send = np.asarray(values, np.int64)
        recv = np.empty(self.size * send.size, np.int64)
        self.wait(self.comm.Iallgather(send, recv), what, (send, recv))
        return recv.reshape(self.size, send.size)

    def allgather_bytes(self, data: bytes, what: str) -> list[bytes]:
        sizes = self.allgather_ints([len(data)], what)[:, 0]
        send = np.frombuffer(data, np.uint8) if data else np.zeros(0, np.uint8)
        recv = np.empty(int(sizes.sum()), np.uint8)
        displs = np.concatenate([[0], np.cumsum(sizes)[:-1]]).astype(np.int64)
        self.wait(self.comm.Iallgatherv(send, [recv, (sizes, displs)]), what, (send, recv))
        return [recv[d : d + s].tobytes() for d, s in zip(displs, sizes)]

    def allgather_floats(self, values: np.ndarray, counts, what: str) -> np.ndarray:
        counts = np.asarray(counts, np.int64)
        displs = np.concatenate([[0], np.cumsum(counts)[:-1]]).astype(np.int64)
        recv = np.empty(int(counts.sum()), np.float64)
        send = np.ascontiguousarray(values, np.float64)
        self.wait(self.comm.Iallgatherv(send, [recv, (counts, displs)]), what, (send, recv))
        return recv

    def agree(self, status: int, message: str, what: str) -> None:
        """Every rank's status; raise on every rank if any is not OK."""
        statuses = self.allgather_ints([status], what)[:, 0]
        if not statuses.any():
            return
        messages = self.allgather_bytes(message.encode(), what)
        failed = [f"rank {r}: {m.decode()}" for r, m in enumerate(messages) if statuses[r]]
        if status == _OK:
            raise DistributedError(f"{what} refused on every rank, nothing was changed: " + "; ".join(failed))

    def all_or_none(self, what: str) -> _AllOrNone:
        return _AllOrNone(self, what)


class _AllOrNone:
    """``with net.all_or_none(what):`` the block's local work, then one status
    exchange: if the block raised on any rank (a KeyboardInterrupt too), every
    rank raises - the failing one its own exception, the others a
    :class:`DistributedError` naming it - so no rank goes on alone."""

    def __init__(self, net: "_Collectives", what: str):
        self.net, self.what = net, what

    def __enter__(self):
        return self

    def __exit__(self, kind, exc, traceback) -> bool:
        if exc is None:
            self.net.agree(_OK, "", self.what)
        else:
            status = _INTERRUPTED if isinstance(exc, KeyboardInterrupt) else _BAD_INPUT
            self.net.agree(status, f"{kind.__name__}: {exc}" if str(exc) else kind.__name__, self.what)
        return False


def _arena_of(arrays, layout: Layout):
    """A flat view over ``arrays`` when they lie back to back in one buffer in
    layout order (``fastopt.flatten``), else None."""
    if not arrays:
        return None
    first = arrays[0]
    base = first.base if first.base is not None else first
    if not isinstance(base, np.ndarray) or base.dtype != layout.dtype or not base.flags.c_contiguous:
        return None
    start = first.__array_interface__["data"][0]
    origin = base.__array_interface__["data"][0]
    itemsize = layout.dtype.itemsize
    for a, offset in zip(arrays, layout.offsets):
        if not a.flags.c_contiguous or a.__array_interface__["data"][0] != start + offset * itemsize:
            return None
        b = a.base if a.base is not None else a
        if b is not base:
            return None
    skip = (start - origin) // itemsize
    flat = base.reshape(-1)
    if skip < 0 or skip + layout.total > flat.size:
        return None
    return flat[skip : skip + layout.total]


# -- the optimizer --------------------------------------------------------------------------


class _ShardChecks:
    """A sharded update's params and grads, checked (a mixin of :class:`ShardedOptimizer`)."""

    def _layout_of(self, params) -> Layout:
        if not isinstance(params, Mapping):
            raise TypeError(f"params: expected a dict of arrays, got {type(params).__name__}")
        if not params:
            raise EmptyParamsError("params: the dict is empty")
        keys, shapes, dtypes = [], [], set()
        for key, value in params.items():
            check_key("params", key)
            self._check_param(key, value)
            keys.append(key)
            shapes.append(value.shape)
            dtypes.add(value.dtype)
        if len(dtypes) > 1:
            raise DTypeMismatchError(f"params: every value must share one dtype, got {sorted(map(str, dtypes))}")
        return Layout.from_shapes(keys, shapes, dtypes.pop())

    @staticmethod
    def _check_param(key, value) -> None:
        if type(value) is not np.ndarray or value.dtype not in FLOAT_DTYPES:
            raise LayoutError(f"params[{key!r}]: a sharded optimizer needs a float32 or float64 NumPy array "
                              f"(it updates a slice of it in place), got {type(value).__name__}")
        if not value.flags.c_contiguous or not value.flags.writeable:
            raise LayoutError(f"params[{key!r}]: expected a C-contiguous, writeable array")

    def _bind(self, params):
        """(a flat view of the params if they are an arena, else None; the
        shard's param views), checked.  The same arrays as last time reuse
        the views (the views keep the arrays alive, so their ids stay theirs)."""
        layout = self.layout
        if not isinstance(params, Mapping):
            raise TypeError(f"params: expected a dict of arrays, got {type(params).__name__}")
        keys, values = list(params), list(params.values())
        identity = tuple(map(id, values))
        bound = self._bound
        if bound is not None and bound[0] == identity and keys == list(layout.keys):
            return bound[1], bound[2]
        if keys != list(layout.keys):
            raise KeyMismatchError(f"params: expected the keys {list(layout.keys)} in that order, got {keys}")
        for key, value, shape in zip(layout.keys, values, layout.shapes):
            self._check_param(key, value)
            if value.dtype != layout.dtype:
                raise DTypeMismatchError(f"params[{key!r}]: expected dtype {layout.dtype}, got {value.dtype}")
            if value.shape != shape:
                raise ShapeMismatchError(f"params[{key!r}]: expected shape {shape}, got {value.shape}")
        flat = [value.reshape(-1) for value in values]
        shard = {layout.keys[k]: self._shaped(k, flat[k][a:b]) for k, a, b in self._mine}
        self._bound = (identity, _arena_of(values, layout), shard, flat)
        return self._bound[1], shard

    def _checked_grads(self, grads) -> tuple[np.ndarray | None, list]:
        """(a flat view of the grads if they are an arena, else None; each key's
        grads flat), after checking keys, shapes and dtypes."""
        layout = self.layout
        if not isinstance(grads, Mapping):
            raise TypeError(f"grads: expected a dict of arrays, got {type(grads).__name__}")
        if len(grads) != len(layout.keys) or set(grads) != layout.keyset:
            missing = [k for k in layout.keys if k not in grads]
            extra = [k for k in grads if k not in layout.keyset]
            raise KeyMismatchError(f"grads: keys differ from the params' (missing {missing}, unexpected {extra})")
        arrays = []
        for key, shape in zip(layout.keys, layout.shapes):
            value = grads[key]
            _, dtype, got = describe("grads", key, value)
            if dtype != layout.dtype:
                raise DTypeMismatchError(f"grads[{key!r}]: expected dtype {layout.dtype} (the params'), got {dtype}")
            if got != shape:
                raise ShapeMismatchError(f"grads[{key!r}]: expected shape {shape}, got {got}")
            arrays.append(value)
        arena = _arena_of(arrays, layout) if all(type(a) is np.ndarray for a in arrays) else None
        return arena, [np.reshape(np.asarray(value), -1) for value in arrays]


class _ShardTraffic:
    """What moves between the ranks: the grads' exchange, the params' gather and
    the pre-pass (a mixin of :class:`ShardedOptimizer`)."""

    def _runs(self, lo: int, hi: int) -> list[tuple[int, int, int]]:
        """(key index, first, stop) of the keys' elements in the flat range [lo, hi)."""
        offsets, sizes = self.layout.offsets, self.layout.sizes
        runs = []
        k = max(0, bisect_right(offsets, lo) - 1)
        while k < len(offsets) and offsets[k] < hi:
            a, b = max(lo, offsets[k]), min(hi, offsets[k] + sizes[k])
            if a < b:
                runs.append((k, a - offsets[k], b - offsets[k]))
            k += 1
        return runs

    def _round(self, j: int) -> "_Round":
        rank, bounds, offsets = self.rank, self._bounds, self.layout.offsets
        counts = bounds[:, j + 1] - bounds[:, j]
        packed = np.concatenate([[0], np.cumsum(counts)[:-1]]).astype(np.int64)
        send_counts = counts.copy()
        send_counts[rank] = 0
        recv_counts = np.full(self.size, counts[rank], np.int64)
        recv_counts[rank] = 0
        lo = int(bounds[rank, j])
        own = [(k, a, b, offsets[k] + a - self.start, offsets[k] + a - lo)
               for k, a, b in self._runs(lo, int(bounds[rank, j + 1]))]
        others = [(int(packed[r]), self._runs(int(bounds[r, j]), int(bounds[r, j + 1])))
                  for r in range(self.size) if r != rank]
        mine = (int(packed[rank]), self._runs(lo, int(bounds[rank, j + 1])))
        return _Round(counts, packed, bounds[:, j].copy(), send_counts, recv_counts, own, others, mine)

    def _exchange_grads(self, arena, flat) -> None:
        """Average the grads into this shard's buffer, bucket by bucket.

        Nothing is sent to oneself: MPI's copy of one's own part cost twice
        the transfer of the others' here, and the sum reads it from the grads."""
        net, rank, rows, bucket = self._net, self.rank, self._rows, self._bucket
        averaged, divisor = self._averaged, self._divisor
        for step in self._rounds:
            if arena is not None:
                send, displs = arena, step.at_in_layout
            else:  # pack the parts of the other ranks' shards, in rank order
                send, displs = bucket, step.packed
                for at, runs in step.others:
                    _pack(bucket, at, flat, runs)
            request = net.comm.Ialltoallv([send, (step.send_counts, displs)],
                                          [rows, (step.recv_counts, self._recv_displs)])
            net.wait(request, "the grads' exchange", (send, rows))
            for k, a, b, target, first in step.own:
                _average_in_rank_order(averaged[target : target + b - a], rows, rank, flat[k][a:b], first, divisor)

    def _gather_params(self, params, arena) -> None:
        """Every rank's updated shard to every rank: in place in an arena, else
        bucket by bucket through the bucket buffer."""
        from mpi4py import MPI

        net = self._net
        if arena is not None:
            request = net.comm.Iallgatherv(MPI.IN_PLACE, [arena, (self._counts, self._displs)])
            net.wait(request, "the params' gather", (arena,))
            return
        flat = self._bound[3]
        bucket = self._bucket
        for step in self._rounds:
            _pack(bucket, step.mine[0], flat, step.mine[1])
            request = net.comm.Iallgatherv(MPI.IN_PLACE, [bucket, (step.counts, step.packed)])
            net.wait(request, "the params' gather", (bucket,))
            for at, runs in step.others:  # this rank's own shard is already in place
                _unpack(bucket, at, flat, runs)

    # -- the pre-pass across ranks ---------------------------------------------------------------

    def _reduce_prepass(self, bad_key, block_sums, total):
        """This shard's pre-pass result -> the whole layout's (see the module doc)."""
        layout = self.layout
        first_bad = len(layout.keys) if bad_key is None else layout.keys.index(bad_key)
        want_norm = self.opt.clip_norm is not None
        # Each rank sends [its first bad key (or len(keys)), its block sums if needed].
        counts = 1 + self._block_counts if want_norm else np.ones(self.size, np.int64)
        local = np.zeros(counts[self.rank])
        local[0] = first_bad
        local[1:] = block_sums[: local.size - 1]
        gathered = self._net.allgather_floats(local, counts, "the grads' pre-pass")
        starts = np.concatenate([[0], np.cumsum(counts)[:-1]])
        first_bad = int(gathered[starts].min())
        bad = layout.keys[first_bad] if first_bad < len(layout.keys) else None
        if not want_norm:
            return bad, 0.0
        sums = np.concatenate([gathered[s + 1 : s + c] for s, c in zip(starts, counts)])
        key_sums = np.zeros(len(layout.keys))
        for key, first, stop in self._key_blocks:
            key_sums[key] = reference_pairwise(sums[first:stop])
        return bad, reference_pairwise(key_sums)

    def _empty_shard_prepass(self) -> bool:
        """A rank without a shard still takes part in the pre-pass; True: skip."""
        opt = self.opt
        bad, total = self._reduce_prepass(None, np.zeros(0), 0.0)
        if opt.clip_norm is not None:
            self.last_grad_norm = math.sqrt(total)
        if bad is not None and opt.nonfinite == "raise":
            raise NonFiniteGradientError(f"grads[{bad!r}] holds a non-finite value (nan or inf); "
                                         "nothing was updated (nonfinite='raise')")
        return bad is not None and opt.nonfinite == "skip"


class _ShardCheckpoints:
    """Sharded checkpoints: written per rank, read back with any number of ranks
    (a mixin of :class:`ShardedOptimizer`)."""

    def save(self, directory) -> None:
        """Write a sharded checkpoint into ``directory`` (every rank calls it).

        Each rank writes its shard as ``shard-<rank>-of-<N>.npz`` (the
        single-process format: atomic, checksummed); then rank 0 writes
        ``manifest.json`` (the layout, the cuts, the step and each shard file's
        SHA-256) atomically, so a directory with a manifest is complete.
        """
        if self.layout is None:
            raise StateFileError("ShardedOptimizer.save: nothing to save before init() or the first update")
        net = self._net
        directory = os.fspath(directory)
        name = f"shard-{self.rank:05d}-of-{self.size:05d}.npz"
        manifest_path = os.path.join(directory, MANIFEST)
        with net.all_or_none("save"):
            if self.rank == 0:  # a directory holds a manifest only while its shard files match it
                os.makedirs(directory, exist_ok=True)
                if os.path.exists(manifest_path):
                    os.remove(manifest_path)
        with net.all_or_none("save"):
            os.makedirs(directory, exist_ok=True)
            self.opt.save(os.path.join(directory, name))
            digest = _file_sha256(os.path.join(directory, name))
        digests = [d.decode() for d in net.allgather_bytes(digest.encode(), "save")]
        with net.all_or_none("save"):
            if self.rank == 0:
                manifest = {
                    "format": MANIFEST_FORMAT, "version": MANIFEST_VERSION, "rule": type(self.opt).__name__,
                    "ranks": self.size, "step": self.step_count, "skipped_steps": self.skipped_steps,
                    "keys": list(self.layout.keys), "shapes": [list(s) for s in self.layout.shapes],
                    "dtype": self.layout.dtype.name, "whole_keys": self.whole_keys,
                    "ranges": [list(r) for r in self.ranges],
                    "files": [{"name": f"shard-{r:05d}-of-{self.size:05d}.npz", "sha256": d}
                              for r, d in enumerate(digests)],
                }
                _write_manifest(manifest_path, manifest)

    def load(self, directory) -> None:
        """Restore a checkpoint written by :meth:`save` with any number of ranks.

        Call :meth:`init` first (the layout must equal the saved one).  Each
        rank reads the shard files that overlap its own range and rebuilds its
        shard's state from their pieces; nothing is installed on any rank
        unless every rank could build its shard.
        """
        if self.layout is None:
            raise StateFileError("ShardedOptimizer.load: call init(params) first (the layout must be known)")
        with self._net.all_or_none("load"):
            manifest = _read_manifest(os.fspath(directory))
            state, step = self._shard_state_from(os.fspath(directory), manifest)
        if self._mine:
            self.opt.load_state_dict(state)
        self.step_count = step
        self.skipped_steps = manifest.get("skipped_steps", 0)
        self._bound = None

    def _shard_state_from(self, directory: str, manifest: dict):
        layout = self.layout
        where = os.path.join(directory, MANIFEST)
        if manifest["rule"] != type(self.opt).__name__:
            raise StateFileError(f"{where}: the checkpoint is for {manifest['rule']!r}, not "
                                 f"{type(self.opt).__name__!r}")
        saved = Layout.from_shapes(manifest["keys"], manifest["shapes"], manifest["dtype"])
        if saved != layout:
            raise StateFileError(f"{where}: the checkpoint's layout (keys {list(saved.keys)}, shapes "
                                 f"{list(saved.shapes)}, dtype {saved.dtype}) differs from this one's "
                                 f"({self._describe()})")
        if bool(manifest["whole_keys"]) != self.whole_keys:
            raise StateFileError(f"{where}: the checkpoint's cuts do not suit {type(self.opt).__name__}")
        old_ranges = [tuple(r) for r in manifest["ranges"]]
        files = manifest["files"]
        if len(old_ranges) != manifest["ranks"] or len(files) != manifest["ranks"]:
            raise StateFileError(f"{where}: corrupt manifest (ranks, ranges and files disagree)")
        # Old shards as {key index: (first, stop, that key's state arrays by name)}.
        found, base = {}, None
        mine = {k: (a, b) for k, a, b in self._mine}
        for r, (a, b) in enumerate(old_ranges):
            old_pieces = pieces_of(layout, a, b)
            needed = any(k in mine and (max(a1, mine[k][0]) < min(b1, mine[k][1]) or a1 == b1)
                         for k, a1, b1 in old_pieces)
            if r and not needed:  # rank 0's file is read in any case: it holds the hyperparameters
                continue
            path = os.path.join(directory, files[r]["name"])
            if _file_sha256(path) != files[r]["sha256"]:
                raise StateFileError(f"{path}: the file's SHA-256 differs from the manifest's")
            reader = copy.deepcopy(self._blank)
            reader.load(path)
            saved_state = reader.state_dict()
            if base is None:
                base = saved_state
            for k, a1, b1 in old_pieces:
                found.setdefault(k, []).append((a1, b1, {n: per_key[layout.keys[k]] for n, per_key in
                                                         saved_state["state"].items()}))
        shapes, state = {}, {n: {} for n in base["state"]}
        for k, a, b in self._mine:
            key = layout.keys[k]
            for name in state:
                unit = INT8_BLOCK if name.endswith(".absmax") else 1
                parts, entries = [], sorted(found.get(k, []), key=lambda p: p[0])
                if not entries:
                    raise StateFileError(f"{where}: no shard file holds key {key!r}")
                for a1, b1, arrays in entries:
                    if self.whole_keys:
                        parts.append(arrays[name])
                        continue
                    lo, hi = max(a, a1), min(b, b1)
                    if lo < hi:
                        flat = arrays[name].reshape(-1)
                        parts.append(flat[(lo - a1) // unit : -(-(hi - a1) // unit)])
                if self.whole_keys:
                    if len(parts) != 1:
                        raise StateFileError(f"{where}: key {key!r} is in {len(parts)} shard files, expected 1")
                    state[name][key] = parts[0]
                else:
                    state[name][key] = np.concatenate(parts or [entries[0][2][name].reshape(-1)[:0]])
            shapes[key] = list(layout.shapes[k]) if self.whole_keys else [b - a]
        step = int(manifest["step"])
        shard = dict(base)
        shard.update(keys=[layout.keys[k] for k, _, _ in self._mine], shapes=shapes, state=state,
                     step=step if self._mine else 0, dtype=layout.dtype.name if self._mine else None)
        if not self._mine:
            shard["state_dtype"] = None
        return shard, step


class ShardedOptimizer(_ShardChecks, _ShardTraffic, _ShardCheckpoints):
    """A fastopt rule whose state is sharded across the ranks of an MPI communicator.

    ``opt`` is a new fastopt optimizer (any rule, any engine option); the
    sharded optimizer updates each rank's shard with it, so ``opt`` holds
    only that shard's state.  Hyperparameter changes (``sharded.opt.lr =
    ...``) must be made on every rank alike, as any SPMD code does.
    """

    def __init__(self, opt: Optimizer, comm=None, *, timeout: float = DEFAULT_TIMEOUT,
                 bucket_size: int = DEFAULT_BUCKET):
        if not isinstance(opt, Optimizer):
            raise TypeError(f"ShardedOptimizer: expected a fastopt optimizer, got {type(opt).__name__}")
        if opt.layout is not None or opt.step_count:
            raise ValueError("ShardedOptimizer: give it a new optimizer (this one already holds a layout or state)")
        if not (isinstance(timeout, (int, float)) and timeout > 0 and math.isfinite(timeout)):
            raise ValueError(f"ShardedOptimizer: timeout must be a positive number of seconds, got {timeout!r}")
        if type(bucket_size) is not int or bucket_size < 1:
            raise ValueError(f"ShardedOptimizer: bucket_size must be a positive int (elements), got {bucket_size!r}")
        self.bucket_size = bucket_size
        if comm is None:
            from mpi4py import MPI

            comm = MPI.COMM_WORLD
        self.opt = opt
        self._blank = copy.deepcopy(opt)  # reads old shards when loading
        self._net = _Collectives(comm, timeout)
        self.rank, self.size = self._net.rank, self._net.size
        self.whole_keys = whole_keys_only(opt)
        self.layout: Layout | None = None
        #: Updates applied (a skipped update, nonfinite="skip", does not count).
        self.step_count = 0
        self.skipped_steps = 0
        #: The global L2 norm of the last update's averaged grads (with clip_norm).
        self.last_grad_norm = None
        opt.serve_as_shard(self._reduce_prepass)

    # -- layout ------------------------------------------------------------------------------

    def init(self, params) -> None:
        """Agree on the layout with every rank and allocate this rank's state.

        Raises on every rank (before anything is allocated) if the ranks'
        keys, shapes or dtypes differ, or if any rank's params are unusable.
        """
        net = self._net
        with net.all_or_none("init"):
            layout = self._layout_of(params)
            # Every pattern must match some key of the whole layout (a shard may have none).
            Groups(self.opt, self.opt.groups.spec()).assign(layout.keys, type(self.opt).__name__)
            described = json.dumps([layout.keys, layout.shapes, layout.dtype.name]).encode()
        if self.layout is not None:
            if self.layout != layout:
                raise LayoutError(f"ShardedOptimizer.init: the layout was already fixed as {self._describe()}")
            return
        seen = net.allgather_bytes(described, "init")
        if len(set(seen)) != 1:
            lines = [f"rank {r}: {json.loads(d.decode())}" for r, d in enumerate(seen)]
            raise LayoutError("ShardedOptimizer.init: the ranks hold different layouts (keys, shapes, dtype): "
                              + "; ".join(lines))
        self._install(layout)

    def _install(self, layout: Layout) -> None:
        ranges = shard_ranges(layout, self.size, self.whole_keys)
        self.layout = layout
        self.ranges = ranges
        self.start, self.stop = ranges[self.rank]
        self.pieces = [pieces_of(layout, a, b) for a, b in ranges]
        self._mine = self.pieces[self.rank]
        self._counts = np.array([b - a for a, b in ranges], np.int64)
        self._displs = np.array([a for a, _ in ranges], np.int64)
        dtype = layout.dtype
        size = self.stop - self.start
        self._divisor = dtype.type(self.size)
        self._averaged = np.empty(size, dtype)  # this shard's averaged grads
        # Buckets: round j moves part j of every shard, so the buffers hold
        # about bucket_size elements, not the layout.  bounds[r, j] is where
        # part j of rank r's shard starts (global flat index).
        rounds = max(1, -(-layout.total // self.bucket_size))
        self._bounds = np.array([[a + (j * (b - a)) // rounds for j in range(rounds + 1)] for a, b in ranges],
                                np.int64)
        parts = np.diff(self._bounds, axis=1)  # [rank, round] elements
        widest = int(parts[self.rank].max())
        self._rows = np.empty((self.size, widest), dtype)  # row r: rank r's part of my shard
        self._bucket = np.empty(int(parts.sum(axis=0).max()), dtype)  # parts bound to (or from) every rank
        self._recv_displs = np.arange(self.size, dtype=np.int64) * widest
        self._rounds = [self._round(j) for j in range(rounds)]
        # The global block table: each rank's blocks are a consecutive run of
        # it, and each key's blocks too: (key, first row, stop row) per key.
        key_of_row = block_table(layout.sizes)[:, 0]
        rows = np.arange(key_of_row.size)
        self._key_blocks = [(int(key_of_row[r[0]]), int(r[0]), int(r[-1]) + 1)
                            for r in np.split(rows, np.flatnonzero(np.diff(key_of_row)) + 1) if r.size]
        self._block_counts = np.zeros(self.size, np.int64)
        for r, pieces in enumerate(self.pieces):
            self._block_counts[r] = sum(-(-(b - a) // NORM_BLOCK) for _, a, b in pieces)
        self._shard_grads, offset = {}, 0
        for k, a, b in self._mine:
            self._shard_grads[layout.keys[k]] = self._shaped(k, self._averaged[offset : offset + (b - a)])
            offset += b - a
        self._bound = None  # (params' ids, their arena or None, the shard's views, each key flat)
        if self._mine:
            self.opt.init({key: np.zeros_like(v) for key, v in self._shard_grads.items()})

    def _shaped(self, k: int, flat: np.ndarray) -> np.ndarray:
        # Whole-key rules see each key in its shape; the others see 1-D pieces.
        return flat.reshape(self.layout.shapes[k]) if self.whole_keys else flat

    def _describe(self) -> str:
        return f"keys {list(self.layout.keys)}, shapes {list(self.layout.shapes)}, dtype {self.layout.dtype}"

    # -- the update ----------------------------------------------------------------------------

    def update(self, params, grads) -> None:
        """One data-parallel step: average ``grads`` over the ranks, update this
        rank's shard, gather the params.  Call it on every rank."""
        net = self._net
        if net.broken:
            raise DistributedError(f"this sharded optimizer is broken ({net.broken}); restore a checkpoint")
        if self.layout is None:
            self.init(params)
        with net.all_or_none("update"):
            params_flat, shard_params = self._bind(params)
            checked_grads = self._checked_grads(grads)

        if self.size == 1:  # the average of one rank is its grads (g / 1 == g): nothing to move
            _, flat = checked_grads
            shard_grads = {self.layout.keys[k]: self._shaped(k, flat[k][a:b]) for k, a, b in self._mine}
        else:
            self._exchange_grads(*checked_grads)
            shard_grads = self._shard_grads
        skipped = False
        if shard_params:
            before = self.opt.skipped_steps
            self.opt.update(shard_params, shard_grads)
            skipped = self.opt.skipped_steps != before
            self.last_grad_norm = self.opt.last_grad_norm
        elif self.opt.needs_grad_prepass:
            skipped = self._empty_shard_prepass()
        if skipped:
            self.skipped_steps += 1
            return
        if self.size > 1:
            self._gather_params(params, params_flat)
        self.step_count += 1

    # -- state -------------------------------------------------------------------------------

    @property
    def state_nbytes(self) -> int:
        """Bytes of optimizer state on this rank (its shard only)."""
        return self.opt.optimizer_state.nbytes if self.opt.layout is not None else 0


@dataclass(frozen=True)
class _Round:
    """One round of the exchange and the gather: part j of every rank's shard."""

    counts: np.ndarray  # each rank's part, elements
    packed: np.ndarray  # where each rank's part starts in the bucket buffer
    at_in_layout: np.ndarray  # where each rank's part starts in the flat layout (arenas)
    send_counts: np.ndarray  # counts, but 0 for this rank
    recv_counts: np.ndarray  # this rank's part from each other rank
    own: list  # (key, first, stop, at in the shard, at in a row) of this rank's part
    others: list  # (at in the bucket, runs) of each other rank's part
    mine: tuple  # (at in the bucket, runs) of this rank's part


def _pack(buffer, at: int, flat, runs) -> None:
    for k, a, b in runs:
        buffer[at : at + b - a] = flat[k][a:b]
        at += b - a


def _unpack(buffer, at: int, flat, runs) -> None:
    for k, a, b in runs:
        flat[k][a:b] = buffer[at : at + b - a]
        at += b - a


def _file_sha256(path: str) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def _write_manifest(path: str, manifest: dict) -> None:
    body = json.dumps(manifest, sort_keys=True)
    text = json.dumps({"manifest": manifest, "sha256": hashlib.sha256(body.encode()).hexdigest()}, indent=1)
    tmp = f"{path}.tmp-{os.getpid()}"
    with open(tmp, "w") as f:
        f.write(text)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def _read_manifest(directory: str) -> dict:
    path = os.path.join(directory, MANIFEST)
    try:
        with open(path) as f:
            document = json.load(f)
    except FileNotFoundError:
        raise StateFileError(f"{path}: no manifest (not a sharded checkpoint, or its save did not finish)") from None
    except (OSError, ValueError) as exc:
        raise StateFileError(f"{path}: unreadable manifest ({exc})") from None
    if not isinstance(document, dict) or not isinstance(document.get("manifest"), dict):
        raise StateFileError(f"{path}: not a fastopt sharded-state manifest")
    manifest = document["manifest"]
    if hashlib.sha256(json.dumps(manifest, sort_keys=True).encode()).hexdigest() != document.get("sha256"):
        raise StateFileError(f"{path}: checksum mismatch (the manifest was changed or damaged)")
    if manifest.get("format") != MANIFEST_FORMAT or manifest.get("version") != MANIFEST_VERSION:
        raise StateFileError(f"{path}: format {manifest.get('format')!r} version {manifest.get('version')!r} is "
                             f"not {MANIFEST_FORMAT!r} version {MANIFEST_VERSION}")
    return manifest
