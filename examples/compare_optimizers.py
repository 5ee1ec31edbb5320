"""The chapter's network experiment: every rule trains the same MultiLayerNet.

A book-style network (Affine/ReLU layers holding references to the param
arrays, softmax-with-loss, He initialisation, float64) with four hidden
layers of 100 units, minibatches of 128, trained once per rule with fastopt
and once with ``fastopt.reference``, in lockstep on the same batches.  It
prints the time each spent in optimizer steps, checks the two ended
bit-identical, and plots the loss curves.

Data: scikit-learn's handwritten digits (shipped with scikit-learn), or MNIST
from local files with ``--mnist PATH`` (a folder of IDX files or an .npz).

    python examples/compare_optimizers.py [--quick] [--out DIR] [--mnist PATH]
"""

from __future__ import annotations

import time

import numpy as np

import fastopt
from _common import Progress, parse_args, pyplot, save_figure, write_summary
from datasets import load
from fastopt.book import MultiLayerNet

# The book's optimizer_compare_mnist.py uses SGD 0.01 and 0.001 for the
# adaptive rules; the rules it does not run get the rate of their family.
LEARNING_RATES = {
    "SGD": 0.01, "Momentum": 0.01, "Nesterov": 0.01, "AdaGrad": 0.01,
    "RMSprop": 0.001, "Adam": 0.001, "AdamW": 0.001,
}


def smooth(values, width=20):
    values = np.asarray(values)
    if len(values) < width:
        return values
    return np.convolve(values, np.ones(width) / width, mode="valid")


def main(argv=None) -> dict:
    args = parse_args(
        __doc__.splitlines()[0], argv,
        extra=lambda p: p.add_argument("--mnist", help="MNIST IDX folder or .npz instead of the digits"),
    )
    iterations = 150 if args.quick else 2000
    batch_size = 128
    x_train, t_train, x_test, t_test = load(args.mnist)
    print(f"data: {x_train.shape[0]} training rows of {x_train.shape[1]} features, {x_test.shape[0]} test rows")
    start = time.perf_counter()
    fastopt.warmup(dtypes=("float64",))  # compile (or load) outside the timed steps
    print(f"fastopt kernels compiled or loaded in {time.perf_counter() - start:.2f} s (not counted below)")
    rng = np.random.default_rng(0)
    batches = [rng.choice(x_train.shape[0], batch_size) for _ in range(iterations)]

    results = {}
    progress = Progress(len(LEARNING_RATES) * iterations)
    for rule, lr in LEARNING_RATES.items():
        nets = [MultiLayerNet(x_train.shape[1], [100, 100, 100, 100], 10, seed=1) for _ in range(2)]
        optimizers = [getattr(fastopt, rule)(lr=lr), getattr(fastopt.reference, rule)(lr=lr)]
        seconds = [0.0, 0.0]
        losses = []
        for batch in batches:
            for i, (net, opt) in enumerate(zip(nets, optimizers)):
                loss, grads = net.gradient(x_train[batch], t_train[batch])
                start = time.perf_counter()
                opt.update(net.params, grads)
                seconds[i] += time.perf_counter() - start
                if i == 0:
                    losses.append(float(loss))
            progress.advance(label=rule)
        identical = all(nets[0].params[k].tobytes() == nets[1].params[k].tobytes() for k in nets[0].params)
        results[rule] = {
            "lr": lr,
            "losses": losses,
            "loss_first_10": float(np.mean(losses[:10])),
            "loss_last_10": float(np.mean(losses[-10:])),
            "test_accuracy": nets[0].accuracy(x_test, t_test),
            "fastopt_step_seconds": seconds[0],
            "reference_step_seconds": seconds[1],
            "bit_identical": identical,
        }
    progress.close()

    n_params = sum(p.size for p in MultiLayerNet(x_train.shape[1], [100] * 4, 10).params.values())
    print(f"\n{iterations} steps per rule, {n_params:,} float64 params; time in optimizer.update():")
    print(f"{'rule':<9} {'lr':>6} {'loss':>15} {'test acc':>8} {'fastopt':>9} {'reference':>10} {'speed-up':>8} {'identical':>9}")
    for rule, r in results.items():
        print(
            f"{rule:<9} {r['lr']:>6} {r['loss_first_10']:>6.3f} -> {r['loss_last_10']:<6.3f} "
            f"{r['test_accuracy']:>8.3f} {r['fastopt_step_seconds']:>8.3f}s {r['reference_step_seconds']:>9.3f}s "
            f"{r['reference_step_seconds'] / r['fastopt_step_seconds']:>7.1f}x {'yes' if r['bit_identical'] else 'NO':>9}"
        )
    total_fast = sum(r["fastopt_step_seconds"] for r in results.values())
    total_ref = sum(r["reference_step_seconds"] for r in results.values())
    print(f"{'all':<9} {'':>6} {'':>15} {'':>8} {total_fast:>8.3f}s {total_ref:>9.3f}s {total_ref / total_fast:>7.1f}x")
    write_summary(args.out / "compare_optimizers.json",
                  {rule: {k: v for k, v in r.items() if k != "losses"} for rule, r in results.items()})

    plt = pyplot()
    if plt is not None:
        fig, ax = plt.subplots(figsize=(8, 5))
        for rule, r in results.items():
            ax.plot(smooth(r["losses"]), label=f"{rule} (lr {r['lr']})")
        ax.set_xlabel("iteration")
        ax.set_ylabel("training loss (moving average of 20)")
        ax.set_yscale("log")
        ax.set_title(f"MultiLayerNet {x_train.shape[1]}-100-100-100-100-10, batch {batch_size}")
        ax.legend()
        ax.grid(alpha=0.3)
        save_figure(fig, args.out / "compare_optimizers.png")
    return results


if __name__ == "__main__":
    main()
