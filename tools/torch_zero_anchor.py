"""The anchor for tools/mpi_scaling.py: PyTorch's ZeroRedundancyOptimizer (Adam,
gloo, CPU) on 2 processes, float32 params in 8 tensors, medians of interleaved
rounds.  Dev venv only (needs torch).

    python tools/torch_zero_anchor.py [--sizes 1e6 1e7] [--rounds 11]

``allreduce``: the grads averaged with gloo all_reduce on one flat buffer
(what DDP does, in buckets); ``zero step``: ZeroRedundancyOptimizer.step()
(the shard's Adam update plus the params' broadcast from their owners).
"""

from __future__ import annotations

import argparse
import os
import time

import numpy as np
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from torch.distributed.optim import ZeroRedundancyOptimizer


def run(rank, world, sizes, rounds, queue):
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT="29533")
    torch.set_num_threads(1)
    dist.init_process_group("gloo", rank=rank, world_size=world)
    results = {}
    for total in sizes:
        params = [torch.nn.Parameter(torch.randn(total // 8)) for _ in range(8)]
        opt = ZeroRedundancyOptimizer(params, optimizer_class=torch.optim.Adam, lr=1e-4)
        flat = torch.randn(total)
        for p in params:
            p.grad = torch.randn_like(p)

        def allreduce():
            dist.all_reduce(flat)
            flat.div_(world)

        def timed(fn):
            dist.barrier()
            started = time.perf_counter()
            fn()
            elapsed = torch.tensor(time.perf_counter() - started, dtype=torch.float64)
            dist.all_reduce(elapsed, op=dist.ReduceOp.MAX)
            return float(elapsed)

        cases = {"allreduce": allreduce, "zero step": opt.step}
        for fn in cases.values():
            fn()
            fn()
        times = {k: [] for k in cases}
        for _ in range(rounds):
            for k, fn in cases.items():
                times[k].append(timed(fn))
        results[total] = {k: float(np.median(v)) for k, v in times.items()}
    if rank == 0:
        queue.put(results)
    dist.destroy_process_group()


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=float, nargs="+", default=[1e6, 1e7])
    parser.add_argument("--rounds", type=int, default=11)
    args = parser.parse_args()
    ctx = mp.get_context("spawn")
    queue = ctx.Queue()
    mp.spawn(run, args=(2, [int(s) for s in args.sizes], args.rounds, queue), nprocs=2, join=True)
    results = queue.get()
    print(f"torch {torch.__version__} ZeroRedundancyOptimizer(Adam), gloo, 2 processes, medians (ms)")
    for total, r in results.items():
        print(f"{total:>6.0e} allreduce {1e3 * r['allreduce']:8.2f}  zero step {1e3 * r['zero step']:8.2f}  "
              f"sum {1e3 * (r['allreduce'] + r['zero step']):8.2f}")


if __name__ == "__main__":
    main()
