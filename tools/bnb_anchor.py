"""bitsandbytes' 8-bit AdamW against fastopt's int8 state, on the CPU (dev venv only).

Not part of fastopt or its tests: bitsandbytes is never a dependency.  Two
measurements, both on this machine:

* speed - one float32 array, ``bnb.optim.AdamW8bit`` (blockwise, its CPU
  path) against ``fastopt.AdamW(state_dtype="int8")`` and float32 state,
  grads kept between steps, interleaved rounds, medians;
* quality - the MLP of ``examples/low_precision_state.py`` on the digits,
  the same initial weights and batches, AdamW lr 1e-3, weight_decay 0.01,
  with fastopt float32 state, fastopt int8 state and bnb's AdamW8bit (its
  params are the network's own arrays through ``torch.from_numpy``), three
  seeds, mean test accuracy.

    pip install torch==2.13.0 bitsandbytes   # a dev venv
    PYTHONPATH=. python tools/bnb_anchor.py [--n 1e7] [--rounds 7] [--epochs 20]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import torch
import bitsandbytes as bnb

import fastopt

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "examples"))
from datasets import load  # noqa: E402
from low_precision_state import float32_net  # noqa: E402


def speed(n: int, rounds: int) -> None:
    rng = np.random.default_rng(0)
    w0 = rng.standard_normal(n).astype(np.float32)
    g0 = (rng.standard_normal(n) * 1e-3).astype(np.float32)
    p = torch.nn.Parameter(torch.from_numpy(w0.copy()))
    p.grad = torch.from_numpy(g0.copy())
    eight_bit = bnb.optim.AdamW8bit([p], lr=1e-3, weight_decay=0.01)
    int8, float32 = fastopt.AdamW(lr=1e-3, state_dtype="int8"), fastopt.AdamW(lr=1e-3)
    p_int8, p_float32, grads = {"w": w0.copy()}, {"w": w0.copy()}, {"w": g0.copy()}
    steps = {"bnb AdamW8bit": eight_bit.step, "fastopt int8": lambda: int8.update(p_int8, grads),
             "fastopt float32": lambda: float32.update(p_float32, grads)}
    for step in steps.values():
        for _ in range(3):
            step()
    samples = {k: [] for k in steps}
    for r in range(rounds):
        for name, step in steps.items():
            start = time.perf_counter()
            step()
            samples[name].append(time.perf_counter() - start)
    medians = {k: statistics.median(v) for k, v in samples.items()}
    bnb_bytes = sum(v.numel() * v.element_size() for v in eight_bit.state[p].values() if torch.is_tensor(v))
    print(f"speed, n={n:.0e}, {rounds} interleaved rounds, medians (torch {torch.__version__}, "
          f"bitsandbytes {bnb.__version__}, {torch.get_num_threads()} torch threads):")
    for name, seconds in medians.items():
        print(f"  {name:<16} {seconds * 1e3:8.2f} ms")
    print(f"  fastopt int8 / bnb AdamW8bit: {medians['bnb AdamW8bit'] / medians['fastopt int8']:.1f}x faster; "
          f"state bytes per param: bnb {bnb_bytes / n:.2f}, fastopt {int8.optimizer_state.nbytes / n:.2f}")


def quality(epochs: int) -> None:
    x_train, t_train, x_test, t_test = load()
    x_train, x_test = x_train.astype(np.float32), x_test.astype(np.float32)
    batch_size = 50
    iters = epochs * max(1, x_train.shape[0] // batch_size)
    runs = {"fastopt float32": [], "fastopt int8": [], "bnb AdamW8bit": []}
    for seed in (0, 1, 2):
        for name in runs:
            rng = np.random.default_rng(seed)
            net = float32_net(x_train.shape[1], seed=seed)
            if name == "bnb AdamW8bit":
                tensors = {k: torch.nn.Parameter(torch.from_numpy(v)) for k, v in net.params.items()}
                # min_8bit_size=0: quantize every tensor, as fastopt does (bnb's
                # default keeps tensors under 4096 elements in 32 bits).
                opt = bnb.optim.AdamW8bit(list(tensors.values()), lr=1e-3, weight_decay=0.01, min_8bit_size=0)

                def update(params, grads, tensors=tensors, opt=opt):
                    for k, t in tensors.items():
                        t.grad = torch.from_numpy(np.ascontiguousarray(grads[k], np.float32))
                    opt.step()
            else:
                opt = fastopt.AdamW(lr=1e-3, weight_decay=0.01,
                                    state_dtype="int8" if name == "fastopt int8" else "float32")
                update = opt.update
            for _ in range(iters):
                batch = rng.choice(x_train.shape[0], batch_size)
                _, grads = net.gradient(x_train[batch], t_train[batch])
                update(net.params, grads)
            runs[name].append(float(net.accuracy(x_test, t_test)))
    print(f"quality: digits MLP 64-100-100-10, AdamW lr 1e-3 weight_decay 0.01, {epochs} epochs, seeds 0 1 2:")
    for name, accuracies in runs.items():
        print(f"  {name:<16} mean test accuracy {np.mean(accuracies):.4f}  "
              f"({' '.join(f'{a:.4f}' for a in accuracies)})")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=lambda s: int(float(s)), default=10_000_000)
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--epochs", type=int, default=20)
    args = parser.parse_args()
    torch.set_num_threads(2)
    speed(args.n, args.rounds)
    quality(args.epochs)


if __name__ == "__main__":
    main()
