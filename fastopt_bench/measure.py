"""Measurements: cases from :mod:`cases` timed with :mod:`timing`, as results."""

from __future__ import annotations

import os
import statistics
import subprocess
import sys
import tempfile
import time
import tracemalloc
from dataclasses import dataclass

import numpy as np

from . import book, cases
from .timing import BATCH_SECONDS, FAULTS_REPORTED, Progress, settle_allocator, time_interleaved

DEFAULT_ROUNDS = 9
BOOK_ROUNDS = 15


def medians(samples: dict) -> dict:
    return {name: statistics.median(s) for name, s in samples.items()}


def roof_of(medians_: dict, prefix: str = "roof") -> float:
    """The faster of a roof's serial and parallel medians (removed from ``medians_``)."""
    return min(medians_.pop(f"{prefix}-serial"), medians_.pop(f"{prefix}-parallel"))


# -- throughput --------------------------------------------------------------------


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


def throughput_case(rule, n: int, layout: str, rounds: int, impls=cases.IMPLEMENTATIONS) -> list[Result]:
    """Every implementation of one case and its roof, interleaved."""
    steps = cases.throughput_steps(rule, n, layout, impls=impls)
    found = medians(time_interleaved(steps, rounds))
    roof = roof_of(found)
    moved = n * cases.bytes_per_element(rule)
    results = [Result(rule.name, n, layout, impl, seconds, rounds, moved / seconds / 1e9, 100.0 * roof / seconds)
               for impl, seconds in found.items()]
    results.append(Result(rule.name, n, layout, "roof", roof, rounds, moved / roof / 1e9, 100.0))
    return results


def throughput(rules, sizes, layouts, rounds, progress=True, mlp=True) -> list[Result]:
    todo = [(rule, n, layout) for rule in rules for n in sizes for layout in layouts]
    if mlp:
        todo += [(rule, cases.mlp_size(), layout) for rule in rules for layout in ("mlp-dict", "mlp-arena")]
    results = []
    bar = Progress(len(todo), enabled=progress)
    for rule, n, layout in todo:
        bar.show(f"{rule.name} n={n:.0e} {layout}")
        results += throughput_case(rule, n, layout, rounds)
        bar.advance()
    bar.done()
    return results


# -- engine options and state formats ----------------------------------------------------


@dataclass
class OptionResult:
    rule: str
    n: int
    layout: str
    option: str  # "plain", "clip_norm", "groups", "maximize", "schedule", "state=bfloat16", ...
    seconds: float  # fastopt, median per update
    x_plain: float  # the plain update's time / this one's, same run
    pct_of_roof: float  # this case's same-traffic roof / this one's time
    bytes_per_element: float  # what one update of this case moves per element
    state_bytes_per_param: float


def option_case(rule, n: int, layout: str, options, rounds: int) -> list[OptionResult]:
    """fastopt's update with each engine option of ``options`` (plain among
    them), each case's roof, interleaved."""
    options = list(dict.fromkeys(["plain", *options]))
    steps = {}
    roof_for = {}
    for option in list(options):
        try:
            steps[option] = cases.make_step("fastopt", rule, n, layout, option)
        except NotImplementedError:  # groups on one array, or an older commit without the option (asv)
            options.remove(option)
            continue
        key = cases.traffic_of(option)  # a roof per distinct traffic
        roof_for[option] = key
        if f"roof {key}-serial" not in steps:
            for name, roof in cases.make_roof_steps(rule, n, key).items():
                steps[f"roof {key}-{name.split('-')[1]}"] = roof
    found = medians(time_interleaved(steps, rounds))
    results = []
    for option in options:
        roof = min(found[f"roof {roof_for[option]}-serial"], found[f"roof {roof_for[option]}-parallel"])
        state = getattr(steps[option].optimizer, "optimizer_state", None)
        state_bytes = state.nbytes / n if state is not None else float("nan")
        results.append(OptionResult(rule.name, n, layout, option, found[option], found["plain"] / found[option],
                                    100.0 * roof / found[option], cases.bytes_per_element(rule, option),
                                    state_bytes))
    return results


def option_cases(rules, sizes, layout: str, rounds: int, only=None, progress: bool = True) -> list[OptionResult]:
    """Every option case of every rule (``only``: just these options)."""
    results = []
    todo = [(rule, n) for rule in rules for n in sizes]
    bar = Progress(len(todo), enabled=progress)
    for rule, n in todo:
        options = [o for o in cases.options(rule) if only is None or o in only]
        bar.show(f"options {rule.name} n={n:.0e}")
        if len(options) > (1 if "plain" in options else 0):
            results += option_case(rule, n, layout, options, rounds)
        bar.advance()
    bar.done()
    return results


# -- the book's loop --------------------------------------------------------------------


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
        return book.book_floor(self.case, self.net)


def book_loop_case(case: str, net, rounds: int, batch_seconds: float = BATCH_SECONDS) -> BookLoopResult:
    """One case of the book's loop: fastopt against its baseline, interleaved."""
    settle_allocator()
    steps = {impl: book.make_book_step(impl, case, net) for impl in ("fastopt", "baseline")}
    samples = medians(time_interleaved(steps, rounds, batch_seconds, self_timed=True))
    samples = {impl: seconds / steps[impl].repeat for impl, seconds in samples.items()}  # per update
    rule = cases.rule("SGD" if case == book.SHARED_SGD else case)
    faults = {impl: (s.faults / (s.calls * s.repeat) if FAULTS_REPORTED and s.calls else None)
              for impl, s in steps.items()}
    n_params = sum(np.size(p) for p in book.book_net_params(net).values())
    return BookLoopResult(case, book.net_name(net), book.book_baseline(rule)[0], samples["fastopt"],
                          samples["baseline"], rounds, n_params, faults["fastopt"], faults["baseline"])


def book_loop(rules, nets=book.BOOK_LOOP_NETS, rounds: int = BOOK_ROUNDS, shared: bool = True,
              progress: bool = True, batch_seconds: float = BATCH_SECONDS) -> list[BookLoopResult]:
    """The book's loop for every rule and net; with ``shared`` and SGD among
    ``rules``, also one SGD stepping three networks in turn."""
    todo = [(rule.name, net) for rule in rules for net in nets]
    if shared and any(r.name == "SGD" for r in rules):
        todo += [(book.SHARED_SGD, net) for net in nets]
    results = []
    bar = Progress(len(todo), enabled=progress)
    for case, net in todo:
        bar.show(f"book loop {case} {book.net_name(net)}")
        results.append(book_loop_case(case, net, rounds, batch_seconds))
        bar.advance()
    bar.done()
    return results


# -- the torch adapter ----------------------------------------------------------------


@dataclass
class TorchAdapterResult:
    case: str
    n: int
    dtype: str
    seconds: float  # fastopt.torch.AdamW, median per step
    x_fused: float  # torch.optim.AdamW(fused=True) time / fastopt's
    x_default: float  # torch.optim.AdamW() (foreach) time / fastopt's


def torch_adapter(rounds: int = DEFAULT_ROUNDS, todo=cases.TORCH_ADAPTER_CASES,
                  progress: bool = True) -> list[TorchAdapterResult]:
    """``fastopt.torch.AdamW`` against ``torch.optim.AdamW``, fused and default."""
    results = []
    for name, sizes, dtype in todo:
        steps = cases.torch_adapter_steps(sizes, dtype)
        found = medians(time_interleaved(steps, rounds))
        result = TorchAdapterResult(name, sum(sizes), dtype, found["fastopt"],
                                    found["fused"] / found["fastopt"], found["default"] / found["fastopt"])
        if progress:
            print(f"  torch adapter {name} N={result.n:.0e}: x fused {result.x_fused:.2f}, "
                  f"x default {result.x_default:.2f}", file=sys.stderr)
        results.append(result)
        del steps
    return results


# -- one-off checks ---------------------------------------------------------------


def allocation_per_update(impl: str, rule, n: int) -> int:
    """Peak bytes NumPy allocates during one update beyond what exists before it.

    NumPy reports its data allocations to tracemalloc, so an N-sized temporary
    shows up as 4 N bytes at float32.
    """
    step = cases.make_step(impl, rule, n, "one")
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


def nonfinite_check_cost(rule, n: int, rounds: int = DEFAULT_ROUNDS) -> float:
    """Time of an update with nonfinite="skip" over one without (same run)."""
    import numpy as np

    steps = {}
    for mode in ("propagate", "skip"):
        rng = np.random.default_rng(0)
        params = {"w": rng.standard_normal(n).astype(np.float32)}
        grads = {"w": (rng.standard_normal(n) * 1e-3).astype(np.float32)}
        opt = rule.fast(nonfinite=mode)
        steps[mode] = (lambda o, p, g: lambda: o.update(p, g))(opt, params, grads)
    found = medians(time_interleaved(steps, rounds))
    return found["skip"] / found["propagate"]


def clip_norm_cost(n: int, rounds: int = DEFAULT_ROUNDS) -> dict:
    """AdamW with ``clip_norm`` (two passes: the norm reads the grads, then
    the update) against a roof of the same two passes, and against torch's
    ``clip_grad_norm_`` + fused AdamW when torch is installed (same run)."""
    adamw = cases.rule("AdamW")
    steps = {"fastopt": cases.make_step("fastopt", adamw, n, "one", "clip_norm")}
    steps.update(cases.make_roof_steps(adamw, n, "clip_norm"))
    try:
        import torch
    except ImportError:
        torch = None
    if torch is not None:
        import numpy as np

        rng = np.random.default_rng(0)
        weight = torch.nn.Parameter(torch.from_numpy(rng.standard_normal(n).astype(np.float32)))
        weight.grad = torch.from_numpy((rng.standard_normal(n) * 1e-3).astype(np.float32))
        fused = torch.optim.AdamW([weight], lr=0.001, fused=True)

        def torch_step():
            torch.nn.utils.clip_grad_norm_([weight], 1.0)
            fused.step()

        steps["torch-clip+fused"] = torch_step
    found = medians(time_interleaved(steps, rounds))
    roof = roof_of(found)
    result = {"pct_of_roof": 100.0 * roof / found["fastopt"]}
    if "torch-clip+fused" in found:
        result["x_torch_clip_fused"] = found["torch-clip+fused"] / found["fastopt"]
    return result


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
