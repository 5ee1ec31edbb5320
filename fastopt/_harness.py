"""Finding the benchmark harness, ``fastopt_bench``, which a source checkout
holds beside this package and the wheel does not install."""

from __future__ import annotations

import importlib
import sys
from pathlib import Path

HARNESS_MISSING = (
    "the benchmark harness (fastopt_bench/) is part of fastopt's source checkout, not of the installed "
    "package: run this from the root of a clone (or after 'pip install -e .')"
)


def load_harness(module: str = "cli"):
    """``fastopt_bench.<module>`` from the current directory, the path, or the
    checkout this package was imported from; None where there is none."""
    try:
        return importlib.import_module(f"fastopt_bench.{module}")
    except ModuleNotFoundError as exc:
        if exc.name not in ("fastopt_bench", f"fastopt_bench.{module}"):
            raise
    checkout = Path(__file__).resolve().parent.parent
    if not (checkout / "fastopt_bench" / "__init__.py").is_file():
        return None
    sys.path.insert(0, str(checkout))
    return importlib.import_module(f"fastopt_bench.{module}")
