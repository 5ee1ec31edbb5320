#!/usr/bin/env bash
# The documented ways to use the asv suite (see README.md, "Benchmarks over time").
# Run from anywhere; asv itself comes with `pip install '.[bench]'` (or the test extra).
#
#   asv_benchmarks/run.sh machine              describe this machine once (non-interactive)
#   asv_benchmarks/run.sh history [N] [ARGS]   benchmark the last N commits of main (default 5)
#   asv_benchmarks/run.sh dashboard [ARGS]     a static dashboard that opens offline (PNGs and
#                                              plain HTML) in asv_benchmarks/.asv/dashboard
#   asv_benchmarks/run.sh publish              asv's own HTML in asv_benchmarks/.asv/html (its
#                                              scripts come from public CDNs: needs a network)
#   asv_benchmarks/run.sh preview              serve asv's HTML on http://127.0.0.1:8080
#   asv_benchmarks/run.sh compare A B          table of A vs B from stored results
#   asv_benchmarks/run.sh continuous BASE HEAD [ARGS]
#                                              run both, fail if any benchmark got
#                                              slower by more than FACTOR (default 2)
#   asv_benchmarks/run.sh check                import every benchmark against the
#                                              installed fastopt and run a small subset once
#                                              (CHECK_RULES='SGD|Adam' limits it to those rules)
#
# ARGS go to asv as they are, e.g. -b "Update.time_update\('Adam'" to pick benchmarks.
# The benchmarks are the harness's cases (fastopt_bench/, beside fastopt/); see
# asv_benchmarks/benchmarks/bench_update.py.
set -euo pipefail
cd "$(dirname "$0")"
ASV=${ASV:-asv}
FACTOR=${FACTOR:-2}
MACHINE=${MACHINE:-$(hostname)}

command=${1:-help}
shift || true
case "$command" in
    machine)
        $ASV machine --yes --machine "$MACHINE"
        ;;
    history)
        n=${1:-5}
        shift || true
        $ASV machine --yes --machine "$MACHINE" > /dev/null
        $ASV run --machine "$MACHINE" --skip-existing-successful "main~${n}..main" "$@"
        ;;
    dashboard)
        ${PYTHON:-python3} dashboard.py "$@"
        ;;
    publish)
        $ASV publish
        ;;
    preview)
        $ASV preview --port 8080
        ;;
    compare)
        $ASV compare --machine "$MACHINE" "$1" "$2"
        ;;
    continuous)
        base=$1
        head=$2
        shift 2
        $ASV machine --yes --machine "$MACHINE" > /dev/null
        $ASV continuous --machine "$MACHINE" --factor "$FACTOR" --split "$base" "$head" "$@"
        ;;
    check)
        # Against the fastopt installed in the current environment, no
        # virtualenvs built: every benchmark must import, and Update and the
        # smallest size of the reference ratio must run.
        $ASV machine --yes --machine ci-check > /dev/null
        $ASV check --python=same
        rules=${CHECK_RULES:-[^\']*}   # e.g. CHECK_RULES='SGD|Adam': only these rules
        # The figures measure every rule once per commit (setup_cache): only these.
        export FASTOPT_ASV_RULES=${CHECK_RULES:-.*}
        $ASV run --python=same --machine ci-check --quick --show-stderr \
            -b "Update.time_update\('($rules)', " \
            -b "Reference.track_time_vs_reference\('($rules)', 1000, " "$@"
        ;;
    *)
        sed -n '2,23p' "$0"
        ;;
esac
