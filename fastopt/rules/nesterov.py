"""Nesterov accelerated gradient, in the form of Bengio et al. (2012).

Equations (``g`` after coupled weight decay, ``g + weight_decay * p``;
``v_old`` is the velocity before this step)::

    p += momentum * momentum * v_old - (1 + momentum) * lr * g
    v  = momentum * v_old - lr * g

Defaults: ``lr=0.01, momentum=0.9, weight_decay=0.0``.  State: ``v``.

Reference: Y. Bengio, N. Boulanger-Lewandowski, R. Pascanu, "Advances in
optimizing recurrent networks", arXiv:1212.0901 (2012), eq. 7 - the paper the
book cites.

Warning - differs from the book's listing: the book's ``Nesterov.update``
multiplies ``momentum**2`` by the velocity *after* updating it, which is not
the paper's update; after five steps on random gradients the two differ in
the first digit.  fastopt follows the paper.

Compared with PyTorch ``SGD(momentum=m, nesterov=True)``: identical params
with PyTorch's buffer equal to ``-v / lr`` (for a constant ``lr``).  optax's
``sgd(nesterov=True)`` is the same method.
"""

from numba import prange

from .._hyper import Hyperparameter, Hyperparameters, non_negative, unit_interval
from .._jit import LENGTH, array_at, kernel
from ..optimizer import Optimizer


class NesterovHyperparameters(Hyperparameters):
    lr = Hyperparameter(0.01, non_negative, "learning rate")
    momentum = Hyperparameter(0.9, unit_interval, "velocity decay")
    weight_decay = Hyperparameter(0.0, non_negative, "coupled L2 coefficient")


@kernel
def nesterov_kernel(table, s, step):
    lr, momentum, momentum_sq, one_plus_momentum_lr, weight_decay = s[0], s[1], s[2], s[3], s[4]
    for row in prange(table.shape[0]):
        n = table[row, LENGTH]
        p = array_at(table[row, 1], n, s)
        g = array_at(table[row, 2], n, s)
        v = array_at(table[row, 3], n, s)
        for i in range(n):
            gi = g[i]
            if weight_decay != 0:
                gi = gi + weight_decay * p[i]
            v_old = v[i]
            p[i] = p[i] + (momentum_sq * v_old - one_plus_momentum_lr * gi)
            v[i] = momentum * v_old - lr * gi
    step[0] += 1


class Nesterov(NesterovHyperparameters, Optimizer):
    __doc__ = __doc__
    state_names = ("v",)
    kernel = nesterov_kernel

    def constant_scalars(self, hp):
        m = hp.momentum
        return (hp.lr, m, m * m, (1.0 + m) * hp.lr, hp.weight_decay)
