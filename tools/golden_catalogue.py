"""Write the golden trajectories of the catalogue's rules from their sources of truth.

    tests/golden/catalogue_torch.npz   torch.optim (NAdam, RAdam, Adamax, Adadelta, Rprop, Adafactor)
    tests/golden/catalogue_optax.npz   optax (AdaBelief, Lion, LAMB, LARS)

Run each half in a venv that has its library (never the project's own venv;
this script does not import fastopt)::

    python3.11 -m venv /tmp/torch213 && /tmp/torch213/bin/pip install 'torch==2.13.0+cpu' numpy
    /tmp/torch213/bin/python tools/golden_catalogue.py torch
    /tmp/jaxvenv/bin/python tools/golden_catalogue.py optax    (jax 0.10.2, optax 0.2.8)

Last generated with torch 2.13.0+cpu (single-tensor implementations,
``foreach=False``, default dtype float64) and with jax 0.10.2 / optax 0.2.8
(``jax_enable_x64``), numpy 2.4, Python 3.11, float64 throughout.

Every case runs ``STEPS`` updates on four params of shapes ``SHAPES`` (0-d,
1-D, 2-D, 3-D).  The gradient of step ``s`` is ``0.5 * p + noise[s] / 64``
with ``noise`` small integers stored in the file (int8): exact in float64 on
any machine, so the test rebuilds the same gradients without a random
generator.  The params are stored after the steps in ``KEPT`` only.

The npz holds ``cases`` (JSON: rule, fastopt keyword arguments), ``versions``,
``kept`` (the step numbers), and per case i ``init_i`` / ``noise_i`` /
``params_i`` (float64 / int8 / float64, keys concatenated in SHAPES order).
"""

from __future__ import annotations

import json
import pathlib
import sys

import numpy as np

OUT = pathlib.Path(__file__).resolve().parent.parent / "tests" / "golden"
SHAPES = {"scalar": (), "vector": (7,), "matrix": (5, 3), "cube": (2, 3, 4)}
STEPS = 120
KEPT = list(range(1, 11)) + list(range(20, STEPS + 1, 10))

TORCH_CASES = [
    ("NAdam", {}),
    ("NAdam", {"lr": 0.01, "beta1": 0.8, "beta2": 0.99, "weight_decay": 0.1, "momentum_decay": 0.01}),
    ("NAdam", {"lr": 0.01, "weight_decay": 0.1, "decoupled_weight_decay": True, "maximize": True}),
    ("RAdam", {}),
    ("RAdam", {"lr": 0.01, "beta1": 0.8, "beta2": 0.9, "weight_decay": 0.1}),
    # beta2 = 0.5: rho_inf = 3, never above the threshold 5 (never rectified).
    ("RAdam", {"lr": 0.01, "beta2": 0.5}),
    ("RAdam", {"lr": 0.01, "weight_decay": 0.1, "decoupled_weight_decay": True, "maximize": True}),
    ("Adamax", {}),
    ("Adamax", {"lr": 0.01, "beta1": 0.8, "beta2": 0.99, "eps": 1e-4, "weight_decay": 0.1, "maximize": True}),
    ("Adadelta", {}),
    ("Adadelta", {"lr": 0.5, "rho": 0.8, "eps": 1e-5, "weight_decay": 0.1, "maximize": True}),
    ("Rprop", {}),
    # A narrow step-size range: both clamps act.
    ("Rprop", {"lr": 0.1, "eta_minus": 0.3, "eta_plus": 1.5, "step_min": 0.01, "step_max": 0.5, "maximize": True}),
    ("Adafactor", {}),
    ("Adafactor", {"lr": 0.05, "beta2_decay": -0.5, "eps1": 1e-3, "eps2": 0.01, "d": 2.0, "weight_decay": 0.1}),
    # lr = 1: the relative step 1/sqrt(t) is never capped; d = 1.5: rms(u) clipping acts some steps.
    ("Adafactor", {"lr": 1.0, "d": 1.5, "maximize": True}),
    # A large eps1: the floors of both the mean row factor and the variance estimate act.
    ("Adafactor", {"lr": 0.01, "eps1": 0.3, "weight_decay": 0.5}),
]

OPTAX_CASES = [
    ("AdaBelief", {}),
    ("AdaBelief", {"lr": 0.01, "beta1": 0.8, "beta2": 0.99, "eps": 1e-8, "eps_root": 1e-12, "weight_decay": 0.1}),
    ("Lion", {}),
    ("Lion", {"lr": 0.003, "beta1": 0.8, "beta2": 0.95, "weight_decay": 0.5}),
    ("Lion", {"lr": 0.01, "weight_decay": 0.0}),
    ("LAMB", {}),
    ("LAMB", {"lr": 0.01, "beta1": 0.8, "beta2": 0.99, "eps": 1e-8, "eps_root": 1e-10, "weight_decay": 0.1}),
    ("LARS", {}),
    ("LARS", {"lr": 0.5, "momentum": 0.8, "trust_coefficient": 0.01, "eps": 1e-8, "weight_decay": 0.01}),
    ("LARS", {"lr": 0.5, "momentum": 0.8, "nesterov": True}),
]
#: Cases (by index in OPTAX_CASES) whose "vector" key starts at zero: optax's
#: zero-norm rule (trust ratio 1) acts on the first step.
ZERO_VECTOR = {"optax": {5, 7}}


def initial_params(case_index: int) -> dict:
    rng = np.random.default_rng(1000 + case_index)
    return {k: rng.standard_normal(s) for k, s in SHAPES.items()}


def noise(case_index: int) -> np.ndarray:
    total = sum(int(np.prod(s)) for s in SHAPES.values())
    return np.random.default_rng(2000 + case_index).integers(-128, 128, size=(STEPS, total), dtype=np.int8)


def split(flat: np.ndarray) -> dict:
    out, at = {}, 0
    for k, s in SHAPES.items():
        n = int(np.prod(s))
        out[k] = flat[at:at + n].reshape(s)
        at += n
    return out


def torch_trajectory(rule: str, kwargs: dict, init: dict, steps_noise: np.ndarray) -> list:
    import torch

    torch.set_default_dtype(torch.float64)
    kw = dict(kwargs)
    maximize = kw.pop("maximize", False)
    args = {"maximize": maximize, "foreach": False}
    if rule in ("NAdam", "RAdam", "Adamax"):
        betas = (kw.pop("beta1", 0.9), kw.pop("beta2", 0.999))
        args["betas"] = betas
    if rule == "Adafactor":
        args["eps"] = (kw.pop("eps1", None), kw.pop("eps2", 1e-3))
    if rule == "Rprop":
        args["etas"] = (kw.pop("eta_minus", 0.5), kw.pop("eta_plus", 1.2))
        args["step_sizes"] = (kw.pop("step_min", 1e-6), kw.pop("step_max", 50.0))
    args.update(kw)
    params = [torch.tensor(init[k], dtype=torch.float64) for k in SHAPES]
    opt = getattr(torch.optim, rule)(params, **args)
    kept = []
    for s in range(STEPS):
        n = split(steps_noise[s].astype(np.float64))
        for p, k in zip(params, SHAPES):
            p.grad = 0.5 * p.detach() + torch.tensor(n[k] / 64.0)
        opt.step()
        if s + 1 in KEPT:
            kept.append(np.concatenate([p.detach().numpy().reshape(-1) for p in params]))
    return kept


def optax_trajectory(rule: str, kwargs: dict, init: dict, steps_noise: np.ndarray) -> list:
    import jax

    jax.config.update("jax_enable_x64", True)
    import jax.numpy as jnp
    import optax

    kw = dict(kwargs)
    if rule == "AdaBelief":
        tx = optax.chain(
            optax.add_decayed_weights(kw.pop("weight_decay", 0.0)),
            optax.adabelief(kw.pop("lr", 0.001), b1=kw.pop("beta1", 0.9), b2=kw.pop("beta2", 0.999),
                            eps=kw.pop("eps", 1e-16), eps_root=kw.pop("eps_root", 1e-16)),
        )
    elif rule == "LAMB":
        tx = optax.lamb(kw.pop("lr", 0.001), b1=kw.pop("beta1", 0.9), b2=kw.pop("beta2", 0.999),
                        eps=kw.pop("eps", 1e-6), eps_root=kw.pop("eps_root", 0.0),
                        weight_decay=kw.pop("weight_decay", 0.0))
    elif rule == "LARS":
        tx = optax.lars(kw.pop("lr", 1.0), weight_decay=kw.pop("weight_decay", 0.0),
                        trust_coefficient=kw.pop("trust_coefficient", 0.001), eps=kw.pop("eps", 0.0),
                        momentum=kw.pop("momentum", 0.9), nesterov=kw.pop("nesterov", False))
    elif rule == "Lion":
        tx = optax.lion(kw.pop("lr", 1e-4), b1=kw.pop("beta1", 0.9), b2=kw.pop("beta2", 0.99),
                        weight_decay=kw.pop("weight_decay", 1e-3))
    else:
        raise ValueError(rule)
    assert not kw, kw
    params = {k: jnp.asarray(init[k], dtype=jnp.float64) for k in SHAPES}
    state = tx.init(params)
    kept = []
    for s in range(STEPS):
        n = split(steps_noise[s].astype(np.float64))
        grads = {k: 0.5 * params[k] + jnp.asarray(n[k] / 64.0) for k in SHAPES}
        updates, state = tx.update(grads, state, params)
        params = optax.apply_updates(params, updates)
        if s + 1 in KEPT:
            kept.append(np.concatenate([np.asarray(params[k]).reshape(-1) for k in SHAPES]))
    return kept


def main(source: str) -> None:
    if source == "torch":
        import torch

        cases, trajectory, versions = TORCH_CASES, torch_trajectory, [f"torch {torch.__version__}"]
    elif source == "optax":
        import jax
        import optax

        cases, trajectory, versions = OPTAX_CASES, optax_trajectory, [f"jax {jax.__version__}",
                                                                       f"optax {optax.__version__}"]
    else:
        raise SystemExit("usage: golden_catalogue.py torch|optax")
    versions.append(f"numpy {np.__version__}")
    payload = {
        "cases": np.array([json.dumps({"rule": r, "kwargs": kw}, sort_keys=True) for r, kw in cases]),
        "versions": np.array(versions),
        "kept": np.array(KEPT, np.int64),
    }
    for i, (rule, kw) in enumerate(cases):
        init, steps_noise = initial_params(i), noise(i)
        if i in ZERO_VECTOR.get(source, ()):
            init["vector"][...] = 0.0
        kept = trajectory(rule, kw, init, steps_noise)
        payload[f"init_{i}"] = np.concatenate([init[k].reshape(-1) for k in SHAPES])
        payload[f"noise_{i}"] = steps_noise
        payload[f"params_{i}"] = np.stack(kept)
        assert np.all(np.isfinite(payload[f"params_{i}"])), (rule, kw)
    path = OUT / f"catalogue_{source}.npz"
    np.savez_compressed(path, **payload)
    print(f"wrote {path} ({path.stat().st_size} bytes): {len(cases)} cases, {', '.join(versions)}")


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else "")
