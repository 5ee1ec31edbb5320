"""The catalogue's rules against their sources of truth (torch.optim, optax).

Golden trajectories from ``tools/golden_catalogue.py`` (pinned versions in
the files' ``versions``): float64, 120 steps, 0-d to 3-D params, each
configuration's fastopt keyword arguments stored with it.  DESIGN section 3
asks for ``rtol=1e-12``; fastopt folds per-step scalars differently from the
sources, so the bits differ by rounding only.

One allowance: a value that comes out of a cancellation (a param decayed
near zero while its neighbours are O(1)) carries the rounding of its
operands, not its own.  torch fuses ``add_(u, alpha=...)`` and ``lerp_``
into FMAs (measured on 1e5 float64 elements: 2% and 25% of results differ
in the last bit from the unfused form; fastopt never fuses, to stay bitwise
equal to its NumPy reference), so each element may also differ by
``ULPS`` ulps of the largest value of its step.
"""

import json
import pathlib

import numpy as np
import pytest

import fastopt
from fastopt.registry import BY_NAME

GOLDEN = pathlib.Path(__file__).parent / "golden"
FILES = ("catalogue_torch.npz", "catalogue_optax.npz")


def _cases():
    for name in FILES:
        with np.load(GOLDEN / name) as data:
            for i, text in enumerate(data["cases"]):
                case = json.loads(str(text))
                yield pytest.param(name, i, id=f"{case['rule']}-{i}-{name.split('_')[1][:-4]}")


def _split(flat, like):
    out, at = {}, 0
    for k, v in like.items():
        out[k] = flat[at:at + v.size].reshape(v.shape)
        at += v.size
    return out


SHAPES = {"scalar": (), "vector": (7,), "matrix": (5, 3), "cube": (2, 3, 4)}
ULPS = 4


@pytest.mark.parametrize("name, index", list(_cases()))
def test_trajectory_matches_source(name, index):
    with np.load(GOLDEN / name) as data:
        case = json.loads(str(data["cases"][index]))
        kept = list(data["kept"])
        init, noise, expected = data[f"init_{index}"], data[f"noise_{index}"], data[f"params_{index}"]
    like = {k: np.zeros(s) for k, s in SHAPES.items()}
    params = {k: v.copy() for k, v in _split(init, like).items()}
    opt = getattr(fastopt, case["rule"])(**case["kwargs"])
    reference = BY_NAME[case["rule"]].reference(**case["kwargs"])
    reference_params = {k: v.copy() for k, v in params.items()}
    rows = []
    for step in range(noise.shape[0]):
        n = _split(noise[step].astype(np.float64), like)
        grads = {k: 0.5 * params[k] + n[k] / 64.0 for k in SHAPES}
        opt.update(params, grads)
        reference.update(reference_params, {k: 0.5 * reference_params[k] + n[k] / 64.0 for k in SHAPES})
        if step + 1 in kept:
            rows.append(np.concatenate([params[k].reshape(-1) for k in SHAPES]))
    got = np.stack(rows)
    scale = np.max(np.abs(expected), axis=1, keepdims=True)
    allowed = 1e-12 * np.abs(expected) + ULPS * np.finfo(np.float64).eps * scale
    worst = np.unravel_index(np.argmax(np.abs(got - expected) - allowed), got.shape)
    assert np.all(np.abs(got - expected) <= allowed), (
        f"{case}: step row {worst[0]}, element {worst[1]}: {got[worst]!r} != {expected[worst]!r}")
    # The kernel is the reference, bit for bit, along the same trajectory.
    for k in SHAPES:
        assert np.array_equal(params[k], reference_params[k]), (case, k)


def test_every_catalogue_rule_with_a_source_has_golden_cases():
    covered = set()
    for name in FILES:
        with np.load(GOLDEN / name) as data:
            covered |= {json.loads(str(c))["rule"] for c in data["cases"]}
    assert {"NAdam", "RAdam", "Adamax", "Adadelta", "Rprop", "AdaBelief", "Lion", "LAMB", "LARS", "Adafactor"} <= covered
