"""Write tests/golden/schedules.npz: optax's values for fastopt.schedules' cases.

Run with a separate venv that has jax (never the project's own venv)::

    python3.11 -m venv /tmp/jaxvenv
    /tmp/jaxvenv/bin/pip install 'jax==0.10.2' 'jaxlib==0.10.2' 'optax==0.2.8' numpy
    /tmp/jaxvenv/bin/python tools/golden_schedules.py

Last generated with jax 0.10.2, jaxlib 0.10.2, optax 0.2.8, numpy 2.4.6,
Python 3.11, on CPU, with ``jax_enable_x64`` (float64 throughout).

Each case is ``{"schedule": name, "args": {...}}`` in the exact format of
``fastopt.schedules.Schedule.to_config()`` (every argument spelled out, floats
as floats), so the test rebuilds it with ``from_config``.  This script does not
import fastopt: it maps each case onto optax's own schedule.  ``inverse_sqrt``
has no optax counterpart; it is ``optax.join_schedules`` of
``optax.linear_schedule`` and a Python callable of the documented formula.

The npz holds ``cases`` (JSON strings), ``versions`` (strings), and for case i
``counts_i`` (int64) and ``values_i`` (float64).  Counts are passed to optax as
Python ints, the way fastopt's schedules take them.
"""

from __future__ import annotations

import json
import pathlib
import sys

import jax

jax.config.update("jax_enable_x64", True)

import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402
import optax  # noqa: E402

OUT = pathlib.Path(__file__).resolve().parent.parent / "tests" / "golden" / "schedules.npz"
LARGE = [50, 100, 1000, 12345, 10**6, 10**9]


def case(name, keys=(), **args):
    """A case dict plus the counts to evaluate it at: 0..19, key points +-1, large."""
    counts = set(range(20)) | set(LARGE)
    for k in keys:
        counts |= {k - 1, k, k + 1}
    return {"schedule": name, "args": args}, sorted(c for c in counts if c >= 0)


def lin(i, e, t, b=0):
    return {"schedule": "linear", "args": dict(init_value=i, end_value=e, transition_steps=t, transition_begin=b)}


CASES = [
    case("constant", value=0.001),
    case("constant", value=-2.5),
    case("linear", [10], **lin(1.0, 0.01, 10)["args"]),
    case("linear", [5, 12, 30], **lin(0.0, 1e-3, 7, 5)["args"]),  # transition_begin > 0
    case("linear", [0], **lin(0.3, 0.9, 0)["args"]),  # transition_steps <= 0: constant
    case("linear", [10], **lin(0.5, 0.0, 10, -3)["args"]),  # negative begin -> 0
    case("polynomial", [20], init_value=1.0, end_value=0.01, power=2.0, transition_steps=20, transition_begin=0),
    case("polynomial", [3, 20], init_value=0.1, end_value=0.5, power=0.5, transition_steps=17, transition_begin=3),
    case("polynomial", [30], init_value=2.0, end_value=-1.0, power=3.0, transition_steps=30, transition_begin=0),
    case("cosine_decay", [10], init_value=1.0, decay_steps=10, alpha=0.0, exponent=1.0),
    case("cosine_decay", [20], init_value=1e-3, decay_steps=20, alpha=0.1, exponent=2.0),
    case("cosine_decay", [7], init_value=0.5, decay_steps=7, alpha=0.0, exponent=0.5),
    case("exponential_decay", [20], init_value=1.0, transition_steps=5, decay_rate=0.5,
         transition_begin=0, staircase=False, end_value=None),
    case("exponential_decay", [3, 7, 11], init_value=1.0, transition_steps=4, decay_rate=0.5,
         transition_begin=3, staircase=True, end_value=None),
    case("exponential_decay", [17], init_value=1.0, transition_steps=5, decay_rate=0.5,
         transition_begin=0, staircase=False, end_value=0.1),  # lower bound
    case("exponential_decay", [2, 6, 10], init_value=1.0, transition_steps=3, decay_rate=2.0,
         transition_begin=2, staircase=False, end_value=10.0),  # upper bound; overflow at 1e9
    case("exponential_decay", [5], init_value=1.0, transition_steps=5, decay_rate=0.5,
         transition_begin=0, staircase=False, end_value=2.0),  # end_value clips init_value too
    case("exponential_decay", [5], init_value=0.7, transition_steps=0, decay_rate=0.5,
         transition_begin=0, staircase=False, end_value=None),  # transition_steps <= 0: constant
    case("exponential_decay", [5], init_value=0.7, transition_steps=5, decay_rate=0.0,
         transition_begin=0, staircase=False, end_value=0.9),  # decay_rate == 0: constant
    case("piecewise_constant", [3, 7, 12], init_value=1.0,
         boundaries_and_scales=[[3, 0.5], [7, 0.1], [12, 2.0]]),
    case("piecewise_constant", [0, 5], init_value=0.2, boundaries_and_scales=[[0, 0.5], [5, 0.0]]),
    case("piecewise_constant", init_value=0.3, boundaries_and_scales=None),
    case("warmup_cosine_decay", [5, 30], init_value=0.0, peak_value=1e-3, warmup_steps=5,
         decay_steps=30, end_value=0.0, exponent=1.0),
    case("warmup_cosine_decay", [10, 40], init_value=1e-4, peak_value=1e-2, warmup_steps=10,
         decay_steps=40, end_value=1e-5, exponent=2.0),
    case("warmup_cosine_decay", [10], init_value=0.5, peak_value=1.0, warmup_steps=0,
         decay_steps=10, end_value=0.1, exponent=1.0),  # no warmup
    case("warmup_cosine_decay", [4, 12], init_value=0.1, peak_value=0.0, warmup_steps=4,
         decay_steps=12, end_value=0.05, exponent=1.0),  # peak 0: alpha = 0
    case("warmup_exponential_decay", [5, 25], init_value=0.0, peak_value=1.0, warmup_steps=5,
         transition_steps=4, decay_rate=0.5, transition_begin=0, staircase=False, end_value=None),
    case("warmup_exponential_decay", [3, 7, 9, 11], init_value=0.1, peak_value=1.0, warmup_steps=3,
         transition_steps=2, decay_rate=0.8, transition_begin=4, staircase=True, end_value=0.3),
    case("cosine_onecycle", [9, 30], transition_steps=30, peak_value=1.0, pct_start=0.3,
         div_factor=25.0, final_div_factor=1e4),
    case("cosine_onecycle", [4, 17], transition_steps=17, peak_value=0.01, pct_start=0.25,
         div_factor=10.0, final_div_factor=100.0),
    case("cosine_onecycle", [10], transition_steps=10, peak_value=1.0, pct_start=0.0,
         div_factor=25.0, final_div_factor=1e4),  # first boundary at 0
    case("cosine_onecycle", [10], transition_steps=10, peak_value=1.0, pct_start=1.0,
         div_factor=25.0, final_div_factor=1e4),  # both boundaries at 10: the last wins
    case("inverse_sqrt", [10, 40], peak_value=1e-3, warmup_steps=10, init_value=0.0),
    case("inverse_sqrt", [4], peak_value=1.0, warmup_steps=4, init_value=0.1),
    case("inverse_sqrt", [1], peak_value=0.5, warmup_steps=1, init_value=0.0),
    case("join", [3, 8, 18], schedules=[
        {"schedule": "constant", "args": {"value": 0.1}},
        lin(0.1, 1.0, 5),
        {"schedule": "cosine_decay", "args": dict(init_value=1.0, decay_steps=10, alpha=0.0, exponent=1.0)},
    ], boundaries=[3, 8]),
    case("join", [3, 8], schedules=[  # boundaries out of order: the later one wins
        lin(1.0, 0.0, 20),
        {"schedule": "constant", "args": {"value": 0.5}},
        lin(0.2, 0.0, 10, 2),
    ], boundaries=[8, 3]),
    case("join", [4, 14], schedules=[  # nested schedules
        {"schedule": "warmup_cosine_decay", "args": dict(init_value=0.0, peak_value=1.0, warmup_steps=2,
                                                         decay_steps=4, end_value=0.5, exponent=1.0)},
        {"schedule": "join", "args": {"schedules": [
            {"schedule": "piecewise_constant", "args": {"init_value": 0.5, "boundaries_and_scales": [[3, 0.5]]}},
            {"schedule": "exponential_decay", "args": dict(init_value=0.25, transition_steps=2, decay_rate=0.9,
                                                           transition_begin=0, staircase=False, end_value=None)},
        ], "boundaries": [10]}},
    ], boundaries=[4]),
]


def build(cfg):
    """The optax schedule for one case."""
    name, a = cfg["schedule"], dict(cfg["args"])
    if name == "piecewise_constant":
        pairs = a["boundaries_and_scales"]
        a["boundaries_and_scales"] = None if pairs is None else {b: s for b, s in pairs}
    if name == "inverse_sqrt":
        peak, warm = a["peak_value"], a["warmup_steps"]
        # c = count - warmup_steps; join also evaluates it (and discards it) for c < 0.
        tail = lambda c: peak * jnp.sqrt(warm / (jnp.asarray(c) + warm))
        return optax.join_schedules([optax.linear_schedule(a["init_value"], peak, warm), tail], [warm])
    if name == "join":
        return optax.join_schedules([build(c) for c in a["schedules"]], a["boundaries"])
    fn = {
        "constant": optax.constant_schedule,
        "linear": optax.linear_schedule,
        "polynomial": optax.polynomial_schedule,
        "cosine_decay": optax.cosine_decay_schedule,
        "exponential_decay": optax.exponential_decay,
        "piecewise_constant": optax.piecewise_constant_schedule,
        "warmup_cosine_decay": optax.warmup_cosine_decay_schedule,
        "warmup_exponential_decay": optax.warmup_exponential_decay_schedule,
        "cosine_onecycle": optax.cosine_onecycle_schedule,
    }[name]
    return fn(**a)


def main() -> None:
    arrays = {}
    for i, (cfg, counts) in enumerate(CASES):
        sched = build(cfg)
        values = np.array([float(np.asarray(sched(c), dtype=np.float64)) for c in counts])
        assert len(counts) >= 25, cfg
        arrays[f"counts_{i}"] = np.array(counts, dtype=np.int64)
        arrays[f"values_{i}"] = values
    arrays["cases"] = np.array([json.dumps(cfg) for cfg, _ in CASES])
    arrays["versions"] = np.array([
        f"jax {jax.__version__}", f"jaxlib {jax.lib.__version__}", f"optax {optax.__version__}",
        f"numpy {np.__version__}", f"python {sys.version.split()[0]}", "jax_enable_x64 True",
        f"backend {jax.default_backend()}",
    ])
    OUT.parent.mkdir(parents=True, exist_ok=True)
    np.savez_compressed(OUT, **arrays)
    print(f"wrote {len(CASES)} cases to {OUT} ({OUT.stat().st_size} bytes)")


if __name__ == "__main__":
    main()
