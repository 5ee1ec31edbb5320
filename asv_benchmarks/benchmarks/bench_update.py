"""asv benchmarks: the harness's cases (``fastopt_bench``, in this checkout),
measured against the fastopt of the commit asv installed.

Nothing is defined here: the cases, the book's optimizers, the roof and the
interleaved timing are ``python -m fastopt bench``'s own, so asv and the
bench agree on a commit's figures.  Parametrized over the rule registry and
each rule's capabilities (its engine options and state formats), so a new
rule or format appears with no edit.  Anything a commit lacks raises
``NotImplementedError`` in ``setup``, which asv shows as n/a.

Every ``track_`` figure is a time ratio measured side by side in one process
(interleaved rounds, medians), lower is better as asv assumes: 0.1 means
fastopt took a tenth of the other's time.  The dashboard and the README show
their inverse (speed-up, % of roof).

The parameter space is kept small enough for ``run.sh history 5`` to finish
in about a quarter of an hour on a 2-core machine.
"""

import sys
from pathlib import Path

# The checkout's fastopt_bench, appended: fastopt itself must come from the
# commit asv installed, never from this checkout.
sys.path.append(str(Path(__file__).resolve().parents[2]))

from fastopt_bench import book, cases  # noqa: E402
from fastopt_bench.measure import book_loop_case, medians, roof_of  # noqa: E402
from fastopt_bench import timing  # noqa: E402  (not its names: asv takes a time_ function for a benchmark)

RULE_NAMES = cases.rule_names()
#: Interleaved rounds of each track_ figure.
ROUNDS = 5


def _figure(steps, against):
    """fastopt's median time over ``against``'s (a step name, or "roof")."""
    found = medians(timing.time_interleaved(steps, ROUNDS))
    other = roof_of(found) if against == "roof" else found[against]
    return found["fastopt"] / other


class Update:
    """asv's own timing of one ``update(params, grads)``, fastopt and the
    reference: the per-commit throughput lines of the dashboard."""

    params = [RULE_NAMES, ["fastopt", "reference"], [1_000_000], ["dict"]]
    param_names = ["rule", "impl", "n", "layout"]
    timeout = 300
    processes = 1
    repeat = (3, 7, 2.0)
    warmup_time = 0.05

    def setup(self, rule, impl, n, layout):
        self.update = cases.make_step(impl, cases.rule(rule), n, layout)
        self.update()  # compile (or load from cache) and touch every buffer
        self.update()

    def time_update(self, rule, impl, n, layout):
        self.update()


class Figures:
    """The README's ratios, per rule: fastopt against the NumPy reference, the
    same-traffic roof and torch's fused kernel (n/a without torch)."""

    timeout = 600

    def setup(self, rule, n, layout):
        self.rule = cases.rule(rule)

    def track_time_vs_reference(self, rule, n, layout):
        return _figure(cases.throughput_steps(self.rule, n, layout, impls=("fastopt", "reference"), roof=False),
                       "reference")

    track_time_vs_reference.params = [RULE_NAMES, [1_000, 1_000_000], ["dict"]]
    track_time_vs_reference.param_names = ["rule", "n", "layout"]
    track_time_vs_reference.unit = "fastopt time / reference time"

    def track_time_vs_roof(self, rule, n, layout):
        return _figure(cases.throughput_steps(self.rule, n, layout, impls=("fastopt",)), "roof")

    track_time_vs_roof.params = [RULE_NAMES, [10_000_000], ["arena"]]
    track_time_vs_roof.param_names = ["rule", "n", "layout"]
    track_time_vs_roof.unit = "fastopt time / same-traffic roof time (1 = at the roof)"

    def track_time_vs_torch_fused(self, rule, n, layout):
        steps = cases.throughput_steps(self.rule, n, layout, impls=("fastopt", "torch-fused"), roof=False)
        if "torch-fused" not in steps:
            raise NotImplementedError(f"no torch, or no fused torch kernel for {rule}")
        return _figure(steps, "torch-fused")

    track_time_vs_torch_fused.params = [RULE_NAMES, [1_000_000], ["one"]]
    track_time_vs_torch_fused.param_names = ["rule", "n", "layout"]
    track_time_vs_torch_fused.unit = "fastopt time / torch fused time"


class Options:
    """Each engine option and state format a rule offers (1e6 float32
    elements, an arena): against the plain update and against the roof of
    its own traffic."""

    params = [RULE_NAMES, [o for o in cases.ALL_OPTIONS if o != "plain"]]
    param_names = ["rule", "option"]
    timeout = 600
    n, layout = 1_000_000, "arena"

    def setup(self, rule, option):
        self.rule = cases.rule(rule)
        cases.check_option(self.rule, option)

    def track_time_vs_plain(self, rule, option):
        steps = {"fastopt": cases.make_step("fastopt", self.rule, self.n, self.layout, option),
                 "plain": cases.make_step("fastopt", self.rule, self.n, self.layout, seed=1)}
        return _figure(steps, "plain")

    track_time_vs_plain.unit = "time with the option / plain time"

    def track_time_vs_roof(self, rule, option):
        steps = {"fastopt": cases.make_step("fastopt", self.rule, self.n, self.layout, option),
                 **cases.make_roof_steps(self.rule, self.n, option)}
        return _figure(steps, "roof")

    track_time_vs_roof.unit = "time / this option's same-traffic roof time"


class StateBytes:
    """Bytes of optimizer state per param, per state format."""

    params = [RULE_NAMES, ["float32", "bfloat16", "int8"]]
    param_names = ["rule", "state_dtype"]

    def setup(self, rule, state_dtype):
        self.rule = cases.rule(rule)
        if state_dtype not in cases.state_formats(self.rule):
            raise NotImplementedError(f"{rule} offers no {state_dtype} state at this commit")

    def track_state_bytes_per_param(self, rule, state_dtype):
        n = 100_000
        step = cases.make_step("fastopt", self.rule, n, "one", f"state={state_dtype}" if state_dtype != "float32"
                               else "plain")
        step()
        state = getattr(step.optimizer, "optimizer_state", None)
        if state is None or not hasattr(state, "nbytes"):
            raise NotImplementedError("no optimizer_state.nbytes at this commit")
        return state.nbytes / n

    track_state_bytes_per_param.unit = "bytes of state per param"


class BookLoop:
    """The book's loop (float64, a fresh dict of fresh grads every step,
    ``fastopt_bench.book``): fastopt's time over the book's optimizer's (rules
    the book lacks: their reference class); "shared SGD" is one SGD stepping
    three networks in turn."""

    params = [book.book_cases(), ["784-100-100-100-100-10"]]
    param_names = ["rule", "net"]
    timeout = 300

    def setup(self, rule, net):
        cases.rule("SGD" if rule == book.SHARED_SGD else rule)

    def track_time_vs_book(self, rule, net):
        return 1.0 / book_loop_case(rule, net, rounds=7).ratio

    track_time_vs_book.unit = "fastopt time / book optimizer time"
