"""The book's loop: fresh grads every step, against the book's own optimizers.

What readers of "Deep Learning from Scratch" run: ``grads =
network.gradient(x_batch, t_batch)`` hands over a new dict of new float64
arrays every step and ``optimizer.update(network.params, grads)`` applies
them.  The classes below are the book's ``common/optimizer.py`` (Saito;
github.com/oreilly-japan/deep-learning-from-scratch), written out statement
for statement (Nesterov as the current code, after the 2021 fix), so the
baseline is what a reader of the book has - the same code at every commit
asv measures - not fastopt's reference.  Rules the book lacks (AdamW and the
catalogue) are compared with their ``fastopt.reference`` class.
"""

from __future__ import annotations

import time

import numpy as np

from . import cases
from .timing import minor_faults

class BookSGD:
    def __init__(self, lr=0.01):
        self.lr = lr

    def update(self, params, grads):
        for key in params.keys():
            params[key] -= self.lr * grads[key]


class BookMomentum:
    def __init__(self, lr=0.01, momentum=0.9):
        self.lr = lr
        self.momentum = momentum
        self.v = None

    def update(self, params, grads):
        if self.v is None:
            self.v = {}
            for key, val in params.items():
                self.v[key] = np.zeros_like(val)
        for key in params.keys():
            self.v[key] = self.momentum * self.v[key] - self.lr * grads[key]
            params[key] += self.v[key]


class BookNesterov:
    def __init__(self, lr=0.01, momentum=0.9):
        self.lr = lr
        self.momentum = momentum
        self.v = None

    def update(self, params, grads):
        if self.v is None:
            self.v = {}
            for key, val in params.items():
                self.v[key] = np.zeros_like(val)
        for key in params.keys():
            params[key] += self.momentum * self.momentum * self.v[key]
            params[key] -= (1 + self.momentum) * self.lr * grads[key]
            self.v[key] *= self.momentum
            self.v[key] -= self.lr * grads[key]


class BookAdaGrad:
    def __init__(self, lr=0.01):
        self.lr = lr
        self.h = None

    def update(self, params, grads):
        if self.h is None:
            self.h = {}
            for key, val in params.items():
                self.h[key] = np.zeros_like(val)
        for key in params.keys():
            self.h[key] += grads[key] * grads[key]
            params[key] -= self.lr * grads[key] / (np.sqrt(self.h[key]) + 1e-7)


class BookRMSprop:
    def __init__(self, lr=0.01, decay_rate=0.99):
        self.lr = lr
        self.decay_rate = decay_rate
        self.h = None

    def update(self, params, grads):
        if self.h is None:
            self.h = {}
            for key, val in params.items():
                self.h[key] = np.zeros_like(val)
        for key in params.keys():
            self.h[key] *= self.decay_rate
            self.h[key] += (1 - self.decay_rate) * grads[key] * grads[key]
            params[key] -= self.lr * grads[key] / (np.sqrt(self.h[key]) + 1e-7)


class BookAdam:
    def __init__(self, lr=0.001, beta1=0.9, beta2=0.999):
        self.lr = lr
        self.beta1 = beta1
        self.beta2 = beta2
        self.iter = 0
        self.m = None
        self.v = None

    def update(self, params, grads):
        if self.m is None:
            self.m, self.v = {}, {}
            for key, val in params.items():
                self.m[key] = np.zeros_like(val)
                self.v[key] = np.zeros_like(val)
        self.iter += 1
        lr_t = self.lr * np.sqrt(1.0 - self.beta2**self.iter) / (1.0 - self.beta1**self.iter)
        for key in params.keys():
            self.m[key] += (1 - self.beta1) * (grads[key] - self.m[key])
            self.v[key] += (1 - self.beta2) * (grads[key] ** 2 - self.v[key])
            params[key] -= lr_t * self.m[key] / (np.sqrt(self.v[key]) + 1e-7)


#: The book's class for each rule of the registry that the book has.
BOOK_CLASSES = {
    "SGD": BookSGD,
    "Momentum": BookMomentum,
    "Nesterov": BookNesterov,
    "AdaGrad": BookAdaGrad,
    "RMSprop": BookRMSprop,
    "Adam": BookAdam,
}

#: The book's networks: ``MultiLayerNet(784, [100, 100, 100, 100], 10)`` of
#: its chapter 6 scripts (weight_init_compare.py, optimizer_compare_mnist.py)
#: and the demo's smaller 64-256-256-10.
BOOK_NETS = {
    "784-100-100-100-100-10": (784, (100, 100, 100, 100), 10),
    "64-256-256-10": (64, (256, 256), 10),
}
#: The book's 2-D example (ch06 optimizer_compare_naive.py): f(x, y) = x**2 / 20
#: + y**2 from (-7, 2), params and grads Python floats, 30 steps per optimizer.
TWO_D = "2-D (Python floats)"
TWO_D_STEPS = 30
#: Every net of the book's-loop case (the bench command's and python -m fastopt's).
BOOK_LOOP_NETS = (*BOOK_NETS, TWO_D)
SHARED_SGD = "shared SGD"
#: How many same-shape networks the shared SGD steps in turn (weight_init_compare.py: three).
SHARED_NETWORKS = 3
#: Floors the project holds itself to: baseline time / fastopt time in the book's loop.
BOOK_FLOORS = {"Adam": 3.0}
BOOK_FLOOR = 1.5
#: Two Python floats: within 3x of the book's update (a handful of operations
#: on two numbers, which the book does inline and fastopt behind a call).
TWO_D_FLOOR = 1 / 3
BOOK_GRAD_SCALE = 1e-3


def book_floor(case: str, net) -> float:
    """The least baseline time / fastopt time the project accepts for a case."""
    return TWO_D_FLOOR if net == TWO_D else BOOK_FLOORS.get(case, BOOK_FLOOR)


def book_cases() -> list[str]:
    """Every rule of the registry, then the shared SGD."""
    return cases.rule_names() + [SHARED_SGD]


def book_baseline(rule):
    """(label, class) of the NumPy optimizer fastopt is compared with in the book's loop."""
    if rule.name in BOOK_CLASSES:
        return "book", BOOK_CLASSES[rule.name]
    return "fastopt.reference", rule.reference


def net_sizes(net) -> tuple:
    """(input, hidden sizes, output) of ``net``: a name of BOOK_NETS or such a tuple."""
    return BOOK_NETS[net] if isinstance(net, str) else net


def net_name(net) -> str:
    if isinstance(net, str):
        return net
    input_size, hidden, output_size = net
    return "-".join(map(str, (input_size, *hidden, output_size)))


def book_net_params(net, seed: int = 0) -> dict:
    """The float64 params (W1, b1, ...) of a book MultiLayerNet: He
    initialisation, zero biases; or the 2-D example's two Python floats."""
    if net == TWO_D:
        return {"x": -7.0, "y": 2.0}
    input_size, hidden, output_size = net_sizes(net)
    rng = np.random.default_rng(seed)
    sizes = [input_size, *hidden, output_size]
    params = {}
    for i in range(1, len(sizes)):
        params[f"W{i}"] = np.sqrt(2.0 / sizes[i - 1]) * rng.standard_normal((sizes[i - 1], sizes[i]))
        params[f"b{i}"] = np.zeros(sizes[i])
    return params


def base_grads(params: dict, seed: int = 1) -> dict:
    """A fixed set of float64 grads shaped like ``params``; each step gets copies.
    (Python-float params: the 2-D example's gradient there, as Python floats.)"""
    if all(isinstance(p, float) for p in params.values()):  # NumPy float64 too: the book's turn into them
        x, y = params["x"], params["y"]
        return {"x": float(x / 10.0), "y": float(2.0 * y)}
    rng = np.random.default_rng(seed)
    return {k: rng.standard_normal(np.shape(p)) * BOOK_GRAD_SCALE for k, p in params.items()}


def fresh_grads(base: dict) -> dict:
    """A new dict of new arrays with ``base``'s values: what the book's
    ``network.gradient`` hands over each step (new objects, cache-warm;
    Python floats: new float objects of the same values)."""
    return {k: g * 1.0 if type(g) is float else g.copy() for k, g in base.items()}


class BookLoopStep:
    """One step of the book's loop; calling it returns the seconds spent in
    ``optimizer.update`` alone.

    ``networks`` is a list of (params, base grads): one for the usual loop,
    several for an optimizer shared by networks updated in turn
    (weight_init_compare.py).  Each update gets a fresh dict of fresh grad
    arrays, built before the clock starts; as with ``grads =
    network.gradient(...)``, the previous grads are released only once the
    new ones exist.  ``calls`` and ``faults`` (minor page faults during the
    updates, where the platform reports them) count since ``reset_counters``.

    ``repeat`` updates per network are timed together (each with its own
    fresh grads, built before the clock starts): an update of two Python
    floats takes about as long as reading the clock.  The call returns
    their total; per update, divide by ``repeat``.
    """

    def __init__(self, optimizer, networks, repeat: int = 1):
        self.optimizer = optimizer
        self.networks = networks
        self.repeat = repeat
        self.held = None
        self.calls = self.faults = 0

    def reset_counters(self) -> None:
        self.calls = self.faults = 0

    def __call__(self) -> float:
        clock, update = time.perf_counter, self.optimizer.update
        total = 0.0
        faults = 0
        for params, base in self.networks:
            if self.repeat == 1:
                self.held = grads = fresh_grads(base)
                before = minor_faults()
                start = clock()
                update(params, grads)
                total += clock() - start
                faults += minor_faults() - before
                continue
            self.held = batch = [fresh_grads(base) for _ in range(self.repeat)]
            before = minor_faults()
            start = clock()
            for grads in batch:
                update(params, grads)
            total += clock() - start
            faults += minor_faults() - before
        self.calls += 1
        self.faults += faults
        return total


def make_book_step(impl: str, case: str, net, seed: int = 0) -> BookLoopStep:
    """One step of the book's loop for ``impl`` ("fastopt" or "baseline").

    ``case`` is a rule's name or SHARED_SGD: one SGD stepping SHARED_NETWORKS
    networks of the same shape in turn, each with its own params and grads.
    """
    shared = case == SHARED_SGD
    rule = cases.rule("SGD" if shared else case)
    networks = []
    for i in range(SHARED_NETWORKS if shared else 1):
        params = book_net_params(net, seed + i)
        networks.append((params, base_grads(params, seed + 100 + i)))
    optimizer = rule.fast() if impl == "fastopt" else book_baseline(rule)[1]()
    step = BookLoopStep(optimizer, networks, TWO_D_STEPS if net == TWO_D else 1)
    if shared:
        try:
            step()
        except Exception as exc:  # an SGD that fixes its layout (before engine v2)
            raise NotImplementedError(f"one SGD cannot update several networks at this commit: {exc}")
    return step
