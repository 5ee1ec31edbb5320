"""Threads, fork and thread counts: nothing aborts, hangs, or changes a bit.

Each scenario runs in a fresh interpreter, so the threading layer and the
fork state are exactly what the scenario sets up.
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap

import pytest

COMMON = textwrap.dedent(
    """
    import os, sys, threading
    import numba, numpy as np, fastopt
    from fastopt.registry import RULES, BY_NAME

    def run(rule, steps, seed, parallel=True, params=None):
        rng = np.random.default_rng(seed)
        shapes = {"W": (301, 77), "b": (77,), "big": (40_003,)}
        params = params or {k: rng.standard_normal(s).astype(np.float32) for k, s in shapes.items()}
        grads = [{k: rng.standard_normal(v.shape).astype(np.float32) for k, v in params.items()}
                 for _ in range(steps)]
        fast, ref = rule.fast(), rule.reference()
        fast.parallel_min_size = 0
        fast.parallel = parallel
        fast_params = {k: v.copy() for k, v in params.items()}
        ref_params = {k: v.copy() for k, v in params.items()}
        for g in grads:
            fast.update(fast_params, g)
            ref.update(ref_params, g)
        same = all(fast_params[k].tobytes() == ref_params[k].tobytes() for k in params)
        same &= all(fast.state[n][k].tobytes() == ref.state[n][k].tobytes()
                    for n in fast.state_names for k in params)
        return same
    """
)


def run_script(body: str, **env_extra) -> str:
    env = {k: v for k, v in os.environ.items() if not k.startswith("NUMBA_THREADING")}
    env.update(env_extra)
    result = subprocess.run(
        [sys.executable, "-c", COMMON + textwrap.dedent(body)],
        env=env, capture_output=True, text=True, timeout=600,
    )
    assert result.returncode == 0, (result.stdout + result.stderr)[-4000:]
    return result.stdout


THREADS = """
    numba_layer = None
    results = {}
    def worker(i, rule):
        results[i] = run(rule, steps=8, seed=i)
    threads = [threading.Thread(target=worker, args=(i, RULES[i % len(RULES)])) for i in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=300)
    assert not any(t.is_alive() for t in threads), "hung"
    assert len(results) == 6 and all(results.values()), results
    print("layer", numba.threading_layer(), "ok")
"""


@pytest.mark.parametrize("layer", ["default", "workqueue"])
def test_python_threads_each_stepping_their_own_optimizer(layer):
    # workqueue aborts the process when two threads launch parallel regions
    # at once; fastopt's lock around parallel kernels is what makes this pass.
    env = {} if layer == "default" else {"NUMBA_THREADING_LAYER": layer}
    out = run_script(THREADS, **env)
    assert out.split()[-1] == "ok"
    if layer == "workqueue":
        assert "layer workqueue" in out


def test_fork_after_parallel_updates_then_update_in_the_child():
    out = run_script(
        """
        assert run(BY_NAME["Adam"], steps=3, seed=0)  # parallel regions ran in the parent
        print("parent layer", numba.threading_layer(), flush=True)
        pid = os.fork()
        if pid == 0:
            ok = all(run(rule, steps=4, seed=1) for rule in RULES)
            os._exit(0 if ok else 3)
        _, status = os.waitpid(pid, 0)
        assert os.WIFEXITED(status) and os.WEXITSTATUS(status) == 0, status
        assert run(BY_NAME["AdamW"], steps=3, seed=2)  # the parent keeps its parallel kernels
        print("fork ok")
        """
    )
    assert "fork ok" in out


def test_serial_first_updates_start_no_threads_and_a_fork_child_keeps_parallel_kernels():
    # Starting Numba's threads costs a first update ~20 ms, and a child
    # forked after GNU OpenMP threads started may only run serially.
    out = run_script(
        """
        from numba.np.ufunc import parallel
        from fastopt._jit import PARALLEL
        p = {"w": np.ones(1_000_000)}
        opt = fastopt.Adam()  # parallel chosen by timing: its first calls run serially
        opt.update(p, {"w": np.full(1_000_000, 1e-3)})
        assert not parallel._is_initialized, "the threads started"
        pid = os.fork()
        if pid == 0:
            try:
                ok = PARALLEL.usable and run(BY_NAME["Adam"], steps=3, seed=1)
                numba.threading_layer()  # raises ValueError unless a parallel region ran in the child
            except BaseException:
                ok = False
            os._exit(0 if ok else 3)
        _, status = os.waitpid(pid, 0)
        assert os.WIFEXITED(status) and os.WEXITSTATUS(status) == 0, status
        assert run(BY_NAME["Adam"], steps=3, seed=2) and parallel._is_initialized
        print("lazy ok")
        """
    )
    assert "lazy ok" in out


def test_multiprocessing_fork_pool_after_parallel_updates():
    out = run_script(
        """
        import multiprocessing as mp
        def task(i):
            return run(RULES[i % len(RULES)], steps=3, seed=i)
        assert run(BY_NAME["RMSprop"], steps=3, seed=0)
        with mp.get_context("fork").Pool(2) as pool:
            results = pool.map(task, range(7), chunksize=1)
        assert all(results), results
        print("pool ok")
        """
    )
    assert "pool ok" in out


SCRIPT_THREAD_COUNTS = """
    assert numba.config.NUMBA_NUM_THREADS == 4, numba.config.NUMBA_NUM_THREADS
    for rule in RULES:
        for threads in (1, 2, 3, 4):
            numba.set_num_threads(threads)
            assert run(rule, steps=6, seed=0, parallel=True), (rule.name, threads)
        assert run(rule, steps=6, seed=0, parallel=False), rule.name
    # The clip norm is summed on a grid fixed by the layout: the same bits on
    # every thread count, equal to the reference's sum.
    import math
    from fastopt._reduce import reference_sum_of_squares
    rng = np.random.default_rng(3)
    grads = {"a": rng.standard_normal(70_001).astype(np.float32), "b": rng.standard_normal(5000).astype(np.float32)}
    norms = set()
    for threads in (1, 2, 3, 4):
        numba.set_num_threads(threads)
        opt = fastopt.AdamW(clip_norm=1.0, clip_value=2.0)
        opt.parallel, opt.parallel_min_size = True, 0
        opt.update({k: np.zeros_like(v) for k, v in grads.items()}, grads)
        norms.add(opt.last_grad_norm)
    assert norms == {math.sqrt(reference_sum_of_squares(list(grads.values()), 2.0))}, norms
    print("ok")
"""


def test_bitwise_identical_for_1_to_4_threads_serial_and_parallel():
    assert run_script(SCRIPT_THREAD_COUNTS, NUMBA_NUM_THREADS="4").strip() == "ok"
