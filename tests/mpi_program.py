"""The programs that tests/test_distributed.py runs under ``mpiexec -n N``.

    mpiexec -n N python tests/mpi_program.py <scenario> <out directory> [args]

Each rank records what it saw (hashes of its params after every step, its
state bytes, the errors it raised) in ``<out>/rank-<r>.json``; the test
compares them with a single-process run, which needs no MPI.
"""

from __future__ import annotations

import hashlib
import json
import os
import sys
import time

import numpy as np

import fastopt
from fastopt import schedules
from fastopt.distributed import DistributedError, DistributedTimeoutError, ShardedOptimizer
from fastopt.registry import RULES

SHAPES = {"W1": (70, 130), "b1": (130,), "W2": (130, 40), "b2": (40,), "s": (), "g": (3, 5, 7)}
STEPS = 8


def make_params(dtype, seed=0) -> dict:
    rng = np.random.default_rng(seed)
    return {k: np.asarray(rng.standard_normal(s)).astype(dtype) for k, s in SHAPES.items()}


def rank_grads(params, rank: int, step: int, seed=1) -> dict:
    """Rank ``rank``'s grads at ``step``: what both the MPI run and the test build."""
    rng = np.random.default_rng([seed, rank, step])
    return {k: np.asarray(rng.standard_normal(np.shape(v))).astype(v.dtype) for k, v in params.items()}


def configs(rule) -> dict:
    """(dtype, kwargs) for no option; groups + a schedule + clip_norm; and the
    most compact state the rule takes (int8, else bfloat16) with maximize and
    clip_value."""
    lr = rule.fast().hyperparameters()["lr"]
    return {
        "plain": (np.float64, {}),
        "options": (np.float32, {"lr": schedules.warmup_cosine_decay(0.0, lr, 3, 20), "clip_norm": 1.0,
                                 "groups": {"b*": {"lr": lr / 2}}}),
        "state": (np.float32, {"state_dtype": compact_state(rule), "maximize": True, "clip_value": 0.5}),
    }


def compact_state(rule):
    if not rule.fast().state_names:  # SGD without momentum keeps no state to compact
        return None
    for state_dtype in ("int8", "bfloat16"):
        try:
            rule.fast(state_dtype=state_dtype)
        except fastopt.HyperparameterError:
            continue
        return state_dtype
    return None


def digest(params) -> str:
    h = hashlib.sha256()
    for v in params.values():
        h.update(np.ascontiguousarray(v).tobytes())
    return h.hexdigest()


#: Elements per round of the exchange in these programs: several rounds per step.
BUCKET = 3000


def trajectories(comm) -> dict:
    """Every rule, both configs; the "options" config with params and grads as
    arenas (exchanged in place), the "plain" one as dicts of arrays."""
    record = {}
    for rule in RULES:
        for name, (dtype, kwargs) in configs(rule).items():
            arenas = name == "options"
            params = make_params(dtype)
            if arenas:
                params = fastopt.flatten(params)
            opt = ShardedOptimizer(rule.fast(**kwargs), comm, bucket_size=BUCKET)
            hashes = []
            for step in range(STEPS):
                grads = rank_grads(params, comm.rank, step)
                opt.update(params, fastopt.flatten(grads) if arenas else grads)
                hashes.append(digest(params))
            record[f"{rule.name}/{name}"] = {"hashes": hashes, "state_nbytes": opt.state_nbytes,
                                             "norm": opt.last_grad_norm}
    return record


CHECKPOINT_CASES = {
    "Adam-int8": ("Adam", {"state_dtype": "int8", "weight_decay": 0.01}),
    "AdamW-bf16": ("AdamW", {"state_dtype": "bfloat16"}),
    "LAMB": ("LAMB", {"clip_norm": 1.0}),
    "Adafactor": ("Adafactor", {}),
    "NAdam-groups": ("NAdam", {"groups": {"b*": {"lr": 0.001}}, "lr": schedules.linear(0.01, 0.001, 10)}),
}


def _rule(name):
    return next(r for r in RULES if r.name == name)


def checkpoint(comm, directory, save_at: int, load: bool) -> dict:
    """Steps 0-9, saving after ``save_at`` of them; or (``load``) the saved
    params and state, then steps ``save_at``-9."""
    record = {}
    for case, (rule_name, kwargs) in CHECKPOINT_CASES.items():
        where = os.path.join(directory, case)
        opt = ShardedOptimizer(_rule(rule_name).fast(**kwargs), comm, bucket_size=BUCKET)
        if load:
            with np.load(os.path.join(where, "params.npz")) as f:
                params = {k: f[k] for k in SHAPES}
            opt.init(params)
            opt.load(where)
        else:
            params = make_params(np.float32)
        hashes = []
        for step in range(save_at if load else 0, 10):
            opt.update(params, rank_grads(params, comm.rank, step))
            hashes.append(digest(params))
            if not load and step + 1 == save_at:
                opt.save(where)
                if comm.rank == 0:
                    np.savez(os.path.join(where, "params.npz"), **params)
        record[case] = {"hashes": hashes, "step_count": opt.step_count, "state_nbytes": opt.state_nbytes}
    return record


def faults(comm, write) -> dict:
    record = {}
    params = make_params(np.float64)
    before = {k: v.copy() for k, v in params.items()}
    opt = ShardedOptimizer(_rule("Adam").fast(clip_norm=1.0), comm, timeout=3.0)

    # Bad grads on the last rank: every rank raises, nothing changes anywhere.
    grads = rank_grads(params, comm.rank, 0)
    if comm.rank == comm.size - 1:
        grads["W2"] = grads["W2"].T.copy()
    try:
        opt.update(params, grads)
        record["bad_grads"] = "no error"
    except Exception as exc:  # noqa: BLE001 - the test reads the type and message
        record["bad_grads"] = f"{type(exc).__name__}: {exc}"
    record["unchanged_after_bad_grads"] = all(np.array_equal(params[k], before[k]) for k in params)
    record["step_after_bad_grads"] = opt.step_count

    # An interrupt during the last rank's checks: the same, and the others say so.
    grads = rank_grads(params, comm.rank, 0)
    if comm.rank == comm.size - 1:
        grads = _InterruptingGrads(grads)
    try:
        opt.update(params, grads)
        record["interrupt"] = "no error"
    except KeyboardInterrupt:
        record["interrupt"] = "KeyboardInterrupt"
    except Exception as exc:  # noqa: BLE001
        record["interrupt"] = f"{type(exc).__name__}: {exc}"
    record["unchanged_after_interrupt"] = all(np.array_equal(params[k], before[k]) for k in params)

    # Still usable: a good update runs on every rank.
    opt.update(params, rank_grads(params, comm.rank, 1))
    record["good_update_hash"] = digest(params)
    record["step_after_good_update"] = opt.step_count

    # A rank that stops taking part: the others time out with a clear error.
    started = time.monotonic()
    if comm.rank == comm.size - 1 and comm.size > 1:
        record["stalled"] = "stalled (slept instead of updating)"
        write(record)  # the others end the job when they are done
        time.sleep(6.0)
    else:
        try:
            opt.update(params, rank_grads(params, comm.rank, 2))
            record["stalled"] = "no error"
        except DistributedTimeoutError as exc:
            record["stalled"] = f"{type(exc).__name__}: {exc}"
        try:
            opt.update(params, rank_grads(params, comm.rank, 3))
            record["after_timeout"] = "no error"
        except DistributedError as exc:
            record["after_timeout"] = f"{type(exc).__name__}: {exc}"
    record["stalled_seconds"] = time.monotonic() - started
    return record


def poisoned_grads(params, rank: int, step: int, n_ranks: int) -> dict:
    """rank_grads, but at step 1 the last rank's W1[0, 0] is nan (rank 0's shard)
    and at step 3 its g[-1, -1, -1] is inf (the last rank's shard)."""
    grads = rank_grads(params, rank, step)
    if rank == n_ranks - 1 and step == 1:
        grads["W1"][0, 0] = np.nan
    if rank == n_ranks - 1 and step == 3:
        grads["g"][-1, -1, -1] = np.inf
    return grads


def nonfinite(comm) -> dict:
    record = {}
    for policy in ("skip", "raise"):
        params = make_params(np.float32)
        opt = ShardedOptimizer(_rule("Adam").fast(nonfinite=policy, clip_norm=1.0), comm)
        hashes, errors = [], []
        for step in range(5):
            try:
                opt.update(params, poisoned_grads(params, comm.rank, step, comm.size))
                errors.append(None)
            except Exception as exc:  # noqa: BLE001 - the test reads the type and message
                errors.append(f"{type(exc).__name__}: {exc}")
            hashes.append(digest(params))
        record[policy] = {"hashes": hashes, "errors": errors, "step_count": opt.step_count,
                          "skipped_steps": opt.skipped_steps}
    return record


class _InterruptingGrads(dict):
    def __getitem__(self, key):
        if key == "W2":
            raise KeyboardInterrupt
        return super().__getitem__(key)


def main(argv) -> None:
    from mpi4py import MPI

    comm = MPI.COMM_WORLD
    scenario, out = argv[1], argv[2]

    def write(record):
        # Whole or not at all: a rank may be killed while another reads.
        path = os.path.join(out, f"rank-{comm.rank}.json")
        with open(path + ".part", "w") as f:
            json.dump(record, f)
        os.replace(path + ".part", path)

    if scenario == "trajectories":
        record = trajectories(comm)
    elif scenario == "save":
        record = checkpoint(comm, argv[3], int(argv[4]), load=False)
    elif scenario == "load":
        record = checkpoint(comm, argv[3], int(argv[4]), load=True)
    elif scenario == "nonfinite":
        record = nonfinite(comm)
    elif scenario == "faults":
        record = faults(comm, write)
    else:
        raise SystemExit(f"unknown scenario {scenario!r}")
    write(record)
    if scenario == "faults":
        # A rank that leaves without MPI_Finalize makes mpiexec kill the
        # others: wait until every rank's record is written (the stalled
        # rank wrote its own before sleeping), else a rank descheduled on a
        # loaded machine loses its record (seen in CI with 3 ranks).
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and not all(
                os.path.exists(os.path.join(out, f"rank-{r}.json")) for r in range(comm.size)):
            time.sleep(0.05)
        sys.stdout.flush()
        os._exit(0)  # requests abandoned at the timeout: do not wait for them in MPI_Finalize


if __name__ == "__main__":
    main(sys.argv)
