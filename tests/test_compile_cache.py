"""Kernels are cached where a directory is writable, and import never fails."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np

import fastopt
from fastopt.registry import RULES

PACKAGE = Path(fastopt.__file__).parent


def run_python(code: str, env_extra: dict, cwd) -> str:
    env = {k: v for k, v in os.environ.items() if not k.startswith("NUMBA_")}
    env.update(env_extra)
    result = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)],
        env=env,
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr
    return result.stdout


def test_import_and_update_work_with_no_writable_cache_location(tmp_path):
    # Root ignores permission bits, so make every location Numba tries
    # impossible to create instead: a *file* named __pycache__ next to each
    # module, and cache dirs below /dev/null.
    copy = tmp_path / "site" / "fastopt"
    shutil.copytree(PACKAGE, copy, ignore=shutil.ignore_patterns("__pycache__"))
    for folder in [copy, *[p for p in copy.rglob("*") if p.is_dir()]]:
        (folder / "__pycache__").write_text("not a directory")
    out = run_python(
        """
        import numpy as np, fastopt
        assert fastopt.__file__.startswith(%r), fastopt.__file__
        kernel = fastopt.Adam.math.kernel.serial
        print(type(kernel._cache).__name__)
        params = {"w": np.ones(4, np.float32)}
        fastopt.Adam().update(params, {"w": np.ones(4, np.float32)})
        print(params["w"][0] < 1)
        """
        % str(copy),
        {
            "PYTHONPATH": str(copy.parent),
            "PYTHONDONTWRITEBYTECODE": "1",
            "NUMBA_CACHE_DIR": "/dev/null/numba",
            "XDG_CACHE_HOME": "/dev/null/cache",
            "HOME": "/dev/null",
        },
        cwd=tmp_path,
    )
    assert out.split() == ["NullCache", "True"]


def test_kernels_load_from_a_writable_cache(tmp_path):
    code = """
        import numpy as np, fastopt
        params = {"w": np.ones(4, np.float32)}
        fastopt.SGD().update(params, {"w": np.ones(4, np.float32)})
        stats = fastopt.SGD.math.kernel.serial.stats
        print(sum(stats.cache_hits.values()), sum(stats.cache_misses.values()))
        """
    env = {"NUMBA_CACHE_DIR": str(tmp_path / "cache")}
    first = run_python(code, env, cwd=tmp_path).split()
    second = run_python(code, env, cwd=tmp_path).split()
    assert first == ["0", "1"]
    assert second == ["1", "0"]
    assert any((tmp_path / "cache").rglob("*.nbi"))


def test_serial_and_parallel_variants_do_not_share_cache_entries(tmp_path):
    code = """
        import fastopt
        fastopt.warmup(rules=["Momentum"], dtypes=["float64"])
        k = fastopt.Momentum.math.kernel
        print(len(k.serial.signatures), len(k.parallel.signatures))
        """
    env = {"NUMBA_CACHE_DIR": str(tmp_path / "cache")}
    run_python(code, env, cwd=tmp_path)
    assert run_python(code, env, cwd=tmp_path).split() == ["1", "1"]
    names = sorted(p.name for p in (tmp_path / "cache").rglob("*.nbi") if "momentum" in p.name)
    assert len(names) == 2 and any("parallel" in n for n in names), names


def test_warmup_compiles_the_requested_kernels():
    fastopt.warmup(rules=["AdaGrad"], dtypes=["float32"], parallel=False)
    signatures = fastopt.AdaGrad.math.kernel.serial.signatures
    assert any(str(sig[1]) == "float32" for sig in signatures)  # (block, params, state, arithmetic dtypes)
    params = {"w": np.ones(3, np.float32)}
    fastopt.AdaGrad().update(params, {"w": np.ones(3, np.float32)})


def test_a_second_process_loads_every_generated_kernel_from_the_cache(tmp_path):
    # The package's own cache, which the rest of the suite has mostly filled:
    # compiling every kernel afresh into an empty one took a minute.
    code = """
        import fastopt
        from fastopt.registry import RULES
        fastopt.warmup(dtypes=["float64"])
        kernels = {rule.kernel.name: rule.kernel for rule in RULES}
        hits = sum(sum(d.stats.cache_hits.values()) for k in kernels.values() for d in k.variants())
        misses = sum(sum(d.stats.cache_misses.values()) for k in kernels.values() for d in k.variants())
        n = sum(len(k.variants()) for k in kernels.values())  # serial, parallel (and norm passes)
        print(n, hits, misses)
        """
    n, _, _ = run_python(code, {}, cwd=tmp_path).split()  # compiles what is not cached yet
    assert int(n) >= 2 * len(RULES)
    assert run_python(code, {}, cwd=tmp_path).split() == [n, n, "0"]
