"""The asv suite must not rot: every benchmark imports, the smallest size runs."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_asv_check_and_quick_subset(tmp_path):
    asv = Path(sys.executable).parent / "asv"
    assert asv.exists(), "asv is part of the test extra: pip install '.[test]'"
    # asv keeps its machine file in $HOME; keep this run's to itself.
    env = dict(os.environ, HOME=str(tmp_path), ASV=str(asv))
    # run.sh check runs Update and Figures at N = 1000; add the book's loop on
    # the smaller net: SGD's time_update and two track_speedup cases.
    book = [
        "-b", r"BookLoop.time_update\('SGD', .*, '64-256-256-10'\)",
        "-b", r"BookLoop.track_speedup\('(SGD|shared SGD)', '64-256-256-10'\)",
    ]
    result = subprocess.run(
        ["bash", str(ROOT / "asv_benchmarks" / "run.sh"), "check", *book],
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    output = result.stdout + result.stderr
    assert result.returncode == 0, output[-4000:]
    assert "No problems found" in output
    assert " failed" not in output, output[-4000:]
    # every rule ran at N = 1000 for both implementations
    for rule in ("SGD", "Momentum", "Nesterov", "AdaGrad", "RMSprop", "Adam", "AdamW"):
        assert rule in output
    assert "BookLoop.time_update" in output and "BookLoop.track_speedup" in output
    assert "shared SGD" in output
