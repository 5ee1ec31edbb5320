"""Reports: the text tables, the README's markdown, a plot, the environment."""

from __future__ import annotations

import os
import platform
import time

import numpy as np

from .book import SHARED_NETWORKS, SHARED_SGD, TWO_D, TWO_D_STEPS
from .cases import IMPLEMENTATIONS


def environment() -> dict:
    import numba

    import fastopt

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



def torch_adapter_report(results, env: dict) -> list[str]:
    lines = [f"torch adapter - fastopt.torch.AdamW against torch.optim.AdamW (torch {env.get('torch')}), "
             "time ratio (torch / fastopt), same run"]
    header = f"{'case':<14} {'N':>9} {'params':<9} {'fastopt':>11} {'x fused':>8} {'x default':>10}"
    lines += [header, "-" * len(header)]
    for r in results:
        lines.append(f"{r.case:<14} {r.n:>9.0e} {r.dtype:<9} {_fmt_time(r.seconds):>11} {r.x_fused:>8.2f} "
                     f"{r.x_default:>10.2f}")
    return lines


def options_report(results) -> list[str]:
    lines = ["engine options and state formats - float32 params, fastopt's update per option; x plain: the "
             "plain update's time / this one's, same run; + us: this one's time less the plain update's; "
             "roof: this case's traffic (clip_norm: a read of the grads first; state=F: the state stored as F)"]
    header = (f"{'rule':<9} {'N':>9} {'layout':<6} {'option':<15} {'fastopt':>11} {'x plain':>7} {'+ us':>9} "
              f"{'% roof':>6} {'B/elem':>6} {'state B/param':>13}")
    lines += [header, "-" * len(header)]
    for r in results:
        added = (r.seconds - r.seconds * r.x_plain) * 1e6
        lines.append(f"{r.rule:<9} {r.n:>9.0e} {r.layout:<6} {r.option:<15} {_fmt_time(r.seconds):>11} "
                     f"{r.x_plain:>7.2f} {added:>+9.2f} {r.pct_of_roof:>6.0f} {r.bytes_per_element:>6.1f} "
                     f"{r.state_bytes_per_param:>13.2f}")
    return lines


def book_loop_report(book: list) -> list[str]:
    """The book's-loop table of the text report (lines)."""
    if not book:
        return []
    lines = [
        f"the book's loop - float64, a fresh dict of fresh grad arrays every step (built outside the "
        f"timed region); median seconds per step over {book[0].rounds} interleaved rounds",
        f"  baseline: the book's common/optimizer.py class (rules not in the book: their fastopt.reference class); "
        f"{SHARED_SGD}: one SGD stepping {SHARED_NETWORKS} networks in turn, time per step of all {SHARED_NETWORKS}; "
        f"{TWO_D}: the book's optimizer_compare_naive.py (params and grads Python floats), {TWO_D_STEPS} updates "
        "timed together, time per update",
        "  x baseline: baseline time / fastopt time, same run",
        "",
    ]
    header = (f"{'rule':<10} {'net':<24} {'params':>8} {'baseline':<17} {'fastopt':>11} {'baseline':>11} "
              f"{'x baseline':>10} {'floor':>14} {'page faults/step':>16}")
    lines += [header, "-" * len(header)]
    for r in book:
        verdict = "ok" if r.ratio >= r.floor else "BELOW"
        faults = ("n/a" if r.fastopt_faults is None or r.baseline_faults is None
                  else f"{r.fastopt_faults:.1f} / {r.baseline_faults:.1f}")
        lines.append(
            f"{r.case:<10} {r.net:<24} {r.n_params:>8,} {r.baseline:<17} {_fmt_time(r.fastopt_seconds):>11} "
            f"{_fmt_time(r.baseline_seconds):>11} {r.ratio:>9.2f}x {f'>= {r.floor:.2f}x {verdict}':>14} "
            f"{faults:>16}"
        )
    lines.append("  page faults/step: minor page faults during the updates, fastopt / baseline (the allocator "
                 "is settled first: settle_allocator)")
    return lines


def report(results, checks: dict | None, env: dict, book=None, adapter=None, options=None) -> str:
    lines = [
        "fastopt bench - median seconds per update over interleaved rounds",
        "  " + ", ".join(f"{k} {v}" for k, v in env.items()),
        "",
    ]
    if book:
        lines += book_loop_report(book) + [""]
    if adapter:
        lines += torch_adapter_report(adapter, env) + [""]
    if options:
        lines += options_report(options) + [""]
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


def book_loop_markdown(book: list, env: dict) -> str:
    """The README's table of the book's loop: one row per rule, per net the
    fastopt time, the baseline's and their ratio."""
    nets = list(dict.fromkeys(r.net for r in book))
    by = {(r.case, r.net): r for r in book}
    lines = [
        f"The book's loop: float64, a fresh dict of fresh grad arrays every step (built outside the timed "
        f"region), fastopt against the book's `common/optimizer.py` classes (rules not in the book: "
        f"their `fastopt.reference` class); {env['cpu']}, {env['cores']} cores; {env['date']}; "
        f"NumPy {env['numpy']}, Numba {env['numba']}; median of {book[0].rounds} interleaved rounds, "
        "malloc settled first (`fastopt_bench.timing.settle_allocator`). "
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
                          f"**{r.ratio:.1f}x**" if r.ratio >= 1 else f"**{r.ratio:.2f}x**"]
        lines.append(f"| {case} | {baseline} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def _n_params(book: list, net: str) -> int:
    return next(r.n_params for r in book if r.net == net)


def summary_markdown(results: list, env: dict, book: list | None = None) -> str:
    """The README's results tables: the headline figures of one run (the
    book's loop first, when it ran)."""
    parts = []
    if book:
        parts.append(book_loop_markdown(book, env))
    if results:
        parts.append(_throughput_markdown(results, env))
    return "\n\n".join(parts)


def _throughput_markdown(results: list, env: dict) -> str:
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


def plot(results: list, path: str) -> bool:
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

