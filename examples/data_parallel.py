"""Data-parallel training over MPI with the Adam state sharded across ranks.

The book's MultiLayerNet (64-100-100-10, float64) learns the digits with
Adam.  Every rank starts from the same weights and walks the same sequence
of global batches of 120 digits; rank r computes the grads of its share of
each batch, and ``ShardedOptimizer`` averages them, updates the rank's shard
of the params with the rank's shard of Adam's state, and gathers the params.

At the end the example checks what data parallelism promises:

* every rank holds the same params, bit for bit;
* they are the params one process gets by averaging the same per-rank grads
  itself and calling ``Adam.update`` (``fastopt.distributed.reference_step``);
* each rank holds about 1/N of Adam's state.

    mpiexec -n 2 python examples/data_parallel.py [--quick] [--out DIR]

(Without mpiexec it runs as one rank.)  Rank 0 prints the summary and writes
``data_parallel.json``.
"""

from __future__ import annotations

import hashlib
import time

import numpy as np

import fastopt
from _common import parse_args, write_summary
from datasets import load
from fastopt.book import MultiLayerNet
from fastopt.distributed import ShardedOptimizer, reference_step

GLOBAL_BATCH = 120


def shares(batch, n_ranks: int) -> list[np.ndarray]:
    """Each rank's part of a global batch (equal parts: the mean of the ranks'
    mean losses is the batch's mean loss)."""
    return np.split(batch, n_ranks)


def digest(params) -> str:
    h = hashlib.sha256()
    for value in params.values():
        h.update(value.tobytes())
    return h.hexdigest()


def main(argv=None) -> dict | None:
    from mpi4py import MPI

    comm = MPI.COMM_WORLD
    rank, n_ranks = comm.Get_rank(), comm.Get_size()
    args = parse_args(__doc__.splitlines()[0], argv)
    if GLOBAL_BATCH % n_ranks:
        raise SystemExit(f"run with a rank count that divides the global batch of {GLOBAL_BATCH}")
    epochs = 2 if args.quick else 10
    x_train, t_train, x_test, t_test = load()
    steps = epochs * (x_train.shape[0] // GLOBAL_BATCH)
    rng = np.random.default_rng(0)
    batches = [rng.choice(x_train.shape[0], GLOBAL_BATCH, replace=False) for _ in range(steps)]

    net = MultiLayerNet(x_train.shape[1], [100, 100], 10, seed=0)
    opt = ShardedOptimizer(fastopt.Adam(lr=0.001))
    step_seconds = []
    for batch in batches:
        mine = shares(batch, n_ranks)[rank]
        _, grads = net.gradient(x_train[mine], t_train[mine])
        comm.Barrier()  # time the update alone, not the wait for the slowest rank's grads
        started = time.perf_counter()
        opt.update(net.params, grads)
        step_seconds.append(time.perf_counter() - started)

    digests = comm.allgather(digest(net.params))
    state_bytes = comm.allgather(opt.state_nbytes)
    accuracy = float(net.accuracy(x_test, t_test))
    if rank != 0:
        return None

    # One process, the same grads: every rank's share of every batch, averaged
    # in rank order by reference_step, then one Adam update.
    single = MultiLayerNet(x_train.shape[1], [100, 100], 10, seed=0)
    adam = fastopt.Adam(lr=0.001)
    for batch in batches:
        grads = []
        for part in shares(batch, n_ranks):
            _, g = single.gradient(x_train[part], t_train[part])
            grads.append({k: v.copy() for k, v in g.items()})
        reference_step(adam, single.params, grads)

    summary = {
        "ranks": n_ranks,
        "steps": steps,
        "mpi": MPI.Get_library_version().splitlines()[0].strip(),
        "identical_on_every_rank": len(set(digests)) == 1,
        "equal_to_one_process": digests[0] == digest(single.params),
        "test_accuracy": accuracy,
        "state_bytes_per_rank": state_bytes,
        "state_bytes_one_process": adam.optimizer_state.nbytes,
        "update_seconds_median": float(np.median(step_seconds)),
    }
    print(f"{n_ranks} ranks ({summary['mpi']}), {steps} steps of {GLOBAL_BATCH} digits")
    print(f"params identical on every rank: {summary['identical_on_every_rank']}; "
          f"equal to one process: {summary['equal_to_one_process']}")
    print(f"Adam state per rank: {state_bytes} bytes (one process: {summary['state_bytes_one_process']})")
    print(f"test accuracy {accuracy:.4f}; median update {1e6 * summary['update_seconds_median']:.0f} us")
    write_summary(args.out / "data_parallel.json", summary)
    return summary


if __name__ == "__main__":
    main()
