"""The chapter's first experiment: each rule's path on f(x, y) = x**2 / 20 + y**2.

From (-7, 2), 30 steps, params as Python floats in a dict - exactly the book's
``optimizer_compare_naive.py`` - with fastopt in place of ``common.optimizer``.
The book's settings (SGD lr 0.95, Momentum 0.1, AdaGrad 1.5, Adam 0.3) plus the
three rules it does not plot, with settings chosen here: Nesterov lr 0.1 (as
Momentum), RMSprop lr 0.3, AdamW lr 0.3 with weight_decay 0.1.

    python examples/optimizer_paths.py [--out DIR]
"""

from __future__ import annotations

import numpy as np

import fastopt
from _common import parse_args, pyplot, save_figure, write_summary

SETTINGS = {
    "SGD": {"lr": 0.95},
    "Momentum": {"lr": 0.1},
    "Nesterov": {"lr": 0.1},
    "AdaGrad": {"lr": 1.5},
    "RMSprop": {"lr": 0.3},
    "Adam": {"lr": 0.3},
    "AdamW": {"lr": 0.3, "weight_decay": 0.1},
}
START = (-7.0, 2.0)
STEPS = 30


def f(x, y):
    return x**2 / 20.0 + y**2


def df(x, y):
    return x / 10.0, 2.0 * y


def path(rule: str, steps: int = STEPS):
    optimizer = getattr(fastopt, rule)(**SETTINGS[rule])
    params = {"x": START[0], "y": START[1]}
    grads = {"x": 0.0, "y": 0.0}
    xs, ys = [], []
    for _ in range(steps):
        xs.append(params["x"])
        ys.append(params["y"])
        grads["x"], grads["y"] = df(params["x"], params["y"])
        optimizer.update(params, grads)
    xs.append(params["x"])
    ys.append(params["y"])
    return xs, ys


def main(argv=None) -> dict:
    args = parse_args(__doc__.splitlines()[0], argv)
    paths = {rule: path(rule) for rule in SETTINGS}
    summary = {}
    for rule, (xs, ys) in paths.items():
        summary[rule] = {"f_start": f(xs[0], ys[0]), "f_end": f(xs[-1], ys[-1]),
                         "end": [xs[-1], ys[-1]], "type": type(xs[-1]).__name__}
        print(f"{rule:<9} {SETTINGS[rule]}  f: {summary[rule]['f_start']:.3f} -> {summary[rule]['f_end']:.6f}"
              f"  end ({xs[-1]:+.4f}, {ys[-1]:+.4f})")
    write_summary(args.out / "optimizer_paths.json", summary)
    plt = pyplot()
    if plt is not None:
        x = np.arange(-10, 10, 0.01)
        y = np.arange(-5, 5, 0.01)
        X, Y = np.meshgrid(x, y)
        Z = f(X, Y)
        fig, axes = plt.subplots(2, 4, figsize=(16, 7))
        for ax, (rule, (xs, ys)) in zip(axes.flat, paths.items()):
            ax.contour(X, Y, Z, levels=np.linspace(0.1, 7, 12), colors="0.75")
            ax.plot(xs, ys, "o-", color="tab:red", markersize=3)
            ax.plot(0, 0, "+", color="black", markersize=12)
            ax.set_xlim(-10, 10)
            ax.set_ylim(-5, 5)
            ax.set_title(f"{rule} {', '.join(f'{k}={v}' for k, v in SETTINGS[rule].items())}")
            ax.set_xlabel("x")
            ax.set_ylabel("y")
        axes.flat[-1].axis("off")
        axes.flat[-1].text(0.0, 0.5, "f(x, y) = x\u00b2/20 + y\u00b2\nfrom (-7, 2), 30 steps\nparams: Python floats",
                           fontsize=13, va="center")
        save_figure(fig, args.out / "optimizer_paths.png")
    return summary


if __name__ == "__main__":
    main()
