"""Command line.

``python -m fastopt`` runs the side-by-side training demo (and times the
book's loop against the book's optimizers);
``python -m fastopt bench`` runs the benchmark (``--help`` for its options):
its harness, ``fastopt_bench``, lives beside this package in a source
checkout and is not installed with the wheel.
"""

from __future__ import annotations

import argparse
import sys


def main(argv=None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    if argv[:1] == ["bench"]:
        from ._harness import HARNESS_MISSING, load_harness

        harness = load_harness()
        if harness is None:
            print(f"python -m fastopt bench: {HARNESS_MISSING}", file=sys.stderr)
            return 2
        return harness.main(argv[1:])
    parser = argparse.ArgumentParser(
        prog="python -m fastopt",
        description="Train a book-style network with fastopt and the NumPy reference, "
        "check the results are bit-identical, and time the optimizer steps; then time the book's loop "
        "(fresh grads every step) against the book's own optimizer classes. "
        "'python -m fastopt bench --help' describes the benchmark.",
    )
    parser.add_argument("--iterations", type=int, default=300, help="training steps per rule (300)")
    parser.add_argument("--book-rounds", type=int, default=5,
                        help="interleaved rounds of the book's-loop timing against the book's optimizers "
                        "(5; 0 skips it)")
    args = parser.parse_args(argv)
    from ._demo import main as demo

    return demo(iterations=args.iterations, book_rounds=args.book_rounds)


if __name__ == "__main__":
    sys.exit(main())
