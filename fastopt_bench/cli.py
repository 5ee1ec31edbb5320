"""``python -m fastopt bench``: every rule in the book's training loop against
the book's own optimizers, and its throughput against the NumPy reference,
PyTorch (when installed) and the memory-bandwidth roof.

The book's loop (``--cases book``)
----------------------------------
What readers of the book run: float64 params of a book MultiLayerNet
(784-100-100-100-100-10, and 64-256-256-10), a fresh dict of fresh grad
arrays every step (copies of a base set, built outside the timed region:
new objects, cache-warm), every rule against the book's
``common/optimizer.py`` class written out in ``fastopt_bench/book.py`` (rules
not in the book, AdamW and the catalogue: their ``fastopt.reference``
class), plus one SGD shared by three networks updated in turn (the book's
weight_init_compare.py).  Medians of interleaved rounds; the ratio is
baseline time / fastopt time.  This is the table the README quotes.

Method (throughput)
-------------------
For each rule, size and layout, every implementation gets its own params,
grads and state, is warmed up (compiled, buffers touched), then timed in
*interleaved rounds* (``fastopt_bench/timing.py``).  The figure reported is
the median over rounds of the time per update; ratios compare medians from
the same run.  The *roof* (``fastopt_bench/roofs.py``) has the same memory
traffic as the case and trivial arithmetic; "% of roof" is roof time /
fastopt time.

Bytes moved per element (float32): SGD 12, Momentum / Nesterov / AdaGrad /
RMSprop / Lion 20, Adam / AdamW and the other two-state rules 28, LAMB 44,
Adafactor 24 (its arrays are matrices 1000 wide, the factored case).

Engine options (``--cases options``, ``--cases state``)
------------------------------------------------------
Each rule's option cases from its capabilities (``fastopt_bench.cases.options``):
plain, clip_norm, groups, maximize and every compact state format it offers,
timed side by side, each against the roof of its own traffic.
"""

from __future__ import annotations

import argparse
import json
from dataclasses import asdict

from . import cases, measure, report

DEFAULT_SIZES = (1_000, 10_000, 100_000, 1_000_000, 10_000_000)
QUICK_SIZES = (1_000, 100_000, 1_000_000)
#: What runs without --cases; "state" and "options" run when named.
CASES = ("throughput", "mlp", "book", "torch", "state", "options")
DEFAULT_CASES = ("throughput", "mlp", "book", "torch")
#: The state case: rules, sizes (``--sizes`` overrides them).
STATE_RULES = ("Adam", "AdamW")
STATE_SIZES = (1_000, 10_000_000, 100_000_000)
#: The options case: sizes (``--sizes`` overrides them) and layout.
OPTION_SIZES = (1_000_000,)
OPTION_LAYOUT = "arena"


def _names(choices, what):
    """argparse type: one name or several, comma-separated."""

    def parse(text):
        names = [n.strip() for n in text.split(",") if n.strip()]
        unknown = [n for n in names if n not in choices]
        if unknown:
            raise argparse.ArgumentTypeError(f"unknown {what} {unknown}; known: {', '.join(choices)}")
        return names

    return parse


def main(argv=None) -> int:
    import fastopt

    all_rules = cases.rule_names()
    parser = argparse.ArgumentParser(prog="python -m fastopt bench", description=__doc__.split("\n")[0])
    parser.add_argument("--rules", nargs="+", type=_names(all_rules, "rules"), metavar="RULE",
                        help=f"rules to time, space- or comma-separated ({','.join(all_rules)}; all)")
    parser.add_argument("--cases", nargs="+", type=_names(CASES, "cases"), metavar="CASE",
                        help="what to run, space- or comma-separated: throughput (sizes x layouts, float32), "
                        "mlp (the book MultiLayerNet layout, float32), book (the book's loop: fresh float64 "
                        "grads every step against the book's optimizers, and the shared SGD), torch "
                        "(fastopt.torch.AdamW against torch.optim.AdamW, when torch is installed) (all of "
                        "these); state (Adam and AdamW with float32, bfloat16 and int8 state at 1e3, 1e7, "
                        "1e8 elements, or --sizes) and options (every rule's engine options and state "
                        "formats at 1e6, or --sizes, in an arena) only when named")
    parser.add_argument("--sizes", nargs="+", type=lambda s: int(float(s)),
                        help="element counts, e.g. 1e3 1e6 (1e3 1e4 1e5 1e6 1e7)")
    parser.add_argument("--layouts", nargs="+", choices=cases.LAYOUTS, default=list(cases.LAYOUTS))
    parser.add_argument("--rounds", type=int, help=f"interleaved rounds ({measure.DEFAULT_ROUNDS}; --quick: 3)")
    parser.add_argument("--book-rounds", type=int,
                        help=f"interleaved rounds of the book's loop ({measure.BOOK_ROUNDS}; --quick: 5)")
    parser.add_argument("--quick", action="store_true",
                        help=f"sizes {' '.join(f'{n:.0e}' for n in QUICK_SIZES)}, 3 rounds (book's loop: 5), "
                        "no extra checks")
    parser.add_argument("--no-mlp", action="store_true", help="skip the book MultiLayerNet layout")
    parser.add_argument("--no-checks", action="store_true", help="skip allocation and cold-start checks")
    parser.add_argument("--json", metavar="PATH", help="write every result as JSON")
    parser.add_argument("--plot", metavar="PATH", help="write a PNG of GB/s against N")
    parser.add_argument("--markdown", metavar="PATH", help="write the README's summary tables")
    args = parser.parse_args(argv)

    names = list(dict.fromkeys(n for group in args.rules for n in group)) if args.rules else all_rules
    rules = [cases.rule(n) for n in names]
    # The state case holds three optimizers and their roofs at up to 1e8
    # elements (~10 GB): it runs when asked for, and so do the option cases.
    chosen = {c for group in args.cases for c in group} if args.cases else set(DEFAULT_CASES)
    if args.no_mlp:
        chosen.discard("mlp")
    sizes = args.sizes or (QUICK_SIZES if args.quick else DEFAULT_SIZES)
    rounds = args.rounds or (3 if args.quick else measure.DEFAULT_ROUNDS)
    book_rounds = args.book_rounds or (5 if args.quick else measure.BOOK_ROUNDS)
    dtypes = (("float32",) if chosen & {"throughput", "mlp"} else ()) + (("float64",) if "book" in chosen else ())
    fastopt.warmup(rules=names, dtypes=dtypes)
    env = report.environment()
    book_results = measure.book_loop(rules, rounds=book_rounds) if "book" in chosen else []
    results = []
    if chosen & {"throughput", "mlp"}:
        results = measure.throughput(rules, sizes if "throughput" in chosen else (), args.layouts, rounds,
                                     mlp="mlp" in chosen)
    adapter = []
    if "torch" in chosen:
        if env.get("torch") is None:
            print("torch is not installed (pip install 'fastopt[torch]'): no torch adapter case")
        else:
            adapter = measure.torch_adapter(rounds)
    options = []
    if "state" in chosen:
        state_rules = [r for r in rules if r.name in STATE_RULES] or [cases.rule(n) for n in STATE_RULES]
        state_sizes = args.sizes or ((1_000, 1_000_000) if args.quick else STATE_SIZES)
        options += measure.option_cases(state_rules, state_sizes, "one", rounds,
                                        only=("plain", "state=bfloat16", "state=int8"))
    if "options" in chosen:
        options += measure.option_cases(rules, args.sizes or OPTION_SIZES, OPTION_LAYOUT, rounds)
    checks = None if (args.quick or args.no_checks or "throughput" not in chosen) else measure.extra_checks(rules)
    print(report.report(results, checks, env, book_results, adapter, options))
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"environment": env, "results": [asdict(r) for r in results],
                       "book_loop": [dict(asdict(r), ratio=r.ratio) for r in book_results], "checks": checks,
                       "torch_adapter": [asdict(r) for r in adapter], "options": [asdict(r) for r in options]},
                      f, indent=1)
        print(f"\nresults written to {args.json}")
    if args.markdown:
        with open(args.markdown, "w") as f:
            f.write(report.summary_markdown(results, env, book_results) + "\n")
        print(f"summary tables written to {args.markdown}")
    if args.plot and results and report.plot(results, args.plot):
        print(f"plot written to {args.plot}")
    return 0
