"""AdamW: Adam with decoupled weight decay.

Equations (``t`` is the step count, 1 at the first update; ``g`` is the raw
gradient: the decay acts on ``p`` directly)::

    p *= 1 - lr * weight_decay
    m = beta1 * m + (1 - beta1) * g
    v = beta2 * v + (1 - beta2) * g * g
    p -= (lr / (1 - beta1**t)) * m / (sqrt(v) / sqrt(1 - beta2**t) + eps)

Defaults: ``lr=0.001, beta1=0.9, beta2=0.999, eps=1e-8, weight_decay=0.01``
(PyTorch's).  State: ``m``, ``v``.

Reference: Loshchilov & Hutter, "Decoupled Weight Decay Regularization",
ICLR 2019, algorithm 2, in the form PyTorch's ``AdamW`` and ``optax.adamw``
implement: the decay is scaled by ``lr`` (the paper's schedule multiplier
``eta_t`` is ``lr`` here) and ``eps`` is added to the bias-corrected
``sqrt(v)``.

Compared with PyTorch ``AdamW(amsgrad=False)``: the same equations in the same
order.  optax's ``adamw`` applies the decay after the Adam step, not before,
which differs by a term of order ``lr**2 * weight_decay``.
"""

from math import sqrt

import numpy as np
from numba import prange

from .._hyper import Hyperparameter, Hyperparameters, non_negative, positive, unit_interval
from .._jit import LENGTH, array_at, kernel
from ..optimizer import Optimizer


class AdamWHyperparameters(Hyperparameters):
    lr = Hyperparameter(0.001, non_negative, "learning rate")
    beta1 = Hyperparameter(0.9, unit_interval, "decay of the gradient average m")
    beta2 = Hyperparameter(0.999, unit_interval, "decay of the squared-gradient average v")
    eps = Hyperparameter(1e-8, positive, "added to the bias-corrected sqrt(v)")
    weight_decay = Hyperparameter(0.01, non_negative, "decoupled decay coefficient")


@kernel
def adamw_kernel(table, s, step):
    step_size, sqrt_bias2 = s[0], s[1]
    decay, beta1, one_minus_beta1, beta2, one_minus_beta2, eps = s[2], s[3], s[4], s[5], s[6], s[7]
    for row in prange(table.shape[0]):
        n = table[row, LENGTH]
        p = array_at(table[row, 1], n, s)
        g = array_at(table[row, 2], n, s)
        m = array_at(table[row, 3], n, s)
        v = array_at(table[row, 4], n, s)
        for i in range(n):
            gi = g[i]
            mi = beta1 * m[i] + one_minus_beta1 * gi
            vi = beta2 * v[i] + one_minus_beta2 * gi * gi
            m[i] = mi
            v[i] = vi
            p[i] = p[i] * decay - step_size * mi / (np.sqrt(vi) / sqrt_bias2 + eps)
    step[0] += 1


class AdamW(AdamWHyperparameters, Optimizer):
    __doc__ = __doc__
    state_names = ("m", "v")
    n_step_scalars = 2
    kernel = adamw_kernel

    def step_scalars(self, hp, t):
        return (hp.lr / (1.0 - hp.beta1**t), sqrt(1.0 - hp.beta2**t))

    def constant_scalars(self, hp):
        b1, b2 = hp.beta1, hp.beta2
        return (1.0 - hp.lr * hp.weight_decay, b1, 1.0 - b1, b2, 1.0 - b2, hp.eps)
