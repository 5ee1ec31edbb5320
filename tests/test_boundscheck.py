"""A subset of the suite under NUMBA_BOUNDSCHECK=1, so an out-of-bounds index
in a kernel raises instead of reading neighbouring memory."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

TESTS = Path(__file__).resolve().parent


def test_equivalence_and_nonfinite_subset_with_boundscheck(tmp_path):
    env = dict(os.environ, NUMBA_BOUNDSCHECK="1",
               # kernels cached without bounds checks must not be reused
               NUMBA_CACHE_DIR=str(tmp_path / "cache"))
    result = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-x", "-p", "no:cacheprovider",
         str(TESTS / "test_equivalence.py"), str(TESTS / "test_nonfinite.py"),
         # float64 only: an index error does not depend on the dtype, and
         # every kernel compiled with bounds checks costs seconds.  One rule
         # per kind of kernel: stateless, two states, a carried float,
         # branches per element, a trust ratio (norm pass), Adafactor's own.
         "-k", "(several or arena or extreme or splits or skip or raise) "
               "and not amsgrad and not momentum and not nesterov and not decay and not f32 "
               "and (SGD or Adam-default or NAdam or Rprop or LAMB or Adafactor)"],
        env=env, capture_output=True, text=True, timeout=1200,
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    assert " passed" in result.stdout


def test_boundscheck_is_really_on_in_that_run(tmp_path):
    code = (
        "import numba, numpy as np\n"
        "from fastopt._jit import array_at\n"
        "@numba.njit\n"
        "def peek(a, i):\n"
        "    return array_at(a.ctypes.data, 3, a)[i]\n"
        "a = np.zeros(3)\n"
        "try:\n"
        "    peek(a, 5)\n"
        "except IndexError:\n"
        "    print('checked')\n"
    )
    env = dict(os.environ, NUMBA_BOUNDSCHECK="1", NUMBA_CACHE_DIR=str(tmp_path / "cache"))
    result = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=300)
    assert result.stdout.strip() == "checked", result.stderr
