"""A dashboard of the stored asv results that opens without a network.

    python asv_benchmarks/dashboard.py [--results DIR] [--machine NAME] [--out DIR]

asv's own HTML loads its scripts from public CDNs, so it shows nothing on a
machine without internet.  This page is static: PNGs drawn with matplotlib
from asv's results JSON (read with asv's own reader) and an ``index.html``
that references nothing but them.

* one plot per rule: throughput per commit (million elements updated per
  second, N = 1e6 float32 unless ``--n`` says otherwise, dict layout) for
  fastopt and the NumPy reference, from ``Update.time_update``, beside its
  % of the same-traffic roof per commit (``Roof.track_time_vs_roof``);
* a summary of the newest commit per rule: % of roof, speed-up over the
  reference and over torch's fused kernel, and in the book's loop
  (``Roof``, ``Reference``, ``TorchFused``, ``BookLoop``), as plots and a table;
* the engine options and state formats of every rule (``Options``): % of
  each case's own roof and speed against the plain update.

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
VS_REFERENCE = "bench_update.Reference.track_time_vs_reference"
VS_ROOF = "bench_update.Roof.track_time_vs_roof"
VS_FUSED = "bench_update.TorchFused.track_time_vs_torch_fused"
OPTION_VS_PLAIN = "bench_update.Options.track_time_vs_plain"
OPTION_VS_ROOF = "bench_update.Options.track_time_vs_roof"
BOOK = "bench_update.BookLoop.track_time_vs_book"
THROUGHPUT_N = 1_000_000


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


def _newest(data, key, newest) -> dict:
    return data.get(key, {}).get(newest, {})


def _by_rule(table: dict) -> dict:
    """{rule: value} of a table whose first parameter is the rule (one value
    per rule: the figure's one size and layout)."""
    return {params[0]: value for params, value in table.items()}


def draw(machine, commits, data, out: Path, n: int = THROUGHPUT_N) -> dict:
    """The PNGs; returns what was drawn, for the page."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    out.mkdir(parents=True, exist_ok=True)
    (out / "rules").mkdir(exist_ok=True)
    labels = [c[:8] for c, _ in commits]
    x = range(len(commits))
    rules = rules_of(data)
    drawn = {"rules": [], "summary": None, "options": None, "book": None}
    for rule in rules:
        fig, (left, right) = plt.subplots(1, 2, figsize=(9.6, 3.4))
        plotted = False
        for impl, color in (("fastopt", "tab:blue"), ("reference", "tab:gray")):
            ys = []
            for commit, _ in commits:
                seconds = data[UPDATE].get(commit, {}).get((rule, impl, n, "dict"))
                ys.append(n / seconds / 1e6 if seconds else math.nan)
            if not all(math.isnan(y) for y in ys):
                left.plot(x, ys, "-", color=color, marker="o", label=impl)
                plotted = True
        roof = [100.0 / v if v else math.nan for v in
                (_by_rule(data.get(VS_ROOF, {}).get(c, {})).get(rule) for c, _ in commits)]
        if not all(math.isnan(y) for y in roof):
            right.plot(x, roof, "-", color="tab:red", marker="o", label="fastopt, 1e7 arena")
            right.axhline(100, color="black", lw=0.8)
        if not plotted:
            plt.close(fig)
            continue
        left.set_title(f"{rule}: one update of N = {n:.0e} float32 (dict)", fontsize=9)
        left.set_ylabel("million elements / s")
        right.set_title(f"{rule}: % of the same-traffic roof", fontsize=9)
        right.set_ylabel("% of roof")
        for ax in (left, right):
            ax.set_xticks(list(x), labels, rotation=45, fontsize=7)
            ax.set_ylim(bottom=0)
            ax.grid(alpha=0.3)
            if ax.get_legend_handles_labels()[0]:
                ax.legend(fontsize=7)
        fig.tight_layout()
        fig.savefig(out / "rules" / f"{rule}.png", dpi=90)
        plt.close(fig)
        drawn["rules"].append(rule)

    newest = commits[-1][0] if commits else None
    def inverse_by_size(key, label, scale=1.0):
        """{f"{label} (N layout)": {rule: scale / value}} for each size and layout measured."""
        out = {}
        for (rule, size, layout), value in sorted(_newest(data, key, newest).items(), key=lambda kv: kv[0][1]):
            out.setdefault(f"{label} ({size:.0e} {layout})".replace("e+0", "e"), {})[rule] = scale / value
        return out

    columns = {
        **inverse_by_size(VS_ROOF, "% of roof", 100.0),
        **inverse_by_size(VS_REFERENCE, "x reference"),
        **inverse_by_size(VS_FUSED, "x torch fused"),
        # One figure per rule: the network's loop (the 2-D example's Python
        # floats have their own bars in book_loop.png).
        "x book's loop": {p[0]: 1.0 / v for p, v in _newest(data, BOOK, newest).items()
                          if "Python floats" not in p[1]},
    }
    columns = {name: values for name, values in columns.items() if values}
    if columns:
        names = [r for r in rules if any(r in values for values in columns.values())]
        plotted = [c for c in columns if c != "x book's loop"]
        fig, axes = plt.subplots(1, len(plotted), figsize=(4.3 * len(plotted), 4), squeeze=False)
        for ax, column in zip(axes.flat, plotted):
            values = columns[column]
            ax.bar(range(len(names)), [values.get(r, 0) for r in names],
                   color="tab:red" if column.startswith("%") else "tab:blue")
            if column.startswith("%"):
                ax.axhline(100, color="black", lw=0.8)
            ax.set_title(f"{column}, commit {newest[:8]}", fontsize=9)
            ax.set_xticks(range(len(names)), names, rotation=70, fontsize=7)
            ax.grid(axis="y", alpha=0.3)
        fig.tight_layout()
        fig.savefig(out / "summary.png", dpi=90)
        plt.close(fig)
        drawn["summary"] = {"commit": newest, "columns": columns, "rules": names}

    vs_plain, vs_roof = _newest(data, OPTION_VS_PLAIN, newest), _newest(data, OPTION_VS_ROOF, newest)
    if vs_plain or vs_roof:
        option_names = list(dict.fromkeys(p[1] for p in [*vs_plain, *vs_roof]))
        option_rules = [r for r in rules if any(p[0] == r for p in [*vs_plain, *vs_roof])]
        fig, ax = plt.subplots(figsize=(max(6.0, 0.55 * len(option_rules) + 2), 3.6))
        width = 0.8 / max(len(option_names), 1)
        for i, option in enumerate(option_names):
            ys = [100.0 / vs_roof[(r, option)] if (r, option) in vs_roof else 0 for r in option_rules]
            ax.bar([j + (i - (len(option_names) - 1) / 2) * width for j in range(len(option_rules))], ys, width,
                   label=option)
        ax.axhline(100, color="black", lw=0.8)
        ax.set_title(f"engine options and state formats: % of each case's roof (1e6 arena), commit {newest[:8]}",
                     fontsize=9)
        ax.set_xticks(range(len(option_rules)), option_rules, rotation=70, fontsize=7)
        ax.grid(axis="y", alpha=0.3)
        ax.legend(fontsize=6, ncol=3)
        fig.tight_layout()
        fig.savefig(out / "options.png", dpi=90)
        plt.close(fig)
        drawn["options"] = {"names": option_names, "rules": option_rules, "plain": vs_plain, "roof": vs_roof}

    book = _newest(data, BOOK, newest)
    if book:
        cases = sorted(book)
        fig, ax = plt.subplots(figsize=(8, 3.6))
        ax.bar(range(len(cases)), [1.0 / book[c] for c in cases], color="tab:green")
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
        "from asv's stored results; every figure is a ratio measured side by side in one process "
        "(the harness in <code>fastopt_bench/</code>, as <code>python -m fastopt bench</code>).</p>",
    ]
    summary = drawn["summary"]
    if summary:
        parts.append("<h2>Newest commit</h2><img src='summary.png' alt='summary'>")
        parts.append("<table><tr><th>rule</th>" + "".join(f"<th>{esc(c)}</th>" for c in summary["columns"])
                     + "</tr>")
        for rule in summary["rules"]:
            cells = []
            for column, values in summary["columns"].items():
                value = values.get(rule)
                cells.append("-" if value is None else f"{value:.0f}%" if column.startswith("%") else f"{value:.2f}")
            parts.append(f"<tr><td>{esc(rule)}</td>" + "".join(f"<td>{c}</td>" for c in cells) + "</tr>")
        parts.append("</table>")
    options = drawn["options"]
    if options:
        parts.append("<h2>Engine options and state formats</h2><img src='options.png' alt='options'>")
        parts.append("<p>Per cell: % of the case's own roof / speed against the plain update (1e6, arena).</p>")
        parts.append("<table><tr><th>rule</th>" + "".join(f"<th>{esc(o)}</th>" for o in options["names"])
                     + "</tr>")
        for rule in options["rules"]:
            cells = []
            for option in options["names"]:
                roof, plain = options["roof"].get((rule, option)), options["plain"].get((rule, option))
                cells.append("-" if roof is None and plain is None else
                             f"{100.0 / roof:.0f}% / {1.0 / plain:.2f}x" if roof and plain else
                             f"{100.0 / roof:.0f}%" if roof else f"{1.0 / plain:.2f}x")
            parts.append(f"<tr><td>{esc(rule)}</td>" + "".join(f"<td>{c}</td>" for c in cells) + "</tr>")
        parts.append("</table>")
    if drawn["book"]:
        parts.append("<h2>The book's loop</h2><img src='book_loop.png' alt='book loop'>")
    parts.append("<h2>Per commit, one plot per rule</h2><div class='grid'>")
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
    parser.add_argument("--n", type=int, default=THROUGHPUT_N, help="the size plotted (default 1e6)")
    args = parser.parse_args(argv)
    machine, commits, data = load(args.results, args.machine)
    drawn = draw(machine, commits, data, args.out, args.n)
    index = write_index(machine, commits, drawn, args.out)
    print(f"{len(commits)} commits on {machine}: {len(drawn['rules'])} rule plots; wrote {index}")
    return index


if __name__ == "__main__":
    main()
