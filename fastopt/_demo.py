"""``python -m fastopt``: train a book-style network with fastopt and with the
NumPy reference side by side, check they end bit-identical, and time the
optimizer steps; then time the book's loop (fresh grads every step) against
the book's own optimizer classes, rule by rule."""

from __future__ import annotations

import statistics
import time

import numpy as np

from .book import MultiLayerNet, teacher_dataset
from .registry import RULES

LEARNING_RATES = {
    "SGD": 0.1,
    "Momentum": 0.05,
    "Nesterov": 0.05,
    "AdaGrad": 0.05,
    "RMSprop": 0.002,
    "Adam": 0.002,
    "AdamW": 0.002,
    "NAdam": 0.005,
    "RAdam": 0.01,
    "Adamax": 0.01,
    "Adadelta": 1.0,
    "Rprop": 0.001,
    "AdaBelief": 0.005,
    "Lion": 0.001,
    "LAMB": 0.01,
    "LARS": 1.0,
    "Adafactor": 0.01,
}


def train_pair(rule, iterations, hidden, batch_size, seed=0):
    """Train two identical nets in lockstep, one per implementation.

    Returns (fast net, reference net, fast step seconds, reference step
    seconds, losses of the fast net).
    """
    x, t = teacher_dataset(seed=seed)
    lr = LEARNING_RATES[rule.name]
    nets = [MultiLayerNet(x.shape[1], hidden, 10, seed=seed) for _ in range(2)]
    opts = [rule.fast(lr=lr), rule.reference(lr=lr)]
    seconds = ([], [])
    losses = []
    rng = np.random.default_rng(seed + 1)
    for _ in range(iterations):
        batch = rng.choice(x.shape[0], batch_size, replace=False)
        for i, (net, opt) in enumerate(zip(nets, opts)):
            loss, grads = net.gradient(x[batch], t[batch])
            start = time.perf_counter()
            opt.update(net.params, grads)
            seconds[i].append(time.perf_counter() - start)
            if i == 0:
                losses.append(loss)
    return nets[0], nets[1], seconds[0], seconds[1], losses


def identical(a: dict, b: dict) -> bool:
    return all(a[k].tobytes() == b[k].tobytes() for k in a)


def book_loop_table(rounds: int = 5) -> list[str]:
    """Per rule, fastopt's speed-up over the book's ``common/optimizer.py`` in
    the book's loop (``fastopt_bench.measure.book_loop``), on both book nets."""
    from ._harness import HARNESS_MISSING, load_harness

    harness = load_harness("measure")
    if harness is None:
        return [f"the book's-loop timing is skipped: {HARNESS_MISSING}"]
    from fastopt_bench.book import BOOK_LOOP_NETS, SHARED_NETWORKS, SHARED_SGD, TWO_D, TWO_D_STEPS

    results = harness.book_loop(RULES, rounds=rounds, progress=False)
    nets = list(BOOK_LOOP_NETS)
    by = {(r.case, r.net): r for r in results}
    lines = [
        f"the book's loop: a fresh dict of fresh float64 grad arrays every step (as network.gradient "
        f"returns), fastopt against the book's common/optimizer.py classes (rules not in the book, AdamW and the "
        f"catalogue: their fastopt.reference class); {SHARED_SGD}: one SGD updating {SHARED_NETWORKS} networks in turn; "
        f"{TWO_D}: the book's optimizer_compare_naive.py, two Python floats, {TWO_D_STEPS} updates timed together; "
        f"median time per step over {rounds} interleaved rounds ('book' column: the baseline's time)\n",
    ]
    width = 31  # a cell: fastopt time, baseline time, speed-up
    lines += [
        (f"{'':<10} {'':<17}" + "".join(f" | {net:<{width}}" for net in nets)).rstrip(),
        f"{'rule':<10} {'baseline':<17}" + f" | {'fastopt':>9} {'book':>10} {'speed-up':>10}" * len(nets),
    ]
    lines.append("-" * len(lines[-1]))
    for case in dict.fromkeys(r.case for r in results):
        baseline = next(r.baseline for r in results if r.case == case)
        cells = "".join(
            f" | {by[(case, net)].fastopt_seconds * 1e6:>6.1f} us {by[(case, net)].baseline_seconds * 1e6:>7.1f} us "
            f"{by[(case, net)].ratio:>9.1f}x" for net in nets
        )
        lines.append(f"{case:<10} {baseline:<17}{cells}")
    return lines


def main(iterations: int = 300, hidden=(256, 256), batch_size: int = 100, book_rounds: int = 5) -> int:
    from . import warmup

    start = time.perf_counter()
    warmup(dtypes=("float64",))
    print(f"fastopt: kernels compiled or loaded from cache in {time.perf_counter() - start:.2f} s")
    n_params = sum(p.size for p in MultiLayerNet(64, hidden, 10).params.values())
    print(
        f"training a {'-'.join(map(str, (64, *hidden, 10)))} MultiLayerNet "
        f"({n_params:,} float64 params, layers holding the arrays) on generated data, "
        f"{iterations} steps of batch {batch_size}, once with fastopt and once with "
        "fastopt.reference, in lockstep\n"
    )
    header = f"{'rule':<9} {'loss start':>10} {'loss end':>9} {'bit-identical':>13} {'fastopt/step':>13} {'reference/step':>15} {'speed-up':>9}"
    print(header)
    print("-" * len(header))
    all_identical = True
    totals = [0.0, 0.0]
    for rule in RULES:
        fast_net, ref_net, fast_s, ref_s, losses = train_pair(rule, iterations, hidden, batch_size)
        same = identical(fast_net.params, ref_net.params)
        all_identical &= same
        totals[0] += sum(fast_s)
        totals[1] += sum(ref_s)
        fast_med, ref_med = statistics.median(fast_s), statistics.median(ref_s)
        print(
            f"{rule.name:<9} {losses[0]:>10.4f} {losses[-1]:>9.4f} {'yes' if same else 'NO':>13} "
            f"{fast_med * 1e6:>10.1f} us {ref_med * 1e6:>12.1f} us {ref_med / fast_med:>8.1f}x"
        )
    print(
        f"\ntime in optimizer steps, all rules: fastopt {totals[0]:.3f} s, "
        f"reference {totals[1]:.3f} s ({totals[1] / totals[0]:.1f}x); medians per step above"
    )
    print("all rules bit-identical to the reference" if all_identical else "MISMATCH against the reference")
    if book_rounds > 0:
        print()
        print("\n".join(book_loop_table(book_rounds)))
    return 0 if all_identical else 1
