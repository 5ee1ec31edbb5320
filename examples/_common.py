"""Small helpers the examples share: arguments, a progress bar, optional plots."""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent


def parse_args(description: str, argv=None, extra=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--quick", action="store_true", help="a few seconds: fewer steps (used by the tests)")
    parser.add_argument("--out", type=Path, default=HERE / "figures",
                        help="folder for the PNG and JSON outputs (examples/figures)")
    if extra:
        extra(parser)
    args = parser.parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    return args


def pyplot():
    """matplotlib.pyplot with a file backend, or None (and a message) without it."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        print("matplotlib is not installed (pip install 'fastopt[examples]'): no plot drawn")
        return None
    return plt


def save_figure(fig, path: Path) -> None:
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    print(f"wrote {path}")


def write_summary(path: Path, summary: dict) -> None:
    path.write_text(json.dumps(summary, indent=1))
    print(f"wrote {path}")


class Progress:
    """A one-line progress bar on stderr."""

    def __init__(self, total: int, label: str = ""):
        self.total, self.done, self.label, self.start = total, 0, label, time.perf_counter()
        self._draw()

    def advance(self, n: int = 1, label: str | None = None) -> None:
        self.done += n
        if label is not None:
            self.label = label
        if self.done == self.total or self.done % max(1, self.total // 100) == 0:
            self._draw()

    def close(self) -> None:
        self._draw()
        sys.stderr.write("\n")

    def _draw(self) -> None:
        width = 30
        filled = int(width * self.done / max(self.total, 1))
        elapsed = time.perf_counter() - self.start
        sys.stderr.write(
            f"\r[{'#' * filled}{'.' * (width - filled)}] {self.done}/{self.total} {elapsed:5.1f}s {self.label:<20}"
        )
        sys.stderr.flush()
