"""Interleaved rounds: the one way the harness times anything.

Round r runs a batch of each step in turn, the order rotating every round,
each batch after one untimed call, so a burst of machine noise hits every
implementation alike; a figure is the median over rounds of the time per
call, and a ratio compares medians of the same run.
"""

from __future__ import annotations

import sys
import time

try:
    import resource as _resource
except ImportError:  # not on Windows: no page-fault counts
    _resource = None

import numpy as np

#: Seconds one timed batch takes (the calls per batch are calibrated to it).
BATCH_SECONDS = 0.01
#: Untimed calls before calibrating: they compile (or load) and touch
#: everything, and let fastopt finish choosing between its serial and
#: parallel kernels (three calls each) before anything is measured.
WARMUP_CALLS = 8


def time_interleaved(steps: dict, rounds: int, batch_seconds: float = BATCH_SECONDS,
                     self_timed: bool = False) -> dict[str, list[float]]:
    """Seconds per call of each step: one sample per round (a batch's mean).

    ``self_timed``: each step returns the seconds it wants counted (the book's
    loop builds its fresh grads outside the timed region), and the harness
    sums those instead of reading the clock around the batch.
    """
    batches = {name: _calibrate(step, batch_seconds, self_timed) for name, step in steps.items()}
    for step in steps.values():
        if hasattr(step, "reset_counters"):
            step.reset_counters()  # count the rounds only
    names = list(steps)
    samples = {name: [] for name in names}
    clock = time.perf_counter
    for r in range(rounds):
        for name in names[r % len(names):] + names[: r % len(names)]:
            step, k = steps[name], batches[name]
            # One untimed call first: the first call after another
            # implementation ran pays for caches, TLBs and sleeping threads
            # (measured up to 1.7x at 1e7 elements).
            step()
            if self_timed:
                total = 0.0
                for _ in range(k):
                    total += step()
            else:
                start = clock()
                for _ in range(k):
                    step()
                total = clock() - start
            samples[name].append(total / k)
    return samples


def _calibrate(step, batch_seconds: float, self_timed: bool) -> int:
    """Warm ``step`` up; calls per batch so that a batch takes ~``batch_seconds``."""
    for _ in range(WARMUP_CALLS):
        step()
    once = []
    for _ in range(3):
        start = time.perf_counter()
        seconds = step()
        once.append(seconds if self_timed else time.perf_counter() - start)
    return max(1, min(100_000, int(batch_seconds / max(min(once), 1e-7))))


def minor_faults() -> int:
    """Minor page faults of this process so far (0 where not reported)."""
    return _resource.getrusage(_resource.RUSAGE_SELF).ru_minflt if _resource is not None else 0


FAULTS_REPORTED = _resource is not None

#: Bytes settle_allocator allocates and frees: more than any array of the
#: book's nets (784 x 100 float64 = 627 KB), less than glibc's 32 MiB cap.
ALLOCATOR_SETTLE_BYTES = 16 << 20


def settle_allocator() -> None:
    """Allocate and free one 16 MiB block, so that glibc's malloc raises its
    mmap threshold (to the size of a freed mmapped block) and its trim
    threshold (twice that).

    Otherwise whether the book's 627 KB temporaries come from ``mmap`` -
    fresh pages, a page fault per 4 KB on every step - or from the heap
    depends on what the process freed before: measured, the same book
    Momentum took 2.2x or 9.9x fastopt's time depending on the rules run
    before it (184-304 minor faults per step).  Settled, the book runs at its
    best, as in a training process that has been running for a while, and
    the comparison does not depend on the order of the cases.  A no-op on
    allocators without such thresholds.
    """
    block = np.empty(ALLOCATOR_SETTLE_BYTES, np.uint8)
    del block


class Progress:
    """A one-line progress bar on stderr."""

    def __init__(self, total, enabled):
        self.total, self.count, self.enabled, self.start = total, 0, enabled, time.perf_counter()

    def show(self, label):
        if not self.enabled:
            return
        width = 30
        filled = int(width * self.count / max(self.total, 1))
        elapsed = time.perf_counter() - self.start
        sys.stderr.write(
            f"\r[{'#' * filled}{'.' * (width - filled)}] {self.count}/{self.total} "
            f"{elapsed:5.0f}s  {label:<32}"
        )
        sys.stderr.flush()

    def advance(self):
        self.count += 1

    def done(self):
        if self.enabled:
            self.show("done")
            sys.stderr.write("\n")
