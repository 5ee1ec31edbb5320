"""Command line: ``python -m fastopt`` runs the side-by-side training demo."""

from __future__ import annotations

import argparse
import sys


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m fastopt",
        description="Train a book-style network with fastopt and the NumPy reference, "
        "check the results are bit-identical, and time the optimizer steps.",
    )
    parser.add_argument("--iterations", type=int, default=300, help="training steps per rule (300)")
    args = parser.parse_args(argv)
    from ._demo import main as demo

    return demo(iterations=args.iterations)


if __name__ == "__main__":
    sys.exit(main())
