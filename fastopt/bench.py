"""``python -m fastopt bench``: every rule in the book's training loop against
the book's own optimizers, and its throughput against the NumPy reference,
PyTorch (when installed) and the memory-bandwidth roof.

The book's loop (``--cases book``)
----------------------------------
What readers of the book run: float64 params of a book MultiLayerNet
(784-100-100-100-100-10, and 64-256-256-10), a fresh dict of fresh grad
arrays every step (copies of a base set, built outside the timed region:
new objects, cache-warm), every rule against the book's
``common/optimizer.py`` class written out here (rules not in the book,
AdamW and the catalogue: their ``fastopt.reference`` class), plus one SGD shared by three networks updated
in turn (the book's weight_init_compare.py).  Medians of interleaved rounds;
the ratio is baseline time / fastopt time.  This is the table the README
quotes.

Method (throughput)
-------------------
For each rule, size and layout, every implementation gets its own params,
grads and state, is warmed up (compiled, buffers touched), then timed in
*interleaved rounds*: round r runs a batch of updates of each implementation
in turn (the order rotates every round; each batch starts with one untimed
call), so a burst of machine noise hits all of them alike.  The figure reported is the median over rounds of the time per
update.  Ratios compare medians from the same run.

The *roof* has the same memory traffic as the rule and trivial arithmetic:
one roof kernel per pass the rule makes over memory (``RuleMath.passes``:
params and state read and written and grads read; a trust-ratio rule's norm
pass and Adafactor's sums as read-only passes, each taking a max, which runs
at the bandwidth where a sum would not), compiled with the same flags
and timed in the same rounds; the faster of its serial and parallel variants
is what this machine gives that traffic.  "% of roof" is roof time / fastopt
time.

Bytes moved per element (float32, ``Rule.bytes_per_element``): SGD 12,
Momentum / Nesterov / AdaGrad / RMSprop 20, Adam / AdamW 28, LAMB 44,
Adafactor 24 (its arrays are matrices ``MATRIX_ROW`` wide, the factored
case, where the size allows; 32 for vectors).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
import tracemalloc
from dataclasses import asdict, dataclass

import numpy as np
from numba import prange

try:
    import resource as _resource
except ImportError:  # not on Windows: no page-fault counts
    _resource = None

import fastopt

from ._jit import _jit, _renamed_copy
from .registry import BY_NAME, RULES, Rule

DEFAULT_SIZES = (1_000, 10_000, 100_000, 1_000_000, 10_000_000)
QUICK_SIZES = (1_000, 100_000, 1_000_000)
LAYOUTS = ("one", "dict", "arena")
N_ARRAYS = 12
#: The book's MultiLayerNet 784-100-100-100-100-10: ten arrays.
BOOK_MLP = (784, 100, 100, 100, 100, 10)
IMPLEMENTATIONS = ("fastopt", "reference", "torch-forloop", "torch-foreach", "torch-fused")
BATCH_SECONDS = 0.01


# -- the roof: same traffic, trivial arithmetic ----------------------------------


class _RoofKernel:
    """A bench-only kernel compiled twice with the library's flags: ``serial``
    and ``parallel``, each under a name of its own (Numba's cache index
    ignores the ``parallel`` flag)."""

    def __init__(self, py_func):
        self.py_func = py_func
        self.serial = _jit(_renamed_copy(py_func, "_serial"), parallel=False)
        self.parallel = _jit(_renamed_copy(py_func, "_parallel"), parallel=True)


def roof_kernel(py_func) -> _RoofKernel:
    return _RoofKernel(py_func)


@roof_kernel
def roof_no_state(p, g):
    for i in prange(p.size):
        p[i] = p[i] + g[i]


@roof_kernel
def roof_one_state(p, g, a):
    for i in prange(p.size):
        ai = a[i] + g[i]
        a[i] = ai
        p[i] = p[i] + ai


@roof_kernel
def roof_two_states(p, g, a, b):
    for i in prange(p.size):
        ai = a[i] + g[i]
        bi = b[i] + g[i]
        a[i] = ai
        b[i] = bi
        p[i] = p[i] + ai + bi


ROOFS = (roof_no_state, roof_one_state, roof_two_states)


# A read-only roof takes the max, not the sum: without fastmath a float sum
# is one chain of dependent adds that LLVM may not reorder, which ran at
# 40% of the bandwidth (a max vectorises), and would have flattered the
# rules' norm passes.


@roof_kernel
def roof_read_one(a):
    top = a.dtype.type(0)
    for i in prange(a.size):
        top = max(top, a[i])
    return top


@roof_kernel
def roof_read_two(a, b):
    top = a.dtype.type(0)
    for i in prange(a.size):
        top = max(top, a[i] + b[i])
    return top


@roof_kernel
def roof_read_three(a, b, c):
    top = a.dtype.type(0)
    for i in prange(a.size):
        top = max(top, a[i] + b[i] + c[i])
    return top


@roof_kernel
def roof_read_four(a, b, c, d):
    top = a.dtype.type(0)
    for i in prange(a.size):
        top = max(top, a[i] + b[i] + c[i] + d[i])
    return top


#: Read-only passes (a trust ratio's norms, Adafactor's sums), by arrays read.
READ_ROOFS = {1: roof_read_one, 2: roof_read_two, 3: roof_read_three, 4: roof_read_four}


# -- what is timed --------------------------------------------------------------


#: Row length of the one array of a factored rule (Adafactor): a matrix,
#: the case its factored state is for.
MATRIX_ROW = 1000


def layout_shapes(n: int, layout: str, matrix: bool = False) -> list[tuple[int, ...]]:
    """The array shapes of a layout holding ``n`` elements in all (``matrix``:
    2-D arrays ``MATRIX_ROW`` wide, where ``n`` allows)."""
    rows = n // MATRIX_ROW if matrix and n % MATRIX_ROW == 0 else 0
    if layout == "one":
        return [(rows, MATRIX_ROW)] if rows else [(n,)]
    if layout in ("dict", "arena"):
        if rows >= N_ARRAYS:
            base, extra = divmod(rows, N_ARRAYS)
            return [(base + (1 if i < extra else 0), MATRIX_ROW) for i in range(N_ARRAYS)]
        base, extra = divmod(n, N_ARRAYS)
        return [(base + (1 if i < extra else 0),) for i in range(N_ARRAYS)]
    if layout in ("mlp-dict", "mlp-arena"):
        shapes = []
        for a, b in zip(BOOK_MLP, BOOK_MLP[1:]):
            shapes += [(a, b), (b,)]
        return shapes
    raise ValueError(layout)


def _arrays(shapes, rng, scale=1.0):
    return {f"a{i}": (rng.standard_normal(s) * scale).astype(np.float32) for i, s in enumerate(shapes)}


TORCH_CLASSES = {
    "SGD": ("SGD", {}),
    "Momentum": ("SGD", {"momentum": 0.9}),
    "Nesterov": ("SGD", {"momentum": 0.9, "nesterov": True}),
    "AdaGrad": ("Adagrad", {"eps": 1e-7}),
    "RMSprop": ("RMSprop", {"alpha": 0.99, "eps": 1e-7}),
    "Adam": ("Adam", {"eps": 1e-7}),
    "AdamW": ("AdamW", {}),
}


def make_step(impl: str, rule: Rule, shapes, layout: str, seed: int = 0):
    """A zero-argument callable doing one update, or None where ``impl`` cannot run."""
    rng = np.random.default_rng(seed)
    params = _arrays(shapes, rng)
    grads = _arrays(shapes, rng, scale=1e-3)
    if impl in ("fastopt", "reference"):
        if layout.endswith("arena"):
            params = fastopt.flatten(params)
            arena_grads = fastopt.zeros_like(params)
            for k, g in grads.items():
                arena_grads[k][...] = g
            grads = arena_grads
        opt = (rule.fast if impl == "fastopt" else rule.reference)()
        return lambda: opt.update(params, grads)
    if layout.endswith("arena"):
        return None  # torch has no arena of its own
    try:
        import torch
    except ImportError:
        return None
    if rule.name in TORCH_CLASSES:
        cls_name, kwargs = TORCH_CLASSES[rule.name]
    elif rule.torch_equivalent is not None:
        cls_name, kwargs = rule.torch_equivalent, {}  # the catalogue's defaults are torch's
    else:
        return None
    mode = impl.split("-")[1]
    flags = {"forloop": {"foreach": False}, "foreach": {"foreach": True}, "fused": {"fused": True}}[mode]
    tensors = []
    for k in params:
        t = torch.nn.Parameter(torch.from_numpy(params[k]))
        t.grad = torch.from_numpy(grads[k])
        tensors.append(t)
    try:
        opt = getattr(torch.optim, cls_name)(tensors, lr=rule.fast().lr, **kwargs, **flags)
        opt.step()
    except (TypeError, RuntimeError, ValueError):
        return None  # e.g. no fused RMSprop
    return opt.step


def make_roof(rule: Rule, n: int, variant: str):
    """One update's traffic with trivial arithmetic: a roof kernel per pass
    of the rule (``RuleMath.passes``), run one after the other."""
    rng = np.random.default_rng(1)
    passes = rule.fast().math.passes
    arrays = [rng.standard_normal(n).astype(np.float32) for _ in range(max(r for r, _ in passes))]
    arrays[1 % len(arrays)] *= 1e-3
    calls = []
    for read, written in passes:
        if written == 0:
            calls.append((getattr(READ_ROOFS[read], variant), arrays[:read]))
        else:
            assert read == written + 1, (rule.name, read, written)
            calls.append((getattr(ROOFS[written - 1], variant), arrays[:read]))
    if len(calls) == 1:
        fn, args = calls[0]
        return lambda: fn(*args)

    def roof():
        for fn, args in calls:
            fn(*args)

    return roof


# -- timing ---------------------------------------------------------------------


def _calibrate(step) -> int:
    """Warm ``step`` up; return updates per batch so a batch takes ~BATCH_SECONDS.

    Eight untimed calls first: they compile and touch everything and let
    fastopt finish timing its serial and parallel kernels (three calls each)
    before anything is measured.
    """
    for _ in range(8):
        step()
    once = []
    for _ in range(3):
        start = time.perf_counter()
        step()
        once.append(time.perf_counter() - start)
    return max(1, min(100_000, int(BATCH_SECONDS / max(min(once), 1e-7))))


def time_interleaved(steps: dict, rounds: int) -> dict[str, list[float]]:
    """Seconds per update of each step, one sample per round, rounds interleaved."""
    batches = {name: _calibrate(step) for name, step in steps.items()}
    names = list(steps)
    samples = {name: [] for name in names}
    clock = time.perf_counter
    for r in range(rounds):
        for name in names[r % len(names) :] + names[: r % len(names)]:
            step, k = steps[name], batches[name]
            # One untimed call first: the first call after another
            # implementation ran pays for caches, TLBs and sleeping threads
            # (measured up to 1.7x at 1e7 elements).
            step()
            start = clock()
            for _ in range(k):
                step()
            samples[name].append((clock() - start) / k)
    return samples


@dataclass
class Result:
    rule: str
    n: int
    layout: str
    impl: str
    seconds: float  # median per update
    rounds: int
    gb_per_s: float
    pct_of_roof: float | None = None


def run(rules, sizes, layouts, rounds, progress=True, mlp=True) -> list[Result]:
    cases = [(rule, n, layout) for rule in rules for n in sizes for layout in layouts]
    if mlp:
        n_mlp = sum(int(np.prod(s)) for s in layout_shapes(0, "mlp-dict"))
        cases += [(rule, n_mlp, layout) for rule in rules for layout in ("mlp-dict", "mlp-arena")]
    results = []
    bar = _Progress(len(cases), enabled=progress)
    for rule, n, layout in cases:
        bar.show(f"{rule.name} n={n:.0e} {layout}")
        shapes = layout_shapes(n, layout, matrix=rule.factored)
        steps = {}
        for impl in IMPLEMENTATIONS:
            step = make_step(impl, rule, shapes, layout)
            if step is not None:
                steps[impl] = step
        steps["roof-serial"] = make_roof(rule, n, "serial")
        steps["roof-parallel"] = make_roof(rule, n, "parallel")
        samples = time_interleaved(steps, rounds)
        medians = {name: statistics.median(s) for name, s in samples.items()}
        roof = min(medians.pop("roof-serial"), medians.pop("roof-parallel"))
        moved = n * rule.bytes_per_element(4)
        for impl, seconds in medians.items():
            results.append(
                Result(rule.name, n, layout, impl, seconds, rounds, moved / seconds / 1e9,
                       100.0 * roof / seconds)
            )
        results.append(Result(rule.name, n, layout, "roof", roof, rounds, moved / roof / 1e9, 100.0))
        steps.clear()
        bar.advance()
    bar.done()
    return results


class _Progress:
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


# -- the book's loop: fresh grads every step, against the book's optimizers ----------
#
# What users of the book run: ``grads = network.gradient(x_batch, t_batch)``
# makes a new dict of new float64 arrays every step, and
# ``optimizer.update(network.params, grads)`` applies them.  The classes
# below are the book's ``common/optimizer.py`` (Saito, "Deep Learning from
# Scratch"; github.com/oreilly-japan/deep-learning-from-scratch), written out
# statement for statement (Nesterov as the current code, after the 2021 fix),
# so the baseline is what a reader of the book has, not fastopt's reference.
# AdamW is not in the book: its baseline is ``fastopt.reference.AdamW``, and
# so is that of any rule added to the registry later.


class BookSGD:
    def __init__(self, lr=0.01):
        self.lr = lr

    def update(self, params, grads):
        for key in params.keys():
            params[key] -= self.lr * grads[key]


class BookMomentum:
    def __init__(self, lr=0.01, momentum=0.9):
        self.lr = lr
        self.momentum = momentum
        self.v = None

    def update(self, params, grads):
        if self.v is None:
            self.v = {}
            for key, val in params.items():
                self.v[key] = np.zeros_like(val)
        for key in params.keys():
            self.v[key] = self.momentum * self.v[key] - self.lr * grads[key]
            params[key] += self.v[key]


class BookNesterov:
    def __init__(self, lr=0.01, momentum=0.9):
        self.lr = lr
        self.momentum = momentum
        self.v = None

    def update(self, params, grads):
        if self.v is None:
            self.v = {}
            for key, val in params.items():
                self.v[key] = np.zeros_like(val)
        for key in params.keys():
            params[key] += self.momentum * self.momentum * self.v[key]
            params[key] -= (1 + self.momentum) * self.lr * grads[key]
            self.v[key] *= self.momentum
            self.v[key] -= self.lr * grads[key]


class BookAdaGrad:
    def __init__(self, lr=0.01):
        self.lr = lr
        self.h = None

    def update(self, params, grads):
        if self.h is None:
            self.h = {}
            for key, val in params.items():
                self.h[key] = np.zeros_like(val)
        for key in params.keys():
            self.h[key] += grads[key] * grads[key]
            params[key] -= self.lr * grads[key] / (np.sqrt(self.h[key]) + 1e-7)


class BookRMSprop:
    def __init__(self, lr=0.01, decay_rate=0.99):
        self.lr = lr
        self.decay_rate = decay_rate
        self.h = None

    def update(self, params, grads):
        if self.h is None:
            self.h = {}
            for key, val in params.items():
                self.h[key] = np.zeros_like(val)
        for key in params.keys():
            self.h[key] *= self.decay_rate
            self.h[key] += (1 - self.decay_rate) * grads[key] * grads[key]
            params[key] -= self.lr * grads[key] / (np.sqrt(self.h[key]) + 1e-7)


class BookAdam:
    def __init__(self, lr=0.001, beta1=0.9, beta2=0.999):
        self.lr = lr
        self.beta1 = beta1
        self.beta2 = beta2
        self.iter = 0
        self.m = None
        self.v = None

    def update(self, params, grads):
        if self.m is None:
            self.m, self.v = {}, {}
            for key, val in params.items():
                self.m[key] = np.zeros_like(val)
                self.v[key] = np.zeros_like(val)
        self.iter += 1
        lr_t = self.lr * np.sqrt(1.0 - self.beta2**self.iter) / (1.0 - self.beta1**self.iter)
        for key in params.keys():
            self.m[key] += (1 - self.beta1) * (grads[key] - self.m[key])
            self.v[key] += (1 - self.beta2) * (grads[key] ** 2 - self.v[key])
            params[key] -= lr_t * self.m[key] / (np.sqrt(self.v[key]) + 1e-7)


#: The book's class for each rule of the registry that the book has.
BOOK_CLASSES = {
    "SGD": BookSGD,
    "Momentum": BookMomentum,
    "Nesterov": BookNesterov,
    "AdaGrad": BookAdaGrad,
    "RMSprop": BookRMSprop,
    "Adam": BookAdam,
}

#: The book's networks: ``MultiLayerNet(784, [100, 100, 100, 100], 10)`` of
#: its chapter 6 scripts (weight_init_compare.py, optimizer_compare_mnist.py)
#: and the demo's smaller 64-256-256-10.
BOOK_NETS = {
    "784-100-100-100-100-10": (784, (100, 100, 100, 100), 10),
    "64-256-256-10": (64, (256, 256), 10),
}
SHARED_SGD = "shared SGD"
#: How many same-shape networks the shared SGD steps in turn (weight_init_compare.py: three).
SHARED_NETWORKS = 3
#: Floors the project holds itself to: baseline time / fastopt time in the book's loop.
BOOK_FLOORS = {"Adam": 3.0}
BOOK_FLOOR = 1.5
BOOK_ROUNDS = 15
BOOK_GRAD_SCALE = 1e-3


def book_baseline(rule: Rule):
    """(label, class) of the NumPy optimizer fastopt is compared with in the book's loop."""
    if rule.name in BOOK_CLASSES:
        return "book", BOOK_CLASSES[rule.name]
    return "fastopt.reference", rule.reference


def book_net_params(net, seed: int = 0) -> dict:
    """The float64 params (W1, b1, ...) of a book MultiLayerNet: ``net`` is a
    name of BOOK_NETS or ``(input, hidden sizes, output)``."""
    from .book import MultiLayerNet

    input_size, hidden, output_size = BOOK_NETS[net] if isinstance(net, str) else net
    return MultiLayerNet(input_size, tuple(hidden), output_size, seed=seed).params


def base_grads(params: dict, seed: int = 1) -> dict:
    """A fixed set of float64 grads shaped like ``params``; each step gets copies."""
    rng = np.random.default_rng(seed)
    return {k: rng.standard_normal(np.shape(p)) * BOOK_GRAD_SCALE for k, p in params.items()}


def fresh_grads(base: dict) -> dict:
    """A new dict of new arrays with ``base``'s values: what the book's
    ``network.gradient`` hands over each step (new objects, cache-warm)."""
    return {k: g.copy() for k, g in base.items()}


def _minor_faults() -> int:
    return _resource.getrusage(_resource.RUSAGE_SELF).ru_minflt if _resource is not None else 0


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


class BookLoopStep:
    """One step of the book's loop; calling it returns the seconds spent in
    ``optimizer.update`` alone.

    ``networks`` is a list of (params, base grads): one for the usual loop,
    several for an optimizer shared by networks updated in turn
    (weight_init_compare.py).  Each update gets a fresh dict of fresh grad
    arrays, built before the clock starts; as with ``grads =
    network.gradient(...)``, the previous grads are released only once the
    new ones exist.  ``calls`` and ``faults`` (minor page faults during the
    updates, where the platform reports them) count since ``reset_counters``.
    """

    def __init__(self, optimizer, networks):
        self.optimizer = optimizer
        self.networks = networks
        self.held = None
        self.calls = self.faults = 0

    def reset_counters(self) -> None:
        self.calls = self.faults = 0

    def __call__(self) -> float:
        clock, update = time.perf_counter, self.optimizer.update
        total = 0.0
        faults = 0
        for params, base in self.networks:
            self.held = grads = fresh_grads(base)
            before = _minor_faults()
            start = clock()
            update(params, grads)
            total += clock() - start
            faults += _minor_faults() - before
        self.calls += 1
        self.faults += faults
        return total


def book_loop_step(optimizer, networks) -> BookLoopStep:
    """See :class:`BookLoopStep`."""
    return BookLoopStep(optimizer, networks)


def make_book_step(impl: str, rule: Rule | None, net, shared: bool = False, seed: int = 0):
    """One step of the book's loop for ``impl`` ("fastopt" or "baseline").

    ``shared``: one SGD (``rule`` ignored) steps SHARED_NETWORKS networks of
    the same shape in turn, each with its own params and grads.
    """
    if shared:
        rule = BY_NAME["SGD"]
    n_nets = SHARED_NETWORKS if shared else 1
    networks = []
    for i in range(n_nets):
        params = book_net_params(net, seed + i)
        networks.append((params, base_grads(params, seed + 100 + i)))
    optimizer = rule.fast() if impl == "fastopt" else book_baseline(rule)[1]()
    return book_loop_step(optimizer, networks)


def _calibrate_timed(step, batch_seconds: float) -> int:
    """Warm up a step that times itself; updates per batch so a batch's timed
    part takes ~``batch_seconds``."""
    for _ in range(8):
        step()
    once = min(step() for _ in range(3))
    return max(1, min(100_000, int(batch_seconds / max(once, 1e-7))))


def time_interleaved_timed(steps: dict, rounds: int, batch_seconds: float = BATCH_SECONDS) -> dict[str, list[float]]:
    """Like :func:`time_interleaved`, for steps that return their own timed
    seconds (work outside the timed region - building fresh grads - is not
    counted).  One sample per round: the mean over a batch."""
    batches = {name: _calibrate_timed(step, batch_seconds) for name, step in steps.items()}
    for step in steps.values():
        if hasattr(step, "reset_counters"):
            step.reset_counters()  # count the rounds only
    names = list(steps)
    samples = {name: [] for name in names}
    for r in range(rounds):
        for name in names[r % len(names):] + names[: r % len(names)]:
            step, k = steps[name], batches[name]
            step()  # untimed, as in time_interleaved
            total = 0.0
            for _ in range(k):
                total += step()
            samples[name].append(total / k)
    return samples


@dataclass
class BookLoopResult:
    case: str  # a rule's name, or SHARED_SGD
    net: str
    baseline: str  # "book" or "fastopt.reference"
    fastopt_seconds: float  # median over rounds, per step (shared SGD: SHARED_NETWORKS updates)
    baseline_seconds: float
    rounds: int
    n_params: int
    #: Minor page faults per step during the updates, over the rounds (None: not reported here).
    fastopt_faults: float | None = None
    baseline_faults: float | None = None

    @property
    def ratio(self) -> float:
        """Baseline time / fastopt time (> 1: fastopt is faster)."""
        return self.baseline_seconds / self.fastopt_seconds

    @property
    def floor(self) -> float:
        return BOOK_FLOORS.get(self.case, BOOK_FLOOR)


def book_loop(rules=RULES, nets=tuple(BOOK_NETS), rounds: int = BOOK_ROUNDS, shared: bool = True,
              progress: bool = True, batch_seconds: float = BATCH_SECONDS) -> list[BookLoopResult]:
    """The book's loop for every rule and net: fastopt against the book's
    class (``book_baseline``), medians of interleaved rounds.  With ``shared``
    and SGD among ``rules``, also one SGD stepping three networks in turn."""
    cases = [(rule, net, False) for rule in rules for net in nets]
    if shared and any(r.name == "SGD" for r in rules):
        cases += [(BY_NAME["SGD"], net, True) for net in nets]
    results = []
    bar = _Progress(len(cases), enabled=progress)
    for rule, net, is_shared in cases:
        name = SHARED_SGD if is_shared else rule.name
        bar.show(f"book loop {name} {net}")
        settle_allocator()
        steps = {impl: make_book_step(impl, rule, net, shared=is_shared) for impl in ("fastopt", "baseline")}
        samples = time_interleaved_timed(steps, rounds, batch_seconds)
        n_params = sum(p.size for p in book_net_params(net).values())
        label = book_baseline(rule)[0]
        faults = {impl: (s.faults / s.calls if _resource is not None and s.calls else None)
                  for impl, s in steps.items()}
        results.append(BookLoopResult(name, net if isinstance(net, str) else _net_name(net), label,
                                      statistics.median(samples["fastopt"]),
                                      statistics.median(samples["baseline"]), rounds, n_params,
                                      faults["fastopt"], faults["baseline"]))
        steps.clear()
        bar.advance()
    bar.done()
    return results


def _net_name(net) -> str:
    input_size, hidden, output_size = net
    return "-".join(map(str, (input_size, *hidden, output_size)))


# -- one-off checks ---------------------------------------------------------------


def allocation_per_update(impl: str, rule: Rule, n: int) -> int:
    """Peak bytes NumPy allocates during one update beyond what exists before it.

    NumPy reports its data allocations to tracemalloc, so an N-sized temporary
    shows up as 4 N bytes at float32.
    """
    step = make_step(impl, rule, [(n,)], "one")
    step()
    step()
    tracemalloc.start()
    try:
        tracemalloc.reset_peak()
        before = tracemalloc.get_traced_memory()[0]
        step()
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    return peak - before


COLD_START = """
import time
start = time.perf_counter()
import numpy as np
import fastopt
params = {"w": np.ones(1_000_000, np.float32)}
fastopt.Adam().update(params, {"w": np.full(1_000_000, 1e-3, np.float32)})
print(time.perf_counter() - start)
"""


def cold_start_seconds(cache_dir: str | None) -> tuple[float, float]:
    """(wall seconds of the whole process, seconds from its first line) for
    ``import fastopt`` plus one Adam update at N = 1e6."""
    env = dict(os.environ)
    if cache_dir is not None:
        env["NUMBA_CACHE_DIR"] = cache_dir
    start = time.perf_counter()
    out = subprocess.run([sys.executable, "-c", COLD_START], env=env, capture_output=True,
                         text=True, check=True)
    return time.perf_counter() - start, float(out.stdout.strip())


def nonfinite_check_cost(rule: Rule, n: int, rounds: int = 9) -> float:
    """Time of an update with nonfinite="skip" over one without (same run)."""
    steps = {}
    for mode in ("propagate", "skip"):
        rng = np.random.default_rng(0)
        params = {"w": rng.standard_normal(n).astype(np.float32)}
        grads = {"w": (rng.standard_normal(n) * 1e-3).astype(np.float32)}
        opt = rule.fast(nonfinite=mode)
        steps[mode] = (lambda o, p, g: lambda: o.update(p, g))(opt, params, grads)
    samples = time_interleaved(steps, rounds)
    return statistics.median(samples["skip"]) / statistics.median(samples["propagate"])


def clip_norm_cost(n: int, rounds: int = 9) -> dict:
    """AdamW with ``clip_norm`` (two passes: the norm reads the grads, then
    the update) against a roof of the same two passes, and against torch's
    ``clip_grad_norm_`` + fused AdamW when torch is installed (same run)."""
    rng = np.random.default_rng(0)
    params = {"w": rng.standard_normal(n).astype(np.float32)}
    grads = {"w": (rng.standard_normal(n) * 1e-3).astype(np.float32)}
    opt = fastopt.AdamW(clip_norm=1.0)
    arrays = [rng.standard_normal(n).astype(np.float32) for _ in range(4)]
    steps = {"fastopt": lambda: opt.update(params, grads)}
    for variant in ("serial", "parallel"):
        update, read = getattr(roof_two_states, variant), getattr(roof_read_one, variant)
        steps["roof-" + variant] = (lambda u, r: lambda: (r(arrays[1]), u(*arrays)))(update, read)
    try:
        import torch
    except ImportError:
        torch = None
    if torch is not None:
        weight = torch.nn.Parameter(torch.from_numpy(params["w"].copy()))
        weight.grad = torch.from_numpy(grads["w"])
        fused = torch.optim.AdamW([weight], lr=0.001, fused=True)

        def torch_step():
            torch.nn.utils.clip_grad_norm_([weight], 1.0)
            fused.step()

        steps["torch-clip+fused"] = torch_step
    medians = {k: statistics.median(v) for k, v in time_interleaved(steps, rounds).items()}
    roof = min(medians.pop("roof-serial"), medians.pop("roof-parallel"))
    result = {"pct_of_roof": 100.0 * roof / medians["fastopt"]}
    if "torch-clip+fused" in medians:
        result["x_torch_clip_fused"] = medians["torch-clip+fused"] / medians["fastopt"]
    return result


#: The torch adapter's cases: (name, tensor sizes, param dtype).
TORCH_ADAPTER_CASES = (
    ("1 tensor", (100_000,), "float32"),
    ("1 tensor", (1_000_000,), "float32"),
    ("1 tensor", (10_000_000,), "float32"),
    ("48 tensors", (100_000_000 // 48,) * 48, "float32"),
    ("200 tensors", (1_000,) * 200, "float32"),
    ("1 tensor bf16", (10_000_000,), "bfloat16"),
)


@dataclass
class TorchAdapterResult:
    case: str
    n: int
    dtype: str
    seconds: float  # fastopt.torch.AdamW, median per step
    x_fused: float  # torch.optim.AdamW(fused=True) time / fastopt's
    x_default: float  # torch.optim.AdamW() (foreach) time / fastopt's


def torch_adapter(rounds: int = 9, cases=TORCH_ADAPTER_CASES, progress: bool = True) -> list[TorchAdapterResult]:
    """``fastopt.torch.AdamW`` against ``torch.optim.AdamW`` (fused and
    default), each on its own copy of the params, grads kept between steps,
    interleaved rounds.  bf16 params: fastopt keeps fp32 master weights and
    writes the bf16 params from them; torch's AdamW steps an fp32 master
    copy (its grads widened from the bf16 grads first) and then copies it
    into the bf16 params, what a user does by hand."""
    import torch

    import fastopt.torch as fastopt_torch

    results = []
    for name, sizes, dtype in cases:
        rng = np.random.default_rng(0)
        values = [rng.standard_normal(n).astype(np.float32) for n in sizes]
        grads = [(rng.standard_normal(n) * 1e-3).astype(np.float32) for n in sizes]
        low = dtype == "bfloat16"

        def tensors():
            out = []
            for v, g in zip(values, grads):
                p = torch.nn.Parameter(torch.from_numpy(v.copy()))
                if low:
                    p = torch.nn.Parameter(p.detach().to(torch.bfloat16))
                p.grad = torch.from_numpy(g.copy()).to(p.dtype)
                out.append(p)
            return out

        steps = {}
        fast = fastopt_torch.AdamW(tensors(), lr=1e-3)
        steps["fastopt"] = fast.step
        for impl, flags in (("fused", {"fused": True}), ("default", {})):
            params = tensors()
            if low:
                masters = [torch.nn.Parameter(p.detach().float()) for p in params]
                for m, p in zip(masters, params):
                    m.grad = p.grad.float()
                opt = torch.optim.AdamW(masters, lr=1e-3, **flags)

                def step(opt=opt, masters=masters, params=params):
                    with torch.no_grad():
                        for m, p in zip(masters, params):
                            m.grad.copy_(p.grad)  # the bf16 grads, widened into the master's
                    opt.step()
                    with torch.no_grad():
                        for m, p in zip(masters, params):
                            p.copy_(m)
            else:
                step = torch.optim.AdamW(params, lr=1e-3, **flags).step
            steps[impl] = step
        medians = {k: statistics.median(v) for k, v in time_interleaved(steps, rounds).items()}
        result = TorchAdapterResult(name, sum(sizes), dtype, medians["fastopt"],
                                    medians["fused"] / medians["fastopt"], medians["default"] / medians["fastopt"])
        if progress:
            print(f"  torch adapter {name} N={result.n:.0e}: x fused {result.x_fused:.2f}, "
                  f"x default {result.x_default:.2f}", file=sys.stderr)
        results.append(result)
        del steps, fast
    return results


def torch_adapter_report(results: list[TorchAdapterResult], env: dict) -> list[str]:
    lines = [f"torch adapter - fastopt.torch.AdamW against torch.optim.AdamW (torch {env.get('torch')}), "
             "time ratio (torch / fastopt), same run"]
    header = f"{'case':<14} {'N':>9} {'params':<9} {'fastopt':>11} {'x fused':>8} {'x default':>10}"
    lines += [header, "-" * len(header)]
    for r in results:
        lines.append(f"{r.case:<14} {r.n:>9.0e} {r.dtype:<9} {_fmt_time(r.seconds):>11} {r.x_fused:>8.2f} "
                     f"{r.x_default:>10.2f}")
    return lines


# -- low-precision state -------------------------------------------------------------

#: The state case (``--cases state``): rules, sizes and state formats.
STATE_RULES = ("Adam", "AdamW")
STATE_SIZES = (1_000, 10_000_000, 100_000_000)
STATE_FORMATS = ("float32", "bfloat16", "int8")


@dataclass
class StateResult:
    rule: str
    n: int
    state_dtype: str
    seconds: float  # fastopt, median per update
    x_float32: float  # the float32-state update's time / this one's
    pct_of_roof: float  # this format's same-traffic roof / this one's time
    bytes_per_element: float  # what one update moves per element, this format
    state_bytes_per_param: float


def state_bytes_per_element(rule: Rule, state_format: str) -> float:
    """Params read and written, grads read (float32), and each state buffer
    read and written in its stored form (int8: a code, plus 4 bytes of absmax
    per 256 elements)."""
    n_state = len(rule.fast().math.state_names)
    per_state = {"float32": 4.0, "bfloat16": 2.0, "int8": 1.0 + 4.0 / 256}[state_format]
    return 3 * 4 + 2 * n_state * per_state


def _state_roof(rule: Rule, n: int, state_format: str, variant: str):
    """The update's traffic in this format with trivial arithmetic (the
    absmax, 1.6% of an int8 state's bytes, left out)."""
    rng = np.random.default_rng(1)
    n_state = len(rule.fast().math.state_names)
    stored = {"float32": np.float32, "bfloat16": np.uint16, "int8": np.uint8}[state_format]
    p, g = rng.standard_normal(n).astype(np.float32), (rng.standard_normal(n) * 1e-3).astype(np.float32)
    states = [np.zeros(n, stored) for _ in range(n_state)]
    fn = getattr(ROOFS[n_state], variant)
    return lambda: fn(p, g, *states)


def state_formats(rules=STATE_RULES, sizes=STATE_SIZES, rounds: int = 9, progress: bool = True) -> list[StateResult]:
    """fastopt's update with float32, bfloat16 and int8 state, float32 params,
    grads kept between steps, each format's roof, interleaved rounds."""
    results = []
    for name in rules:
        rule = BY_NAME[name]
        for n in sizes:
            rng = np.random.default_rng(0)
            grads = {"w": (rng.standard_normal(n) * 1e-3).astype(np.float32)}
            steps, optimizers = {}, {}
            for state_format in STATE_FORMATS:
                opt = rule.fast(state_dtype=state_format)
                params = {"w": rng.standard_normal(n).astype(np.float32)}
                steps[state_format] = lambda opt=opt, params=params: opt.update(params, grads)
                optimizers[state_format] = opt
                for variant in ("serial", "parallel"):
                    steps[f"roof {state_format} {variant}"] = _state_roof(rule, n, state_format, variant)
            medians = {k: statistics.median(v) for k, v in time_interleaved(steps, rounds).items()}
            for state_format in STATE_FORMATS:
                roof = min(medians[f"roof {state_format} serial"], medians[f"roof {state_format} parallel"])
                seconds = medians[state_format]
                result = StateResult(name, n, state_format, seconds, medians["float32"] / seconds,
                                     100.0 * roof / seconds, state_bytes_per_element(rule, state_format),
                                     optimizers[state_format].optimizer_state.nbytes / n)
                if progress:
                    print(f"  state {name} N={n:.0e} {state_format}: x float32 {result.x_float32:.2f}, "
                          f"{result.pct_of_roof:.0f}% of roof", file=sys.stderr)
                results.append(result)
            del steps, optimizers
    return results


def state_formats_report(results: list[StateResult]) -> list[str]:
    lines = ["low-precision state - float32 params, fastopt's update per state format; x float32: the "
             "float32-state time / this one's, same run; roof: the same traffic in this format"]
    header = (f"{'rule':<6} {'N':>9} {'state':<9} {'fastopt':>11} {'x float32':>9} {'% roof':>6} "
              f"{'B/elem':>6} {'state B/param':>13}")
    lines += [header, "-" * len(header)]
    for r in results:
        lines.append(f"{r.rule:<6} {r.n:>9.0e} {r.state_dtype:<9} {_fmt_time(r.seconds):>11} {r.x_float32:>9.2f} "
                     f"{r.pct_of_roof:>6.0f} {r.bytes_per_element:>6.1f} {r.state_bytes_per_param:>13.2f}")
    return lines


def extra_checks(rules) -> dict:
    checks = {"allocation_bytes_at_1e7": {}, "cold_start": {}, "nonfinite_check_cost": {}, "clip_norm_cost": {}}
    if any(rule.name == "AdamW" for rule in rules):
        checks["clip_norm_cost"] = {f"{n:.0e}": clip_norm_cost(n) for n in (1_000_000, 10_000_000)}
    for rule in rules:
        if rule.name in ("SGD", "Adam"):
            checks["nonfinite_check_cost"][rule.name] = {
                f"{n:.0e}": nonfinite_check_cost(rule, n) for n in (100_000, 10_000_000)
            }
    for rule in rules:
        checks["allocation_bytes_at_1e7"][rule.name] = {
            impl: allocation_per_update(impl, rule, 10_000_000) for impl in ("fastopt", "reference")
        }
    with tempfile.TemporaryDirectory() as cache:
        checks["cold_start"]["cold_cache"] = cold_start_seconds(cache)
        checks["cold_start"]["warm_cache"] = statistics.median(
            cold_start_seconds(cache)[0] for _ in range(5)
        )
    return checks


# -- reporting ------------------------------------------------------------------


def environment() -> dict:
    import numba

    env = {
        "date": time.strftime("%Y-%m-%d"),
        "machine": platform.processor() or platform.machine(),
        "cpu": _cpu_name(),
        "cores": os.cpu_count(),
        "python": platform.python_version(),
        "numpy": np.__version__,
        "numba": numba.__version__,
        "numba_threads": numba.get_num_threads(),
        "fastopt": fastopt.__version__,
    }
    try:
        import torch

        env["torch"] = torch.__version__
        env["torch_threads"] = torch.get_num_threads()
    except ImportError:
        env["torch"] = None
    return env


def _cpu_name() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor()


def _fmt_time(s: float) -> str:
    if s < 1e-3:
        return f"{s * 1e6:8.2f} us"
    return f"{s * 1e3:8.2f} ms"


def book_loop_report(book: list[BookLoopResult]) -> list[str]:
    """The book's-loop table of the text report (lines)."""
    if not book:
        return []
    lines = [
        f"the book's loop - float64, a fresh dict of fresh grad arrays every step (built outside the "
        f"timed region); median seconds per step over {book[0].rounds} interleaved rounds",
        f"  baseline: the book's common/optimizer.py class (rules not in the book: their fastopt.reference class); "
        f"{SHARED_SGD}: one SGD stepping {SHARED_NETWORKS} networks in turn, time per step of all {SHARED_NETWORKS}",
        "  x baseline: baseline time / fastopt time, same run",
        "",
    ]
    header = (f"{'rule':<10} {'net':<24} {'params':>8} {'baseline':<17} {'fastopt':>11} {'baseline':>11} "
              f"{'x baseline':>10} {'floor':>12} {'page faults/step':>16}")
    lines += [header, "-" * len(header)]
    for r in book:
        verdict = "ok" if r.ratio >= r.floor else "BELOW"
        faults = ("n/a" if r.fastopt_faults is None or r.baseline_faults is None
                  else f"{r.fastopt_faults:.1f} / {r.baseline_faults:.1f}")
        lines.append(
            f"{r.case:<10} {r.net:<24} {r.n_params:>8,} {r.baseline:<17} {_fmt_time(r.fastopt_seconds):>11} "
            f"{_fmt_time(r.baseline_seconds):>11} {r.ratio:>9.2f}x {f'>= {r.floor:.1f}x {verdict}':>12} "
            f"{faults:>16}"
        )
    lines.append("  page faults/step: minor page faults during the updates, fastopt / baseline (the allocator "
                 "is settled first: settle_allocator)")
    return lines


def report(results: list[Result], checks: dict | None, env: dict, book: list[BookLoopResult] | None = None,
           adapter: list[TorchAdapterResult] | None = None, state: list[StateResult] | None = None) -> str:
    lines = [
        "fastopt bench - median seconds per update over interleaved rounds",
        "  " + ", ".join(f"{k} {v}" for k, v in env.items()),
        "",
    ]
    if book:
        lines += book_loop_report(book) + [""]
    if adapter:
        lines += torch_adapter_report(adapter, env) + [""]
    if state:
        lines += state_formats_report(state) + [""]
    if results:
        lines += [
            "throughput - float32, the same params and grads every call",
            "  speed-up columns: (that implementation's time) / (fastopt's time), same run",
            "",
        ]
    by_case: dict = {}
    for r in results:
        by_case.setdefault((r.rule, r.n, r.layout), {})[r.impl] = r
    others = [i for i in IMPLEMENTATIONS[1:] if any(r.impl == i for r in results)]
    header = "" if not results else (f"{'rule':<9} {'N':>9} {'layout':<9} {'fastopt':>11} {'GB/s':>6} {'roof GB/s':>9} "
              f"{'% roof':>6} " + " ".join(f"{'x ' + o:>15}" for o in others))
    if results:
        lines += [header, "-" * len(header)]
    for (rule, n, layout), impls in by_case.items():
        f = impls.get("fastopt")
        roof = impls["roof"]
        cells = []
        for o in others:
            r = impls.get(o)
            cells.append(f"{r.seconds / f.seconds:>15.2f}" if r else f"{'n/a':>15}")
        lines.append(
            f"{rule:<9} {n:>9.0e} {layout:<9} {_fmt_time(f.seconds):>11} {f.gb_per_s:>6.1f} "
            f"{roof.gb_per_s:>9.1f} {f.pct_of_roof:>6.1f} " + " ".join(cells)
        )
    if checks:
        lines += ["", "allocation during one update at N = 1e7 (tracemalloc peak above baseline):"]
        for rule, per in checks["allocation_bytes_at_1e7"].items():
            lines.append(
                f"  {rule:<9} fastopt {per['fastopt']:>12,} B   reference {per['reference']:>12,} B"
                f"  ({per['reference'] / 4e7:.1f} x N float32 temporaries)"
            )
        if checks.get("nonfinite_check_cost"):
            lines += ["", "nonfinite='skip' (one pass over the grads first): update time / time without the check"]
            for rule, per in checks["nonfinite_check_cost"].items():
                lines.append("  " + rule + "  " + "  ".join(f"N = {n}: {r:.2f}x" for n, r in per.items()))
        if checks.get("clip_norm_cost"):
            lines += ["", "AdamW with clip_norm=1.0 (the norm pass, then the update):"]
            for n, per in checks["clip_norm_cost"].items():
                torch_cell = (f"; x torch clip_grad_norm_ + fused AdamW {per['x_torch_clip_fused']:.2f}"
                              if "x_torch_clip_fused" in per else "")
                lines.append(f"  N = {n}: {per['pct_of_roof']:.0f}% of the two-pass roof{torch_cell}")
        cold = checks["cold_start"]
        lines += [
            "",
            "cold start (new process: import fastopt + one Adam update at N = 1e6, wall time):",
            f"  empty compile cache {cold['cold_cache'][0]:.2f} s;  warm cache (median of 5) "
            f"{cold['warm_cache']:.2f} s",
        ]
    return "\n".join(lines)


def book_loop_markdown(book: list[BookLoopResult], env: dict) -> str:
    """The README's table of the book's loop: one row per rule, per net the
    fastopt time, the baseline's and their ratio."""
    nets = list(dict.fromkeys(r.net for r in book))
    by = {(r.case, r.net): r for r in book}
    lines = [
        f"The book's loop: float64, a fresh dict of fresh grad arrays every step (built outside the timed "
        f"region), fastopt against the book's `common/optimizer.py` classes (rules not in the book: "
        f"their `fastopt.reference` class); {env['cpu']}, {env['cores']} cores; {env['date']}; "
        f"NumPy {env['numpy']}, Numba {env['numba']}; median of {book[0].rounds} interleaved rounds, "
        "malloc settled first (`fastopt.bench.settle_allocator`). "
        f"`x book` = baseline time / fastopt time. {SHARED_SGD}: one SGD stepping {SHARED_NETWORKS} "
        "networks in turn (weight_init_compare.py), time per step of all of them.",
        "",
        "| rule | baseline | " + " | ".join(
            f"{net} ({_n_params(book, net):,} params): fastopt | book | x book" for net in nets) + " |",
    ]
    lines.append("|---|---|" + "---|" * (3 * len(nets)))
    for case in dict.fromkeys(r.case for r in book):
        cells = []
        baseline = next(r.baseline for r in book if r.case == case)
        for net in nets:
            r = by.get((case, net))
            if r is None:
                cells += ["n/a"] * 3
            else:
                cells += [f"{r.fastopt_seconds * 1e6:.1f} us", f"{r.baseline_seconds * 1e6:.1f} us",
                          f"**{r.ratio:.1f}x**"]
        lines.append(f"| {case} | {baseline} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def _n_params(book: list[BookLoopResult], net: str) -> int:
    return next(r.n_params for r in book if r.net == net)


def summary_markdown(results: list[Result], env: dict, book: list[BookLoopResult] | None = None) -> str:
    """The README's results tables: the headline figures of one run (the
    book's loop first, when it ran)."""
    parts = []
    if book:
        parts.append(book_loop_markdown(book, env))
    if results:
        parts.append(_throughput_markdown(results, env))
    return "\n\n".join(parts)


def _throughput_markdown(results: list[Result], env: dict) -> str:
    by = {(r.rule, r.n, r.layout, r.impl): r for r in results}

    def ratio(rule, n, layout, impl):
        f, o = by.get((rule, n, layout, "fastopt")), by.get((rule, n, layout, impl))
        return f"{o.seconds / f.seconds:.1f}x" if f and o else "n/a"

    def cell_time(rule, n, layout):
        f = by.get((rule, n, layout, "fastopt"))
        return f"{f.seconds * 1e6:.2f} us" if f else "n/a"

    def roof(rule, n, layout):
        f = by.get((rule, n, layout, "fastopt"))
        return f"{f.pct_of_roof:.0f}%" if f else "n/a"

    mlp_n = next((r.n for r in results if r.layout == "mlp-dict"), None)
    lines = [
        f"float32; {env['cpu']}, {env['cores']} cores; {env['date']}; Python {env['python']}, "
        f"NumPy {env['numpy']}, Numba {env['numba']}, PyTorch {env['torch']}; "
        f"median of {results[0].rounds} interleaved rounds. "
        "`x ref` = NumPy reference time / fastopt time; `x fused`, `x for-loop` likewise "
        "for PyTorch's fused and default (for-loop) optimizers.",
        "",
        "| rule | 1e3: update | 1e3: x ref | 1e5: x ref | 1e5: x fused | 1e6: x ref | 1e6: x fused "
        "| 1e7: % of roof (one / arena) | 1e7: x fused | 1e7: x for-loop | MLP dict / arena: x ref |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for rule in dict.fromkeys(r.rule for r in results):
        mlp = (f"{ratio(rule, mlp_n, 'mlp-dict', 'reference')} / {ratio(rule, mlp_n, 'mlp-arena', 'reference')}"
               if mlp_n else "n/a")
        lines.append(
            f"| {rule} | {cell_time(rule, 1000, 'one')} | {ratio(rule, 1000, 'one', 'reference')} "
            f"| {ratio(rule, 100_000, 'one', 'reference')} | {ratio(rule, 100_000, 'one', 'torch-fused')} "
            f"| {ratio(rule, 1_000_000, 'one', 'reference')} | {ratio(rule, 1_000_000, 'one', 'torch-fused')} "
            f"| {roof(rule, 10_000_000, 'one')} / {roof(rule, 10_000_000, 'arena')} "
            f"| {ratio(rule, 10_000_000, 'one', 'torch-fused')} | {ratio(rule, 10_000_000, 'one', 'torch-forloop')} "
            f"| {mlp} |"
        )
    return "\n".join(lines)


def plot(results: list[Result], path: str) -> bool:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        print("matplotlib is not installed (pip install 'fastopt[examples]'): no plot drawn")
        return False
    rules = list(dict.fromkeys(r.rule for r in results))
    cols = min(4, len(rules))
    rows = (len(rules) + cols - 1) // cols
    fig, axes = plt.subplots(rows, cols, figsize=(4.2 * cols, 3.4 * rows), squeeze=False)
    styles = {"roof": dict(color="black", linestyle="--", linewidth=2)}
    for ax, rule in zip(axes.flat, rules):
        rows_ = [r for r in results if r.rule == rule and r.layout == "one"]
        for impl in ["roof", *IMPLEMENTATIONS]:
            pts = sorted((r.n, r.gb_per_s) for r in rows_ if r.impl == impl)
            if pts:
                ax.plot(*zip(*pts), marker="o" if impl != "roof" else None, label=impl,
                        **styles.get(impl, {}))
        ax.set_xscale("log")
        ax.set_title(f"{rule} (one float32 array)")
        ax.set_xlabel("elements N")
        ax.set_ylabel("effective GB/s")
        ax.grid(alpha=0.3)
    for ax in list(axes.flat)[len(rules):]:
        ax.axis("off")
    axes.flat[0].legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    return True


CASES = ("throughput", "mlp", "book", "torch", "state")


def _names(choices, what):
    """argparse type: one name or several, comma-separated."""

    def parse(text):
        names = [n.strip() for n in text.split(",") if n.strip()]
        unknown = [n for n in names if n not in choices]
        if unknown:
            raise argparse.ArgumentTypeError(f"unknown {what} {unknown}; known: {', '.join(choices)}")
        return names

    return parse


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m fastopt bench", description=__doc__.split("\n")[0])
    parser.add_argument("--rules", nargs="+", type=_names(list(BY_NAME), "rules"), metavar="RULE",
                        help=f"rules to time, space- or comma-separated ({','.join(BY_NAME)}; all)")
    parser.add_argument("--cases", nargs="+", type=_names(CASES, "cases"), metavar="CASE",
                        help="what to run, space- or comma-separated: throughput (sizes x layouts, float32), "
                        "mlp (the book MultiLayerNet layout, float32), book (the book's loop: fresh float64 "
                        "grads every step against the book's optimizers, and the shared SGD), torch (fastopt.torch.AdamW "
                        "against torch.optim.AdamW, when torch is installed) (all of these), state (Adam and AdamW "
                        "with float32, bfloat16 and int8 state at 1e3, 1e7, 1e8 elements, or --sizes; "
                        "only when named)")
    parser.add_argument("--sizes", nargs="+", type=lambda s: int(float(s)),
                        help="element counts, e.g. 1e3 1e6 (1e3 1e4 1e5 1e6 1e7)")
    parser.add_argument("--layouts", nargs="+", choices=LAYOUTS, default=list(LAYOUTS))
    parser.add_argument("--rounds", type=int, help="interleaved rounds (9; --quick: 3)")
    parser.add_argument("--book-rounds", type=int,
                        help=f"interleaved rounds of the book's loop ({BOOK_ROUNDS}; --quick: 5)")
    parser.add_argument("--quick", action="store_true",
                        help=f"sizes {' '.join(f'{n:.0e}' for n in QUICK_SIZES)}, 3 rounds (book's loop: 5), "
                        "no extra checks")
    parser.add_argument("--no-mlp", action="store_true", help="skip the book MultiLayerNet layout")
    parser.add_argument("--no-checks", action="store_true", help="skip allocation and cold-start checks")
    parser.add_argument("--json", metavar="PATH", help="write every result as JSON")
    parser.add_argument("--plot", metavar="PATH", help="write a PNG of GB/s against N")
    parser.add_argument("--markdown", metavar="PATH", help="write the README's summary tables")
    args = parser.parse_args(argv)

    names = list(dict.fromkeys(n for group in args.rules for n in group)) if args.rules else list(BY_NAME)
    rules = [BY_NAME[n] for n in names]
    # The state case holds three optimizers and their roofs at up to 1e8
    # elements (~10 GB): it runs when asked for.
    cases = {c for names in args.cases for c in names} if args.cases else set(CASES) - {"state"}
    if args.no_mlp:
        cases.discard("mlp")
    sizes = args.sizes or (QUICK_SIZES if args.quick else DEFAULT_SIZES)
    rounds = args.rounds or (3 if args.quick else 9)
    book_rounds = args.book_rounds or (5 if args.quick else BOOK_ROUNDS)
    dtypes = (("float32",) if cases & {"throughput", "mlp"} else ()) + (("float64",) if "book" in cases else ())
    fastopt.warmup(rules=[r.name for r in rules], dtypes=dtypes)
    env = environment()
    book = book_loop(rules, rounds=book_rounds, progress=True) if "book" in cases else []
    results = []
    if cases & {"throughput", "mlp"}:
        results = run(rules, sizes if "throughput" in cases else (), args.layouts, rounds, progress=True,
                      mlp="mlp" in cases)
    adapter = []
    if "torch" in cases:
        if env.get("torch") is None:
            print("torch is not installed (pip install 'fastopt[torch]'): no torch adapter case", file=sys.stderr)
        else:
            adapter = torch_adapter(rounds)
    state = []
    if "state" in cases:
        state_sizes = args.sizes or ((1_000, 1_000_000) if args.quick else STATE_SIZES)
        state = state_formats(rules=[n for n in names if n in STATE_RULES] or STATE_RULES, sizes=state_sizes,
                              rounds=rounds)
    checks = None if (args.quick or args.no_checks or "throughput" not in cases) else extra_checks(rules)
    print(report(results, checks, env, book, adapter, state))
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"environment": env, "results": [asdict(r) for r in results],
                       "book_loop": [dict(asdict(r), ratio=r.ratio) for r in book], "checks": checks,
                       "torch_adapter": [asdict(r) for r in adapter], "state": [asdict(r) for r in state]},
                      f, indent=1)
        print(f"\nresults written to {args.json}")
    if args.markdown:
        with open(args.markdown, "w") as f:
            f.write(summary_markdown(results, env, book) + "\n")
        print(f"summary tables written to {args.markdown}")
    if args.plot and results and plot(results, args.plot):
        print(f"plot written to {args.plot}")
    return 0
