"""Interrupts and killed saves: nothing half-applied, no checkpoint lost."""

from __future__ import annotations

import _thread
import contextlib
import os
import random
import signal
import subprocess
import sys
import textwrap
import threading
import time

import numpy as np
import pytest

import fastopt
from fastopt.registry import BY_NAME

from conftest import assert_same


def _grads_for(params, n=7, seed=0):
    rng = np.random.default_rng(seed)
    out = []
    for _ in range(n):
        out.append({k: (float(rng.standard_normal()) if type(v) is float
                        else rng.standard_normal(np.shape(v)).astype(np.asarray(v).dtype))
                    for k, v in params.items()})
    return out


class _InterruptGate:
    """A SIGINT handler that raises KeyboardInterrupt only while armed.

    Raising disarms it, so a second interrupt can never land in the test's
    own ``except`` clause or loop bookkeeping and escape into pytest (which
    then aborts the whole session); interrupts that arrive disarmed are only
    counted.  The loop re-arms as the first statement inside its ``try``.
    """

    def __init__(self):
        self.armed = False
        self.raised = 0
        self.swallowed = 0

    def arm(self):
        self.armed = True

    def disarm(self):
        self.armed = False

    def __call__(self, signum, frame):
        if self.armed:
            self.armed = False
            self.raised += 1
            raise KeyboardInterrupt
        self.swallowed += 1


@contextlib.contextmanager
def _interrupts_every(low: float, high: float):
    """Send ``_thread.interrupt_main()`` every ``low``-``high`` seconds into the
    gated handler; on exit stop the sender, join it and drain what it sent
    before the original SIGINT handler is back."""
    gate = _InterruptGate()
    stop = threading.Event()

    def sender():
        r = random.Random(0)
        while not stop.wait(r.uniform(low, high)):
            _thread.interrupt_main()

    previous = signal.signal(signal.SIGINT, gate)
    thread = threading.Thread(target=sender, daemon=True)
    thread.start()
    try:
        yield gate
    finally:
        gate.disarm()
        stop.set()
        thread.join()
        # A trip set just before the join runs its handler at the next
        # bytecode boundary of this thread: let it arrive while gated.
        for _ in range(3):
            time.sleep(0.005)
        signal.signal(signal.SIGINT, previous)


def _setups():
    rng = np.random.default_rng(1)
    arrays = {"W": rng.standard_normal((40, 30)), "b": rng.standard_normal(30), "big": rng.standard_normal(40_000)}
    return {
        "fresh grads each step": (dict(arrays), False),
        "arena, grads filled in place": (fastopt.flatten(arrays), True),
        "python floats": ({"x": -7.0, "y": 2.0}, False),
    }


@pytest.mark.parametrize("setup", list(_setups()))
@pytest.mark.parametrize("rule_name", ["Adam", "Nesterov"])
def test_keyboard_interrupt_never_leaves_a_step_half_applied(setup, rule_name):
    params, in_place = _setups()[setup]
    start = {k: (v.copy() if isinstance(v, np.ndarray) else v) for k, v in params.items()}
    grads_cycle = _grads_for(params)
    in_place_grads = fastopt.zeros_like(params) if in_place else None
    opt = BY_NAME[rule_name].fast(lr=0.01)
    opt.parallel = None

    # Compile and start the thread pools first: an interrupt inside Numba's
    # compiler is outside what an update can guarantee.
    warm = BY_NAME[rule_name].fast(lr=0.01)
    warm.parallel = True
    warm.parallel_min_size = 0
    warm_params = {k: (v.copy() if isinstance(v, np.ndarray) else v) for k, v in start.items()}
    warm.update(warm_params, grads_cycle[0])
    warm.parallel = False
    warm.update(warm_params, grads_cycle[0])
    fastopt.warmup(rules=[rule_name], dtypes=["float64"])

    caught = 0
    with _interrupts_every(0.0002, 0.002) as gate:
        # At least 2.5 s and at least 40 interrupts caught: on a loaded
        # machine the main thread runs less, so time alone would catch fewer
        # (give up after 120 s).
        began = time.monotonic()

        def going():
            elapsed = time.monotonic() - began
            return elapsed < 120 and (elapsed < 2.5 or caught < 40)

        while going():
            try:
                gate.arm()
                while going():
                    g = grads_cycle[opt.step_count % len(grads_cycle)]
                    if in_place:
                        for k in g:
                            in_place_grads[k][...] = g[k]
                        opt.update(params, in_place_grads)
                    else:
                        opt.update(params, g)
                gate.disarm()
            except KeyboardInterrupt:
                caught += 1
    assert caught == gate.raised
    assert caught > 30, caught

    # Replay: the step count and the params must agree exactly.  The replay
    # runs fastopt's serial kernel without interrupts (bit-identical to the
    # NumPy reference, as test_equivalence establishes) because a fast update
    # makes tens of thousands of steps here, too many for the reference.
    replay = BY_NAME[rule_name].fast(lr=0.01)
    replay.parallel = False
    replay_params = {k: (v.copy() if isinstance(v, np.ndarray) else v) for k, v in start.items()}
    for i in range(opt.step_count):
        replay.update(replay_params, grads_cycle[i % len(grads_cycle)])
    assert replay.step_count == opt.step_count
    assert_same(dict(params), replay_params)
    for name in opt.state_names:
        assert_same(opt.state[name], replay.state[name])
    ref = BY_NAME[rule_name].reference(lr=0.01)
    ref_params = {k: (v.copy() if isinstance(v, np.ndarray) else v) for k, v in start.items()}
    for i in range(min(opt.step_count, 200)):
        ref.update(ref_params, grads_cycle[i % len(grads_cycle)])
        replay_check = i
    check = BY_NAME[rule_name].fast(lr=0.01)
    check_params = {k: (v.copy() if isinstance(v, np.ndarray) else v) for k, v in start.items()}
    for i in range(replay_check + 1):
        check.update(check_params, grads_cycle[i % len(grads_cycle)])
    assert_same(check_params, ref_params)  # the replay itself against the reference


KILLED_SAVER = textwrap.dedent(
    """
    import sys, numpy as np, fastopt
    path = sys.argv[1]
    rng = np.random.default_rng(0)
    params = {"W": rng.standard_normal((300, 200)).astype(np.float32), "b": np.zeros(200, np.float32)}
    grads = [{k: rng.standard_normal(v.shape).astype(np.float32) for k, v in params.items()} for _ in range(5)]
    opt = fastopt.Adam()
    opt.update(params, grads[0])
    opt.save(path)
    print("ready", flush=True)  # a first checkpoint exists; now save over and over
    while True:
        opt.update(params, grads[opt.step_count % 5])
        opt.save(path)
    """
)


def _expected_state(step):
    rng = np.random.default_rng(0)
    params = {"W": rng.standard_normal((300, 200)).astype(np.float32), "b": np.zeros(200, np.float32)}
    grads = [{k: rng.standard_normal(v.shape).astype(np.float32) for k, v in params.items()} for _ in range(5)]
    opt = fastopt.Adam()
    for i in range(step):
        opt.update(params, grads[i % 5])
    return opt


def test_sigkill_during_save_never_loses_the_last_good_checkpoint(tmp_path):
    path = tmp_path / "ckpt.npz"
    rng = random.Random(0)
    trials, checked = 20, 0
    for trial in range(trials):
        child = subprocess.Popen([sys.executable, "-c", KILLED_SAVER, str(path)], stdout=subprocess.PIPE, text=True)
        assert child.stdout.readline().strip() == "ready"
        time.sleep(rng.uniform(0.0, 0.25))
        os.kill(child.pid, signal.SIGKILL)
        child.wait()
        loaded = fastopt.Adam()
        loaded.load(path)  # never corrupt: the rename is atomic
        assert loaded.step_count >= 1
        expected = _expected_state(loaded.step_count)
        for name in ("m", "v"):
            assert_same(loaded.state[name], expected.state[name])
        checked += 1
    assert checked == trials
    leftovers = [p.name for p in tmp_path.iterdir() if p.name != "ckpt.npz"]
    # A kill mid-write leaves the temporary file behind (nothing can remove
    # it); it is never mistaken for the checkpoint.
    assert all(name.startswith(".fastopt-") and name.endswith(".tmp") for name in leftovers), leftovers
