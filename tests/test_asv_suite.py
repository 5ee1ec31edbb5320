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
    # run.sh check runs Update and the reference ratio at N = 1000; add
    # the other benchmarks: the book's loop, the options and the state bytes.
    book = [
        "-b", r"BookLoop.track_time_vs_book\('(SGD|shared SGD)', ",
        "-b", r"Options.track_",
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
    for rule in ran:  # a time in Update's table for both implementations
        for impl in ("fastopt", "reference"):
            assert re.search(rf"\b{rule}\s+{impl}\s+[0-9.]+±", output), (rule, impl, output[-4000:])
    assert not re.search(r"\bAdamW\s+fastopt\s+[0-9.]+±", output)  # CHECK_RULES held
    assert "BookLoop.track_time_vs_book" in output and "shared SGD" in output
    assert "Options.track_time_vs_plain" in output and "Options.track_time_vs_roof" in output
    assert "Options.track_state_bytes_per_param" in output
    # state bytes per param (rows: rule, option)
    for row in (r"Adam\s+plain\s+8\.0", r"Adam\s+state=bfloat16\s+4\.0", r"Adam\s+state=int8\s+2\.0[0-9]*",
                r"SGD\s+plain\s+0\.0", r"Adafactor\s+state=int8\s+n/a"):
        assert re.search(rf"\b{row}\s", output), (row, output[-4000:])


def test_offline_dashboard_from_stored_results(tmp_path):
    """Results stored by a real asv run of this commit (two rules, N = 1000)
    become a static page: a plot per rule and a summary, nothing fetched."""
    import json

    asv = Path(sys.executable).parent / "asv"
    head = subprocess.run(["git", "rev-parse", "HEAD"], cwd=ROOT, capture_output=True, text=True, check=True)
    config = json.loads(_strip_comments((ROOT / "asv_benchmarks" / "asv.conf.json").read_text()))
    config.update(repo=str(ROOT), benchmark_dir=str(ROOT / "asv_benchmarks" / "benchmarks"),
                  results_dir=str(tmp_path / "results"), html_dir=str(tmp_path / "html"),
                  env_dir=str(tmp_path / "env"))
    (tmp_path / "asv.conf.json").write_text(json.dumps(config))
    env = dict(os.environ, HOME=str(tmp_path), FASTOPT_ASV_RULES="SGD|Adam")  # the figures of two rules
    subprocess.run([str(asv), "machine", "--yes", "--machine", "dash", "--config", str(tmp_path / "asv.conf.json")],
                   env=env, capture_output=True, check=True, timeout=120)
    run = subprocess.run(
        [str(asv), "run", "--config", str(tmp_path / "asv.conf.json"), "--python=same", "--machine", "dash",
         "--quick", "--set-commit-hash", head.stdout.strip(),
         "-b", r"Update.time_update\('(SGD|Adam)', ", "-b", r"Reference.track_.*\('(SGD|Adam)', 1000, ",
         "-b", r"Options.track_time_vs_roof\('(SGD|Adam)', ", "-b", r"Roof.track_.*\('(SGD|Adam)', ",
         "-b", r"BookLoop.track_time_vs_book\('Adam', "],
        env=env, capture_output=True, text=True, timeout=600,
    )
    assert run.returncode == 0, (run.stdout + run.stderr)[-4000:]
    out = tmp_path / "dashboard"
    built = subprocess.run(
        [sys.executable, str(ROOT / "asv_benchmarks" / "dashboard.py"), "--results", str(tmp_path / "results"),
         "--out", str(out)], capture_output=True, text=True, timeout=300)
    assert built.returncode == 0, built.stderr[-4000:]
    assert "1 commits on dash: 2 rule plots" in built.stdout
    page = (out / "index.html").read_text()
    assert "http" not in page and "<script" not in page  # opens without a network
    for image in ("rules/SGD.png", "rules/Adam.png", "summary.png", "options.png", "book_loop.png"):
        assert f"'{image}'" in page and (out / image).stat().st_size > 5_000, image
    # The summary table: % of roof (1e7 arena), x reference (1e3) and the
    # book's loop for Adam; the options table: % of roof for its two state formats.
    assert "<th>% of roof (1e7 arena)</th><th>x reference (1e3 dict)</th><th>x book&#x27;s loop</th>" in page, page
    assert re.search(r"<td>Adam</td><td>[0-9]+%</td><td>[0-9.]+</td><td>[0-9.]+</td>", page), page
    assert re.search(r"<td>Adam</td><td>[0-9]+%</td><td>[0-9]+%</td>", page), page


def _strip_comments(text: str) -> str:
    return "\n".join(line for line in text.splitlines() if not line.lstrip().startswith("//"))
