"""asv benchmarks: one optimizer update, fastopt beside the NumPy reference.

Parametrized over the rule registry of the commit that is measured, so a new
rule appears with no edit here.  Written to import on older commits: anything
a commit lacks (a rule, ``fastopt.flatten``) raises ``NotImplementedError`` in
``setup``, which asv shows as n/a.
"""

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
    return getattr(rule, "bytes_per_element", None) or 4 * (3 + 2 * len(rule.fast.state_names))


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
