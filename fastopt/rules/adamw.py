"""AdamW: Adam with decoupled weight decay.

Equations (``t`` is the step count, 1 at the first update; ``g`` is the raw
gradient: the decay acts on ``p`` directly)::

    p *= 1 - lr * weight_decay
    m = beta1 * m + (1 - beta1) * g
    v = beta2 * v + (1 - beta2) * g * g
    p -= (lr / (1 - beta1**t)) * m / (sqrt(v) / sqrt(1 - beta2**t) + eps)

Defaults: ``lr=0.001, beta1=0.9, beta2=0.999, eps=1e-8, weight_decay=0.01``
(PyTorch's).  State: ``m``, ``v``.

``amsgrad=True`` (as PyTorch's ``AdamW(amsgrad=True)``): ``v_max =
maximum(v_max, v)`` replaces ``v`` in the denominator; state ``m``, ``v``,
``v_max``.

Reference: Loshchilov & Hutter, "Decoupled Weight Decay Regularization",
ICLR 2019, algorithm 2, in the form PyTorch's ``AdamW`` and ``optax.adamw``
implement: the decay is scaled by ``lr`` (the paper's schedule multiplier
``eta_t`` is ``lr`` here) and ``eps`` is added to the bias-corrected
``sqrt(v)``.

Compared with PyTorch ``AdamW(amsgrad=False)``: the same equations in the same
order.  optax's ``adamw`` applies the decay after the Adam step, not before,
which differs by a term of order ``lr**2 * weight_decay``.
"""
from typing import NamedTuple

import numpy as np

from .._hyper import Hyperparameter, Hyperparameters, non_negative, positive, unit_interval
from .._jit import RuleMath, nan_maximum
from ..optimizer import Optimizer
from math import sqrt


class AdamWHyperparameters(Hyperparameters):
    lr = Hyperparameter(0.001, non_negative, "learning rate")
    beta1 = Hyperparameter(0.9, unit_interval, "decay of the gradient average m")
    beta2 = Hyperparameter(0.999, unit_interval, "decay of the squared-gradient average v")
    eps = Hyperparameter(1e-8, positive, "added to the bias-corrected sqrt(v)")
    weight_decay = Hyperparameter(0.01, non_negative, "decoupled decay coefficient")


class Scalars(NamedTuple):
    step_size: float
    sqrt_bias2: float
    decay: float
    beta1: float
    one_minus_beta1: float
    beta2: float
    one_minus_beta2: float
    eps: float


def scalars(hp, t) -> Scalars:
    b1, b2 = hp.beta1, hp.beta2
    return Scalars(
        step_size=hp.lr / (1.0 - b1**t),
        sqrt_bias2=sqrt(1.0 - b2**t),
        decay=1.0 - hp.lr * hp.weight_decay,
        beta1=b1,
        one_minus_beta1=1.0 - b1,
        beta2=b2,
        one_minus_beta2=1.0 - b2,
        eps=hp.eps,
    )


def update(p, g, i, m, v, step_size, sqrt_bias2, decay, beta1, one_minus_beta1, beta2, one_minus_beta2, eps):
    mi = beta1 * m[i] + one_minus_beta1 * g
    vi = beta2 * v[i] + one_minus_beta2 * g * g
    m[i] = mi
    v[i] = vi
    p = p * decay
    return p - step_size * mi / (np.sqrt(vi) / sqrt_bias2 + eps)


def amsgrad_update(p, g, i, m, v, v_max, step_size, sqrt_bias2, decay, beta1, one_minus_beta1, beta2,
                   one_minus_beta2, eps):
    mi = beta1 * m[i] + one_minus_beta1 * g
    vi = beta2 * v[i] + one_minus_beta2 * g * g
    top = nan_maximum(vi, v_max[i])
    m[i] = mi
    v[i] = vi
    v_max[i] = top
    p = p * decay
    return p - step_size * mi / (np.sqrt(top) / sqrt_bias2 + eps)


MATH = RuleMath("AdamW", ("m", "v"), Scalars, scalars, update, depends_on_step=True, coupled_decay=None,
                int8_unsigned=("v",))
AMSGRAD_MATH = RuleMath("AdamWAMSGrad", ("m", "v", "v_max"), Scalars, scalars, amsgrad_update,
                        depends_on_step=True, coupled_decay=None, int8_unsigned=("v", "v_max"))


class AdamW(AdamWHyperparameters, Optimizer):
    __doc__ = __doc__
    math = MATH
    structure = {"amsgrad": False}

    def choose_math(self) -> RuleMath:
        return AMSGRAD_MATH if self.amsgrad else MATH
