"""Step time, bytes moved and the collectives' bandwidth of ShardedOptimizer.

    mpiexec -n N python tools/mpi_scaling.py [--sizes 1e6 1e7] [--rounds 15] [--json PATH]

For each size (float32 params in 8 keys, Adam), interleaved rounds time:

* ``step``: one ``ShardedOptimizer.update`` (exchange, shard update, gather);
* ``exchange``: its grads' ``Alltoallv`` plus the rank-order sum and the
  division, and ``gather``: its params' ``Allgatherv``;
* ``raw``: mpi4py's own ``Reduce_scatter_block`` + ``Allgather`` of the same
  buffers (MPI's order of additions, no checks, no copies);
* ``update``: the Adam kernel on this rank's shard alone (no MPI).

Bytes moved per rank per step: each rank sends and receives (N-1)/N of the
grads in the exchange and (N-1)/N of the params in the gather, so
``2 * (N-1)/N * size * 4`` bytes each way.  Medians; rank 0 prints a table.
"""

from __future__ import annotations

import argparse
import json
import time

import numpy as np
from mpi4py import MPI

import fastopt
from fastopt.distributed import DEFAULT_BUCKET, ShardedOptimizer


def layout(total: int) -> dict:
    rng = np.random.default_rng(0)
    sizes = [total // 8] * 7
    sizes.append(total - sum(sizes))
    return {f"w{i}": rng.standard_normal(n).astype(np.float32) for i, n in enumerate(sizes)}


def timed(fn, comm) -> float:
    comm.Barrier()
    started = time.perf_counter()
    fn()
    elapsed = time.perf_counter() - started
    return comm.allreduce(elapsed, op=MPI.MAX)  # a collective step ends when its slowest rank does


def measure(comm, total: int, rounds: int, bucket: int) -> dict:
    n = comm.Get_size()
    params = layout(total)
    grads = {k: np.random.default_rng(comm.Get_rank() + 1).standard_normal(v.size).astype(np.float32)
             for k, v in params.items()}
    sharded = ShardedOptimizer(fastopt.Adam(lr=1e-4), comm, bucket_size=bucket)
    sharded.init(params)
    shard_params = {k: v.copy() for k, v in sharded._shard_grads.items()}
    alone = fastopt.Adam(lr=1e-4)
    flat_grads = np.concatenate([g for g in grads.values()])
    block = total // n
    rs_recv = np.empty(block, np.float32)
    gathered = np.empty(block * n, np.float32)

    def raw():
        comm.Reduce_scatter_block(flat_grads[: block * n], rs_recv, op=MPI.SUM)
        comm.Allgather(rs_recv, gathered)

    arena_params, arena_grads = fastopt.flatten(params), fastopt.flatten(grads)
    in_arena = ShardedOptimizer(fastopt.Adam(lr=1e-4), comm, bucket_size=bucket)
    in_arena.init(arena_params)

    def gather():
        sharded._bind(params)
        sharded._gather_params(params, None)

    def gather_arena():
        arena, _ = in_arena._bind(arena_params)
        in_arena._gather_params(arena_params, arena)

    cases = {
        "step": lambda: sharded.update(params, grads),
        "exchange": lambda: sharded._exchange_grads(*sharded._checked_grads(grads)),
        "gather": gather,
        "step arena": lambda: in_arena.update(arena_params, arena_grads),
        "exchange arena": lambda: in_arena._exchange_grads(*in_arena._checked_grads(arena_grads)),
        "gather arena": gather_arena,
        "raw": raw,
        "update": lambda: alone.update(shard_params, sharded._shard_grads) if shard_params else None,
    }
    for fn in cases.values():  # compile, allocate, warm the caches
        fn()
        fn()
    times = {name: [] for name in cases}
    for _ in range(rounds):
        for name, fn in cases.items():
            times[name].append(timed(fn, comm))
    medians = {name: float(np.median(t)) for name, t in times.items()}
    moved = 2 * (n - 1) / n * total * 4  # bytes each rank sends (and receives) per step
    ours = medians["exchange"] + medians["gather"]
    ours_arena = medians["exchange arena"] + medians["gather arena"]
    return {
        "size": total, "ranks": n, "median_seconds": medians,
        "bytes_moved_per_rank": moved,
        "collectives_GBps": moved / ours / 1e9 if n > 1 else None,
        "raw_GBps": moved / medians["raw"] / 1e9 if n > 1 else None,
        "bandwidth_vs_raw": medians["raw"] / ours if n > 1 else None,
        "arena_GBps": moved / ours_arena / 1e9 if n > 1 else None,
        "arena_bandwidth_vs_raw": medians["raw"] / ours_arena if n > 1 else None,
        "state_bytes_per_rank": comm.allgather(sharded.state_nbytes),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=float, nargs="+", default=[1e6, 1e7])
    parser.add_argument("--rounds", type=int, default=15)
    parser.add_argument("--bucket", type=int, default=DEFAULT_BUCKET, help="elements per exchange round")
    parser.add_argument("--json")
    args = parser.parse_args()
    comm = MPI.COMM_WORLD
    results = [measure(comm, int(s), args.rounds, args.bucket) for s in args.sizes]
    if comm.Get_rank():
        return
    print(f"{comm.Get_size()} ranks, {MPI.Get_library_version().splitlines()[0].strip()}, Adam, float32, medians "
          f"of {args.rounds} interleaved rounds (ms)")
    print("dicts: params and grads as 8 separate arrays; arena: fastopt.flatten views (exchanged in place)")
    print(f"{'size':>6} {'layout':>6} {'step':>8} {'exchange':>9} {'gather':>8} {'raw RS+AG':>10} {'shard upd':>10} "
          f"{'MB/rank':>8} {'ours GB/s':>9} {'raw GB/s':>9} {'ours/raw':>8}")
    for r in results:
        m = r["median_seconds"]
        for layout_name, suffix, gbps, ratio in (("dicts", "", "collectives_GBps", "bandwidth_vs_raw"),
                                                 ("arena", " arena", "arena_GBps", "arena_bandwidth_vs_raw")):
            if r["ranks"] == 1:  # one rank moves nothing: the step is the update
                row = (f"{r['size']:>6.0e} {layout_name:>6} {1e3 * m['step' + suffix]:>8.2f} {'-':>9} {'-':>8} "
                       f"{'-':>10} {1e3 * m['update']:>10.2f} {0:>8.1f}")
                print(row)
                continue
            row = (f"{r['size']:>6.0e} {layout_name:>6} {1e3 * m['step' + suffix]:>8.2f} "
                   f"{1e3 * m['exchange' + suffix]:>9.2f} {1e3 * m['gather' + suffix]:>8.2f} "
                   f"{1e3 * m['raw']:>10.2f} {1e3 * m['update']:>10.2f} {r['bytes_moved_per_rank'] / 1e6:>8.1f}")
            row += f" {r[gbps]:>9.2f} {r['raw_GBps']:>9.2f} {r[ratio]:>8.2f}"
            print(row)
    if args.json:
        with open(args.json, "w") as f:
            json.dump(results, f, indent=1)


if __name__ == "__main__":
    main()
