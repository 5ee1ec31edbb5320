"""Results do not depend on the number of threads or on the kernel variant."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap

SCRIPT = textwrap.dedent(
    """
    import numba, numpy as np, fastopt
    from fastopt.registry import RULES
    assert numba.config.NUMBA_NUM_THREADS == 4, numba.config.NUMBA_NUM_THREADS
    rng = np.random.default_rng(0)
    shapes = {"W1": (301, 77), "b1": (77,), "W2": (77, 5), "b2": (5,), "big": (50_003,)}
    params0 = {k: rng.standard_normal(s).astype(np.float32) for k, s in shapes.items()}
    grads = [{k: rng.standard_normal(s).astype(np.float32) for k, s in shapes.items()} for _ in range(6)]
    for rule in RULES:
        ref, ref_params = rule.reference(), {k: v.copy() for k, v in params0.items()}
        for g in grads:
            ref.update(ref_params, g)
        for threads in (1, 2, 3, 4):
            numba.set_num_threads(threads)
            for min_size in (0, 1 << 62):
                opt, params = rule.fast(), {k: v.copy() for k, v in params0.items()}
                opt.parallel_min_size = min_size
                for g in grads:
                    opt.update(params, g)
                for k in params:
                    assert params[k].tobytes() == ref_params[k].tobytes(), (rule.name, threads, min_size, k)
                for name in rule.fast.state_names:
                    for k in params:
                        assert opt.state[name][k].tobytes() == ref.state[name][k].tobytes(), (rule.name, name, k)
    print("ok")
    """
)


def test_bitwise_identical_for_1_to_4_threads_serial_and_parallel():
    env = dict(os.environ, NUMBA_NUM_THREADS="4")
    result = subprocess.run([sys.executable, "-c", SCRIPT], env=env, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "ok"
