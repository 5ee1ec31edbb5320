"""A dashboard of the stored asv results that opens without a network.

    python asv_benchmarks/dashboard.py [--results DIR] [--machine NAME] [--out DIR]

asv's own HTML loads its scripts from public CDNs, so it shows nothing on a
machine without internet.  This page is static: PNGs drawn with matplotlib
from asv's results JSON (read with asv's own reader) and an ``index.html``
that references nothing but them.

* one plot per rule: throughput per commit (million elements updated per
  second, N = 1e7 float32 unless ``--n`` says otherwise, dict and arena layouts) for fastopt and the NumPy
  reference, from ``Update.time_update``;
* a summary of the newest commit: fastopt's speed-up over the reference and
  its effective bandwidth per rule (``Figures``), and the book's loop
  (``BookLoop.track_speedup``) where those were run.

Commits are ordered by their date.  Whatever a commit did not run (a rule it
lacks, a benchmark skipped) is simply absent.
"""

from __future__ import annotations

import argparse
import ast
import html
import itertools
import math
from collections import defaultdict
from pathlib import Path

HERE = Path(__file__).resolve().parent
UPDATE = "bench_update.Update.time_update"
RATIO = "bench_update.Figures.track_time_ratio"
BANDWIDTH = "bench_update.Figures.track_gb_per_s"
BOOK = "bench_update.BookLoop.track_speedup"
THROUGHPUT_N = 10_000_000


def _value(text):
    try:
        return ast.literal_eval(text)
    except (ValueError, SyntaxError):
        return text


def load(results_dir: Path, machine: str | None):
    """(machine, commits oldest first as (hash, date ms), {benchmark: {commit: {params tuple: value}}})."""
    from asv import results as asv_results

    machines = [p.name for p in results_dir.iterdir() if p.is_dir() and any(p.glob("*.json"))]
    if machine is None:
        counts = {m: sum(1 for f in (results_dir / m).glob("*.json") if f.name != "machine.json") for m in machines}
        if not counts or max(counts.values()) == 0:
            raise SystemExit(f"no asv results under {results_dir}: run asv_benchmarks/run.sh history first")
        machine = max(counts, key=counts.get)
    data = defaultdict(dict)
    dates = {}
    for result in asv_results.iter_results_for_machine(str(results_dir), machine):
        commit = result.commit_hash
        dates[commit] = max(dates.get(commit, 0), result.date or 0)
        for key in result.get_all_result_keys():
            params = result.get_result_params(key)
            values = result.get_result_value(key, params)
            table = data[key].setdefault(commit, {})
            for combo, value in zip(itertools.product(*params), values):
                if value is not None and not (isinstance(value, float) and math.isnan(value)):
                    table[tuple(_value(p) for p in combo)] = value
    commits = sorted(dates, key=lambda c: dates[c])
    return machine, [(c, dates[c]) for c in commits], data


def rules_of(data) -> list[str]:
    names = []
    for table in data.get(UPDATE, {}).values():
        for params in table:
            if params[0] not in names:
                names.append(params[0])
    return names


def draw(machine, commits, data, out: Path, n: int = THROUGHPUT_N) -> dict:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    out.mkdir(parents=True, exist_ok=True)
    (out / "rules").mkdir(exist_ok=True)
    labels = [c[:8] for c, _ in commits]
    x = range(len(commits))
    rules = rules_of(data)
    drawn = {"rules": [], "summary": None, "book": None}
    for rule in rules:
        fig, ax = plt.subplots(figsize=(6.4, 3.6))
        plotted = False
        for impl, color in (("fastopt", "tab:blue"), ("reference", "tab:gray")):
            for layout, style in (("dict", "-"), ("arena", "--")):
                ys = []
                for commit, _ in commits:
                    seconds = data[UPDATE].get(commit, {}).get((rule, impl, n, layout))
                    ys.append(n / seconds / 1e6 if seconds else math.nan)
                if not all(math.isnan(y) for y in ys):
                    ax.plot(x, ys, style, color=color, marker="o", label=f"{impl}, {layout}")
                    plotted = True
        if not plotted:
            plt.close(fig)
            continue
        ax.set_title(f"{rule}: one update of N = {n:.0e} float32")
        ax.set_ylabel("million elements / s")
        ax.set_xticks(list(x), labels, rotation=45, fontsize=7)
        ax.set_ylim(bottom=0)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
        fig.tight_layout()
        path = out / "rules" / f"{rule}.png"
        fig.savefig(path, dpi=90)
        plt.close(fig)
        drawn["rules"].append(rule)

    newest = commits[-1][0] if commits else None
    ratio = data.get(RATIO, {}).get(newest, {})
    bandwidth = data.get(BANDWIDTH, {}).get(newest, {})
    if ratio or bandwidth:
        fig, (left, right) = plt.subplots(1, 2, figsize=(12, 4))
        names = [r for r in rules if any(p[0] == r for p in ratio) or any(p[0] == r for p in bandwidth)]
        width = 0.4
        for i, layout in enumerate(("dict", "arena")):
            speedups = [1 / ratio[(r, n, layout)] if (r, n, layout) in ratio else 0 for r in names]
            rates = [bandwidth.get((r, n, layout), 0) for r in names]
            offsets = [j + (i - 0.5) * width for j in range(len(names))]
            left.bar(offsets, speedups, width, label=layout)
            right.bar(offsets, rates, width, label=layout)
        left.set_title(f"fastopt / reference speed, N = {n:.0e} (commit {newest[:8]})")
        left.set_ylabel("x faster than the NumPy reference")
        right.set_title(f"fastopt effective bandwidth, N = {n:.0e}")
        right.set_ylabel("GB/s (bytes the rule must move / time)")
        for ax in (left, right):
            ax.set_xticks(range(len(names)), names, rotation=60, fontsize=7)
            ax.grid(axis="y", alpha=0.3)
            ax.legend(fontsize=7)
        fig.tight_layout()
        fig.savefig(out / "summary.png", dpi=90)
        plt.close(fig)
        drawn["summary"] = {"n": n, "commit": newest, "ratio": ratio, "bandwidth": bandwidth, "rules": names}

    book = data.get(BOOK, {}).get(newest, {})
    if book:
        cases = sorted(book)
        fig, ax = plt.subplots(figsize=(8, 3.6))
        ax.bar(range(len(cases)), [book[c] for c in cases], color="tab:green")
        ax.axhline(1.0, color="black", lw=0.8)
        ax.set_xticks(range(len(cases)), [f"{r}\n{net}" for r, net in cases], rotation=60, fontsize=6)
        ax.set_ylabel("x the book's optimizer")
        ax.set_title(f"the book's loop (fresh grads every step), commit {newest[:8]}")
        fig.tight_layout()
        fig.savefig(out / "book_loop.png", dpi=90)
        plt.close(fig)
        drawn["book"] = book
    return drawn


def write_index(machine, commits, drawn, out: Path) -> Path:
    from datetime import datetime, timezone

    esc = html.escape
    rows = "".join(
        f"<tr><td><code>{esc(c[:12])}</code></td>"
        f"<td>{datetime.fromtimestamp(d / 1000, timezone.utc):%Y-%m-%d %H:%M}</td></tr>" for c, d in commits)
    parts = [
        "<!doctype html><html><head><meta charset='utf-8'><title>fastopt benchmarks</title>",
        "<style>body{font-family:sans-serif;margin:1.5em;max-width:1300px}"
        "img{max-width:100%}.grid{display:flex;flex-wrap:wrap;gap:8px}.grid figure{margin:0;width:620px}"
        "table{border-collapse:collapse}td,th{padding:2px 8px;border-bottom:1px solid #ddd;font-size:13px}</style>",
        "</head><body>",
        f"<h1>fastopt benchmarks</h1><p>Machine <b>{esc(machine)}</b>, {len(commits)} commits "
        "(oldest first). Static page: no scripts, no network. Built by <code>asv_benchmarks/dashboard.py</code> "
        "from asv's stored results.</p>",
    ]
    summary = drawn["summary"]
    if summary:
        parts.append("<h2>Newest commit</h2><img src='summary.png' alt='summary'>")
        parts.append("<table><tr><th>rule</th><th>x reference (dict)</th><th>x reference (arena)</th>"
                     "<th>GB/s (dict)</th><th>GB/s (arena)</th></tr>")
        for rule in summary["rules"]:
            cells = []
            for layout in ("dict", "arena"):
                r = summary["ratio"].get((rule, summary["n"], layout))
                cells.append(f"{1 / r:.1f}" if r else "-")
            for layout in ("dict", "arena"):
                b = summary["bandwidth"].get((rule, summary["n"], layout))
                cells.append(f"{b:.1f}" if b else "-")
            parts.append(f"<tr><td>{esc(rule)}</td>" + "".join(f"<td>{c}</td>" for c in cells) + "</tr>")
        parts.append("</table>")
    if drawn["book"]:
        parts.append("<h2>The book's loop</h2><img src='book_loop.png' alt='book loop'>")
    parts.append("<h2>Throughput per commit, one plot per rule</h2><div class='grid'>")
    for rule in drawn["rules"]:
        parts.append(f"<figure><img src='rules/{esc(rule)}.png' alt='{esc(rule)}'>"
                     f"<figcaption>{esc(rule)}</figcaption></figure>")
    parts.append("</div><h2>Commits</h2><table><tr><th>commit</th><th>date (UTC)</th></tr>" + rows + "</table>")
    parts.append("</body></html>")
    index = out / "index.html"
    index.write_text("\n".join(parts))
    return index


def main(argv=None) -> Path:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--results", type=Path, default=HERE / ".asv" / "results")
    parser.add_argument("--machine", help="asv machine name (default: the one with the most results)")
    parser.add_argument("--out", type=Path, default=HERE / ".asv" / "dashboard")
    parser.add_argument("--n", type=int, default=THROUGHPUT_N, help="the size plotted (default 1e7)")
    args = parser.parse_args(argv)
    machine, commits, data = load(args.results, args.machine)
    drawn = draw(machine, commits, data, args.out, args.n)
    index = write_index(machine, commits, drawn, args.out)
    print(f"{len(commits)} commits on {machine}: {len(drawn['rules'])} rule plots; wrote {index}")
    return index


if __name__ == "__main__":
    main()
