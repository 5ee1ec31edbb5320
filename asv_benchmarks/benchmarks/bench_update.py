"""asv benchmarks: one optimizer update, fastopt beside the NumPy reference,
and the book's loop (fresh grads every step) beside the book's optimizers.

Parametrized over the rule registry of the commit that is measured, so a new
rule appears with no edit here.  Written to import on older commits: anything
a commit lacks (a rule, ``fastopt.flatten``, a stateless SGD shared by
several networks) raises ``NotImplementedError`` in ``setup``, which asv shows
as n/a.  Only the public API is used, with getattr fallbacks; the book's
optimizer classes are written out here, so the baseline is the same code at
every commit.
"""

import statistics
import time

import numpy as np

try:
    from fastopt.registry import RULES

    RULE_NAMES = [rule.name for rule in RULES]
except Exception:  # a commit before the registry: benchmark what the design names
    RULE_NAMES = ["SGD", "Momentum", "Nesterov", "AdaGrad", "RMSprop", "Adam", "AdamW"]

SIZES = [1_000, 100_000, 10_000_000]
LAYOUTS = ["dict", "arena"]
IMPLEMENTATIONS = ["fastopt", "reference"]
N_ARRAYS = 12


def _rule(name):
    try:
        from fastopt.registry import BY_NAME
    except ImportError:
        raise NotImplementedError("no fastopt.registry at this commit")
    if name not in BY_NAME:
        raise NotImplementedError(f"no rule {name} at this commit")
    return BY_NAME[name]


def _bytes_per_element(rule):
    """Bytes one float32 step moves per element, at any commit: a method
    ``bytes_per_element(itemsize)`` (engine v2), an attribute (before), or
    counted from the state buffers (a class attribute before engine v2, an
    instance property since)."""
    per = getattr(rule, "bytes_per_element", None)
    if callable(per):
        return per(4)
    if per:
        return per
    names = getattr(rule.fast, "state_names", None)
    if not isinstance(names, (tuple, list)):
        names = rule.fast().state_names
    return 4 * (3 + 2 * len(names))


def make_update(rule_name, impl, n, layout, seed=0):
    """(one-update callable, rule) for a dict or arena of 12 float32 arrays."""
    import fastopt

    rule = _rule(rule_name)
    rng = np.random.default_rng(seed)
    base, extra = divmod(n, N_ARRAYS)
    sizes = [base + (1 if i < extra else 0) for i in range(N_ARRAYS)]
    params = {f"a{i}": rng.standard_normal(s).astype(np.float32) for i, s in enumerate(sizes)}
    grads = {k: (rng.standard_normal(v.size) * 1e-3).astype(np.float32) for k, v in params.items()}
    if layout == "arena":
        if not hasattr(fastopt, "flatten"):
            raise NotImplementedError("no fastopt.flatten at this commit")
        params = fastopt.flatten(params)
        arena = fastopt.zeros_like(params)
        for k, g in grads.items():
            arena[k][...] = g
        grads = arena
    opt = (rule.fast if impl == "fastopt" else rule.reference)()
    update = lambda: opt.update(params, grads)  # noqa: E731
    update()  # compile (or load from cache) and touch every buffer
    update()
    return update, rule


class Update:
    """Time and peak memory of one ``update(params, grads)``."""

    params = [RULE_NAMES, IMPLEMENTATIONS, SIZES, LAYOUTS]
    param_names = ["rule", "impl", "n", "layout"]
    timeout = 300

    def setup(self, rule, impl, n, layout):
        self.update, _ = make_update(rule, impl, n, layout)

    def time_update(self, rule, impl, n, layout):
        self.update()

    def peakmem_update(self, rule, impl, n, layout):
        self.update()


def _median_seconds(update, min_seconds=0.2, rounds=7):
    start = time.perf_counter()
    update()
    once = max(time.perf_counter() - start, 1e-7)
    batch = max(1, int(min_seconds / rounds / once))
    samples = []
    for _ in range(rounds):
        start = time.perf_counter()
        for _ in range(batch):
            update()
        samples.append((time.perf_counter() - start) / batch)
    return float(np.median(samples))


class Figures:
    """Ratios measured side by side in one process, so machine noise cancels.

    ``track_time_ratio``: fastopt's time per update divided by the reference's
    (lower is better, as asv assumes; 0.1 means fastopt is 10x faster).
    ``track_gb_per_s``: fastopt's effective bandwidth, bytes the rule must move
    per update over its time (HIGHER is better: asv marks a rise as a
    regression on this one, read it the other way).
    """

    params = [RULE_NAMES, SIZES, LAYOUTS]
    param_names = ["rule", "n", "layout"]
    timeout = 600

    def setup(self, rule, n, layout):
        self.fast, self.rule = make_update(rule, "fastopt", n, layout)
        self.reference, _ = make_update(rule, "reference", n, layout, seed=1)
        # Interleave the two so a burst of noise hits both.
        fast, ref = [], []
        for _ in range(3):
            fast.append(_median_seconds(self.fast))
            ref.append(_median_seconds(self.reference))
        self.fast_seconds = float(np.median(fast))
        self.reference_seconds = float(np.median(ref))

    def track_time_ratio(self, rule, n, layout):
        return self.fast_seconds / self.reference_seconds

    track_time_ratio.unit = "fastopt time / reference time (lower is better)"

    def track_gb_per_s(self, rule, n, layout):
        return n * _bytes_per_element(self.rule) / self.fast_seconds / 1e9

    track_gb_per_s.unit = "GB/s (higher is better)"


# -- low-precision state ----------------------------------------------------------------

STATE_RULES = ["Adam", "AdamW", "Lion"]
STATE_FORMATS = ["float32", "bfloat16", "int8"]
STATE_SIZES = [1_000, 10_000_000]


def make_state_update(rule_name, state_format, n, seed=0):
    """(one-update callable, optimizer) for one float32 array with the state
    kept in ``state_format``; NotImplementedError where the commit lacks it."""
    rule = _rule(rule_name)
    try:
        opt = rule.fast(state_dtype=state_format)
    except Exception as exc:  # a commit without this format
        raise NotImplementedError(f"{rule_name}(state_dtype={state_format!r}): {exc}")
    rng = np.random.default_rng(seed)
    params = {"w": rng.standard_normal(n).astype(np.float32)}
    grads = {"w": (rng.standard_normal(n) * 1e-3).astype(np.float32)}
    update = lambda: opt.update(params, grads)  # noqa: E731
    update()
    update()
    return update, opt


class StateFormats:
    """The update with float32, bfloat16 and int8 state (float32 params).

    ``track_time_vs_float32``: this format's time per update over the
    float32-state update's, measured side by side (lower is better; below 1
    the compact state is also the faster).  ``track_state_bytes_per_param``:
    the stored state's bytes per param (lower is better).
    """

    params = [STATE_RULES, STATE_FORMATS, STATE_SIZES]
    param_names = ["rule", "state_dtype", "n"]
    timeout = 600

    def setup(self, rule, state_format, n):
        self.update, self.opt = make_state_update(rule, state_format, n)
        self.float32, _ = make_state_update(rule, "float32", n, seed=1)
        mine, theirs = [], []
        for _ in range(3):
            mine.append(_median_seconds(self.update))
            theirs.append(_median_seconds(self.float32))
        self.ratio = float(np.median(mine)) / float(np.median(theirs))

    def time_update(self, rule, state_format, n):
        self.update()

    def track_time_vs_float32(self, rule, state_format, n):
        return self.ratio

    track_time_vs_float32.unit = "time / float32-state time (lower is better)"

    def track_state_bytes_per_param(self, rule, state_format, n):
        state = getattr(self.opt, "optimizer_state", None)
        if state is None or not hasattr(state, "nbytes"):
            raise NotImplementedError("no optimizer_state.nbytes at this commit")
        return state.nbytes / n

    track_state_bytes_per_param.unit = "bytes of state per param (lower is better)"


# -- the book's loop ----------------------------------------------------------------
#
# What readers of "Deep Learning from Scratch" run: ``grads =
# network.gradient(x, t)`` hands over a new dict of new float64 arrays every
# step and ``optimizer.update(network.params, grads)`` applies it.  The
# baseline is the book's ``common/optimizer.py``, written out below statement
# for statement (Nesterov as the current code); AdamW is not in the book, its
# baseline is ``fastopt.reference.AdamW`` of the commit measured (so is any
# rule the book lacks).  "shared SGD" is one SGD stepping three same-shape
# networks in turn (the book's weight_init_compare.py), timed per step of all
# three.  The same harness lives in ``fastopt.bench`` (``python -m fastopt
# bench --cases book``); this copy imports nothing of fastopt but its
# public API, so it runs on every commit.


class _BookSGD:
    def __init__(self, lr=0.01):
        self.lr = lr

    def update(self, params, grads):
        for key in params.keys():
            params[key] -= self.lr * grads[key]


class _BookMomentum:
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


class _BookNesterov:
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


class _BookAdaGrad:
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


class _BookRMSprop:
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


class _BookAdam:
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


BOOK_CLASSES = {
    "SGD": _BookSGD,
    "Momentum": _BookMomentum,
    "Nesterov": _BookNesterov,
    "AdaGrad": _BookAdaGrad,
    "RMSprop": _BookRMSprop,
    "Adam": _BookAdam,
}
BOOK_NETS = {
    "784-100-100-100-100-10": (784, 100, 100, 100, 100, 10),
    "64-256-256-10": (64, 256, 256, 10),
}
SHARED_SGD = "shared SGD"
SHARED_NETWORKS = 3
BOOK_CASES = RULE_NAMES + [SHARED_SGD]
BOOK_IMPLEMENTATIONS = ["fastopt", "book"]
_WARMUP_STEPS = 10

# Seconds spent inside update() only, summed over every book-loop step of the
# process: BookLoop.time_update's timer, so that building the fresh grads
# (outside the timed region in the book's loop too) is not counted.
_UPDATE_SECONDS = [0.0]


def _update_clock():
    return _UPDATE_SECONDS[0]


def _book_params(net, seed):
    """The float64 params of a book MultiLayerNet (He init, zero biases)."""
    rng = np.random.default_rng(seed)
    sizes = BOOK_NETS[net]
    params = {}
    for i in range(1, len(sizes)):
        params[f"W{i}"] = np.sqrt(2.0 / sizes[i - 1]) * rng.standard_normal((sizes[i - 1], sizes[i]))
        params[f"b{i}"] = np.zeros(sizes[i])
    return params


def _book_optimizer(case, impl):
    import fastopt

    name = "SGD" if case == SHARED_SGD else case
    if impl == "fastopt":
        cls = getattr(fastopt, name, None)
    elif name in BOOK_CLASSES:
        cls = BOOK_CLASSES[name]
    else:
        cls = getattr(getattr(fastopt, "reference", None), name, None)
    if cls is None:
        raise NotImplementedError(f"no {impl} {name} at this commit")
    return cls()


def make_book_step(case, impl, net, seed=0):
    """A callable doing one step of the book's loop, warmed up; the time
    spent in ``update`` goes to ``_UPDATE_SECONDS``."""
    # Allocate and free 16 MiB: glibc then raises its mmap and trim
    # thresholds, so the book's 627 KB temporaries come from the heap instead
    # of fresh (page-faulting) mmaps - which otherwise depends on what the
    # process freed before, up to 3x on the book's time (fastopt.bench.settle_allocator).
    block = np.empty(16 << 20, np.uint8)
    del block
    n_nets = SHARED_NETWORKS if case == SHARED_SGD else 1
    networks = []
    for i in range(n_nets):
        params = _book_params(net, seed + i)
        rng = np.random.default_rng(seed + 100 + i)
        networks.append((params, {k: rng.standard_normal(p.shape) * 1e-3 for k, p in params.items()}))
    optimizer = _book_optimizer(case, impl)
    clock = time.perf_counter
    held = [None]

    def step():
        for params, base in networks:
            # A new dict of new arrays, as network.gradient returns; the
            # previous grads go only once the new ones exist.
            held[0] = grads = {k: g.copy() for k, g in base.items()}
            start = clock()
            optimizer.update(params, grads)
            _UPDATE_SECONDS[0] += clock() - start

    try:
        for _ in range(_WARMUP_STEPS):
            step()
    except Exception as exc:  # e.g. an SGD that fixes its layout (before engine v2)
        if case == SHARED_SGD:
            raise NotImplementedError(f"one SGD cannot update several networks at this commit: {exc}")
        raise
    return step


def _book_seconds(step, batch):
    before = _update_clock()
    for _ in range(batch):
        step()
    return (_update_clock() - before) / batch


class BookLoop:
    """The book's loop: float64 params of a book MultiLayerNet, a fresh dict
    of fresh grad arrays every step (built outside the timed region).

    ``time_update``: one step (shared SGD: the three networks' updates), for
    fastopt and for the book's class; its timer counts only ``update``.
    ``track_speedup``: book time / fastopt time, measured side by side in
    interleaved rounds (HIGHER is better: asv marks a rise as a regression
    on this one, read it the other way).
    """

    params = [BOOK_CASES, BOOK_IMPLEMENTATIONS, list(BOOK_NETS)]
    param_names = ["rule", "impl", "net"]
    timeout = 300

    def setup(self, rule, *rest):
        if len(rest) == 1:  # track_speedup(rule, net) builds its own steps
            _book_optimizer(rule, "fastopt")
            _book_optimizer(rule, "book")
            return
        impl, net = rest
        self.step = make_book_step(rule, impl, net)

    def time_update(self, rule, impl, net):
        self.step()

    time_update.timer = _update_clock

    def track_speedup(self, rule, net, rounds=7, min_seconds=0.01):
        steps = {impl: make_book_step(rule, impl, net) for impl in BOOK_IMPLEMENTATIONS}
        batch = {impl: max(1, int(min_seconds / max(_book_seconds(s, 3), 1e-7))) for impl, s in steps.items()}
        samples = {impl: [] for impl in steps}
        for r in range(rounds):
            for impl in BOOK_IMPLEMENTATIONS[r % 2:] + BOOK_IMPLEMENTATIONS[: r % 2]:
                steps[impl]()  # untimed: the first step after the other implementation ran
                samples[impl].append(_book_seconds(steps[impl], batch[impl]))
        return statistics.median(samples["book"]) / statistics.median(samples["fastopt"])

    track_speedup.params = [BOOK_CASES, list(BOOK_NETS)]
    track_speedup.param_names = ["rule", "net"]
    track_speedup.unit = "book time / fastopt time (higher is better)"
