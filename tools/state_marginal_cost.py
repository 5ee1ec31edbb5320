"""The marginal cost per element of one serial Adam update in cache, per
state format: (t(3e4) - t(1e4)) / 2e4 elements, medians of 15 interleaved
rounds.  The per-call work cancels out, and 3e4 elements of params, grads
and state stay in L2.

Run: python tools/state_marginal_cost.py
"""

import statistics
import time

import numpy as np

import fastopt

FORMATS = ("float32", "bfloat16", "int8")
SMALL, LARGE = 10_000, 30_000


def seconds_per_update(state_dtype: str, n: int):
    """A callable timing ``reps`` serial Adam updates of ``n`` float32 elements."""
    optimizer = fastopt.Adam(state_dtype=state_dtype)
    optimizer.parallel = False
    params = {"w": np.ones(n, np.float32)}
    grads = {"w": np.full(n, 1e-3, np.float32)}
    for _ in range(20):  # compiled, planned, caches warm
        optimizer.update(params, grads)

    def run(reps: int = 400) -> float:
        start = time.perf_counter()
        for _ in range(reps):
            optimizer.update(params, grads)
        return (time.perf_counter() - start) / reps

    return run


def main() -> None:
    timers = {(f, n): seconds_per_update(f, n) for f in FORMATS for n in (SMALL, LARGE)}
    times = {key: [] for key in timers}
    for _ in range(15):
        for key, run in timers.items():
            times[key].append(run())
    for f in FORMATS:
        marginal = statistics.median(times[f, LARGE]) - statistics.median(times[f, SMALL])
        print(f"{f:9s} {marginal / (LARGE - SMALL) * 1e9:5.2f} ns per element")


if __name__ == "__main__":
    main()
