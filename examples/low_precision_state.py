"""Low-precision optimizer state: does training notice?

A MultiLayerNet (64-100-100-10, float32 params) learns the digits for 20
epochs with Adam, AdamW and Lion, each three times from the same initial
weights and batches: state in float32, in bfloat16 (half the bytes) and in
block-wise int8 (about a quarter).  All of it is repeated for three seeds
(initial weights and batches); the test set has 360 digits, so one digit is
0.28 points of accuracy.  The plot shows the training loss per epoch of the
three state formats of each rule side by side (seed 0), with the test
accuracy averaged over the seeds in the legend; the summary JSON holds the
curves, the accuracies per seed and the bytes of state per parameter.

    python examples/low_precision_state.py [--quick] [--out DIR] [--mnist PATH]
"""

from __future__ import annotations

import numpy as np

import fastopt
from _common import Progress, parse_args, pyplot, save_figure, write_summary
from datasets import load
from fastopt.book import MultiLayerNet

RULES = {
    "Adam lr 0.001": lambda state_dtype: fastopt.Adam(lr=0.001, state_dtype=state_dtype),
    "AdamW lr 0.001, weight_decay 0.01": lambda state_dtype: fastopt.AdamW(lr=0.001, weight_decay=0.01,
                                                                          state_dtype=state_dtype),
    "Lion lr 3e-4, weight_decay 0.1": lambda state_dtype: fastopt.Lion(lr=3e-4, weight_decay=0.1,
                                                                      state_dtype=state_dtype),
}
STATE_DTYPES = ("float32", "bfloat16", "int8")


def float32_net(input_size: int, seed: int) -> MultiLayerNet:
    net = MultiLayerNet(input_size, [100, 100], 10, seed=seed)
    for i in range(1, net.n_affine + 1):
        layer = net.layers[f"Affine{i}"]
        layer.W = net.params[f"W{i}"] = net.params[f"W{i}"].astype(np.float32)
        layer.b = net.params[f"b{i}"] = net.params[f"b{i}"].astype(np.float32)
    return net


def main(argv=None) -> dict:
    args = parse_args(
        __doc__.splitlines()[0], argv,
        extra=lambda p: p.add_argument("--mnist", help="MNIST IDX folder or .npz instead of the digits"),
    )
    epochs = 4 if args.quick else 20
    x_train, t_train, x_test, t_test = load(args.mnist)
    x_train, x_test = x_train.astype(np.float32), x_test.astype(np.float32)
    batch_size = 50
    iters_per_epoch = max(1, x_train.shape[0] // batch_size)
    batches = range(epochs * iters_per_epoch)
    print(f"{x_train.shape[0]} training samples, {x_test.shape[0]} test samples, {epochs} epochs")

    seeds = (0,) if args.quick else (0, 1, 2)
    summary = {}
    progress = Progress(len(RULES) * len(STATE_DTYPES) * len(seeds) * len(batches))
    for rule, make in RULES.items():
        summary[rule] = {}
        for state_dtype in STATE_DTYPES:
            runs = []
            for seed in seeds:
                rng = np.random.default_rng(seed)
                batches = [rng.choice(x_train.shape[0], batch_size) for _ in range(epochs * iters_per_epoch)]
                net = float32_net(x_train.shape[1], seed=seed)
                optimizer = make(state_dtype)
                losses, epoch_losses = [], []
                for i, batch in enumerate(batches):
                    loss, grads = net.gradient(x_train[batch], t_train[batch])
                    optimizer.update(net.params, grads)
                    losses.append(float(loss))
                    if (i + 1) % iters_per_epoch == 0:
                        epoch_losses.append(float(np.mean(losses[-iters_per_epoch:])))
                    progress.advance(label=f"{rule.split()[0]} {state_dtype} seed {seed}")
                n_params = sum(p.size for p in net.params.values())
                runs.append({
                    "loss": epoch_losses,
                    "test_accuracy": float(net.accuracy(x_test, t_test)),
                    "state_bytes_per_param": optimizer.optimizer_state.nbytes / n_params,
                    "finite": bool(all(np.all(np.isfinite(p)) for p in net.params.values())),
                })
            summary[rule][state_dtype] = {
                "loss": runs[0]["loss"],
                "test_accuracy": float(np.mean([r["test_accuracy"] for r in runs])),
                "test_accuracy_per_seed": [r["test_accuracy"] for r in runs],
                "final_loss_per_seed": [r["loss"][-1] for r in runs],
                "state_bytes_per_param": runs[0]["state_bytes_per_param"],
                "finite": all(r["finite"] for r in runs),
            }
    progress.close()
    for rule, runs in summary.items():
        for state_dtype, r in runs.items():
            print(f"{rule:<36} {state_dtype:<9} test accuracy {r['test_accuracy']:.4f} "
                  f"(seeds {' '.join(f'{a:.4f}' for a in r['test_accuracy_per_seed'])})  "
                  f"final loss {np.mean(r['final_loss_per_seed']):.4f}  state {r['state_bytes_per_param']:.2f} B/param")
    write_summary(args.out / "low_precision_state.json", summary)

    plt = pyplot()
    if plt is not None:
        fig, axes = plt.subplots(1, len(summary), figsize=(15, 4.2), sharey=True)
        for ax, (rule, runs) in zip(axes, summary.items()):
            for state_dtype, r in runs.items():
                ax.plot(range(1, len(r["loss"]) + 1), r["loss"],
                        label=f"{state_dtype} state: test acc {r['test_accuracy']:.4f}")
            ax.set_title(rule, fontsize=10)
            ax.set_xlabel("epoch")
            ax.set_yscale("log")
            ax.grid(alpha=0.3)
            ax.legend(loc="upper right", fontsize=8)
        axes[0].set_ylabel("training loss (epoch mean)")
        save_figure(fig, args.out / "low_precision_state.png")
    return summary


if __name__ == "__main__":
    main()
