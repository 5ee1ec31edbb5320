"""Momentum SGD (heavy ball), with the learning rate folded into the velocity.

Equations (``g`` after coupled weight decay, ``g + weight_decay * p``)::

    v = momentum * v - lr * g
    p += v

Defaults: ``lr=0.01, momentum=0.9, weight_decay=0.0`` (the book's
``Momentum``).  State: ``v``, zeros at the first update.

Reference: Polyak (1964); Sutskever et al. (2013); the book, section 6.1.4.

Compared with PyTorch ``SGD(momentum=m)`` and ``optax.sgd(momentum=m)``: they
keep ``b = m * b + g`` and step ``p -= lr * b``, so their buffer is ``-v / lr``
here.  With a constant ``lr`` both give the same params (up to rounding);
when ``lr`` changes mid-run they differ, because this ``v`` carries the old
learning rate.  PyTorch also sets ``b = g`` on the first step (no
dampening), which matches ``v = -lr * g`` from zero here.
"""

from numba import prange

from .._hyper import Hyperparameter, Hyperparameters, non_negative, unit_interval
from .._jit import LENGTH, array_at, kernel
from ..optimizer import Optimizer


class MomentumHyperparameters(Hyperparameters):
    lr = Hyperparameter(0.01, non_negative, "learning rate")
    momentum = Hyperparameter(0.9, unit_interval, "velocity decay")
    weight_decay = Hyperparameter(0.0, non_negative, "coupled L2 coefficient")


@kernel
def momentum_kernel(table, s, step):
    lr, momentum, weight_decay = s[0], s[1], s[2]
    for row in prange(table.shape[0]):
        n = table[row, LENGTH]
        p = array_at(table[row, 1], n, s)
        g = array_at(table[row, 2], n, s)
        v = array_at(table[row, 3], n, s)
        for i in range(n):
            gi = g[i]
            if weight_decay != 0:
                gi = gi + weight_decay * p[i]
            vi = momentum * v[i] - lr * gi
            v[i] = vi
            p[i] = p[i] + vi
    step[0] += 1


class Momentum(MomentumHyperparameters, Optimizer):
    __doc__ = __doc__
    state_names = ("v",)
    kernel = momentum_kernel

    def constant_scalars(self, hp):
        return (hp.lr, hp.momentum, hp.weight_decay)
