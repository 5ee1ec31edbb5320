"""The marginal cost per element of one serial Adam update in cache, per
state format: (t(3e4) - t(1e4)) / 2e4 elements, medians of 15 interleaved
rounds.  The per-call work cancels out, and 3e4 elements of params, grads
and state stay in L2.  Run: python tools/state_marginal_cost.py"""
import time, statistics, numpy as np, fastopt
def timer(kind, n):
    opt = fastopt.Adam(state_dtype=kind); opt.parallel = False
    p = {"w": np.ones(n, np.float32)}; g = {"w": np.full(n, 1e-3, np.float32)}
    for _ in range(20): opt.update(p, g)
    def run(reps=400):
        t = time.perf_counter()
        for _ in range(reps): opt.update(p, g)
        return (time.perf_counter() - t) / reps
    return run
kinds = ("float32", "bfloat16", "int8")
timers = {(k, n): timer(k, n) for k in kinds for n in (10_000, 30_000)}
res = {key: [] for key in timers}
for r in range(15):
    for key, f in timers.items(): res[key].append(f())
for k in kinds:
    d = (statistics.median(res[(k, 30_000)]) - statistics.median(res[(k, 10_000)])) / 20_000 * 1e9
    print(f"{k:9s} {d:5.2f} ns per element")
