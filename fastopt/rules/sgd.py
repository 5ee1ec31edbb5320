"""Stochastic gradient descent.

Equations (``g`` after coupled weight decay, ``g + weight_decay * p``)::

    p -= lr * g

Defaults: ``lr=0.01, weight_decay=0.0`` (the book's ``SGD``).

Reference: Robbins & Monro (1951); the book, section 6.1.2.

Compared with PyTorch ``torch.optim.SGD(momentum=0)`` and ``optax.sgd``: the
same update; ``weight_decay`` is the same coupled L2 term as PyTorch's.
"""

from numba import prange

from .._hyper import Hyperparameter, Hyperparameters, non_negative
from .._jit import LENGTH, array_at, kernel
from ..optimizer import Optimizer


class SGDHyperparameters(Hyperparameters):
    lr = Hyperparameter(0.01, non_negative, "learning rate")
    weight_decay = Hyperparameter(0.0, non_negative, "coupled L2 coefficient")


@kernel
def sgd_kernel(table, s, step):
    lr, weight_decay = s[0], s[1]
    for row in prange(table.shape[0]):
        n = table[row, LENGTH]
        p = array_at(table[row, 1], n, s)
        g = array_at(table[row, 2], n, s)
        for i in range(n):
            gi = g[i]
            if weight_decay != 0:
                gi = gi + weight_decay * p[i]
            p[i] = p[i] - lr * gi
    step[0] += 1


class SGD(SGDHyperparameters, Optimizer):
    __doc__ = __doc__
    state_names = ()
    kernel = sgd_kernel
    default_parallel_min_size = 100_000

    def constant_scalars(self, hp):
        return (hp.lr, hp.weight_decay)
