"""asv benchmarks: the harness's cases (``fastopt_bench``, in this checkout),
measured against the fastopt of the commit asv installed.

Nothing is defined here: the cases, the book's optimizers, the roof and the
interleaved timing are ``python -m fastopt bench``'s own (the figures and
``Options`` call the very functions its report comes from), so asv and the
bench agree on a commit's figures.  Parametrized over the rule registry and
each rule's capabilities (its engine options and state formats), so a new
rule or format appears with no edit.  What a commit lacks is n/a.

Every ``track_`` time figure is a ratio measured side by side in one process
(interleaved rounds, medians), lower is better as asv assumes: 0.1 means
fastopt took a tenth of the other's time.  The dashboard and the README show
their inverse (speed-up, % of roof).  The figures and ``Options`` measure
all their cases once per commit (``setup_cache``), which with asv's fork
server keeps ``run.sh history 5`` within a quarter of an hour on 2 cores.
"""

import os
import re
import sys
from pathlib import Path

# The checkout's fastopt_bench, appended: fastopt itself must come from the
# commit asv installed, never from this checkout.
sys.path.append(str(Path(__file__).resolve().parents[2]))

from fastopt_bench import book, cases, measure  # noqa: E402

try:  # imported once in asv's fork server, not in every benchmark process
    import torch  # noqa: F401
except ImportError:
    pass

RULE_NAMES = cases.rule_names()
#: Interleaved rounds of each figure (the bench's default is 9: asv trades
#: some noise for a history of 5 commits within a quarter of an hour).
ROUNDS = 3
#: A regular expression: only these rules are measured (run.sh check sets it).
ONLY_RULES = os.environ.get("FASTOPT_ASV_RULES")
#: The figures' cases: (n, layout) per figure.
VS_REFERENCE = [(1_000, "dict"), (100_000, "dict")]
VS_ROOF = [(10_000_000, "arena")]
VS_TORCH_FUSED = [(1_000_000, "one")]
OPTIONS_CASE = (1_000_000, "arena")


def _measured_rules():
    return [cases.rule(name) for name in RULE_NAMES if ONLY_RULES is None or re.fullmatch(ONLY_RULES, name)]


def _ratio(results, against):
    """fastopt's median time over ``against``'s, from one case's results."""
    by = {r.impl: r.seconds for r in results}
    return by["fastopt"] / by[against] if against in by else None


class Update:
    """asv's own timing of one ``update(params, grads)``, fastopt and the
    reference: the per-commit throughput lines of the dashboard."""

    params = [RULE_NAMES, ["fastopt", "reference"], [1_000_000], ["dict"]]
    param_names = ["rule", "impl", "n", "layout"]
    timeout = 300
    processes = 1
    repeat = (5, 10, 2.0)
    warmup_time = 0.05

    def setup(self, rule, impl, n, layout):
        if ONLY_RULES is not None and not re.fullmatch(ONLY_RULES, rule):
            raise NotImplementedError(f"{rule} not selected")
        self.update = cases.make_step(impl, cases.rule(rule), n, layout)
        self.update()  # compile (or load from cache) and touch every buffer
        self.update()

    def time_update(self, rule, impl, n, layout):
        self.update()


def _measure_figures(against, figure_cases, impls):
    """{(rule, n, layout): fastopt's time over ``against``'s} for every rule."""
    figures = {}
    for rule in _measured_rules():
        for n, layout in figure_cases:
            results = measure.throughput_case(rule, n, layout, ROUNDS, impls=impls)
            figures[(rule.name, n, layout)] = _ratio(results, against)
    return figures


class _Figure:
    """One of the README's ratios per rule, fastopt's time over another's,
    measured once per commit for every rule in one process (``setup_cache``:
    each class writes its own, since asv tells caches apart by their source
    line), each case in its own interleaved rounds (``fastopt_bench.measure``)."""

    against = None  # "reference", "roof" or "torch-fused"
    timeout = 600

    def setup(self, figures, rule, n, layout):
        self.value = figures.get((rule, n, layout))
        if self.value is None:
            raise NotImplementedError(f"no {self.against} figure for {rule} at N = {n} ({layout})")


def _figure_params(figure_cases):
    return [RULE_NAMES, sorted({n for n, _ in figure_cases}), sorted({layout for _, layout in figure_cases})]


class Reference(_Figure):
    """fastopt against the NumPy reference."""

    against = "reference"
    params = _figure_params(VS_REFERENCE)
    param_names = ["rule", "n", "layout"]

    def setup_cache(self):
        return _measure_figures("reference", VS_REFERENCE, ("fastopt", "reference"))

    setup_cache.timeout = 1200

    def track_time_vs_reference(self, figures, rule, n, layout):
        return self.value

    track_time_vs_reference.unit = "fastopt time / reference time"


class Roof(_Figure):
    """fastopt against the same-traffic roof (1 = at the roof)."""

    against = "roof"
    params = _figure_params(VS_ROOF)
    param_names = ["rule", "n", "layout"]

    def setup_cache(self):
        return _measure_figures("roof", VS_ROOF, ("fastopt",))

    setup_cache.timeout = 1200

    def track_time_vs_roof(self, figures, rule, n, layout):
        return self.value

    track_time_vs_roof.unit = "fastopt time / same-traffic roof time"


class TorchFused(_Figure):
    """fastopt against torch's fused CPU kernel (n/a without torch or where
    torch has none)."""

    against = "torch-fused"
    params = _figure_params(VS_TORCH_FUSED)
    param_names = ["rule", "n", "layout"]

    def setup_cache(self):
        return _measure_figures("torch-fused", VS_TORCH_FUSED, ("fastopt", "torch-fused"))

    setup_cache.timeout = 1200

    def track_time_vs_torch_fused(self, figures, rule, n, layout):
        return self.value

    track_time_vs_torch_fused.unit = "fastopt time / torch fused time"


class Options:
    """Each engine option and state format a rule offers (1e6 float32
    elements, an arena), all of one rule in one interleaved run, as ``python
    -m fastopt bench --cases options`` measures them: against the plain
    update, against the roof of its own traffic, and the state's bytes."""

    params = [RULE_NAMES, cases.all_options()]
    param_names = ["rule", "option"]
    timeout = 600

    def setup_cache(self):
        n, layout = OPTIONS_CASE
        return {(r.rule, r.option): r for r in measure.option_cases(_measured_rules(), [n], layout, ROUNDS,
                                                                        progress=False)}

    setup_cache.timeout = 1200

    def setup(self, results, rule, option):
        self.result = results.get((rule, option))
        if self.result is None:
            raise NotImplementedError(f"{rule} has no option case {option!r} at this commit")

    def track_time_vs_plain(self, results, rule, option):
        return 1.0 / self.result.x_plain

    track_time_vs_plain.unit = "time with the option / plain time"

    def track_time_vs_roof(self, results, rule, option):
        return 100.0 / self.result.pct_of_roof

    track_time_vs_roof.unit = "time / this case's same-traffic roof time"

    def track_state_bytes_per_param(self, results, rule, option):
        return self.result.state_bytes_per_param

    track_state_bytes_per_param.unit = "bytes of state per param"


class BookLoop:
    """The book's loop (float64, a fresh dict of fresh grads every step,
    ``fastopt_bench.book``): fastopt's time over the book's optimizer's (rules
    the book lacks: their reference class); "shared SGD" is one SGD stepping
    three networks in turn; the 2-D net is the book's Python-float example."""

    params = [book.book_cases(), ["784-100-100-100-100-10", book.TWO_D]]
    param_names = ["rule", "net"]
    timeout = 300

    def setup(self, rule, net):
        name = "SGD" if rule == book.SHARED_SGD else rule
        if ONLY_RULES is not None and not re.fullmatch(ONLY_RULES, name):
            raise NotImplementedError(f"{rule} not selected")
        cases.rule(name)

    def track_time_vs_book(self, rule, net):
        return 1.0 / measure.book_loop_case(rule, net, rounds=ROUNDS).ratio

    track_time_vs_book.unit = "fastopt time / book optimizer time"
