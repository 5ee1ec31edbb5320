"""RMSprop.

Equations (``g`` after coupled weight decay, ``g + weight_decay * p``)::

    h = decay_rate * h + (1 - decay_rate) * g * g
    p -= lr * g / (sqrt(h) + eps)

Defaults: ``lr=0.01, decay_rate=0.99, eps=1e-7, weight_decay=0.0`` (the book's
``RMSprop``).  State: ``h``, zeros at the first update.

Reference: Tieleman & Hinton, COURSERA "Neural Networks for Machine Learning",
lecture 6.5 (2012); the book, section 6.1.5.

Compared with PyTorch ``RMSprop(alpha=decay_rate)``: the same update
(non-centered, no momentum); PyTorch's default ``eps`` is ``1e-8``.  optax's
``rmsprop`` puts ``eps`` inside the square root.
"""

import numpy as np
from numba import prange

from .._hyper import Hyperparameter, Hyperparameters, non_negative, positive, unit_interval
from .._jit import LENGTH, array_at, kernel
from ..optimizer import Optimizer


class RMSpropHyperparameters(Hyperparameters):
    lr = Hyperparameter(0.01, non_negative, "learning rate")
    decay_rate = Hyperparameter(0.99, unit_interval, "decay of the squared-gradient average")
    eps = Hyperparameter(1e-7, positive, "added to sqrt(h)")
    weight_decay = Hyperparameter(0.0, non_negative, "coupled L2 coefficient")


@kernel
def rmsprop_kernel(table, s, step):
    lr, decay_rate, one_minus_decay_rate, eps, weight_decay = s[0], s[1], s[2], s[3], s[4]
    for row in prange(table.shape[0]):
        n = table[row, LENGTH]
        p = array_at(table[row, 1], n, s)
        g = array_at(table[row, 2], n, s)
        h = array_at(table[row, 3], n, s)
        for i in range(n):
            gi = g[i]
            if weight_decay != 0:
                gi = gi + weight_decay * p[i]
            hi = decay_rate * h[i] + one_minus_decay_rate * gi * gi
            h[i] = hi
            p[i] = p[i] - lr * gi / (np.sqrt(hi) + eps)
    step[0] += 1


class RMSprop(RMSpropHyperparameters, Optimizer):
    __doc__ = __doc__
    state_names = ("h",)
    kernel = rmsprop_kernel

    def constant_scalars(self, hp):
        return (hp.lr, hp.decay_rate, 1.0 - hp.decay_rate, hp.eps, hp.weight_decay)
