"""The same commit's figures from ``python -m fastopt bench --json`` and from
asv's stored results, side by side.

    python -m fastopt bench --cases throughput --sizes 1e3 1e5 1e7 --layouts dict arena \\
        --no-mlp --no-checks --rounds 3 --json throughput.json
    python -m fastopt bench --cases options --rounds 3 --json options.json
    python tools/bench_vs_asv.py throughput.json options.json [--results DIR] [--commit HASH]

Both come from the harness's own functions (``fastopt_bench.measure``), so
they should differ only by the machine's noise between the two runs.
Prints, per rule: % of roof at 1e7 (arena), x reference at 1e3 and 1e5
(dict), and per option case at 1e6 (arena, when the bench ran it) x plain.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "asv_benchmarks"))

import dashboard  # noqa: E402  (asv's results, read with asv's reader)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("bench_json", type=Path, nargs="+", help="bench --json outputs")
    parser.add_argument("--results", type=Path, default=ROOT / "asv_benchmarks" / ".asv" / "results")
    parser.add_argument("--machine")
    parser.add_argument("--commit", help="asv's commit (default: the newest stored)")
    args = parser.parse_args(argv)
    runs = [json.loads(path.read_text()) for path in args.bench_json]
    bench = {"environment": runs[0]["environment"], "results": [r for run in runs for r in run["results"]],
             "options": [r for run in runs for r in run.get("options", [])]}
    machine, commits, data = dashboard.load(args.results, args.machine)
    commit = next((c for c, _ in commits if c.startswith(args.commit)), None) if args.commit else commits[-1][0]

    def asv(key, params):
        return data.get(key, {}).get(commit, {}).get(params)

    by = {(r["rule"], r["n"], r["layout"], r["impl"]): r for r in bench["results"]}
    rows = []
    for (rule, n, layout, impl), r in by.items():
        if impl != "fastopt":
            continue
        if (n, layout) == (10_000_000, "arena"):
            theirs = asv(dashboard.VS_ROOF, (rule, n, layout))
            if theirs:
                rows.append((rule, "% of roof 1e7 arena", r["pct_of_roof"], 100.0 / theirs))
        if layout == "dict" and (rule, n, layout, "reference") in by:
            theirs = asv(dashboard.VS_REFERENCE, (rule, n, layout))
            if theirs:
                mine = by[(rule, n, layout, "reference")]["seconds"] / r["seconds"]
                rows.append((rule, f"x reference {n:.0e} dict", mine, 1.0 / theirs))
    for r in bench.get("options", []):
        if (r["n"], r["layout"]) == (1_000_000, "arena") and r["option"] != "plain":
            theirs = asv(dashboard.OPTION_VS_PLAIN, (r["rule"], r["option"]))
            if theirs:
                rows.append((r["rule"], f"x plain {r['option']} 1e6 arena", r["x_plain"], 1.0 / theirs))
    print(f"python -m fastopt bench ({bench['environment']['date']}) against asv, commit {commit[:8]} on {machine}")
    header = f"{'rule':<10} {'figure':<34} {'bench':>8} {'asv':>8} {'bench/asv':>9}"
    print(header)
    print("-" * len(header))
    quotients = []
    for rule, figure, mine, theirs in sorted(rows, key=lambda row: (row[1], row[0])):
        quotients.append(mine / theirs)
        print(f"{rule:<10} {figure:<34} {mine:>8.2f} {theirs:>8.2f} {mine / theirs:>9.2f}")
    if quotients:
        print(f"\n{len(quotients)} figures; bench/asv median {statistics.median(quotients):.2f}, "
              f"range {min(quotients):.2f}-{max(quotients):.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
