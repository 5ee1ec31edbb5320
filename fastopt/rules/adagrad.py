"""AdaGrad.

Equations (``g`` after coupled weight decay, ``g + weight_decay * p``)::

    h += g * g
    p -= lr * g / (sqrt(h) + eps)

Defaults: ``lr=0.01, eps=1e-7, weight_decay=0.0`` (the book's ``AdaGrad``,
whose ``1e-7`` becomes ``eps``).  State: ``h``, zeros at the first update and
kept across calls.

Reference: Duchi, Hazan & Singer, "Adaptive Subgradient Methods", JMLR 12
(2011); the book, section 6.1.5.

Warning - differs from the study notes' listing, which re-initialises ``h`` to
zeros on every call (its loop sits outside ``if self.h is None``) and so
computes normalised SGD, not AdaGrad.

Compared with PyTorch ``Adagrad``: the same update with
``initial_accumulator_value=0`` and ``lr_decay=0``; PyTorch's default ``eps`` is
``1e-10``.  optax's ``adagrad`` starts ``h`` at 0.1 and puts ``eps`` inside the
square root.
"""

import numpy as np
from numba import prange

from .._hyper import Hyperparameter, Hyperparameters, non_negative, positive
from .._jit import LENGTH, array_at, kernel
from ..optimizer import Optimizer


class AdaGradHyperparameters(Hyperparameters):
    lr = Hyperparameter(0.01, non_negative, "learning rate")
    eps = Hyperparameter(1e-7, positive, "added to sqrt(h)")
    weight_decay = Hyperparameter(0.0, non_negative, "coupled L2 coefficient")


@kernel
def adagrad_kernel(table, s, step):
    lr, eps, weight_decay = s[0], s[1], s[2]
    for row in prange(table.shape[0]):
        n = table[row, LENGTH]
        p = array_at(table[row, 1], n, s)
        g = array_at(table[row, 2], n, s)
        h = array_at(table[row, 3], n, s)
        for i in range(n):
            gi = g[i]
            if weight_decay != 0:
                gi = gi + weight_decay * p[i]
            hi = h[i] + gi * gi
            h[i] = hi
            p[i] = p[i] - lr * gi / (np.sqrt(hi) + eps)
    step[0] += 1


class AdaGrad(AdaGradHyperparameters, Optimizer):
    __doc__ = __doc__
    state_names = ("h",)
    kernel = adagrad_kernel

    def constant_scalars(self, hp):
        return (hp.lr, hp.eps, hp.weight_decay)
