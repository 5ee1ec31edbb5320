"""Adam, in the book's (and the paper's "efficient") form.

Equations (``g`` after coupled weight decay, ``g + weight_decay * p``; ``t`` is
the step count, 1 at the first update)::

    lr_t = lr * sqrt(1 - beta2**t) / (1 - beta1**t)
    m += (1 - beta1) * (g - m)
    v += (1 - beta2) * (g * g - v)
    p -= lr_t * m / (sqrt(v) + eps)

Defaults: ``lr=0.001, beta1=0.9, beta2=0.999, eps=1e-7, weight_decay=0.0`` (the
book's ``Adam``, whose ``1e-7`` becomes ``eps``).  State: ``m``, ``v``.

Reference: Kingma & Ba, "Adam: A Method for Stochastic Optimization",
arXiv:1412.6980, the update just before section 2.1; the book, section 6.1.6.

Warning - ``eps`` placement: folding the bias corrections into ``lr_t`` adds
``eps`` to the *uncorrected* ``sqrt(v)``.  PyTorch's ``Adam`` and
``optax.adam`` compute ``m_hat / (sqrt(v_hat) + eps)``, which equals this rule
with ``eps * sqrt(1 - beta2**t)`` in place of ``eps``; results differ most in the
first steps and where ``v`` is tiny.  Their default ``eps`` is ``1e-8``.

Unlike the book's code under NumPy 2 (NEP 50), where ``lr_t`` is a NumPy
float64 and silently promotes ``lr_t * m`` to float64 for float32 params,
every scalar here is rounded to the param dtype and all arithmetic stays in
that dtype.
"""

from math import sqrt

import numpy as np
from numba import prange

from .._hyper import Hyperparameter, Hyperparameters, non_negative, positive, unit_interval
from .._jit import LENGTH, array_at, kernel
from ..optimizer import Optimizer


class AdamHyperparameters(Hyperparameters):
    lr = Hyperparameter(0.001, non_negative, "learning rate")
    beta1 = Hyperparameter(0.9, unit_interval, "decay of the gradient average m")
    beta2 = Hyperparameter(0.999, unit_interval, "decay of the squared-gradient average v")
    eps = Hyperparameter(1e-7, positive, "added to sqrt(v)")
    weight_decay = Hyperparameter(0.0, non_negative, "coupled L2 coefficient")


@kernel
def adam_kernel(table, s, step):
    lr_t, one_minus_beta1, one_minus_beta2, eps, weight_decay = s[0], s[1], s[2], s[3], s[4]
    for row in prange(table.shape[0]):
        n = table[row, LENGTH]
        p = array_at(table[row, 1], n, s)
        g = array_at(table[row, 2], n, s)
        m = array_at(table[row, 3], n, s)
        v = array_at(table[row, 4], n, s)
        for i in range(n):
            gi = g[i]
            if weight_decay != 0:
                gi = gi + weight_decay * p[i]
            mi = m[i] + one_minus_beta1 * (gi - m[i])
            vi = v[i] + one_minus_beta2 * (gi * gi - v[i])
            m[i] = mi
            v[i] = vi
            p[i] = p[i] - lr_t * mi / (np.sqrt(vi) + eps)
    step[0] += 1


class Adam(AdamHyperparameters, Optimizer):
    __doc__ = __doc__
    state_names = ("m", "v")
    n_step_scalars = 1
    kernel = adam_kernel

    def step_scalars(self, hp, t):
        return (hp.lr * sqrt(1.0 - hp.beta2**t) / (1.0 - hp.beta1**t),)

    def constant_scalars(self, hp):
        return (1.0 - hp.beta1, 1.0 - hp.beta2, hp.eps, hp.weight_decay)
