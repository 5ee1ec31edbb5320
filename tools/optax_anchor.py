"""fastopt against optax's jitted rule on the CPU, side by side (an anchor for
the rules whose source of truth is optax; jax is never a fastopt dependency).

    /tmp/jaxvenv/bin/pip install numba      # the jax venv of golden_catalogue.py
    PYTHONPATH=. /tmp/jaxvenv/bin/python tools/optax_anchor.py [N ...]

One float32 array of N elements (default 1e6), the same params and grads
every call.  ``optax``: one ``jax.jit`` of update + apply_updates with the
params and state donated (XLA fuses it and works in place: the fairest
anchor); ``optax-plain``: ``tx.update`` and ``optax.apply_updates`` jitted
separately, nothing donated (as optax's documentation writes a training
step).  fastopt's step is ``opt.update``.  Interleaved rounds of
timed batches; medians of seconds per step.
"""

from __future__ import annotations

import statistics
import sys
import time

import jax
import jax.numpy as jnp
import numpy as np
import optax

import fastopt

RULES = {
    "Lion": (lambda: optax.lion(1e-4), lambda: fastopt.Lion()),
    "AdaBelief": (lambda: optax.adabelief(1e-3), lambda: fastopt.AdaBelief()),
    "LAMB": (lambda: optax.lamb(1e-3), lambda: fastopt.LAMB()),
    "LARS": (lambda: optax.lars(1.0), lambda: fastopt.LARS()),
}
ROUNDS, BATCH_SECONDS = 9, 0.2


def optax_step(make, n):
    tx = make()
    rng = np.random.default_rng(0)
    params = jnp.asarray(rng.standard_normal(n, dtype=np.float32))
    grads = jnp.asarray(1e-3 * rng.standard_normal(n, dtype=np.float32))
    state = tx.init(params)

    def step(params, state, grads):
        updates, state = tx.update(grads, state, params)
        return optax.apply_updates(params, updates), state

    step = jax.jit(step, donate_argnums=(0, 1))
    box = [params, state]

    def run():
        box[0], box[1] = step(box[0], box[1], grads)
        box[0].block_until_ready()

    return run


def optax_plain_step(make, n):
    """The way optax's documentation writes a step: ``tx.update`` jitted, then
    ``optax.apply_updates`` (jitted), nothing donated."""
    tx = make()
    rng = np.random.default_rng(0)
    params = jnp.asarray(rng.standard_normal(n, dtype=np.float32))
    grads = jnp.asarray(1e-3 * rng.standard_normal(n, dtype=np.float32))
    update, apply = jax.jit(tx.update), jax.jit(optax.apply_updates)
    box = [params, tx.init(params)]

    def run():
        updates, box[1] = update(grads, box[1], box[0])
        box[0] = apply(box[0], updates)
        box[0].block_until_ready()

    return run


def fastopt_step(make, n):
    opt = make()
    rng = np.random.default_rng(0)
    params = {"w": rng.standard_normal(n, dtype=np.float32)}
    grads = {"w": 1e-3 * rng.standard_normal(n, dtype=np.float32)}
    return lambda: opt.update(params, grads)


def per_call(fn, calls):
    start = time.perf_counter()
    for _ in range(calls):
        fn()
    return (time.perf_counter() - start) / calls


def main(sizes):
    print(f"jax {jax.__version__}, optax {optax.__version__}, {jax.devices()[0].platform}; float32; "
          f"median of {ROUNDS} interleaved rounds")
    for n in sizes:
        for name, (make_optax, make_fast) in RULES.items():
            steps = {"optax": optax_step(make_optax, n), "optax-plain": optax_plain_step(make_optax, n),
                     "fastopt": fastopt_step(make_fast, n)}
            calls = {}
            for label, fn in steps.items():
                for _ in range(3):
                    fn()
                once = per_call(fn, 3)
                calls[label] = max(1, int(BATCH_SECONDS / once))
            times = {label: [] for label in steps}
            for _ in range(ROUNDS):
                for label, fn in steps.items():
                    times[label].append(per_call(fn, calls[label]))
            med = {label: statistics.median(t) for label, t in times.items()}
            print(f"{name:10s} N={n:.0e}  optax {med['optax'] * 1e6:9.1f} us  optax-plain "
                  f"{med['optax-plain'] * 1e6:9.1f} us  fastopt {med['fastopt'] * 1e6:9.1f} us"
                  f"  x optax {med['optax'] / med['fastopt']:5.2f}  x optax-plain "
                  f"{med['optax-plain'] / med['fastopt']:5.2f}")


if __name__ == "__main__":
    main([int(float(a)) for a in sys.argv[1:]] or [1_000_000])
