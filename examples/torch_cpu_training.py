"""A PyTorch model trained on the CPU with torch.optim.AdamW and with fastopt.torch.AdamW.

The same MLP (64-256-256-10, float32, from the same initial weights) trains
on scikit-learn's digits with the same batches three times: with
``torch.optim.AdamW``, with ``fastopt.torch.AdamW`` (the one-line swap), and
with the model in bfloat16 under ``fastopt.torch.AdamW``, which keeps float32
master weights and writes the bf16 params from them.  It prints the loss at
a few points, how far the two float32 runs drift apart, the test accuracy of
each, and the median time of ``optimizer.step()``; the PNG shows the three
loss curves and the step times.

    python examples/torch_cpu_training.py [--quick] [--out DIR]

Needs torch (``pip install 'fastopt[torch]'``) and scikit-learn.
"""

from __future__ import annotations

import statistics
import time

import numpy as np
import torch

import fastopt.torch
from _common import Progress, parse_args, pyplot, save_figure, write_summary
from datasets import load

RUNS = {
    "torch.optim.AdamW (fp32)": (torch.optim.AdamW, torch.float32),
    "fastopt.torch.AdamW (fp32)": (fastopt.torch.AdamW, torch.float32),
    "fastopt.torch.AdamW (bf16 model)": (fastopt.torch.AdamW, torch.bfloat16),
}


def make_model(dtype):
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(64, 256), torch.nn.ReLU(), torch.nn.Linear(256, 256),
                                torch.nn.ReLU(), torch.nn.Linear(256, 10))
    return model.to(dtype)


def main(argv=None) -> dict:
    args = parse_args(__doc__.splitlines()[0], argv)
    torch.set_num_threads(2)
    steps = 60 if args.quick else 2000
    x_train, t_train, x_test, t_test = load(None)
    rng = np.random.default_rng(0)
    batches = [rng.choice(len(x_train), 128) for _ in range(steps)]
    progress = Progress(len(RUNS) * steps)
    summary = {}
    for name, (optimizer_class, dtype) in RUNS.items():
        model = make_model(dtype)
        optimizer = optimizer_class(model.parameters(), lr=1e-3, weight_decay=0.01)
        x, t = torch.from_numpy(x_train).to(dtype), torch.from_numpy(t_train)
        losses, step_times = [], []
        for batch in batches:
            index = torch.from_numpy(batch)
            optimizer.zero_grad()
            loss = torch.nn.functional.cross_entropy(model(x[index]).float(), t[index])
            loss.backward()
            start = time.perf_counter()
            optimizer.step()
            step_times.append(time.perf_counter() - start)
            losses.append(float(loss))
            progress.advance(label=name[:20])
        with torch.no_grad():
            predicted = model(torch.from_numpy(x_test).to(dtype)).argmax(dim=1).numpy()
        summary[name] = {
            "losses": losses,
            "test_accuracy": float(np.mean(predicted == t_test)),
            "step_median_us": statistics.median(step_times[10:]) * 1e6,
            "params": [p.detach().float().numpy().copy() for p in model.parameters()],
        }
    progress.close()

    torch_run, fast_run, bf16_run = summary.values()
    drift = max(float(np.max(np.abs(a - b))) for a, b in zip(torch_run["params"], fast_run["params"]))
    loss_gap = max(abs(a - b) for a, b in zip(torch_run["losses"], fast_run["losses"]))
    print(f"\n{'run':<34} {'loss: first':>11} {'middle':>8} {'last':>8} {'test acc':>9} {'step (median)':>14}")
    for name, r in summary.items():
        losses = r["losses"]
        print(f"{name:<34} {losses[0]:>11.4f} {losses[len(losses) // 2]:>8.4f} {losses[-1]:>8.4f} "
              f"{r['test_accuracy']:>9.3f} {r['step_median_us']:>11.0f} us")
    print(f"\nfp32 runs, torch.optim against fastopt.torch: largest param difference {drift:.2e}, "
          f"largest loss difference {loss_gap:.2e}")
    print(f"step time, torch.optim.AdamW / fastopt.torch.AdamW: "
          f"{torch_run['step_median_us'] / fast_run['step_median_us']:.2f}x")

    results = {name: {k: v for k, v in r.items() if k != "params"} for name, r in summary.items()}
    results["fp32_param_drift"] = drift
    results["fp32_loss_gap"] = loss_gap
    write_summary(args.out / "torch_cpu_training.json", results)
    plt = pyplot()
    if plt is not None:
        fig, (left, right) = plt.subplots(1, 2, figsize=(11, 4), gridspec_kw={"width_ratios": [2, 1]})
        window = 20
        for name, r in summary.items():
            smooth = np.convolve(r["losses"], np.ones(window) / window, mode="valid")
            left.plot(smooth, label=f"{name} (test acc {r['test_accuracy']:.3f})",
                      linestyle="--" if "bf16" in name else "-")
        left.set_yscale("log")
        left.set_xlabel("step")
        left.set_ylabel(f"training loss ({window}-step mean)")
        left.legend(fontsize=8)
        left.set_title("digits, MLP 64-256-256-10, AdamW lr 1e-3")
        names = list(summary)
        right.barh(range(len(names)), [summary[n]["step_median_us"] for n in names])
        right.set_yticks(range(len(names)), [n.replace(" (", "\n(") for n in names], fontsize=8)
        right.set_xlabel("optimizer.step(), median us")
        save_figure(fig, args.out / "torch_cpu_training.png")
    return results


if __name__ == "__main__":
    main()
