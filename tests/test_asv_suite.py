"""The asv suite must not rot: every benchmark imports, the smallest size runs."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

from fastopt.registry import RULES

ROOT = Path(__file__).resolve().parents[1]


def test_asv_check_and_quick_subset(tmp_path):
    asv = Path(sys.executable).parent / "asv"
    assert asv.exists(), "asv is part of the test extra: pip install '.[test]'"
    # asv keeps its machine file in $HOME; keep this run's to itself.
    # asv check imports every benchmark with every rule; running each rule's
    # smallest case costs a process per benchmark, so three rules run: the
    # first and last of the registry and Adam.
    ran = (RULES[0].name, "Adam", RULES[-1].name)
    env = dict(os.environ, HOME=str(tmp_path), ASV=str(asv), CHECK_RULES="|".join(ran))
    # run.sh check runs Update and Figures at N = 1000; add the book's loop on
    # the smaller net: SGD's time_update and two track_speedup cases.
    book = [
        "-b", r"BookLoop.time_update\('SGD', .*, '64-256-256-10'\)",
        "-b", r"BookLoop.track_speedup\('(SGD|shared SGD)', '64-256-256-10'\)",
        "-b", r"StateFormats.track_(time_vs_float32|state_bytes_per_param)\('Adam', '(bfloat16|int8)', 1000\)",
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
    for rule in ran:  # a time in the table's 1000 row for both implementations
        for impl in ("fastopt", "reference"):
            assert re.search(rf"\b{rule}\s+{impl}\s+1000\s+[0-9.]+±", output), (rule, impl, output[-4000:])
    assert not re.search(r"\bAdamW\s+fastopt\s+1000\s+[0-9.]+±", output)  # CHECK_RULES held
    assert "BookLoop.time_update" in output and "BookLoop.track_speedup" in output
    assert "shared SGD" in output
    assert "StateFormats.track_time_vs_float32" in output and "StateFormats.track_state_bytes_per_param" in output
