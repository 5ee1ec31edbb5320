"""Section 6.4.1: over-fitting, and weight decay against it.

As in the book, a deep MultiLayerNet (six hidden layers of 100 units) trains
on only 300 samples for 200 epochs with SGD, lr 0.01, and over-fits: training
accuracy reaches 1.0 while test accuracy stalls.  Then twice more from the same
initial weights and batches: with fastopt's coupled ``weight_decay`` (the
book's L2 term, lambda = 0.1, applied by the optimizer instead of the loss),
and with AdamW (lr 0.001, weight_decay 0.1: every step shrinks the params by
the factor ``1 - lr * weight_decay`` apart from the Adam step).  AdamW is also
a different optimizer, so its curve shows decoupled decay at work, not a
like-for-like comparison with SGD.  The plot shows train and test accuracy
per epoch for the three.

    python examples/weight_decay.py [--quick] [--out DIR] [--mnist PATH]
"""

from __future__ import annotations

import numpy as np

import fastopt
from _common import Progress, parse_args, pyplot, save_figure, write_summary
from datasets import load
from fastopt.book import MultiLayerNet

RUNS = {
    "no decay (SGD lr 0.01)": lambda: fastopt.SGD(lr=0.01),
    "coupled weight_decay=0.1 (SGD lr 0.01)": lambda: fastopt.SGD(lr=0.01, weight_decay=0.1),
    "AdamW lr 0.001, weight_decay=0.1": lambda: fastopt.AdamW(lr=0.001, weight_decay=0.1),
}


def main(argv=None) -> dict:
    args = parse_args(
        __doc__.splitlines()[0], argv,
        extra=lambda p: p.add_argument("--mnist", help="MNIST IDX folder or .npz instead of the digits"),
    )
    epochs = 25 if args.quick else 200
    x_train, t_train, x_test, t_test = load(args.mnist, n_train=300)
    batch_size = 100
    iters_per_epoch = max(1, x_train.shape[0] // batch_size)
    rng = np.random.default_rng(0)
    batches = [rng.choice(x_train.shape[0], batch_size) for _ in range(epochs * iters_per_epoch)]
    print(f"{x_train.shape[0]} training samples, {x_test.shape[0]} test samples, {epochs} epochs")

    curves = {}
    progress = Progress(len(RUNS) * len(batches))
    for name, make in RUNS.items():
        net = MultiLayerNet(x_train.shape[1], [100] * 6, 10, seed=3)
        optimizer = make()
        train_acc, test_acc, losses = [], [], []
        for i, batch in enumerate(batches):
            loss, grads = net.gradient(x_train[batch], t_train[batch])
            optimizer.update(net.params, grads)
            losses.append(float(loss))
            if (i + 1) % iters_per_epoch == 0:
                train_acc.append(net.accuracy(x_train, t_train))
                test_acc.append(net.accuracy(x_test, t_test))
            progress.advance(label=name.split(" (")[0][:20])
        curves[name] = {"train": train_acc, "test": test_acc,
                        "loss_first_epoch": float(np.mean(losses[:iters_per_epoch])),
                        "loss_last_epoch": float(np.mean(losses[-iters_per_epoch:]))}
    progress.close()
    for name, c in curves.items():
        gap = c["train"][-1] - c["test"][-1]
        print(f"{name:<40} train {c['train'][-1]:.3f}  test {c['test'][-1]:.3f}  gap {gap:.3f}  "
              f"loss {c['loss_first_epoch']:.3f} -> {c['loss_last_epoch']:.3f}")
    write_summary(args.out / "weight_decay.json", curves)

    plt = pyplot()
    if plt is not None:
        fig, axes = plt.subplots(1, len(curves), figsize=(15, 4.2), sharey=True)
        for ax, (name, c) in zip(axes, curves.items()):
            ax.plot(c["train"], label="train")
            ax.plot(c["test"], label="test")
            ax.set_title(name, fontsize=10)
            ax.set_xlabel("epoch")
            ax.set_ylim(0, 1.02)
            ax.grid(alpha=0.3)
        axes[0].set_ylabel("accuracy")
        axes[0].legend(loc="lower right")
        save_figure(fig, args.out / "weight_decay.png")
    return curves


if __name__ == "__main__":
    main()
