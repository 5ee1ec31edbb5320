"""``python -m fastopt bench``: throughput of every rule against the NumPy
reference, PyTorch (when installed) and the memory-bandwidth roof.

Method
------
For each rule, size and layout, every implementation gets its own params,
grads and state, is warmed up (compiled, buffers touched), then timed in
*interleaved rounds*: round r runs a batch of updates of each implementation
in turn (the order rotates every round; each batch starts with one untimed
call), so a burst of machine noise hits all of them alike.  The figure reported is the median over rounds of the time per
update.  Ratios compare medians from the same run.

The *roof* is a kernel with the same memory traffic as the rule (params and
state read and written, grads read) and trivial arithmetic, compiled with the
same flags and timed in the same rounds; the faster of its serial and parallel
variants is what this machine gives that traffic.  "% of roof" is roof time /
fastopt time.

Bytes moved per element (float32): SGD 12, Momentum / Nesterov / AdaGrad /
RMSprop 20, Adam / AdamW 28 (``Rule.bytes_per_element``).
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

import fastopt

from ._jit import kernel
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


@kernel
def roof_no_state(p, g):
    for i in prange(p.size):
        p[i] = p[i] + g[i]


@kernel
def roof_one_state(p, g, a):
    for i in prange(p.size):
        ai = a[i] + g[i]
        a[i] = ai
        p[i] = p[i] + ai


@kernel
def roof_two_states(p, g, a, b):
    for i in prange(p.size):
        ai = a[i] + g[i]
        bi = b[i] + g[i]
        a[i] = ai
        b[i] = bi
        p[i] = p[i] + ai + bi


ROOFS = (roof_no_state, roof_one_state, roof_two_states)


# -- what is timed --------------------------------------------------------------


def layout_shapes(n: int, layout: str) -> list[tuple[int, ...]]:
    """The array shapes of a layout holding ``n`` elements in all."""
    if layout == "one":
        return [(n,)]
    if layout in ("dict", "arena"):
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
    cls_name, kwargs = TORCH_CLASSES[rule.name]
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
    rng = np.random.default_rng(1)
    n_state = len(rule.fast.state_names)
    arrays = [rng.standard_normal(n).astype(np.float32) for _ in range(2 + n_state)]
    arrays[1] *= 1e-3
    fn = getattr(ROOFS[n_state], variant)
    return lambda: fn(*arrays)


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
        shapes = layout_shapes(n, layout)
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
        moved = n * rule.bytes_per_element
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


def extra_checks(rules) -> dict:
    checks = {"allocation_bytes_at_1e7": {}, "cold_start": {}, "nonfinite_check_cost": {}}
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


def report(results: list[Result], checks: dict | None, env: dict) -> str:
    lines = [
        "fastopt bench - float32, median seconds per update over interleaved rounds",
        "  " + ", ".join(f"{k} {v}" for k, v in env.items()),
        "  speed-up columns: (that implementation's time) / (fastopt's time), same run",
        "",
    ]
    by_case: dict = {}
    for r in results:
        by_case.setdefault((r.rule, r.n, r.layout), {})[r.impl] = r
    others = [i for i in IMPLEMENTATIONS[1:] if any(r.impl == i for r in results)]
    header = (f"{'rule':<9} {'N':>9} {'layout':<9} {'fastopt':>11} {'GB/s':>6} {'roof GB/s':>9} "
              f"{'% roof':>6} " + " ".join(f"{'x ' + o:>15}" for o in others))
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
        cold = checks["cold_start"]
        lines += [
            "",
            "cold start (new process: import fastopt + one Adam update at N = 1e6, wall time):",
            f"  empty compile cache {cold['cold_cache'][0]:.2f} s;  warm cache (median of 5) "
            f"{cold['warm_cache']:.2f} s",
        ]
    return "\n".join(lines)


def summary_markdown(results: list[Result], env: dict) -> str:
    """The README's results table: the headline figures of one run."""
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


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m fastopt bench", description=__doc__.split("\n")[0])
    parser.add_argument("--rules", nargs="+", choices=list(BY_NAME), help="rules to time (all)")
    parser.add_argument("--sizes", nargs="+", type=lambda s: int(float(s)),
                        help="element counts, e.g. 1e3 1e6 (1e3 1e4 1e5 1e6 1e7)")
    parser.add_argument("--layouts", nargs="+", choices=LAYOUTS, default=list(LAYOUTS))
    parser.add_argument("--rounds", type=int, help="interleaved rounds (9; --quick: 3)")
    parser.add_argument("--quick", action="store_true",
                        help=f"sizes {' '.join(f'{n:.0e}' for n in QUICK_SIZES)}, 3 rounds, no extra checks")
    parser.add_argument("--no-mlp", action="store_true", help="skip the book MultiLayerNet layout")
    parser.add_argument("--no-checks", action="store_true", help="skip allocation and cold-start checks")
    parser.add_argument("--json", metavar="PATH", help="write every result as JSON")
    parser.add_argument("--plot", metavar="PATH", help="write a PNG of GB/s against N")
    parser.add_argument("--markdown", metavar="PATH", help="write the README's summary table")
    args = parser.parse_args(argv)

    rules = [BY_NAME[n] for n in args.rules] if args.rules else list(RULES)
    sizes = args.sizes or (QUICK_SIZES if args.quick else DEFAULT_SIZES)
    rounds = args.rounds or (3 if args.quick else 9)
    fastopt.warmup(rules=[r.name for r in rules], dtypes=("float32",))
    env = environment()
    results = run(rules, sizes, args.layouts, rounds, progress=True,
                  mlp=not args.no_mlp)
    checks = None if (args.quick or args.no_checks) else extra_checks(rules)
    print(report(results, checks, env))
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"environment": env, "results": [asdict(r) for r in results], "checks": checks}, f,
                      indent=1)
        print(f"\nresults written to {args.json}")
    if args.markdown:
        with open(args.markdown, "w") as f:
            f.write(summary_markdown(results, env) + "\n")
        print(f"summary table written to {args.markdown}")
    if args.plot and plot(results, args.plot):
        print(f"plot written to {args.plot}")
    return 0
